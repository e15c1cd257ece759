// Package cluster makes several aurad nodes one system on etcd: membership
// on etcd leases, routing and forwarding of calls to the node that owns a
// task or has a device, counting semaphores for cluster-scope resources,
// one merged hook stream, and the election of the node that runs what must
// run once. Without --cluster-etcd none of it is started.
//
// Tasks stay in their node's own store. A task id names its node
// (TaskID, NodeOf), so a call about a task can be sent to any node and is
// forwarded to its owner. What a node publishes about itself is a Node;
// the live set of them is a Directory.
package cluster
