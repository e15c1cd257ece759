package actions

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func newHTTPServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// loopbackEnv lets http.request reach the tests' servers on 127.0.0.1, as
// a plan does with http: {allow_hosts: [127.0.0.1]}.
func loopbackEnv() *Env { return &Env{HTTPAllowHosts: []string{"127.0.0.1"}} }

func TestHTTPGetJSON(t *testing.T) {
	srv := newHTTPServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.Header.Get("X-Token") != "abc" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Add("X-Multi", "first")
		w.Header().Add("X-Multi", "second")
		io.WriteString(w, `{"ok":true,"count":3,"ratio":0.5,"items":["a",null]}`)
	})
	out := mustRun(t, loopbackEnv(), "http.request", map[string]any{
		"url":     srv.URL + "/health",
		"headers": map[string]any{"X-Token": "abc"},
	})
	m := out.(map[string]any)
	if m["status"] != int64(200) {
		t.Fatalf("status = %v", m["status"])
	}
	wantJSON := map[string]any{"ok": true, "count": int64(3), "ratio": 0.5, "items": []any{"a", nil}}
	if !reflect.DeepEqual(m["json"], wantJSON) {
		t.Fatalf("json = %#v, want %#v", m["json"], wantJSON)
	}
	if h := m["headers"].(map[string]any); h["X-Multi"] != "first" || !strings.HasPrefix(h["Content-Type"].(string), "application/json") {
		t.Fatalf("headers = %#v", h)
	}
	if !strings.Contains(m["body"].(string), `"count":3`) {
		t.Fatalf("body = %q", m["body"])
	}
}

func TestHTTPPostBodyAndJSON(t *testing.T) {
	type seen struct{ method, ctype, body string }
	got := make(chan seen, 2)
	srv := newHTTPServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.Header.Get("Content-Type"), string(b)}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "created")
	})
	out := mustRun(t, loopbackEnv(), "http.request", map[string]any{
		"method": "post", "url": srv.URL, "json": map[string]any{"name": "x", "n": int64(2)},
	})
	s := <-got
	var decoded map[string]any
	if err := json.Unmarshal([]byte(s.body), &decoded); err != nil || s.method != "POST" || s.ctype != "application/json" || decoded["name"] != "x" {
		t.Fatalf("server saw %+v (%v)", s, err)
	}
	if m := out.(map[string]any); m["status"] != int64(201) || m["body"] != "created" || m["json"] != nil {
		t.Fatalf("output = %#v", m)
	}

	mustRun(t, loopbackEnv(), "http.request", map[string]any{
		"method": "PUT", "url": srv.URL, "body": "raw text", "headers": map[string]any{"Content-Type": "text/plain"},
	})
	if s := <-got; s.method != "PUT" || s.body != "raw text" || s.ctype != "text/plain" {
		t.Fatalf("server saw %+v", s)
	}
}

func TestHTTPExpectStatus(t *testing.T) {
	srv := newHTTPServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "maintenance window")
	})
	// Default: any 2xx; a 503 fails, with the output still returned.
	out, err := run(t, loopbackEnv(), "http.request", map[string]any{"url": srv.URL})
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 503 {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "status 503") || !strings.Contains(err.Error(), "maintenance window") {
		t.Fatalf("message = %q", err)
	}
	if out.(map[string]any)["status"] != int64(503) {
		t.Fatalf("output alongside error = %#v", out)
	}
	for _, expect := range []any{int64(503), float64(503), []any{int64(200), int64(503)}} {
		out := mustRun(t, loopbackEnv(), "http.request", map[string]any{"url": srv.URL, "expect_status": expect})
		if out.(map[string]any)["status"] != int64(503) {
			t.Fatalf("expect %v: %#v", expect, out)
		}
	}
	if _, err := run(t, loopbackEnv(), "http.request", map[string]any{"url": srv.URL, "expect_status": int64(200)}); !errors.As(err, &se) {
		t.Fatalf("expect 200 got 503: %v", err)
	}
}

func TestHTTPTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := newHTTPServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	_, err := run(t, loopbackEnv(), "http.request", map[string]any{"url": srv.URL, "timeout": "50ms"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline error", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	if _, err := runCtx(t, ctx, loopbackEnv(), "http.request", map[string]any{"url": srv.URL}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v", err)
	}
}

