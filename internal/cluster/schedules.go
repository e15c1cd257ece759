package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/aura-dev/aura/internal/store"
)

// Keys of the cluster's schedules.
const (
	// ScheduleStatesPrefix holds each schedule's state (last tick, last
	// fire, pause) shared by every node: /aura/schedules/state/<plan>/<name>.
	ScheduleStatesPrefix = "/aura/schedules/state/"
	// FireClaimsPrefix holds one key per fire (its idempotency key),
	// created before the fire is submitted, so that no two nodes fire the
	// same tick: /aura/schedules/fired/<key>.
	FireClaimsPrefix = "/aura/schedules/fired/"
)

// ScheduleStates is the schedules' state of a cluster: the states in etcd,
// shared by every node (a new leader goes on from the last tick the old
// one fired), and the fires' claims. The after triggers' cursor, which
// follows this node's own event log, stays in Local.
type ScheduleStates struct {
	// Immutable after NewScheduleStates.
	cli   *clientv3.Client
	local store.ScheduleStore
	node  string
	log   *slog.Logger

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	changes chan store.ScheduleState

	watchOnce sync.Once
}

// NewScheduleStates returns the cluster's schedule states for node, on
// cli, with the after triggers' cursor in local (closed by Close).
func NewScheduleStates(cli *clientv3.Client, local store.ScheduleStore, node string, log *slog.Logger) *ScheduleStates {
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &ScheduleStates{cli: cli, local: local, node: node, log: log, ctx: ctx, cancel: cancel,
		changes: make(chan store.ScheduleState, 64)}
}

// stateRecord is a ScheduleState as etcd keeps it.
type stateRecord struct {
	LastTick   time.Time `json:"last_tick"`
	LastFire   time.Time `json:"last_fire"`
	LastTaskID string    `json:"last_task,omitempty"`
	Paused     *bool     `json:"paused,omitempty"`
}

func decodeState(key, val []byte) (store.ScheduleState, error) {
	var r stateRecord
	if err := json.Unmarshal(val, &r); err != nil {
		return store.ScheduleState{}, fmt.Errorf("schedule state %s: %w", key, err)
	}
	return store.ScheduleState{ID: strings.TrimPrefix(string(key), ScheduleStatesPrefix), LastTick: r.LastTick,
		LastFire: r.LastFire, LastTaskID: r.LastTaskID, Paused: r.Paused}, nil
}

// ScheduleStates implements store.ScheduleStore. The first call also
// starts following the states other nodes write (Changes).
func (s *ScheduleStates) ScheduleStates(ctx context.Context) (map[string]store.ScheduleState, error) {
	resp, err := s.cli.Get(ctx, ScheduleStatesPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("reading the schedules' state from etcd: %w", err)
	}
	out := make(map[string]store.ScheduleState, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		st, err := decodeState(kv.Key, kv.Value)
		if err != nil {
			s.log.Warn("cluster: an unreadable schedule state in etcd; the schedule starts afresh", "err", err)
			continue
		}
		out[st.ID] = st
	}
	s.watchOnce.Do(func() {
		s.wg.Add(1)
		go s.watch(resp.Header.Revision)
	})
	return out, nil
}

// SaveScheduleStates implements store.ScheduleStore, in one etcd
// transaction. A row never moves a schedule back: a last tick or last fire
// older than the one in etcd (written by a node that had not heard of a
// newer fire) keeps etcd's. The pause state is the row's.
func (s *ScheduleStates) SaveScheduleStates(ctx context.Context, states []store.ScheduleState) error {
	if len(states) == 0 {
		return nil
	}
	_, err := concurrency.NewSTM(s.cli, func(stm concurrency.STM) error {
		for _, st := range states {
			key := ScheduleStatesPrefix + st.ID
			rec := stateRecord{LastTick: st.LastTick, LastFire: st.LastFire, LastTaskID: st.LastTaskID, Paused: st.Paused}
			if cur := stm.Get(key); cur != "" {
				if had, err := decodeState([]byte(key), []byte(cur)); err == nil {
					if had.LastTick.After(rec.LastTick) {
						rec.LastTick = had.LastTick
					}
					if had.LastFire.After(rec.LastFire) {
						rec.LastFire, rec.LastTaskID = had.LastFire, had.LastTaskID
					}
				}
			}
			val, err := json.Marshal(rec)
			if err != nil {
				return err
			}
			stm.Put(key, string(val))
		}
		return nil
	}, concurrency.WithAbortContext(ctx))
	if err != nil {
		return fmt.Errorf("saving the schedules' state in etcd: %w", err)
	}
	return nil
}

