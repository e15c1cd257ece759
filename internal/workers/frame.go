package workers

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// Message kinds: the first payload byte of every frame.
const (
	msgHello  byte = 'H' // worker → parent, once at start: magic, version
	msgJob    byte = 'J' // parent → worker: id, action, plan dir, timeout, cpu limit, params
	msgResult byte = 'R' // worker → parent: id, flags, [error message], output
	msgPanic  byte = 'P' // worker → parent, just before it exits: id, panic report
)

// Result flags.
const (
	resultFailed  byte = 1 << iota // the action returned an error; a message follows
	resultExiting                  // the worker exits after this result (a resource limit hit)
)

const (
	helloMagic      = "aura-worker"
	protocolVersion = 2
	frameHeader     = 4
	// maxFrame bounds one message so a corrupt length cannot allocate
	// without limit; outputs larger than this belong in files.
	maxFrame = 256 << 20
	// keptBuffer is the largest read buffer kept between messages.
	keptBuffer = 1 << 20
)

// beginFrame starts a frame in b (reusing its storage) with room for the
// length header.
func beginFrame(b []byte, kind byte) []byte {
	return append(b[:0], 0, 0, 0, 0, kind)
}

// endFrame fills in the length header of a frame built with beginFrame.
func endFrame(b []byte) ([]byte, error) {
	n := len(b) - frameHeader
	if n > maxFrame {
		return b, fmt.Errorf("workers: message of %d bytes exceeds the %d byte limit", n, maxFrame)
	}
	binary.LittleEndian.PutUint32(b, uint32(n))
	return b, nil
}

// readFrame reads one frame's payload into buf (grown as needed) and returns it.
func readFrame(r *bufio.Reader, buf []byte) ([]byte, error) {
	// Peek rather than read into a local array, which would escape and cost
	// an allocation per message.
	hdr, err := r.Peek(frameHeader)
	if err != nil {
		if err == io.EOF && len(hdr) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return buf, err
	}
	n := binary.LittleEndian.Uint32(hdr)
	r.Discard(frameHeader)
	if n == 0 || n > maxFrame {
		return buf, fmt.Errorf("workers: bad frame length %d", n)
	}
	if uint32(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return buf, err
	}
	return buf, nil
}

func appendHello(b []byte) []byte {
	b = beginFrame(b, msgHello)
	b = appendString(b, helloMagic)
	b = binary.AppendUvarint(b, protocolVersion)
	b, _ = endFrame(b)
	return b
}

func checkHello(p []byte) error {
	d := decoder{b: p, off: 1}
	if p[0] != msgHello {
		return fmt.Errorf("workers: expected hello, got message kind %q", p[0])
	}
	magic, err := d.rawString()
	if err != nil || string(magic) != helloMagic {
		return fmt.Errorf("workers: the worker command does not speak the worker protocol")
	}
	v, err := d.uvarint()
	if err != nil || v != protocolVersion {
		return fmt.Errorf("workers: worker speaks protocol version %d, want %d", v, protocolVersion)
	}
	return nil
}

// jobFrame is the wire form of a job plus the supervision fields the worker
// applies to itself.
type jobFrame struct {
	id       uint64
	job      Job
	cpuLimit time.Duration
}

func appendJob(b []byte, id uint64, job Job, cpuLimit time.Duration) ([]byte, error) {
	b = beginFrame(b, msgJob)
	b = binary.AppendUvarint(b, id)
	b = appendString(b, job.Action)
	b = appendString(b, job.PlanDir)
	b = appendString(b, job.WorkDir)
	b = binary.AppendVarint(b, int64(job.Timeout))
	b = binary.AppendVarint(b, int64(cpuLimit))
	var err error
	if job.Params == nil {
		b = append(b, tagNull)
	} else if b, err = appendValue(b, job.Params); err != nil {
		return b, fmt.Errorf("workers: params of %q: %w", job.Action, err)
	}
	return endFrame(b)
}

// decodeJob parses a job message. names interns action names so a worker
// running the same actions over and over does not allocate for them.
func decodeJob(p []byte, names map[string]string) (jobFrame, error) {
	var f jobFrame
	d := decoder{b: p, off: 1}
	var err error
	if f.id, err = d.uvarint(); err != nil {
		return f, err
	}
	action, err := d.rawString()
	if err != nil {
		return f, err
	}
	name, ok := names[string(action)]
	if !ok {
		name = string(action)
		if len(names) < 1024 {
			names[name] = name
		}
	}
	f.job.Action = name
	if f.job.PlanDir, err = d.string(); err != nil {
		return f, err
	}
	if f.job.WorkDir, err = d.string(); err != nil {
		return f, err
	}
	timeout, err := d.varint()
	if err != nil {
		return f, err
	}
	f.job.Timeout = time.Duration(timeout)
	cpu, err := d.varint()
	if err != nil {
		return f, err
	}
	f.cpuLimit = time.Duration(cpu)
	params, err := d.value()
	if err != nil {
		return f, err
	}
	if params != nil {
		m, ok := params.(map[string]any)
		if !ok {
			return f, fmt.Errorf("workers: params of %q are a %T, want a map", name, params)
		}
		f.job.Params = m
	}
	return f, nil
}

// result is a decoded result message.
type result struct {
	id      uint64
	failed  bool
	exiting bool
	msg     string
	out     any
	err     error // the message could not be decoded
}

func appendResult(b []byte, id uint64, out any, jobErr error, exiting bool) ([]byte, error) {
	b = beginFrame(b, msgResult)
	b = binary.AppendUvarint(b, id)
	var flags byte
	if jobErr != nil {
		flags |= resultFailed
	}
	if exiting {
		flags |= resultExiting
	}
	b = append(b, flags)
	if jobErr != nil {
		b = appendString(b, jobErr.Error())
	}
	var err error
	if b, err = appendValue(b, out); err != nil {
		return b, err
	}
	return endFrame(b)
}

func decodeResult(p []byte) result {
	var r result
	d := decoder{b: p, off: 1}
	var err error
	if r.id, err = d.uvarint(); err != nil {
		r.err = err
		return r
	}
	flags, err := d.byte()
	if err != nil {
		r.err = err
		return r
	}
	r.failed = flags&resultFailed != 0
	r.exiting = flags&resultExiting != 0
	if r.failed {
		if r.msg, err = d.string(); err != nil {
			r.err = err
			return r
		}
	}
	if r.out, err = d.value(); err != nil {
		r.err = fmt.Errorf("workers: undecodable output: %w", err)
	}
	return r
}

func appendPanic(b []byte, id uint64, report string) []byte {
	b = beginFrame(b, msgPanic)
	b = binary.AppendUvarint(b, id)
	b = appendString(b, report)
	b, _ = endFrame(b)
	return b
}

func decodePanic(p []byte) (string, error) {
	d := decoder{b: p, off: 1}
	if _, err := d.uvarint(); err != nil {
		return "", err
	}
	return d.string()
}
