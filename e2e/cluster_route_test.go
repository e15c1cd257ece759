package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/client"
	"github.com/aura-dev/aura/internal/auth"
	"github.com/aura-dev/aura/internal/cluster/etcdtest"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// routedNode is one aurad of a test cluster, with a client holding the
// ops token (every role).
type routedNode struct {
	*daemon
	name string
	ops  *client.Client
}

// startRoutedCluster starts one aurad per name on an etcd of three
// members, as a deployment has, each with one phone of its own (phone-<name>) and its own tokens file:
// ops holds every role everywhere; canceller may cancel on every node but
// the last, where it may only read.
func startRoutedCluster(t *testing.T, names ...string) map[string]*routedNode {
	t.Helper()
	etcd := etcdtest.Start(t, 3)
	nodes := map[string]*routedNode{}
	for i, name := range names {
		cancelRoles := "[read, cancel]"
		if i == len(names)-1 {
			cancelRoles = "[read]"
		}
		tokens := writeFile(t, t.TempDir(), "tokens.yaml", fmt.Appendf(nil, "tokens:\n  - {name: ops, sha256: %s, roles: [submit, read, cancel, hooks, admin]}\n  - {name: canceller, sha256: %s, roles: %s}\n"+
			"  - {name: e2e-reader, sha256: %s, roles: [read], plans: [e2e]}\n  - {name: demo-reader, sha256: %s, roles: [read], plans: [demo]}\n",
			auth.HashToken("ops"), auth.HashToken("canceller"), cancelRoles, auth.HashToken("e2e-reader"), auth.HashToken("demo-reader")))
		d := startNode(t, etcd, clusterNode{name: name, pool: []string{"phone-" + name}}, "--auth-tokens", tokens)
		c, err := client.Dial(d.addr, client.WithToken("ops"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		nodes[name] = &routedNode{daemon: d, name: name, ops: c}
	}
	// Every node sees every other, with its device.
	for _, n := range nodes {
		waitFor(t, "node "+n.name+" to see the whole cluster", 30*time.Second, func() bool {
			st, err := n.ops.Exec.GetStats(context.Background(), &aurav1.GetStatsRequest{})
			return err == nil && len(st.Nodes) == len(names) && len(st.UnreachableNodes) == 0
		})
	}
	return nodes
}

func holdFor(ms int, tags ...string) *aurav1.SubmitRequest {
	return &aurav1.SubmitRequest{Task: "e2e/hold", ResourceTags: tags,
		Inputs: &structpb.Struct{Fields: map[string]*structpb.Value{"ms": structpb.NewNumberValue(float64(ms))}}}
}

func TestClusterRoutesAndForwards(t *testing.T) {
	nodes := startRoutedCluster(t, "a", "b", "c")
	a, b, c := nodes["a"], nodes["b"], nodes["c"]
	ctx := ctxT(t, 2*time.Minute)

	// A submission to a for c's device runs on c.
	resp, err := a.ops.Submit(ctx, holdFor(10, "phone:phone-c"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.TaskId, "c.") {
		t.Fatalf("task id %s: want one of node c", resp.TaskId)
	}
	done, err := a.ops.Wait(ctx, resp.TaskId) // streamed from c through a
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED || done.Resources["phone"] != "phone-c" {
		t.Fatalf("task on c: %v on %v; want SUCCEEDED on phone-c", done.Status, done.Resources)
	}
	// Any node answers for it.
	for _, n := range nodes {
		got, err := n.ops.Exec.GetTask(ctx, &aurav1.GetTaskRequest{TaskId: resp.TaskId})
		if err != nil || got.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Errorf("GetTask through %s: %v, %v", n.name, got.GetStatus(), err)
		}
	}
	// A caller limited to some plans sees another node's task of its plans
	// only, as on that node.
	for token, want := range map[string]codes.Code{"e2e-reader": codes.OK, "demo-reader": codes.PermissionDenied} {
		scoped, err := client.Dial(a.addr, client.WithToken(token))
		if err != nil {
			t.Fatal(err)
		}
		_, err = scoped.Exec.GetTask(ctx, &aurav1.GetTaskRequest{TaskId: resp.TaskId})
		scoped.Close()
		if status.Code(err) != want {
			t.Errorf("GetTask of c's e2e task through a as %s: %v; want %v", token, err, want)
		}
	}
	// auractl --addr a list shows it.
	cmd := exec.Command(bin.auractl, "--addr", a.addr, "list")
	cmd.Env = append(os.Environ(), "AURA_TOKEN=ops")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), resp.TaskId) {
		t.Errorf("auractl --addr a list: %v\n%s", err, out)
	}

	// Cancel through b reaches c.
	long, err := a.ops.Submit(ctx, holdFor(300000, "phone:phone-c"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the long task to run on c", 30*time.Second, func() bool {
		got, err := b.ops.Exec.GetTask(ctx, &aurav1.GetTaskRequest{TaskId: long.TaskId})
		return err == nil && got.Status == aurav1.TaskStatus_TASK_STATUS_RUNNING
	})

	// A token a accepts for cancel but c holds without the role is
	// refused by c, the owner.
	canceller, err := client.Dial(a.addr, client.WithToken("canceller"))
	if err != nil {
		t.Fatal(err)
	}
	defer canceller.Close()
	_, err = canceller.Exec.CancelTask(ctx, &aurav1.CancelTaskRequest{TaskId: long.TaskId})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("cancel with a token c does not let cancel: %v; want PERMISSION_DENIED from c", err)
	}
	if got, _ := c.ops.Exec.GetTask(ctx, &aurav1.GetTaskRequest{TaskId: long.TaskId}); got.GetStatus() != aurav1.TaskStatus_TASK_STATUS_RUNNING {
		t.Errorf("after the refused cancel the task is %v; want it still RUNNING", got.GetStatus())
	}
	cancelled, err := b.ops.Exec.CancelTask(ctx, &aurav1.CancelTaskRequest{TaskId: long.TaskId, Reason: "through b"})
	if err != nil || cancelled.Task.Status != aurav1.TaskStatus_TASK_STATUS_CANCELLED {
		t.Fatalf("cancel through b: %v, %v", cancelled.GetTask().GetStatus(), err)
	}

	// Paging through b lists every node's tasks once each.
	want := map[string]bool{resp.TaskId: true, long.TaskId: true}
	for _, n := range nodes {
		for range 2 {
			r, err := n.ops.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(r.TaskId, n.name+".") {
				t.Errorf("an untagged task submitted to %s went to %s", n.name, r.TaskId)
			}
			want[r.TaskId] = true
		}
	}
	seen := map[string]bool{}
	token := ""
	for page := 0; ; page++ {
		if page > len(want) {
			t.Fatal("the listing does not end")
		}
		r, err := b.ops.Exec.ListTasks(ctx, &aurav1.ListTasksRequest{PageSize: 3, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.UnreachableNodes) > 0 {
			t.Fatalf("unreachable: %v", r.UnreachableNodes)
		}
		for _, tk := range r.Tasks {
			if seen[tk.Id] {
				t.Errorf("%s listed twice", tk.Id)
			}
			seen[tk.Id] = true
		}
		if token = r.NextPageToken; token == "" {
			break
		}
	}
	for id := range want {
		if !seen[id] {
			t.Errorf("%s not listed", id)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("listed %d tasks; the cluster has %d", len(seen), len(want))
	}
}

func TestClusterHandoffMovesWhatAnotherNodeCanRun(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	join := func(name string, data string, extra ...string) *daemon {
		return startNode(t, etcd, clusterNode{name: name, pool: []string{"phone-" + name}, data: data}, extra...)
	}
	a := join("a", "", "--cluster-handoff")
	b := join("b", "")
	ctx := ctxT(t, 2*time.Minute)
	waitFor(t, "a to see b", 30*time.Second, func() bool {
		st, err := a.client.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
		return err == nil && len(st.Nodes) == 2
	})
	// On a: one task holds the lock and a's phone; behind it one waits
	// for the lock (b has a lock of its own) and one for a's phone.
	holder := a.submit(ctx, holdFor(300000, "lock", "phone:phone-a"))
	waitFor(t, "the holder to run", 30*time.Second, func() bool {
		got, err := a.client.Exec.GetTask(ctx, &aurav1.GetTaskRequest{TaskId: holder})
		return err == nil && got.Status == aurav1.TaskStatus_TASK_STATUS_RUNNING
	})
	movable := a.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick", ResourceTags: []string{"lock"}, Labels: map[string]string{"kind": "movable"}, Priority: 3})
	staying := a.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick", ResourceTags: []string{"phone:phone-a"}})
	for _, id := range []string{movable, staying} {
		if !strings.HasPrefix(id, "a.") {
			t.Fatalf("%s: want a task of a", id)
		}
	}
	a.stop()

	// a, restarted without the handoff, tells where the movable task went.
	a = join("a", a.data)
	got, err := a.client.Exec.GetTask(ctx, &aurav1.GetTaskRequest{TaskId: movable})
	if err != nil {
		t.Fatal(err)
	}
	msg := got.GetError().GetMessage()
	newID, ok := strings.CutPrefix(msg, "handed off to node b as task ")
	newID, _, _ = strings.Cut(newID, " ")
	if got.Status != aurav1.TaskStatus_TASK_STATUS_CANCELLED || !ok || !strings.HasPrefix(newID, "b.") {
		t.Fatalf("the movable task on a: %v, %q; want CANCELLED naming its task on b", got.Status, msg)
	}
	moved, err := b.client.Wait(ctx, newID)
	if err != nil {
		t.Fatal(err)
	}
	if moved.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED || moved.Labels["kind"] != "movable" || moved.Priority != 3 {
		t.Errorf("the task on b: %v, labels %v, priority %d; want it SUCCEEDED with the same labels and priority", moved.Status, moved.Labels, moved.Priority)
	}
	// The task that needs a's phone waited for a, and runs there now.
	if st := a.wait(ctx, staying); st.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Errorf("the task for a's phone: %v; want it run on a after the restart", st.Status)
	}
	if st, _ := a.client.Exec.GetTask(ctx, &aurav1.GetTaskRequest{TaskId: holder}); st.GetStatus() != aurav1.TaskStatus_TASK_STATUS_INTERRUPTED {
		t.Errorf("the running task: %v; want INTERRUPTED (running tasks are never moved)", st.GetStatus())
	}
}

