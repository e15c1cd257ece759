package admission

import (
	"errors"
	"testing"
)

func TestParseTag(t *testing.T) {
	tests := []struct {
		in      string
		want    Tag
		wantErr bool
	}{
		{in: "device:emulator-5554:1", want: Tag{Key: "device:emulator-5554", Limit: 1, Explicit: true}},
		{in: "api:openai:5", want: Tag{Key: "api:openai", Limit: 5, Explicit: true}},
		{in: "gpu", want: Tag{Key: "gpu", Limit: 1}},
		{in: "gpu:2", want: Tag{Key: "gpu", Limit: 2, Explicit: true}},
		{in: "device:emulator-5554", want: Tag{Key: "device:emulator-5554", Limit: 1}},
		{in: "  gpu:3\t", want: Tag{Key: "gpu", Limit: 3, Explicit: true}},
		{in: "db:+4", want: Tag{Key: "db", Limit: 4, Explicit: true}},
		{in: "db:007", want: Tag{Key: "db", Limit: 7, Explicit: true}},
		{in: "5", want: Tag{Key: "5", Limit: 1}},
		{in: "5:3", want: Tag{Key: "5", Limit: 3, Explicit: true}},
		{in: "host:10.0.0.1", want: Tag{Key: "host:10.0.0.1", Limit: 1}},
		{in: "a:-", want: Tag{Key: "a:-", Limit: 1}},
		{in: "", wantErr: true},
		{in: "   ", wantErr: true},
		{in: "gpu:0", wantErr: true},
		{in: "gpu:-1", wantErr: true},
		{in: "gpu:-0", wantErr: true},
		{in: "gpu:99999999999999999999999", wantErr: true},
		{in: ":5", wantErr: true},
		{in: ":", wantErr: true},
		{in: "a:", wantErr: true},
		{in: "a:b:", wantErr: true},
		{in: "a::5", wantErr: true},
		{in: ":a:b", wantErr: true},
		{in: "my gpu", wantErr: true},
		{in: "gpu\x00:1", wantErr: true},
		{in: "gpu\xff", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseTag(tt.in)
		if tt.wantErr {
			var te *TagError
			if !errors.As(err, &te) || te.Tag != tt.in || !errors.Is(err, ErrInvalidTag) {
				t.Errorf("ParseTag(%q) = %+v, %v; want a *TagError naming the tag", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseTag(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseTags(t *testing.T) {
	tests := []struct {
		in      []string
		want    []Tag
		wantErr string
	}{
		{in: nil, want: []Tag{}},
		{in: []string{"gpu", "device:a:1", "api:openai:5"}, want: []Tag{
			{Key: "gpu", Limit: 1}, {Key: "device:a", Limit: 1, Explicit: true}, {Key: "api:openai", Limit: 5, Explicit: true}}},
		{in: []string{"gpu", "gpu"}, want: []Tag{{Key: "gpu", Limit: 1}}},
		{in: []string{"gpu", "db", "gpu:3"}, want: []Tag{{Key: "gpu", Limit: 3, Explicit: true}, {Key: "db", Limit: 1}}},
		{in: []string{"gpu:3", "gpu", "gpu:3"}, want: []Tag{{Key: "gpu", Limit: 3, Explicit: true}}},
		{in: []string{"gpu:3", "gpu:2"}, wantErr: "gpu:2"},
		{in: []string{"gpu", "bad:0"}, wantErr: "bad:0"},
	}
	for _, tt := range tests {
		got, err := ParseTags(tt.in)
		if tt.wantErr != "" {
			var te *TagError
			if !errors.As(err, &te) || te.Tag != tt.wantErr {
				t.Errorf("ParseTags(%q) = %+v, %v; want a *TagError naming %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || len(got) != len(tt.want) {
			t.Errorf("ParseTags(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("ParseTags(%q)[%d] = %+v; want %+v", tt.in, i, got[i], tt.want[i])
			}
		}
	}
}

func FuzzParseTag(f *testing.F) {
	for _, s := range []string{"device:emulator-5554:1", "api:openai:5", "gpu", "gpu:0", ":5", "a:", "a::5",
		" x:+3 ", "k:-1", "k:99999999999999999999", "\xff", "a\tb", "a:b:c", "::", "1:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tag, err := ParseTag(s)
		if err != nil {
			var te *TagError
			if !errors.As(err, &te) || te.Tag != s {
				t.Fatalf("ParseTag(%q) error %v is not a *TagError naming the tag", s, err)
			}
			return
		}
		if tag.Key == "" || tag.Limit < 1 || (!tag.Explicit && tag.Limit != 1) {
			t.Fatalf("ParseTag(%q) = %+v: not a usable tag", s, tag)
		}
		again, err := ParseTag(tag.String())
		if err != nil || again != tag {
			t.Fatalf("round trip of %q: %+v -> %q -> %+v, %v", s, tag, tag.String(), again, err)
		}
	})
}
