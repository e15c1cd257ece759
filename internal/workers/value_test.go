package workers

import (
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"pgregory.net/rapid"
)

// jsonValue generates JSON-like trees up to depth levels deep.
func jsonValue(depth int) *rapid.Generator[any] {
	leaves := []*rapid.Generator[any]{
		rapid.Just[any](nil),
		rapid.Map(rapid.Bool(), func(b bool) any { return b }),
		rapid.Map(rapid.Int64(), func(i int64) any { return i }),
		rapid.Map(rapid.Float64Range(-math.MaxFloat64, math.MaxFloat64), func(f float64) any { return f }),
		rapid.Map(rapid.String(), func(s string) any { return s }),
	}
	if depth == 0 {
		return rapid.OneOf(leaves...)
	}
	inner := jsonValue(depth - 1)
	return rapid.OneOf(append(leaves,
		rapid.Map(rapid.SliceOfN(inner, 0, 5), func(l []any) any { return l }),
		rapid.Map(rapid.MapOfN(rapid.String(), inner, 0, 5), func(m map[string]any) any { return m }),
	)...)
}

func TestValueRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		v := jsonValue(3).Draw(t, "v")
		b, err := appendValue(nil, v)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		d := decoder{b: b}
		got, err := d.value()
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if d.off != len(b) {
			t.Fatalf("decode used %d of %d bytes", d.off, len(b))
		}
		if !reflect.DeepEqual(got, v) {
			t.Fatalf("round trip changed %#v into %#v", v, got)
		}
	})
}

func TestValueDecodeRejectsGarbageWithoutPanicking(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		v := jsonValue(2).Draw(t, "v")
		b, _ := appendValue(nil, v)
		if len(b) > 1 {
			// Cut it short: decoding must fail, not read past the end.
			cut := rapid.IntRange(0, len(b)-1).Draw(t, "cut")
			d := decoder{b: b[:cut]}
			if _, err := d.value(); err == nil {
				t.Fatalf("decoding %d of %d bytes succeeded", cut, len(b))
			}
		}
		junk := rapid.SliceOfN(rapid.Byte(), 0, 64).Draw(t, "junk")
		d := decoder{b: junk}
		d.value() // any result but a panic or a hang is fine
	})
}

func TestValueEncodesCommonGoShapes(t *testing.T) {
	type duration time.Duration
	cases := []struct {
		in   any
		want any
	}{
		{int(7), int64(7)},
		{uint8(200), int64(200)},
		{float32(0.5), 0.5},
		{[]string{"a", "b"}, []any{"a", "b"}},
		{map[string]string{"k": "v"}, map[string]any{"k": "v"}},
		{map[string]int{"n": 1}, map[string]any{"n": int64(1)}},
		{[]byte("raw"), "raw"},
		{duration(time.Second), int64(time.Second)},
		{[]map[string]any{{"a": true}}, []any{map[string]any{"a": true}}},
		{uint64(math.MaxUint64), float64(math.MaxUint64)},
	}
	for _, tc := range cases {
		b, err := appendValue(nil, tc.in)
		if err != nil {
			t.Errorf("%T: %v", tc.in, err)
			continue
		}
		d := decoder{b: b}
		got, err := d.value()
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%#v decoded as %#v (%v), want %#v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []any{make(chan int), struct{}{}, map[int]any{1: 2}, func() {}} {
		if _, err := appendValue(nil, bad); !errors.Is(err, ErrUnsupportedValue) {
			t.Errorf("%T encoded with err %v, want ErrUnsupportedValue", bad, err)
		}
	}
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	if _, err := appendValue(nil, cyclic); !errors.Is(err, ErrUnsupportedValue) {
		t.Errorf("a cyclic map encoded with err %v, want ErrUnsupportedValue", err)
	}
}

// execParams is a typical cpu-lane job's params.
var execParams = map[string]any{
	"argv":     []any{"/usr/bin/convert", "in.png", "-resize", "50%", "out.png"},
	"env":      map[string]any{"LANG": "C", "OMP_THREADS": "2"},
	"dir":      "work",
	"timeout":  "30s",
	"ok_codes": []any{int64(0), int64(1)},
}

// BenchmarkValueCodec compares the protocol's value encodings: encode plus
// decode of the same tree, as one job or result costs.
func BenchmarkValueCodec(b *testing.B) {
	payloads := []struct {
		name string
		v    map[string]any
	}{{"noop", nil}, {"exec-params", execParams}}
	for _, pl := range payloads {
		b.Run("binary/"+pl.name, func(b *testing.B) {
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if pl.v == nil {
					buf, err = appendValue(buf[:0], nil)
				} else {
					buf, err = appendValue(buf[:0], pl.v)
				}
				if err != nil {
					b.Fatal(err)
				}
				d := decoder{b: buf}
				if _, err := d.value(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(buf)), "bytes")
		})
		b.Run("structpb/"+pl.name, func(b *testing.B) {
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				s, err := structpb.NewStruct(pl.v)
				if err != nil {
					b.Fatal(err)
				}
				buf, err = proto.MarshalOptions{}.MarshalAppend(buf[:0], s)
				if err != nil {
					b.Fatal(err)
				}
				var back structpb.Struct
				if err := proto.Unmarshal(buf, &back); err != nil {
					b.Fatal(err)
				}
				_ = back.AsMap()
			}
			b.ReportMetric(float64(len(buf)), "bytes")
		})
	}
}
