package daemon

import (
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// handoffCodec carries messages between the web UI and its in-process API
// server without encoding them: both ends are in this process, so Marshal
// parks the message and sends an 8-byte ticket, and Unmarshal claims it and
// copies its fields into the message gRPC allocated. Every interceptor
// (authentication, authorization, validation) still sees the message; only
// the encoding and decoding are skipped, which were a sixth of the CPU of a
// task list page. The messages are shared, not copied: the UI only reads
// what the API answers, and the API only reads what the UI asks.
type handoffCodec struct {
	// maxSize is the largest message the public listener takes
	// (internal/server's MaxRecvMsgSize): a request from the UI is
	// refused above it as the public API would refuse it.
	maxSize int
	parked  *parkedMessages
}

// parkedMessages are the messages marshalled and not yet claimed. A
// message whose call ended between its Marshal and its Unmarshal (the
// caller gave up) is never claimed: those older than parkedTTL are dropped.
type parkedMessages struct {
	mu    sync.Mutex // guards all below
	next  uint64
	byID  map[uint64]parked
	swept time.Time
}

type parked struct {
	msg proto.Message
	at  time.Time
}

// parkedTTL is far longer than any in-process call waits between sending
// a message and its peer reading it.
const parkedTTL = 5 * time.Minute

func newHandoffCodecs(maxRequest int) (client, server handoffCodec) {
	p := &parkedMessages{byID: map[uint64]parked{}}
	return handoffCodec{maxSize: maxRequest, parked: p}, handoffCodec{parked: p}
}

func (handoffCodec) Name() string { return "proto" }

func (c handoffCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("in-process API: %T is not a protobuf message", v)
	}
	if c.maxSize > 0 {
		if n := proto.Size(m); n > c.maxSize {
			return nil, fmt.Errorf("in-process API: the request is %d bytes, more than the %d the API takes", n, c.maxSize)
		}
	}
	now := time.Now()
	p := c.parked
	p.mu.Lock()
	if now.Sub(p.swept) > parkedTTL {
		for id, e := range p.byID {
			if now.Sub(e.at) > parkedTTL {
				delete(p.byID, id)
			}
		}
		p.swept = now
	}
	p.next++
	id := p.next
	p.byID[id] = parked{msg: m, at: now}
	p.mu.Unlock()
	return mem.BufferSlice{mem.SliceBuffer(binary.BigEndian.AppendUint64(nil, id))}, nil
}

func (c handoffCodec) Unmarshal(data mem.BufferSlice, v any) error {
	dst, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("in-process API: %T is not a protobuf message", v)
	}
	b := data.Materialize()
	if len(b) != 8 {
		return fmt.Errorf("in-process API: a message ticket of %d bytes, want 8", len(b))
	}
	id := binary.BigEndian.Uint64(b)
	p := c.parked
	p.mu.Lock()
	e, ok := p.byID[id]
	delete(p.byID, id)
	p.mu.Unlock()
	if !ok {
		return fmt.Errorf("in-process API: message %d is not parked (its call ended more than %s ago)", id, parkedTTL)
	}
	src, to := e.msg.ProtoReflect(), dst.ProtoReflect()
	if src.Descriptor() != to.Descriptor() {
		return fmt.Errorf("in-process API: got a %s, want a %s", src.Descriptor().FullName(), to.Descriptor().FullName())
	}
	proto.Reset(dst)
	// A shallow copy: the fields' values (lists, maps, messages) are shared.
	src.Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
		to.Set(fd, val)
		return true
	})
	return nil
}
