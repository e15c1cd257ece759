package actions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

const (
	// DefaultHTTPMaxBody bounds the response body an http.request step
	// keeps unless Options.HTTPMaxBody says otherwise.
	DefaultHTTPMaxBody = 10 << 20
	// DefaultMaxJSONValues bounds how many values a JSON response may
	// decode to unless Options.MaxJSONValues says otherwise. A decoded
	// value costs over a hundred bytes, so a 10 MiB body of small objects
	// held 1.4 million of them and cost aurad 230 MiB; 100,000 is about
	// 16 MiB.
	DefaultMaxJSONValues = 100_000
	// maxJSONDepth bounds how deeply a JSON response may nest: the value
	// is walked recursively (templates, the task's result) further on.
	maxJSONDepth       = 64
	defaultHTTPTimeout = 30 * time.Second
)

var httpParams = []string{"method", "url", "headers", "body", "json", "timeout", "expect_status"}

// StatusError is returned by http.request when the response status is not
// one of expect_status (default: any 2xx). The output map is returned
// alongside it.
type StatusError struct {
	Method string
	URL    string
	Status int
	// Expected is empty when any 2xx status was acceptable.
	Expected []int64
	Body     string
}

func (e *StatusError) Error() string {
	want := "a 2xx status"
	if len(e.Expected) > 0 {
		want = fmt.Sprint(e.Expected)
	}
	msg := fmt.Sprintf("http.request %s %s: status %d, expected %s", e.Method, e.URL, e.Status, want)
	if tail := tailText(e.Body, errorTailLen); tail != "" {
		msg += "; body: " + tail
	}
	return msg
}

// httpClient returns the client for a plan's allow_hosts, made on first use.
func (r *Registry) httpClient(planAllow []string) (*http.Client, error) {
	allow := append(slices.Clone(r.opts.HTTPAllowHosts), planAllow...)
	slices.Sort(allow)
	allow = slices.Compact(allow)
	key := strings.Join(allow, "\n")
	r.clientsMu.Lock()
	defer r.clientsMu.Unlock()
	if c, ok := r.clients[key]; ok {
		return c, nil
	}
	policy, err := NewHostPolicy(allow)
	if err != nil {
		return nil, fmt.Errorf("http.request: plan http.allow_hosts: %w", err)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	// The policy is checked when a connection is made, so it holds for
	// every redirect hop and for whatever address a name resolves to.
	t.DialContext = policy.dialContext(&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second})
	c := &http.Client{Transport: t}
	r.clients[key] = c
	return c, nil
}

func (r *Registry) httpSpec() Spec {
	return Spec{
		Name:   "http.request",
		Params: httpParams,
		Run: func(ctx context.Context, env *Env, params map[string]any) (any, error) {
			var allow []string
			if env != nil {
				allow = env.HTTPAllowHosts
			}
			client, err := r.httpClient(allow)
			if err != nil {
				return nil, err
			}
			return runHTTP(ctx, client, r.opts.httpLimits(), params)
		},
	}
}

// runHTTP sends one request and returns {status, headers, body, json}:
// headers maps each canonical name to its first value; json is the decoded
// body when the response declares a JSON content type, else nil.
func runHTTP(ctx context.Context, client *http.Client, lim httpLimits, params map[string]any) (any, error) {
	p, err := newParams("http.request", params, httpParams)
	if err != nil {
		return nil, err
	}
	method, err := p.str("method", http.MethodGet)
	if err != nil {
		return nil, err
	}
	method = strings.ToUpper(method)
	if method == "" || strings.ContainsAny(method, " \t\r\n") {
		return nil, p.errorf("method", "invalid method %q", method)
	}
	rawURL, err := p.requiredStr("url")
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, p.errorf("url", "must be an absolute http or https URL, got %q", rawURL)
	}
	headers, err := p.stringMap("headers")
	if err != nil {
		return nil, err
	}
	if p.has("body") && p.has("json") {
		return nil, p.errorf("json", "give either \"body\" or \"json\", not both")
	}
	var body io.Reader
	var contentType string
	if p.has("body") {
		s, err := p.str("body", "")
		if err != nil {
			return nil, err
		}
		body = strings.NewReader(s)
	} else if p.has("json") {
		b, err := json.Marshal(params["json"])
		if err != nil {
			return nil, p.errorf("json", "cannot be encoded as JSON: %v", err)
		}
		body, contentType = bytes.NewReader(b), "application/json"
	}
	timeout, err := p.duration("timeout", defaultHTTPTimeout)
	if err != nil {
		return nil, err
	}
	var expect []int64
	if p.has("expect_status") {
		if expect, err = p.intList("expect_status", nil); err != nil {
			return nil, err
		}
	}

	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("http.request %s %s: %w", method, rawURL, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range headers {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("http.request %s %s: %w", method, rawURL, err)
	}
	defer resp.Body.Close()
	if resp.ContentLength > lim.maxBody {
		return nil, fmt.Errorf("http.request %s %s: response body of %d bytes exceeds the limit of %d bytes (aurad --http-max-body)", method, rawURL, resp.ContentLength, lim.maxBody)
	}
	var counter *jsonCounter
	isJSON := isJSONContentType(resp.Header.Get("Content-Type"))
	if isJSON {
		counter = &jsonCounter{maxValues: lim.maxJSONValues, maxDepth: maxJSONDepth}
	}
	data, err := readBody(resp, lim.maxBody, counter)
	if errors.Is(err, errJSONTooBig) {
		if counter.depth > maxJSONDepth {
			return nil, fmt.Errorf("http.request %s %s: the JSON response nests deeper than %d levels, the limit", method, rawURL, maxJSONDepth)
		}
		return nil, fmt.Errorf("http.request %s %s: the JSON response holds more than %d values, the limit (aurad --http-max-json-values); ask for less, e.g. one page at a time", method, rawURL, lim.maxJSONValues)
	}
	if err != nil {
		return nil, fmt.Errorf("http.request %s %s: read body: %w", method, rawURL, err)
	}
	if int64(len(data)) > lim.maxBody {
		return nil, fmt.Errorf("http.request %s %s: response body exceeds the limit of %d bytes (aurad --http-max-body)", method, rawURL, lim.maxBody)
	}

	respHeaders := make(map[string]any, len(resp.Header))
	for k, vs := range resp.Header {
		if len(vs) > 0 {
			respHeaders[k] = vs[0]
		}
	}
	out := map[string]any{
		"status":  int64(resp.StatusCode),
		"headers": respHeaders,
		"body":    strings.ToValidUTF8(string(data), "\uFFFD"),
		"json":    nil,
	}
	if isJSON && len(bytes.TrimSpace(data)) > 0 {
		v, err := decodeJSON(data)
		if err != nil {
			return out, fmt.Errorf("http.request %s %s: response declares JSON but does not parse: %w", method, rawURL, err)
		}
		out["json"] = v
	}
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if len(expect) > 0 {
		ok = slices.Contains(expect, int64(resp.StatusCode))
	}
	if !ok {
		return out, &StatusError{Method: method, URL: rawURL, Status: resp.StatusCode, Expected: expect, Body: out["body"].(string)}
	}
	return out, nil
}

