package cluster

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"sort"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// A cluster listing's page token carries one cursor per node: the node's
// own page token to continue from ("" for its newest task), or
// cursorDone once that node has nothing more. A node missing from the
// token (it joined after the first page) is listed from its newest.
const cursorDone = "~"

// tokenPrefix tells a cluster token from a single node's.
const tokenPrefix = "c1."

// ErrPageToken refuses a page token this cluster did not make.
var ErrPageToken = errors.New("page_token: not a token a cluster ListTasks returned; start again without one")

// Cursors is each node's place in a cluster listing, by node name.
type Cursors map[string]string

// EncodeCursors makes the opaque page token of c; "" when every node is
// done (the listing is over).
func EncodeCursors(c Cursors) string {
	more := false
	for _, v := range c {
		more = more || v != cursorDone
	}
	if !more {
		return ""
	}
	b, _ := json.Marshal(map[string]string(c)) // a map of strings always marshals
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursors reads a page token EncodeCursors made; "" is the first
// page (no cursors).
func DecodeCursors(token string) (Cursors, error) {
	c := Cursors{}
	if token == "" {
		return c, nil
	}
	if len(token) <= len(tokenPrefix) || token[:len(tokenPrefix)] != tokenPrefix {
		return nil, ErrPageToken
	}
	b, err := base64.RawURLEncoding.DecodeString(token[len(tokenPrefix):])
	if err != nil || json.Unmarshal(b, (*map[string]string)(&c)) != nil {
		return nil, ErrPageToken
	}
	for name := range c {
		if CheckNodeName(name) != nil {
			return nil, ErrPageToken
		}
	}
	return c, nil
}

// Done reports whether the cursors say node has nothing more to list.
func (c Cursors) Done(node string) bool { return c[node] == cursorDone }

// NodePage is one node's answer to its part of a cluster listing: its
// tasks newest first, with (page_tokens) the token after each, and its
// next page token. Err set means the node did not answer.
type NodePage struct {
	Node   string
	Tasks  []*aurav1.Task
	Tokens []string
	Next   string
	Err    error
}

// MergePages merges the nodes' pages newest first (by created_at; on a
// tie, by node name, so the order is the same on every page) into one of
// at most size tasks, and returns the cursors that continue after it. A
// node takes part in the order of its own listing, so its part of every
// page continues its own listing exactly: each task is listed once. A node
// that did not answer keeps its cursor, so the next page asks it again
// from where it was.
func MergePages(pages []NodePage, from Cursors, size int) ([]*aurav1.Task, Cursors) {
	next := Cursors{}
	for k, v := range from {
		next[k] = v
	}
	live := make([]NodePage, 0, len(pages))
	for _, p := range pages {
		if p.Err == nil {
			live = append(live, p)
		}
	}
	sort.Slice(live, func(i, j int) bool { return live[i].Node < live[j].Node })
	taken := make([]int, len(live))
	var out []*aurav1.Task
	for len(out) < size {
		best := -1
		for i, p := range live {
			if taken[i] == len(p.Tasks) {
				continue
			}
			if best < 0 || newer(p.Tasks[taken[i]], live[best].Tasks[taken[best]]) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		out = append(out, live[best].Tasks[taken[best]])
		taken[best]++
	}
	for i, p := range live {
		switch {
		case taken[i] == len(p.Tasks) && p.Next == "":
			next[p.Node] = cursorDone
		case taken[i] == len(p.Tasks):
			next[p.Node] = p.Next
		case taken[i] > 0:
			next[p.Node] = p.Tokens[taken[i]-1]
		default:
			// Nothing of it taken: it starts the next page where it
			// started this one (written out, so that a node the token did
			// not name yet keeps the listing going).
			next[p.Node] = from[p.Node]
		}
	}
	for _, p := range pages {
		if p.Err != nil {
			next[p.Node] = from[p.Node]
		}
	}
	return out, next
}

// newer orders tasks newest first; strictly, so a tie keeps the earlier
// (lower-named) node's task first.
func newer(a, b *aurav1.Task) bool {
	ta, tb := a.GetCreatedAt().AsTime(), b.GetCreatedAt().AsTime()
	return ta.After(tb)
}