func TestHTTPBodyIsBounded(t *testing.T) {
	srv := newHTTPServer(t, func(w http.ResponseWriter, r *http.Request) {
		chunk := strings.Repeat("x", 1<<16)
		for range (DefaultHTTPMaxBody / len(chunk)) + 2 {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
	})
	_, err := run(t, loopbackEnv(), "http.request", map[string]any{"url": srv.URL})
	if err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("oversized body: %v", err)
	}
}

func TestHTTPBadJSONResponse(t *testing.T) {
	srv := newHTTPServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		io.WriteString(w, `{"broken":`)
	})
	out, err := run(t, loopbackEnv(), "http.request", map[string]any{"url": srv.URL})
	if err == nil || !strings.Contains(err.Error(), "does not parse") {
		t.Fatalf("err = %v", err)
	}
	if out.(map[string]any)["body"] != `{"broken":` {
		t.Fatalf("output = %#v", out)
	}
}

func TestHTTPParamErrors(t *testing.T) {
	for param, params := range map[string]map[string]any{
		"url":           {"url": "file:///etc/passwd"},
		"json":          {"url": "http://127.0.0.1:1", "body": "x", "json": map[string]any{}},
		"headers":       {"url": "http://127.0.0.1:1", "headers": []any{"x"}},
		"timeout":       {"url": "http://127.0.0.1:1", "timeout": int64(5)},
		"expect_status": {"url": "http://127.0.0.1:1", "expect_status": "200"},
		"method":        {"url": "http://127.0.0.1:1", "method": "GE T"},
	} {
		_, err := run(t, loopbackEnv(), "http.request", params)
		asParamError(t, err, param)
	}
	_, err := run(t, loopbackEnv(), "http.request", map[string]any{})
	asParamError(t, err, "url")
}

// TestHTTPHostPolicy: loopback, link-local and metadata addresses are refused
// at connect time unless allowed, on the first hop and on every redirect.
func TestHTTPHostPolicy(t *testing.T) {
	inner := newHTTPServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "inner") })
	// The redirector listens on another loopback address, so allowing it
	// alone does not allow the redirect's target on 127.0.0.1.
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2: %v", err)
	}
	redir := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hop" {
			http.Redirect(w, r, inner.URL+"/metrics", http.StatusFound)
			return
		}
		io.WriteString(w, "outer")
	}))
	redir.Listener.Close()
	redir.Listener = ln
	redir.Start()
	t.Cleanup(redir.Close)

	tests := []struct {
		name  string
		allow []string
		url   string
		want  string // "" = success
	}{
		{"loopback refused by default", nil, inner.URL, "127.0.0.1"},
		{"localhost name refused by default", nil, strings.Replace(inner.URL, "127.0.0.1", "localhost", 1), "loopback"},
		{"link-local metadata refused", nil, "http://169.254.169.254/latest/meta-data/", "link-local"},
		{"ipv4-mapped loopback refused", nil, "http://[::ffff:127.0.0.1]:1/", "loopback"},
		{"unspecified refused", nil, "http://0.0.0.0:1/", "unspecified"},
		{"this network refused", nil, "http://0.0.0.1:1/", "unspecified"},
		{"allowed address", []string{"127.0.0.2"}, redir.URL, ""},
		{"redirect to a refused address", []string{"127.0.0.2"}, redir.URL + "/hop", "127.0.0.1"},
		{"allowed with its port", []string{"127.0.0.2", inner.Listener.Addr().String()}, redir.URL + "/hop", ""},
		{"another port of an allowed address", []string{"127.0.0.1:1"}, inner.URL, "127.0.0.1"},
		{"allowed prefix", []string{"127.0.0.0/8"}, redir.URL + "/hop", ""},
		{"allowed by name", []string{"localhost"}, strings.Replace(inner.URL, "127.0.0.1", "localhost", 1), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(t, &Env{HTTPAllowHosts: tc.allow}, "http.request", map[string]any{"url": tc.url, "timeout": "5s"})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("allowed request failed: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrHostDenied) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "allow_hosts") {
				t.Fatalf("err = %v, want a refusal (ErrHostDenied) naming %q and allow_hosts", err, tc.want)
			}
		})
	}
}

