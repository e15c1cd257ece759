package workers

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
)

// Value tags of the compact encoding of a JSON-like tree. A value is one tag
// byte followed by its body: varint for ints, 8 little-endian bytes for
// floats, uvarint length then bytes for strings, uvarint count then items for
// lists, uvarint count then (string body, value) pairs for maps.
const (
	tagNull byte = iota
	tagFalse
	tagTrue
	tagInt
	tagFloat
	tagString
	tagList
	tagMap
)

// maxDepth bounds nesting so a cyclic or hostile tree fails instead of
// overflowing the stack.
const maxDepth = 512

var errTruncated = errors.New("workers: truncated value")

// appendValue appends the encoding of v to b.
func appendValue(b []byte, v any) ([]byte, error) {
	return appendValueDepth(b, v, 0)
}

func appendValueDepth(b []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return b, fmt.Errorf("%w: nested deeper than %d", ErrUnsupportedValue, maxDepth)
	}
	var err error
	switch x := v.(type) {
	case nil:
		return append(b, tagNull), nil
	case bool:
		if x {
			return append(b, tagTrue), nil
		}
		return append(b, tagFalse), nil
	case int64:
		return binary.AppendVarint(append(b, tagInt), x), nil
	case int:
		return binary.AppendVarint(append(b, tagInt), int64(x)), nil
	case int32:
		return binary.AppendVarint(append(b, tagInt), int64(x)), nil
	case float64:
		return binary.LittleEndian.AppendUint64(append(b, tagFloat), math.Float64bits(x)), nil
	case string:
		return appendString(append(b, tagString), x), nil
	case []byte:
		return appendString(append(b, tagString), string(x)), nil
	case []any:
		b = binary.AppendUvarint(append(b, tagList), uint64(len(x)))
		for _, item := range x {
			if b, err = appendValueDepth(b, item, depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case map[string]any:
		b = binary.AppendUvarint(append(b, tagMap), uint64(len(x)))
		for k, item := range x {
			b = appendString(b, k)
			if b, err = appendValueDepth(b, item, depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case []string:
		b = binary.AppendUvarint(append(b, tagList), uint64(len(x)))
		for _, s := range x {
			b = appendString(append(b, tagString), s)
		}
		return b, nil
	case map[string]string:
		b = binary.AppendUvarint(append(b, tagMap), uint64(len(x)))
		for k, s := range x {
			b = appendString(append(appendString(b, k), tagString), s)
		}
		return b, nil
	}
	return appendReflect(b, reflect.ValueOf(v), depth)
}

// appendReflect covers the rarer shapes (named types, other int and float
// widths, typed slices and maps) so actions need not convert by hand.
func appendReflect(b []byte, rv reflect.Value, depth int) ([]byte, error) {
	var err error
	switch rv.Kind() {
	case reflect.Bool:
		return appendValueDepth(b, rv.Bool(), depth)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return binary.AppendVarint(append(b, tagInt), rv.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u := rv.Uint()
		if u > math.MaxInt64 {
			return binary.LittleEndian.AppendUint64(append(b, tagFloat), math.Float64bits(float64(u))), nil
		}
		return binary.AppendVarint(append(b, tagInt), int64(u)), nil
	case reflect.Float32, reflect.Float64:
		return binary.LittleEndian.AppendUint64(append(b, tagFloat), math.Float64bits(rv.Float())), nil
	case reflect.String:
		return appendString(append(b, tagString), rv.String()), nil
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return append(b, tagNull), nil
		}
		return appendValueDepth(b, rv.Elem().Interface(), depth+1)
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return append(b, tagNull), nil
		}
		b = binary.AppendUvarint(append(b, tagList), uint64(rv.Len()))
		for i := range rv.Len() {
			if b, err = appendValueDepth(b, rv.Index(i).Interface(), depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			break
		}
		if rv.IsNil() {
			return append(b, tagNull), nil
		}
		b = binary.AppendUvarint(append(b, tagMap), uint64(rv.Len()))
		it := rv.MapRange()
		for it.Next() {
			b = appendString(b, it.Key().String())
			if b, err = appendValueDepth(b, it.Value().Interface(), depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case reflect.Invalid:
		return append(b, tagNull), nil
	}
	return b, fmt.Errorf("%w: %s", ErrUnsupportedValue, rv.Type())
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// decoder reads values and message fields from one frame payload.
type decoder struct {
	b   []byte
	off int
}

func (d *decoder) byte() (byte, error) {
	if d.off >= len(d.b) {
		return 0, errTruncated
	}
	c := d.b[d.off]
	d.off++
	return c, nil
}

func (d *decoder) uvarint() (uint64, error) {
	u, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		return 0, errTruncated
	}
	d.off += n
	return u, nil
}

func (d *decoder) varint() (int64, error) {
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		return 0, errTruncated
	}
	d.off += n
	return v, nil
}

// rawString returns the bytes of a string body without copying them.
func (d *decoder) rawString() ([]byte, error) {
	n, err := d.uvarint()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(d.b)-d.off) {
		return nil, errTruncated
	}
	s := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return s, nil
}

func (d *decoder) string() (string, error) {
	s, err := d.rawString()
	return string(s), err
}

func (d *decoder) value() (any, error) { return d.valueDepth(0) }

func (d *decoder) valueDepth(depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", ErrUnsupportedValue, maxDepth)
	}
	tag, err := d.byte()
	if err != nil {
		return nil, err
	}
	switch tag {
	case tagNull:
		return nil, nil
	case tagFalse:
		return false, nil
	case tagTrue:
		return true, nil
	case tagInt:
		return d.varint()
	case tagFloat:
		if len(d.b)-d.off < 8 {
			return nil, errTruncated
		}
		f := math.Float64frombits(binary.LittleEndian.Uint64(d.b[d.off:]))
		d.off += 8
		return f, nil
	case tagString:
		return d.string()
	case tagList:
		n, err := d.count()
		if err != nil {
			return nil, err
		}
		list := make([]any, n)
		for i := range list {
			if list[i], err = d.valueDepth(depth + 1); err != nil {
				return nil, err
			}
		}
		return list, nil
	case tagMap:
		n, err := d.count()
		if err != nil {
			return nil, err
		}
		m := make(map[string]any, n)
		for range n {
			k, err := d.string()
			if err != nil {
				return nil, err
			}
			if m[k], err = d.valueDepth(depth + 1); err != nil {
				return nil, err
			}
		}
		return m, nil
	}
	return nil, fmt.Errorf("workers: unknown value tag %d", tag)
}

// count reads a list or map length, rejecting one larger than the bytes left
// (every item takes at least one byte) so a corrupt frame cannot force a huge
// allocation.
func (d *decoder) count() (int, error) {
	n, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	if n > uint64(len(d.b)-d.off) {
		return 0, errTruncated
	}
	return int(n), nil
}