// ScheduleCursor implements store.ScheduleStore: the after triggers'
// cursor on this node's own event log.
func (s *ScheduleStates) ScheduleCursor(ctx context.Context) (uint64, bool, error) {
	return s.local.ScheduleCursor(ctx)
}

// SetScheduleCursor implements store.ScheduleStore.
func (s *ScheduleStates) SetScheduleCursor(ctx context.Context, seq uint64) error {
	return s.local.SetScheduleCursor(ctx, seq)
}

// Close stops following the states and closes the local store.
func (s *ScheduleStates) Close() error {
	s.cancel()
	s.wg.Wait()
	return s.local.Close()
}

// Changes delivers every state written to etcd after the first
// ScheduleStates call, by any node (this one's own writes included).
func (s *ScheduleStates) Changes() <-chan store.ScheduleState { return s.changes }

func (s *ScheduleStates) watch(rev int64) {
	defer s.wg.Done()
	for s.ctx.Err() == nil {
		for resp := range s.cli.Watch(clientv3.WithRequireLeader(s.ctx), ScheduleStatesPrefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
			if err := resp.Err(); err != nil {
				s.log.Debug("cluster: the watch on the schedules' state broke", "err", err)
				if resp.CompactRevision > rev {
					rev = resp.CompactRevision - 1 // what was compacted away is read again below
				}
				break
			}
			for _, ev := range resp.Events {
				if ev.Type != clientv3.EventTypePut {
					continue
				}
				st, err := decodeState(ev.Kv.Key, ev.Kv.Value)
				if err != nil {
					continue
				}
				select {
				case s.changes <- st:
				case <-s.ctx.Done():
					return
				}
			}
			rev = resp.Header.Revision
		}
		select {
		case <-s.ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// claimRecord is what a fire's claim keeps.
type claimRecord struct {
	Node   string    `json:"node"`
	At     time.Time `json:"at"`
	TaskID string    `json:"task_id,omitempty"`
}

// Claim claims the fire whose idempotency key is key for this node, before
// it is submitted. claimed is false when a node (this one included)
// claimed it before; prior is then the task that fire submitted, "" when
// it is unknown (the claiming node stopped between claim and submission:
// that fire is lost rather than made twice).
func (s *ScheduleStates) Claim(ctx context.Context, key string) (prior string, claimed bool, err error) {
	val, err := json.Marshal(claimRecord{Node: s.node, At: time.Now().UTC()})
	if err != nil {
		return "", false, err
	}
	k := FireClaimsPrefix + key
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(val))).
		Else(clientv3.OpGet(k)).
		Commit()
	if err != nil {
		return "", false, fmt.Errorf("claiming fire %s in etcd: %w", key, err)
	}
	if resp.Succeeded {
		return "", true, nil
	}
	var had claimRecord
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		_ = json.Unmarshal(kvs[0].Value, &had)
	}
	return had.TaskID, false, nil
}

// Fired records the task a claimed fire submitted, for the nodes that
// find the claim later.
func (s *ScheduleStates) Fired(ctx context.Context, key, taskID string) error {
	val, err := json.Marshal(claimRecord{Node: s.node, At: time.Now().UTC(), TaskID: taskID})
	if err != nil {
		return err
	}
	if _, err := s.cli.Put(ctx, FireClaimsPrefix+key, string(val)); err != nil {
		return fmt.Errorf("recording fire %s in etcd: %w", key, err)
	}
	return nil
}

// PruneFireClaims deletes the fires' claims made before olderThan ago,
// and returns how many it deleted. It runs on the leader. A claim matters
// only until the schedule's state in etcd has moved past its tick (right
// after the fire), so an hour is plenty.
func PruneFireClaims(ctx context.Context, cli *clientv3.Client, olderThan time.Duration) (int, error) {
	edge := time.Now().Add(-olderThan)
	end := clientv3.GetPrefixRangeEnd(FireClaimsPrefix)
	from, n := FireClaimsPrefix, 0
	for {
		resp, err := cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(500))
		if err != nil {
			return n, err
		}
		for _, kv := range resp.Kvs {
			var c claimRecord
			if json.Unmarshal(kv.Value, &c) == nil && c.At.After(edge) {
				continue
			}
			// Only the version read: a claim rewritten meanwhile stays.
			del, err := cli.Txn(ctx).
				If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).
				Then(clientv3.OpDelete(string(kv.Key))).
				Commit()
			if err != nil {
				return n, err
			}
			if del.Succeeded {
				n++
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return n, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