func TestHostPolicyCheck(t *testing.T) {
	p, err := NewHostPolicy([]string{"10.1.2.3:8080"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr    string
		port    uint16
		refused bool
	}{
		{"93.184.215.14", 443, false},
		{"10.9.9.9", 80, false},
		{"192.168.1.1", 80, false},
		{"127.0.0.53", 53, true},
		{"::1", 80, true},
		{"169.254.169.254", 80, true},
		{"fe80::1", 80, true},
		{"100.100.100.200", 80, true},
		{"fd00:ec2::254", 80, true},
		{"64:ff9b::a9fe:a9fe", 80, true}, // NAT64 for 169.254.169.254
		{"64:ff9b::5db8:d70e", 80, false},
		{"224.0.0.1", 80, true},
		{"255.255.255.255", 80, true},
		{"10.1.2.3", 8080, false},
	} {
		err := p.check(netip.MustParseAddr(tc.addr), tc.port)
		if refused := errors.Is(err, ErrHostDenied); refused != tc.refused {
			t.Errorf("%s:%d: err = %v, want refused %v", tc.addr, tc.port, err, tc.refused)
		}
	}
}

func TestParseHostRule(t *testing.T) {
	for _, good := range []string{"127.0.0.1", "::1", "10.0.0.0/8", "fd00::/8", "127.0.0.1:8080", "[::1]:9000", "build.internal", "Build.Internal.", "api.example.com:443"} {
		if err := ParseHostRule(good); err != nil {
			t.Errorf("ParseHostRule(%q): %v", good, err)
		}
	}
	for _, bad := range []string{"", "http://x", "a b", "127.0.0.1:0", "host:99999", "-bad.example", "x/8"} {
		if err := ParseHostRule(bad); err == nil {
			t.Errorf("ParseHostRule(%q) = nil, want an error", bad)
		}
	}
}

func TestJSONCounter(t *testing.T) {
	tests := []struct {
		in            string
		values, depth int
	}{
		{`1`, 1, 0},
		{`"a\"b,[{"`, 1, 0},
		{`["\\", 1]`, 3, 1},
		{`[1, -2.5e3, true, null, "x"]`, 6, 1},
		{`{"a": {"b": [1, 2]}, "c": false}`, 9, 3},
		{`[[[[]]]]`, 4, 4},
		{` { } `, 1, 1},
	}
	for _, tc := range tests {
		// Written a byte at a time, as a body may arrive.
		c := &jsonCounter{maxValues: 1000, maxDepth: 1000}
		for i := range len(tc.in) {
			if _, err := c.Write([]byte{tc.in[i]}); err != nil {
				t.Fatal(err)
			}
		}
		if c.values != tc.values || c.depth != tc.depth {
			t.Errorf("%s: %d values, depth %d; want %d, %d", tc.in, c.values, c.depth, tc.values, tc.depth)
		}
		c = &jsonCounter{maxValues: tc.values - 1, maxDepth: 1000}
		if _, err := c.Write([]byte(tc.in)); !errors.Is(err, errJSONTooBig) {
			t.Errorf("%s with a limit of %d values: err = %v", tc.in, tc.values-1, err)
		}
	}
}

// TestHTTPJSONLimits: a JSON response with more values than the limit, or
// nested deeper than it, fails the step with an error naming the limit;
// its body is never decoded.
func TestHTTPJSONLimits(t *testing.T) {
	srv := newHTTPServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/many":
			io.WriteString(w, "["+strings.Repeat(`{"i":1},`, 40)+"0]")
		case "/deep":
			io.WriteString(w, strings.Repeat("[", 100)+strings.Repeat("]", 100))
		default:
			io.WriteString(w, `{"ok":true}`)
		}
	})
	reg, err := BuiltinWith(Options{HTTPAllowHosts: []string{"127.0.0.1"}, MaxJSONValues: 100, HTTPMaxBody: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	spec, _ := reg.Lookup("http.request")
	get := func(path string) error {
		_, err := spec.Run(context.Background(), &Env{}, map[string]any{"url": srv.URL + path})
		return err
	}
	if err := get("/"); err != nil {
		t.Fatalf("small response: %v", err)
	}
	if err := get("/many"); err == nil || !strings.Contains(err.Error(), "more than 100 values") || !strings.Contains(err.Error(), "--http-max-json-values") {
		t.Errorf("121 values with a limit of 100: err = %v", err)
	}
	if err := get("/deep"); err == nil || !strings.Contains(err.Error(), "deeper than 64") {
		t.Errorf("100 levels deep: err = %v", err)
	}
	big := newHTTPServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, strings.Repeat("x", 2<<10)) })
	if _, err := spec.Run(context.Background(), &Env{}, map[string]any{"url": big.URL}); err == nil || !strings.Contains(err.Error(), "limit of 1024 bytes") {
		t.Errorf("2 KiB body with a 1 KiB limit: err = %v", err)
	}
}