// httpLimits are the bounds one http.request call works within.
type httpLimits struct {
	maxBody       int64
	maxJSONValues int
}

func (o Options) httpLimits() httpLimits {
	l := httpLimits{maxBody: o.HTTPMaxBody, maxJSONValues: o.MaxJSONValues}
	if l.maxBody <= 0 {
		l.maxBody = DefaultHTTPMaxBody
	}
	if l.maxJSONValues <= 0 {
		l.maxJSONValues = DefaultMaxJSONValues
	}
	return l
}

// readBody reads at most limit+1 bytes, sized up front when the response
// says how long it is, so a large body is not copied while it grows. With
// a counter, the bytes are counted as JSON as they arrive and reading stops
// at the first one past its limits, so an oversized JSON response costs
// little more than the part read.
func readBody(resp *http.Response, limit int64, counter *jsonCounter) ([]byte, error) {
	var buf bytes.Buffer
	if n := resp.ContentLength; n > 0 && n <= limit {
		buf.Grow(int(n) + bytes.MinRead) // ReadFrom wants MinRead free to read on
	}
	var r io.Reader = io.LimitReader(resp.Body, limit+1)
	if counter != nil {
		r = io.TeeReader(r, counter)
	}
	_, err := buf.ReadFrom(r)
	return buf.Bytes(), err
}

// errJSONTooBig stops reading a JSON response past a jsonCounter's limits.
var errJSONTooBig = errors.New("JSON response too big")

// jsonCounter counts the values of a JSON text written to it in pieces
// (every object, array, string, member names included, number, true,
// false and null) and its deepest nesting, without decoding it. Write
// fails with errJSONTooBig past maxValues or maxDepth. Malformed text is
// left for the decoder to report.
type jsonCounter struct {
	maxValues, maxDepth  int
	values, level, depth int
	inString, escaped    bool
	inScalar             bool // inside a number or a literal
}

func (c *jsonCounter) Write(p []byte) (int, error) {
	for _, b := range p {
		if c.inString {
			switch {
			case c.escaped:
				c.escaped = false
			case b == '\\':
				c.escaped = true
			case b == '"':
				c.inString = false
			}
			continue
		}
		if c.inScalar {
			if !isJSONDelim(b) {
				continue
			}
			c.inScalar = false
		}
		switch b {
		case '"':
			c.values++
			c.inString = true
		case '{', '[':
			c.values++
			c.level++
			c.depth = max(c.depth, c.level)
		case '}', ']':
			c.level--
		case ' ', '\t', '\r', '\n', ',', ':':
		default:
			c.values++
			c.inScalar = true
		}
		if c.values > c.maxValues || c.depth > c.maxDepth {
			return 0, errJSONTooBig
		}
	}
	return len(p), nil
}

func isJSONDelim(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '\n', ',', ':', '{', '}', '[', ']', '"':
		return true
	}
	return false
}

func isJSONContentType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// decodeJSON decodes into JSON-like values with int64 for integral numbers
// and float64 otherwise.
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the JSON value")
	}
	return normalizeJSON(v), nil
}

func normalizeJSON(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	case []any:
		for i := range t {
			t[i] = normalizeJSON(t[i])
		}
		return t
	case map[string]any:
		for k := range t {
			t[k] = normalizeJSON(t[k])
		}
		return t
	}
	return v
}
