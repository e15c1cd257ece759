package store

import (
	"encoding/binary"
	"fmt"
	"time"
)

// The event log's rows. Events are stored packed: one row of event_rows
// holds a run of events with consecutive sequences and one task id, all
// committed in the same transaction (usually the events of one Write: a
// task's creation and task.queued, its terminal record and the hooks that
// follow it). The row is keyed by the sequence of its last event, so
// "every event after N" starts at the first row whose key is above N, and
// the task index (task_id, last_seq) finds a task's runs the same way.
// A row is the unit of retention: it goes once its newest event is older
// than the retention, so the log is still cut only at its front.
//
// Inserting one row for several events is what makes this pay: SQLite's
// cost is per row and per index entry, not per byte, and a no-op task's
// eight events become five rows (fewer when a transaction carries
// several writes of one task back to back).
//
// The packed form, per event, in sequence order (fixed-width big-endian
// integers, so that the migration from one row per event can write it in
// SQL):
//
//	u16 len(type) | type | u8 flags | i64 time (unix ns) | u32 len(data) | data
//
// flags: 1 = a hook event, 2 = data is nil (stored as NULL before packing).
const (
	packHook    = 1
	packNilData = 2
	// packFixed is the bytes of an event's packed form besides its type
	// and data.
	packFixed = 2 + 1 + 8 + 4
	// A run is cut at these sizes, so that reading a task's events or
	// a page of the log never decodes much more than it returns.
	maxRunEvents = 64
	maxRunBytes  = 32 << 10
)

// eventRow is one row of event_rows being written.
type eventRow struct {
	first, last uint64
	taskID      string
	time        int64 // the newest event's, unix ns: retention's clock
	hooks       bool  // at least one hook event: HooksOnly reads skip the rest
	start, end  int   // its packed events in the buffer packRuns filled
}

// packRuns appends to rows the rows that hold evs (in sequence order,
// gap-free), packing their events into buf, which it returns grown; each
// row's packed events are buf[start:end].
func packRuns(rows []eventRow, buf []byte, evs []*Event) ([]eventRow, []byte) {
	for i := 0; i < len(evs); {
		first := evs[i]
		r := eventRow{first: first.Seq, taskID: first.TaskID, start: len(buf)}
		j := i
		for ; j < len(evs) && evs[j].TaskID == first.TaskID && j-i < maxRunEvents && len(buf)-r.start < maxRunBytes; j++ {
			e := evs[j]
			buf = packEvent(buf, e)
			r.last = e.Seq
			r.time = max(r.time, e.Time.UnixNano())
			r.hooks = r.hooks || e.Hook
		}
		r.end = len(buf)
		rows = append(rows, r)
		i = j
	}
	return rows, buf
}

func packEvent(b []byte, e *Event) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(e.Type)))
	b = append(b, e.Type...)
	var flags byte
	if e.Hook {
		flags |= packHook
	}
	if e.Data == nil {
		flags |= packNilData
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixNano()))
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Data)))
	return append(b, e.Data...)
}

// unpackRow appends to out the events of a row (first..last, task taskID,
// packed as packRuns wrote them) with Seq > after that pass f, at most
// limit in all. The events' Data point into packed, each capped at its own
// length, so a caller appending to one cannot overwrite the next.
func unpackRow(out []Event, first, last uint64, taskID string, packed []byte, after uint64, f EventFilter, limit int) ([]Event, error) {
	bad := func(what string) error {
		return fmt.Errorf("%w: event row %d..%d: %s", ErrCorrupt, first, last, what)
	}
	if last < first {
		return out, bad("last sequence before first")
	}
	b := packed
	for seq := first; ; seq++ {
		if len(b) < 2 {
			return out, bad("truncated")
		}
		tl := int(binary.BigEndian.Uint16(b))
		if len(b) < packFixed+tl {
			return out, bad("truncated")
		}
		typ := b[2 : 2+tl]
		flags := b[2+tl]
		ts := int64(binary.BigEndian.Uint64(b[3+tl:]))
		dl := int(binary.BigEndian.Uint32(b[11+tl:]))
		if len(b) < packFixed+tl+dl {
			return out, bad("truncated")
		}
		data := b[packFixed+tl : packFixed+tl+dl : packFixed+tl+dl]
		b = b[packFixed+tl+dl:]
		hook := flags&packHook != 0
		if seq > after && (!f.HooksOnly || hook) && typeWanted(f.Types, typ) {
			if flags&packNilData != 0 {
				data = nil
			}
			out = append(out, Event{Seq: seq, TaskID: taskID, Type: string(typ), Hook: hook, Time: time.Unix(0, ts).UTC(), Data: data})
			if len(out) >= limit {
				return out, nil
			}
		}
		if seq == last {
			if len(b) != 0 {
				return out, bad("more bytes than events")
			}
			return out, nil
		}
	}
}

func typeWanted(types []string, typ []byte) bool {
	if len(types) == 0 {
		return true
	}
	for _, t := range types {
		if t == string(typ) {
			return true
		}
	}
	return false
}
