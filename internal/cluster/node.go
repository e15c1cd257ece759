package cluster

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Node is what a node publishes about itself under /aura/nodes/<name>,
// refreshed while its etcd session lives.
type Node struct {
	Name    string `json:"name"`
	Address string `json:"address"` // --advertise: where other nodes and clients reach its gRPC
	Version string `json:"version"`
	// Pools maps each pool this node has to its instances here (devices
	// are plugged into one machine); Resources names its other counting
	// resources.
	Pools     map[string][]string `json:"pools,omitempty"`
	Resources []string            `json:"resources,omitempty"`
	// Free maps each pool to its instances free now; with Capacity,
	// Running and Queued it lets a router pick a node.
	Free     map[string][]string `json:"free,omitempty"`
	Capacity int                 `json:"capacity"` // its global limit
	Running  int                 `json:"running"`
	Queued   int                 `json:"queued"`
	Started  time.Time           `json:"started"`
	Updated  time.Time           `json:"updated"`
}

// Directory is the live set of nodes: every node whose lease has not
// lapsed, this one included. Implementations are safe for concurrent use.
type Directory interface {
	// Self is this node's name.
	Self() string
	// Nodes returns every live node, sorted by name.
	Nodes() []Node
	// Lookup returns the live node called name.
	Lookup(name string) (Node, bool)
}

// nodeName is what --node accepts: a DNS label, so that a name fits in a
// task id, an etcd key and a host name alike.
var nodeName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// CheckNodeName says what is wrong with name as a node name, or nil.
func CheckNodeName(name string) error {
	if !nodeName.MatchString(name) {
		return fmt.Errorf("node name %q: use 1 to 63 lower-case letters, digits and '-', starting and ending with a letter or digit", name)
	}
	return nil
}

// TaskID returns the id of a task of node: the node's name, a dot, and
// the id the node's store made (which has no dot).
func TaskID(node, local string) string { return node + "." + local }

// NodeOf returns the node named in a task id, and false for an id that
// names none (a task of a daemon outside a cluster).
func NodeOf(id string) (string, bool) {
	node, _, ok := strings.Cut(id, ".")
	if !ok || CheckNodeName(node) != nil {
		return "", false
	}
	return node, true
}
