package cluster

import (
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// fakeNode lists its tasks newest first with page tokens "after index i",
// as a node's store does.
type fakeNode struct {
	name  string
	tasks []*aurav1.Task // newest first
}

func (n fakeNode) page(token string, size int) NodePage {
	start := 0
	if token != "" {
		i, err := strconv.Atoi(token)
		if err != nil {
			return NodePage{Node: n.name, Err: err}
		}
		start = i + 1
	}
	p := NodePage{Node: n.name}
	for i := start; i < len(n.tasks) && len(p.Tasks) < size; i++ {
		p.Tasks = append(p.Tasks, n.tasks[i])
		p.Tokens = append(p.Tokens, strconv.Itoa(i))
	}
	if last := start + len(p.Tasks) - 1; last < len(n.tasks)-1 {
		p.Next = strconv.Itoa(last)
	}
	return p
}

// threeNodes makes nodes whose tasks interleave in time unevenly: a has
// many, b few, c's are all older than the others'.
func threeNodes() []fakeNode {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	mk := func(node string, times ...int) fakeNode {
		n := fakeNode{name: node}
		for i := len(times) - 1; i >= 0; i-- {
			n.tasks = append(n.tasks, &aurav1.Task{Id: fmt.Sprintf("%s.%d", node, times[i]), CreatedAt: timestamppb.New(base.Add(time.Duration(times[i]) * time.Second))})
		}
		return n
	}
	return []fakeNode{
		mk("a", 10, 11, 12, 13, 14, 15, 16, 17, 30, 31, 32),
		mk("b", 12, 20, 40),
		mk("c", 1, 2, 3, 4, 5),
	}
}

func TestMergePagesListsEachTaskOnceNewestFirst(t *testing.T) {
	nodes := threeNodes()
	total := 0
	for _, n := range nodes {
		total += len(n.tasks)
	}
	for _, size := range []int{1, 2, 3, 5, 7, 100} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			token, seen := "", map[string]bool{}
			var last *aurav1.Task
			for pages := 0; ; pages++ {
				if pages > total+1 {
					t.Fatal("the listing does not end")
				}
				from, err := DecodeCursors(token)
				if err != nil {
					t.Fatal(err)
				}
				var got []NodePage
				for _, n := range nodes {
					if !from.Done(n.name) {
						got = append(got, n.page(from[n.name], size))
					}
				}
				tasks, next := MergePages(got, from, size)
				if len(tasks) > size {
					t.Fatalf("page of %d tasks; size %d", len(tasks), size)
				}
				for _, tk := range tasks {
					if seen[tk.Id] {
						t.Fatalf("%s listed twice", tk.Id)
					}
					seen[tk.Id] = true
					if last != nil && tk.CreatedAt.AsTime().After(last.CreatedAt.AsTime()) {
						t.Fatalf("%s after %s: not newest first", tk.Id, last.Id)
					}
					last = tk
				}
				if token = EncodeCursors(next); token == "" {
					break
				}
				if len(tasks) == 0 {
					t.Fatal("an empty page with a next page token")
				}
			}
			if len(seen) != total {
				t.Errorf("listed %d tasks of %d", len(seen), total)
			}
		})
	}
}

func TestMergePagesKeepsAnUnreachableNodesPlace(t *testing.T) {
	nodes := threeNodes()
	from := Cursors{}
	pages := []NodePage{nodes[0].page("", 3), {Node: "b", Err: errors.New("deadline exceeded")}, nodes[2].page("", 3)}
	tasks, next := MergePages(pages, from, 3)
	if len(tasks) != 3 {
		t.Fatalf("got %d tasks", len(tasks))
	}
	if c, ok := next["b"]; !ok || c != "" {
		t.Errorf("b's cursor = %q, %v; want it kept at the start", c, ok)
	}
	// b answers on the next page, from its newest.
	from, _ = DecodeCursors(EncodeCursors(next))
	pages = []NodePage{nodes[0].page(from["a"], 3), nodes[1].page(from["b"], 3), nodes[2].page(from["c"], 3)}
	tasks, _ = MergePages(pages, from, 3)
	if tasks[0].Id != "b.40" {
		t.Errorf("first of the next page = %s; want b's newest, b.40", tasks[0].Id)
	}
}

func TestDecodeCursorsRefusesForeignTokens(t *testing.T) {
	for _, tok := range []string{"YTEy", "c1.", "c1.!!!", "c1." + "eyJOT0RFIjoiIn0"} { // a node's own token; empty; not base64; a bad node name
		if _, err := DecodeCursors(tok); !errors.Is(err, ErrPageToken) {
			t.Errorf("%q: got %v", tok, err)
		}
	}
	c := Cursors{"a": "YTEy", "b": cursorDone}
	got, err := DecodeCursors(EncodeCursors(c))
	if err != nil || got["a"] != "YTEy" || !got.Done("b") {
		t.Errorf("round trip: %v, %v", got, err)
	}
	if EncodeCursors(Cursors{"a": cursorDone}) != "" {
		t.Error("every node done: want no next page token")
	}
}
