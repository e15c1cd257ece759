package cluster

import "testing"

func TestTaskIDsNameTheirNode(t *testing.T) {
	for _, node := range []string{"a", "node-1", "r58m123"} {
		id := TaskID(node, "01a22d51-a680-71cc-bbf8-02ea4d9c8093")
		got, ok := NodeOf(id)
		if !ok || got != node {
			t.Errorf("NodeOf(%q) = %q, %v; want %q", id, got, ok, node)
		}
	}
	for _, id := range []string{"01a22d51-a680-71cc-bbf8-02ea4d9c8093", "", ".x", "Node.x", "-a.x", "a_b.x"} {
		if node, ok := NodeOf(id); ok {
			t.Errorf("NodeOf(%q) = %q; want no node", id, node)
		}
	}
}

func TestNodeNamesAreDNSLabels(t *testing.T) {
	for _, ok := range []string{"a", "n1", "farm-host-3"} {
		if err := CheckNodeName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "A", "a.b", "-a", "a-", "a_b", string(make([]byte, 64))} {
		if CheckNodeName(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
