package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

// sampleResults is two rounds of Aura and River's InsertMany variant, and
// one of Asynq (its second round failed).
func sampleResults() *Results {
	r := &Results{Meta: [][2]string{{"Command", "`make bench-peers`"}, {"Date", "2026-11-30 15:00 UTC"}}}
	r.Notes = []string{"round 2, Asynq, Redis AOF everysec: starting: exit status 1"}
	for _, s := range []Sample{
		{1, "aura", metricEndToEnd, 8000}, {2, "aura", metricEndToEnd, 10000},
		{1, "river-many", metricEndToEnd, 4000}, {2, "river-many", metricEndToEnd, 10000},
		{1, "asynq-aof", metricEndToEnd, 2000},
		{1, "aura", metricSubmit, 40000}, {2, "aura", metricSubmit, 44000},
		{1, "river-many", metricSubmit, 50000}, {2, "river-many", metricSubmit, 55000},
		{1, "asynq-aof", metricSubmit, 20000},
	} {
		r.add(s.Round, s.System, s.Metric, s.Value)
	}
	return r
}

func TestRawRoundTrip(t *testing.T) {
	want := sampleResults()
	var buf bytes.Buffer
	if err := WriteRaw(&buf, want); err != nil {
		t.Fatal(err)
	}
	got, err := ParseRaw(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Samples) != len(want.Samples) || got.meta("Date") != want.meta("Date") || len(got.Notes) != 1 {
		t.Fatalf("round trip lost something: %+v", got)
	}
	for i := range want.Samples {
		if got.Samples[i] != want.Samples[i] {
			t.Errorf("sample %d: got %+v, want %+v", i, got.Samples[i], want.Samples[i])
		}
	}
}

func TestParseRawRejects(t *testing.T) {
	for _, in := range []string{"1\taura\tx\n", "one\taura\tx\t1\n", "1\taura\tx\tfast\n", "# no colon\n"} {
		if _, err := ParseRaw(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("ParseRaw(%q) = %v, want an error naming line 1", in, err)
		}
	}
}

func TestFiguresAndSameRoundRatios(t *testing.T) {
	r := sampleResults()
	if s, _ := r.figure("aura", metricEndToEnd); s.Median != 9000 || s.Min != 8000 || s.Max != 10000 || s.N != 2 {
		t.Errorf("Aura end to end: %+v, want median 9000 of 8000–10000 over 2", s)
	}
	// Per round 2.0 and 1.0: the median of the ratios, not the ratio of
	// the medians (9000 / 7000).
	if s, _ := r.ratio(metricEndToEnd, "river-many"); s.Median != 1.5 || s.Min != 1 || s.Max != 2 {
		t.Errorf("Aura ÷ River: %+v, want 1.5 (1–2)", s)
	}
	// Asynq ran in round 1 only: a ratio only from the rounds both ran.
	if s, _ := r.ratio(metricEndToEnd, "asynq-aof"); s.N != 1 || s.Median != 4 {
		t.Errorf("Aura ÷ Asynq: %+v, want 4 from 1 round", s)
	}
	if _, ok := r.ratio(metricIdleP50, "river-single"); ok {
		t.Error("a ratio of figures never measured")
	}
	if s, ok := summarize([]float64{math.NaN(), 3, 1, 2}); !ok || s.Median != 2 || s.N != 3 {
		t.Errorf("summarize drops NaN: %+v", s)
	}
}

func TestRenderSection(t *testing.T) {
	var buf bytes.Buffer
	if err := RenderSection(&buf, sampleResults()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		sectionBegin, sectionEnd,
		"- Date: 2026-11-30 15:00 UTC",
		"| 9,000 (8,000–10,000) |", // Aura's end to end
		"| 1.50 (1.00–2.00) |",     // Aura ÷ River, end to end
		// Submissions: Aura ÷ the faster of River and Asynq per round (round
		// 1 only, where both ran): 40000 / 50000.
		"| Acknowledged submissions ≥ 1.2 × the faster of River (InsertMany) and Asynq (AOF) | 0.80 (1 round) | **not met** |",
		"| End to end ≥ 2 × Asynq (AOF) | 4.00 (1 round) | met |",
		"| One-caller durable acks ≥ 1.5 × River (single Insert) | not measured | — |",
		"- round 2, Asynq, Redis AOF everysec: starting: exit status 1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the section lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "River, single Insert |") {
		t.Error("a column for a system that did not run")
	}
}

func TestReplaceSection(t *testing.T) {
	sec := []byte(sectionBegin + "\nnew\n" + sectionEnd + "\n")
	for _, tc := range []struct{ name, doc, want string }{
		{"empty file", "", string(sec)},
		{"appended", "# Aura benchmarks\nrows\n", "# Aura benchmarks\nrows\n\n" + string(sec)},
		{"replaced", "head\n\n" + sectionBegin + "\nold\n" + sectionEnd + "\ntail\n", "head\n\n" + string(sec) + "tail\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReplaceSection([]byte(tc.doc), sec)
			if err != nil || string(got) != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := ReplaceSection([]byte(sectionEnd+"\n"+sectionBegin), sec); err == nil {
		t.Error("markers out of order accepted")
	}
}

func TestProcReading(t *testing.T) {
	kb, err := pssKB("55d0-7ff [rollup]\nRss:  12000 kB\nPss:   9876 kB\nPss_Dirty: 1 kB\n")
	if err != nil || kb != 9876 {
		t.Errorf("pssKB = %d, %v; want 9876", kb, err)
	}
	if _, err := pssKB("Rss: 1 kB\n"); err == nil {
		t.Error("pssKB without a Pss line")
	}
	if pp, ok := parentPID("42 (postgres: walwriter ) S 17 42 42 0"); !ok || pp != 17 {
		t.Errorf("parentPID = %d, %v; want 17", pp, ok)
	}
	// utime 250 and stime 50 ticks, the 14th and 15th fields.
	if ticks, ok := cpuTicks("42 (redis-server *:6379) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 5 0"); !ok || ticks != 300 {
		t.Errorf("cpuTicks = %d, %v; want 300", ticks, ok)
	}
	total := 0
	for i := range 16 {
		total += share(50_000, 16, i)
	}
	if total != 50_000 || share(50_000, 16, 0) != 3125 || share(10, 16, 15) != 0 {
		t.Errorf("share splits 50,000 into %d", total)
	}
}
