package actions

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestHashData(t *testing.T) {
	// Digests of "abc" from FIPS 180 / RFC 1321 test vectors.
	cases := map[string]string{
		"":       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"sha1":   "a9993e364706816aba3e25717850c26c9cd0d89d",
		"md5":    "900150983cd24fb0d6963f7d28e17f72",
		"sha512": "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
	}
	for algo, want := range cases {
		params := map[string]any{"data": "abc"}
		if algo != "" {
			params["algorithm"] = algo
		}
		out := mustRun(t, &Env{}, "hash", params)
		if got := out.(map[string]any)["hex"]; got != want {
			t.Errorf("%s(abc) = %v, want %s", algo, got, want)
		}
	}
}

func TestHashFile(t *testing.T) {
	tp := newTestPlan(t)
	writeFile(t, filepath.Join(tp.dir, "files/abc.txt"), "abc")
	out := mustRun(t, tp.env, "hash", map[string]any{"file": "files/abc.txt"})
	if got := out.(map[string]any)["hex"]; got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("sha256 of file = %v", got)
	}
}

func TestHashStopsWhenCancelled(t *testing.T) {
	tp := newTestPlan(t)
	writeFile(t, filepath.Join(tp.dir, "big.bin"), strings.Repeat("x", 1<<20))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := runCtx(t, ctx, tp.env, "hash", map[string]any{"file": "big.bin"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled hash: %v", err)
	}
}

func TestHashParamErrors(t *testing.T) {
	tp := newTestPlan(t)
	_, err := run(t, tp.env, "hash", map[string]any{"data": "x", "algorithm": "crc32"})
	pe := asParamError(t, err, "algorithm")
	if !strings.Contains(pe.Msg, "md5, sha1, sha256, sha512") {
		t.Errorf("message does not list algorithms: %v", err)
	}
	_, err = run(t, tp.env, "hash", map[string]any{})
	asParamError(t, err, "file")
	_, err = run(t, tp.env, "hash", map[string]any{"data": "x", "file": "y"})
	asParamError(t, err, "file")
	if _, err := run(t, tp.env, "hash", map[string]any{"file": "missing"}); err == nil {
		t.Fatal("hashing a missing file succeeded")
	}
}