// nodeCert is a certificate a node serves with and presents to the other
// nodes: for 127.0.0.1, good for both ends of a TLS connection.
func (p *pki) nodeCert(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func TestClusterNodesCallEachOtherOverMutualTLS(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	dir := t.TempDir()
	ca := newCA(t, "aura cluster CA")
	tokens := writeFile(t, dir, "tokens.yaml", fmt.Appendf(nil, "tokens:\n  - {name: ops, sha256: %s, roles: [submit, read, cancel]}\nprincipals:\n  - {name: ops-cert, cert_subject: ops-cert, roles: [submit, read, cancel]}\n", auth.HashToken("ops")))
	caFile := writeFile(t, dir, "ca.pem", ca.pem)
	nodes := map[string]*daemon{}
	for _, name := range []string{"a", "b"} {
		cert, key := ca.nodeCert(t, "node-"+name)
		nodes[name] = startNode(t, etcd, clusterNode{name: name, pool: []string{"phone-" + name}},
			"--tls-cert", writeFile(t, dir, name+".pem", cert), "--tls-key", writeFile(t, dir, name+"-key.pem", key),
			"--client-ca", caFile, "--auth-tokens", tokens)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.pem)
	certPEM, keyPEM := ca.issue(t, "ops-cert", false, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	mtls := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	ctx := ctxT(t, time.Minute)

	// With a token: forwarded over TLS, the peer verified with --client-ca
	// and the node's own certificate presented to it.
	withToken := dialAs(t, nodes["a"].addr, client.WithTLS(mtls), client.WithToken("ops"))
	waitFor(t, "a to see b", 30*time.Second, func() bool {
		st, err := withToken.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
		return err == nil && len(st.Nodes) == 2 && len(st.UnreachableNodes) == 0
	})
	resp, err := withToken.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick", ResourceTags: []string{"phone:phone-b"}})
	if err != nil || !strings.HasPrefix(resp.GetTaskId(), "b.") {
		t.Fatalf("submit for b's phone through a: %v, %v", resp.GetTaskId(), err)
	}
	if done, err := withToken.Wait(ctx, resp.TaskId); err != nil || done.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("b's task through a: %v, %v", done.GetStatus(), err)
	}

	// Known by its certificate alone: not forwarded, and told where to go.
	certOnly := dialAs(t, nodes["a"].addr, client.WithTLS(mtls))
	_, err = certOnly.Exec.GetTask(ctx, &aurav1.GetTaskRequest{TaskId: resp.TaskId})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "call node b directly") {
		t.Errorf("a certificate identity through a: %v; want FAILED_PRECONDITION saying to call b", err)
	}
	direct := dialAs(t, nodes["b"].addr, client.WithTLS(mtls))
	if _, err := direct.Exec.GetTask(ctx, &aurav1.GetTaskRequest{TaskId: resp.TaskId}); err != nil {
		t.Errorf("the same certificate, directly on b: %v", err)
	}
}
