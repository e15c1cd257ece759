package cluster

import (
	"testing"

	"go.uber.org/goleak"
)

// An embedded etcd member that is stopped and started again leaves its
// peers' HTTP connections to it to close on their own, after the test:
// those are etcd's, and this package serves no HTTP of its own.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*conn).serve"),
		goleak.IgnoreAnyFunction("net/http.(*connReader).backgroundRead"),
	)
}
