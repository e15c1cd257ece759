package auth

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

func TestPriorityCapPerPrincipal(t *testing.T) {
	extra := fmt.Sprintf("  - {name: capped, sha256: %s, roles: [submit], max_priority: 5}\n", HashToken("tok-capped"))
	r := startGuarded(t, Options{Registry: registryWith(t, extra), MaxPriority: 100})
	ctx := testCtx(t)
	cases := []struct {
		token    string
		priority int32
		ok       bool
	}{
		{"tok-capped", 5, true},
		{"tok-capped", 6, false},
		{"tok-capped", -50, true}, // lowering one's own tasks is always allowed
		{"tok-submit", 100, true}, // no max_priority: the daemon's cap
		{"tok-submit", 101, false},
		{"tok-submit", math.MaxInt32, false},
	}
	for _, c := range cases {
		_, err := r.exec.Submit(withToken(ctx, c.token), &aurav1.SubmitRequest{Task: "demo/a", Priority: c.priority})
		switch {
		case c.ok && err != nil:
			t.Errorf("%s priority %d: %v, want accepted", c.token, c.priority, err)
		case !c.ok && (status.Code(err) != codes.PermissionDenied || !strings.HasPrefix(status.Convert(err).Message(), "priority: ")):
			t.Errorf("%s priority %d: %v, want PERMISSION_DENIED naming the priority", c.token, c.priority, err)
		}
	}
	// On a stream, the refusal takes the request's place.
	s, err := r.exec.SubmitStream(withToken(ctx, "tok-capped"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []int32{1, math.MaxInt32, 2} {
		if err := s.Send(&aurav1.SubmitRequest{Task: "demo/a", Priority: p}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for range 3 {
		resp, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if e := resp.GetError(); e != nil {
			got = append(got, codes.Code(e.GetCode()).String())
		} else {
			got = append(got, "ok")
		}
	}
	if want := "ok PermissionDenied ok"; strings.Join(got, " ") != want {
		t.Fatalf("stream responses %q, want %q", got, want)
	}
}

func TestPriorityCapWithoutRegistry(t *testing.T) {
	r := startGuarded(t, Options{})
	ctx := testCtx(t)
	if _, err := r.exec.Submit(ctx, &aurav1.SubmitRequest{Task: "demo/a", Priority: DefaultMaxPriority}); err != nil {
		t.Fatalf("priority at the default cap: %v", err)
	}
	_, err := r.exec.Submit(ctx, &aurav1.SubmitRequest{Task: "demo/a", Priority: math.MaxInt32})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `"anonymous"`) {
		t.Fatalf("MaxInt32 without auth: %v, want PERMISSION_DENIED naming the anonymous principal", err)
	}
}

func TestTokensFileReservedNameAndPriorityCap(t *testing.T) {
	for _, c := range []struct{ file, want string }{
		{"tokens:\n  - {name: anonymous, sha256: " + HashToken("x") + ", roles: [read]}\n", "reserved"},
		{"principals:\n  - {name: anonymous, cert_subject: a.example, roles: [read]}\n", "reserved"},
		{"tokens:\n  - {name: t, sha256: " + HashToken("x") + ", roles: [read], max_priority: -1}\n", "max_priority -1"},
	} {
		_, err := Parse([]byte(c.file))
		if !errors.Is(err, ErrTokensFile) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an error saying %q", c.file, err, c.want)
		}
	}
	reg, err := Parse([]byte("tokens:\n  - {name: t, sha256: " + HashToken("x") + ", roles: [read], max_priority: 0}\n"))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := reg.ByToken("x")
	if got := (Options{MaxPriority: 50}).maxPriority(p); got != 0 {
		t.Fatalf("max_priority 0 gives a cap of %d, want 0", got)
	}
}
