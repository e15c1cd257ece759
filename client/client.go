// Package client is the Go client for aurad: what remote schedulers,
// plugins and auractl use to submit tasks, wait for and watch them, and
// follow the hook stream.
//
//	c, err := client.Dial("127.0.0.1:7070")
//	if err != nil { ... }
//	defer c.Close()
//	resp, err := c.Submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"})
//	task, err := c.Wait(ctx, resp.TaskId)
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// DefaultAddr is where aurad listens unless told otherwise.
const DefaultAddr = "127.0.0.1:7070"

// Client talks to one aurad.
type Client struct {
	conn  *grpc.ClientConn
	Exec  aurav1.ExecutionServiceClient
	Hooks aurav1.HookServiceClient
}

type options struct {
	tls   *tls.Config
	token string
	dial  []grpc.DialOption
}

// Option configures Dial.
type Option func(*options)

// WithTLS connects over TLS (pass client certificates in cfg for mTLS).
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tls = cfg } }

// WithToken sends a bearer token with every call.
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithDialOptions adds raw grpc dial options.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dial = append(o.dial, opts...) }
}

// Dial connects to addr ("host:port" or "unix:///path"). Plaintext is
// used unless WithTLS is given.
func Dial(addr string, opts ...Option) (*Client, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if addr == "" {
		addr = DefaultAddr
	}
	target := addr
	if !strings.Contains(addr, "://") {
		target = "passthrough:///" + addr
	}
	creds := insecure.NewCredentials()
	if o.tls != nil {
		creds = credentials.NewTLS(o.tls)
	}
	dopts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if o.token != "" {
		dopts = append(dopts, grpc.WithPerRPCCredentials(bearer{token: o.token, secure: o.tls != nil}))
	}
	dopts = append(dopts, o.dial...)
	conn, err := grpc.NewClient(target, dopts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return &Client{conn: conn, Exec: aurav1.NewExecutionServiceClient(conn), Hooks: aurav1.NewHookServiceClient(conn)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Conn returns the underlying connection (for the health service, say).
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}
func (b bearer) RequireTransportSecurity() bool { return b.secure }

// Submit submits one task.
func (c *Client) Submit(ctx context.Context, req *aurav1.SubmitRequest) (*aurav1.SubmitResponse, error) {
	return c.Exec.Submit(ctx, req)
}

// Get returns a task.
func (c *Client) Get(ctx context.Context, id string) (*aurav1.Task, error) {
	return c.Exec.GetTask(ctx, &aurav1.GetTaskRequest{TaskId: id})
}

// Cancel cancels a task and returns it as it ended (or as it is when ctx ends first).
func (c *Client) Cancel(ctx context.Context, id, reason string) (*aurav1.Task, error) {
	resp, err := c.Exec.CancelTask(ctx, &aurav1.CancelTaskRequest{TaskId: id, Reason: reason})
	if err != nil {
		return nil, err
	}
	return resp.Task, nil
}

// Watch calls fn for each of a task's events, from its first, and returns
// after the terminal event. With id empty it follows every new event until
// ctx ends. A broken stream is resumed; events already seen are skipped.
func (c *Client) Watch(ctx context.Context, id string, fn func(*aurav1.TaskEvent) error) error {
	var last uint64
	return resume(ctx, func(progress func()) (done bool, err error) {
		stream, err := c.Exec.Stream(ctx, &aurav1.StreamRequest{TaskId: id})
		if err != nil {
			return false, err
		}
		for {
			ev, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				if id == "" {
					return true, nil
				}
				return false, status.Error(codes.Unavailable, "stream ended before the task finished")
			}
			if err != nil {
				return false, err
			}
			progress()
			if ev.Sequence <= last && id != "" {
				continue
			}
			last = ev.Sequence
			if err := fn(ev); err != nil {
				return true, err
			}
			if id != "" && ev.Type == "task.finished" {
				return true, nil
			}
		}
	})
}

// Wait blocks until the task reaches a terminal status and returns it.
func (c *Client) Wait(ctx context.Context, id string) (*aurav1.Task, error) {
	var final *aurav1.Task
	err := c.Watch(ctx, id, func(ev *aurav1.TaskEvent) error {
		if ev.Type == "task.finished" {
			final = ev.Task
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if final == nil {
		return c.Get(ctx, id)
	}
	return final, nil
}

// SubscribeOptions select hook events.
type SubscribeOptions struct {
	Hooks []string
	Plan  string
	// After resumes after this sequence (nil = live from now). With
	// Cluster, it is where every node not in Cursor starts.
	After *uint64

	// Cluster follows every live node of the cluster on one stream: each
	// event names its node (HookEvent.Node) and its sequence is that
	// node's; each node's events come in its order.
	Cluster bool
	// Nodes, with Cluster, follows only these nodes.
	Nodes []string
	// Cursor, with Cluster, is where to resume: per node, the last
	// sequence passed. Subscribe keeps it current as it goes (nil: it
	// keeps one of its own), so once Subscribe returns, or from within fn,
	// it is where a later Subscribe resumes with no gap and no duplicate.
	Cursor *aurav1.ClusterCursor
}

// Subscribe calls fn for every hook event until ctx ends or fn fails. After
// a disconnect it resumes from the last sequence it delivered (per node,
// with Cluster), so fn sees every event once, in order.
func (c *Client) Subscribe(ctx context.Context, o SubscribeOptions, fn func(*aurav1.HookEvent) error) error {
	if o.Cluster {
		return c.subscribeCluster(ctx, o, fn)
	}
	after := o.After
	return resume(ctx, func(progress func()) (done bool, err error) {
		req := &aurav1.SubscribeRequest{Hooks: o.Hooks, Plan: o.Plan, AfterSequence: after}
		stream, err := c.Hooks.Subscribe(ctx, req)
		if err != nil {
			return false, err
		}
		for {
			ev, err := stream.Recv()
			if err != nil {
				return false, err
			}
			progress()
			seq := ev.Sequence
			after = &seq
			if err := fn(ev); err != nil {
				return true, err
			}
		}
	})
}

// subscribeCluster follows a cluster stream, resuming from its cursor.
// Position marks (events with no hook) move the cursor and are not passed
// to fn.
func (c *Client) subscribeCluster(ctx context.Context, o SubscribeOptions, fn func(*aurav1.HookEvent) error) error {
	cur := o.Cursor
	if cur == nil {
		cur = &aurav1.ClusterCursor{}
	}
	if cur.After == nil {
		cur.After = map[string]uint64{}
	}
	resumed := len(cur.After) > 0
	return resume(ctx, func(progress func()) (done bool, err error) {
		req := &aurav1.SubscribeRequest{Hooks: o.Hooks, Plan: o.Plan, AfterSequence: o.After, Cluster: true, Nodes: o.Nodes}
		if resumed {
			// A cursor, even one naming no node yet, says this is a
			// resumption: nodes it does not name joined since, and are
			// followed from the start of their logs.
			req.Cursor = cur
		}
		stream, err := c.Hooks.Subscribe(ctx, req)
		if err != nil {
			return false, err
		}
		resumed = true
		for {
			ev, err := stream.Recv()
			if err != nil {
				return false, err
			}
			progress()
			if last, ok := cur.After[ev.Node]; ok && ev.Sequence <= last {
				continue // already passed (never sent by a correct server)
			}
			cur.After[ev.Node] = ev.Sequence
			if ev.Hook == "" && ev.Task == nil {
				continue // a position mark
			}
			if err := fn(ev); err != nil {
				return true, err
			}
		}
	})
}

// resume runs attempt until it is done or fails for good: a stream broken
// by a retryable error is opened again, backing off (100ms doubling to 5s,
// reset whenever an attempt makes progress).
func resume(ctx context.Context, attempt func(progress func()) (done bool, err error)) error {
	backoff := 100 * time.Millisecond
	for {
		done, err := attempt(func() { backoff = 100 * time.Millisecond })
		if done || !retryable(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}
