package actions

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"hash"
	"io"
	"slices"
	"strings"
)

var hashAlgorithms = map[string]func() hash.Hash{
	"md5":    md5.New,
	"sha1":   sha1.New,
	"sha256": sha256.New,
	"sha512": sha512.New,
}

func hashSpec() Spec {
	return Spec{Name: "hash", Portable: true, Params: []string{"algorithm", "file", "data"}, Run: runHash}
}

// runHash digests either a file inside the plan directory (streamed, any
// size) or a string, and returns {hex}.
func runHash(ctx context.Context, env *Env, params map[string]any) (any, error) {
	const action = "hash"
	p, err := newParams(action, params, []string{"algorithm", "file", "data"})
	if err != nil {
		return nil, err
	}
	algo, err := p.str("algorithm", "sha256")
	if err != nil {
		return nil, err
	}
	newHash, ok := hashAlgorithms[algo]
	if !ok {
		names := make([]string, 0, len(hashAlgorithms))
		for n := range hashAlgorithms {
			names = append(names, n)
		}
		slices.Sort(names)
		return nil, p.errorf("algorithm", "must be one of %s; got %q", strings.Join(names, ", "), algo)
	}
	hasFile, hasData := p.has("file"), p.has("data")
	if hasFile == hasData {
		return nil, p.errorf("file", "exactly one of \"file\" and \"data\" is required")
	}
	h := newHash()
	if hasData {
		data, err := p.str("data", "")
		if err != nil {
			return nil, err
		}
		io.WriteString(h, data)
		return map[string]any{"hex": hex.EncodeToString(h.Sum(nil))}, nil
	}
	path, err := p.requiredStr("file")
	if err != nil {
		return nil, err
	}
	sb, c, err := openSandboxPath(action, env, path)
	if err != nil {
		return nil, err
	}
	defer sb.close()
	f, err := sb.openRegular(path, c)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Copy through a reader that honours cancellation, so hashing a huge file
	// stops when the step is cancelled.
	if _, err := io.Copy(h, ctxReader{ctx: ctx, r: f}); err != nil {
		return nil, sb.wrap(path, err)
	}
	return map[string]any{"hex": hex.EncodeToString(h.Sum(nil))}, nil
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}
