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
	// maxHTTPBody bounds the response body an http.request step keeps.
	maxHTTPBody        = 10 << 20
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
			return runHTTP(ctx, client, params)
		},
	}
}

// runHTTP sends one request and returns {status, headers, body, json}:
// headers maps each canonical name to its first value; json is the decoded
// body when the response declares a JSON content type, else nil.
func runHTTP(ctx context.Context, client *http.Client, params map[string]any) (any, error) {
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
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody+1))
	if err != nil {
		return nil, fmt.Errorf("http.request %s %s: read body: %w", method, rawURL, err)
	}
	if len(data) > maxHTTPBody {
		return nil, fmt.Errorf("http.request %s %s: response body exceeds %d bytes", method, rawURL, maxHTTPBody)
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
	if isJSONContentType(resp.Header.Get("Content-Type")) && len(bytes.TrimSpace(data)) > 0 {
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
