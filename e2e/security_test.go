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
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/client"
	"github.com/aura-dev/aura/internal/auth"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

var securityRoles = []string{"submit", "read", "cancel", "hooks", "admin"}

// writeTokens writes a tokens file holding, for every role R, a token
// "tok-R" with only R and a token "tok-no-R" with every other role; "ops"
// with every role; "demo-only" with every role but limited to plan demo.
func writeTokens(t *testing.T, extra string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("tokens:\n")
	for _, r := range securityRoles {
		var others []string
		for _, o := range securityRoles {
			if o != r {
				others = append(others, o)
			}
		}
		fmt.Fprintf(&b, "  - {name: only-%s, sha256: %s, roles: [%s]}\n", r, auth.HashToken("tok-"+r), r)
		fmt.Fprintf(&b, "  - {name: all-but-%s, sha256: %s, roles: [%s]}\n", r, auth.HashToken("tok-no-"+r), strings.Join(others, ", "))
	}
	fmt.Fprintf(&b, "  - {name: ops, sha256: %s, roles: [%s]}\n", auth.HashToken("ops"), strings.Join(securityRoles, ", "))
	fmt.Fprintf(&b, "  - {name: demo-only, sha256: %s, roles: [%s], plans: [demo]}\n", auth.HashToken("demo-only"), strings.Join(securityRoles, ", "))
	b.WriteString(extra)
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func dialAs(t *testing.T, addr string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.Dial(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestSecurityEachRoleIsDeniedWhatItLacks(t *testing.T) {
	tokensFile := writeTokens(t, "")
	d := startDaemon(t, daemonOpts{args: []string{"--auth-tokens", tokensFile}})
	ctx := ctxT(t, 60*time.Second)
	ops := dialAs(t, d.addr, client.WithToken("ops"))
	resp, err := ops.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"})
	if err != nil {
		t.Fatalf("ops Submit: %v", err)
	}
	if task, err := ops.Wait(ctx, resp.TaskId); err != nil || task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("ops task: %v %v", task.GetStatus(), err)
	}
	id := resp.TaskId
	zero := uint64(0)

	calls := []struct {
		method, role string
		call         func(ctx context.Context, c *client.Client) error
	}{
		{"Submit", "submit", func(ctx context.Context, c *client.Client) error {
			_, err := c.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"})
			return err
		}},
		{"SubmitStream", "submit", func(ctx context.Context, c *client.Client) error {
			s, err := c.Exec.SubmitStream(ctx)
			if err != nil {
				return err
			}
			// A stream the server has ended refuses the Send with io.EOF;
			// its status comes with the Recv.
			if err := s.Send(&aurav1.SubmitRequest{Task: "e2e/quick"}); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			r, err := s.Recv()
			if err != nil {
				return err
			}
			if e := r.GetError(); e != nil {
				return status.Error(codes.Code(e.Code), e.Message)
			}
			return s.CloseSend()
		}},
		{"Stream", "read", func(ctx context.Context, c *client.Client) error {
			s, err := c.Exec.Stream(ctx, &aurav1.StreamRequest{TaskId: id})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}},
		{"GetTask", "read", func(ctx context.Context, c *client.Client) error {
			_, err := c.Get(ctx, id)
			return err
		}},
		{"ListTasks", "read", func(ctx context.Context, c *client.Client) error {
			_, err := c.Exec.ListTasks(ctx, &aurav1.ListTasksRequest{})
			return err
		}},
		{"ListPlans", "read", func(ctx context.Context, c *client.Client) error {
			_, err := c.Exec.ListPlans(ctx, &aurav1.ListPlansRequest{})
			return err
		}},
		{"GetStats", "read", func(ctx context.Context, c *client.Client) error {
			_, err := c.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
			return err
		}},
		{"ListResources", "read", func(ctx context.Context, c *client.Client) error {
			_, err := c.Exec.ListResources(ctx, &aurav1.ListResourcesRequest{})
			return err
		}},
		{"CancelTask", "cancel", func(ctx context.Context, c *client.Client) error {
			_, err := c.Exec.CancelTask(ctx, &aurav1.CancelTaskRequest{TaskId: id, Reason: "role test"})
			return err
		}},
		{"ReloadPlans", "admin", func(ctx context.Context, c *client.Client) error {
			_, err := c.Exec.ReloadPlans(ctx, &aurav1.ReloadPlansRequest{})
			return err
		}},
		{"Subscribe", "hooks", func(ctx context.Context, c *client.Client) error {
			s, err := c.Hooks.Subscribe(ctx, &aurav1.SubscribeRequest{AfterSequence: &zero})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}},
		{"Intercept", "hooks", func(ctx context.Context, c *client.Client) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			s, err := c.Hooks.Intercept(ctx)
			if err != nil {
				return err
			}
			reg := &aurav1.InterceptRegistration{Name: "role-test", Plan: "demo"}
			if err := s.Send(&aurav1.InterceptReply{Msg: &aurav1.InterceptReply_Register{Register: reg}}); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			// Accepted once the daemon counts it; refused: Recv says why.
			refused := make(chan error, 1)
			go func() {
				_, err := s.Recv()
				refused <- err
			}()
			deadline := time.After(10 * time.Second)
			for {
				st, err := ops.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
				if err != nil {
					return err
				}
				if st.Interceptors > 0 {
					cancel()
					<-refused
					// Gone again before the next call registers one.
					for gone := time.Now().Add(10 * time.Second); time.Now().Before(gone); time.Sleep(10 * time.Millisecond) {
						st, err := ops.Exec.GetStats(context.Background(), &aurav1.GetStatsRequest{})
						if err == nil && st.Interceptors == 0 {
							return nil
						}
					}
					return errors.New("the interceptor stayed registered after its stream ended")
				}
				select {
				case err := <-refused:
					return err
				case <-deadline:
					return errors.New("interceptor neither accepted nor refused")
				case <-time.After(20 * time.Millisecond):
				}
			}
		}},
	}
	for _, c := range calls {
		t.Run(c.method, func(t *testing.T) {
			with := dialAs(t, d.addr, client.WithToken("tok-"+c.role))
			if err := c.call(ctx, with); err != nil {
				t.Errorf("with only role %s: %v", c.role, err)
			}
			without := dialAs(t, d.addr, client.WithToken("tok-no-"+c.role))
			err := c.call(ctx, without)
			if status.Code(err) != codes.PermissionDenied || status.Convert(err).Message() != "permission denied" {
				t.Errorf("with every role but %s: %v; want PermissionDenied with no detail", c.role, err)
			}
		})
	}

	t.Run("wrong or missing token", func(t *testing.T) {
		var msgs []string
		for _, c := range []*client.Client{d.client, dialAs(t, d.addr, client.WithToken("not-a-token")), dialAs(t, d.addr, client.WithToken(auth.HashToken("ops")))} {
			_, err := c.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
			if status.Code(err) != codes.Unauthenticated {
				t.Fatalf("GetStats: %v; want Unauthenticated", err)
			}
			msgs = append(msgs, status.Convert(err).Message())
		}
		if msgs[0] != msgs[1] || msgs[1] != msgs[2] {
			t.Fatalf("refusals differ: %q", msgs)
		}
		if !strings.Contains(d.logs(), "unknown bearer token") || strings.Contains(d.logs(), "not-a-token") {
			t.Fatalf("the refusal should be logged without the token itself:\n%s", d.logs())
		}
	})

	t.Run("health and reflection open by default", func(t *testing.T) {
		if _, err := grpc_health_v1.NewHealthClient(d.client.Conn()).Check(ctx, &grpc_health_v1.HealthCheckRequest{}); err != nil {
			t.Fatalf("health without a token: %v", err)
		}
		s, err := rpb.NewServerReflectionClient(d.client.Conn()).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatalf("reflection without a token: %v", err)
		}
		_ = s.CloseSend()
	})

	t.Run("plan allowlist", func(t *testing.T) {
		demo := dialAs(t, d.addr, client.WithToken("demo-only"))
		if _, err := demo.Submit(ctx, &aurav1.SubmitRequest{Task: "demo/hello"}); err != nil {
			t.Fatalf("Submit demo/hello: %v", err)
		}
		if _, err := demo.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("Submit e2e/quick: %v; want PermissionDenied", err)
		}
		if _, err := demo.Get(ctx, id); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("GetTask of an e2e task: %v; want PermissionDenied", err)
		}
		if _, err := demo.Exec.CancelTask(ctx, &aurav1.CancelTaskRequest{TaskId: id}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("CancelTask of an e2e task: %v; want PermissionDenied", err)
		}
	})

	t.Run("SubmitStream answers invalid requests in place", func(t *testing.T) {
		s, err := ops.Exec.SubmitStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, tags := range [][]string{nil, {"device:0"}, nil} {
			if err := s.Send(&aurav1.SubmitRequest{Task: "e2e/quick", ResourceTags: tags}); err != nil {
				t.Fatal(err)
			}
		}
		_ = s.CloseSend()
		var got []string
		for {
			r, err := s.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if e := r.GetError(); e != nil {
				got = append(got, codes.Code(e.Code).String()+" "+e.Message)
			} else {
				got = append(got, "ok")
			}
		}
		if len(got) != 3 || got[0] != "ok" || !strings.HasPrefix(got[1], "InvalidArgument resource_tags[0]:") || got[2] != "ok" {
			t.Fatalf("responses %q; want ok, InvalidArgument naming resource_tags[0], ok", got)
		}
	})

	t.Run("SIGHUP reloads the tokens file", func(t *testing.T) {
		c := dialAs(t, d.addr, client.WithToken("tok-read"))
		if _, err := c.Exec.GetStats(ctx, &aurav1.GetStatsRequest{}); err != nil {
			t.Fatalf("before the reload: %v", err)
		}
		b, err := os.ReadFile(tokensFile)
		if err != nil {
			t.Fatal(err)
		}
		revoked := strings.ReplaceAll(string(b), auth.HashToken("tok-read"), auth.HashToken("tok-read-2"))
		if err := os.WriteFile(tokensFile, []byte(revoked), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the old token to be refused", 10*time.Second, func() bool {
			_, err := c.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
			return status.Code(err) == codes.Unauthenticated
		})
		if _, err := dialAs(t, d.addr, client.WithToken("tok-read-2")).Exec.GetStats(ctx, &aurav1.GetStatsRequest{}); err != nil {
			t.Fatalf("the new token after the reload: %v", err)
		}
	})

	t.Run("auractl token file", func(t *testing.T) {
		tokenFile := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(tokenFile, []byte("ops\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, code := auractl(t, d, "--token-file", tokenFile, "stats"); code != 0 {
			t.Fatalf("auractl --token-file stats: exit %d\n%s", code, out)
		}
		if out, code := auractl(t, d, "stats"); code == 0 || !strings.Contains(strings.ToLower(out), "unauthenticated") {
			t.Fatalf("auractl stats without a token: exit %d\n%s", code, out)
		}
	})
}

// pki is a throwaway certificate authority.
type pki struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serial int64 = 1

func newCA(t *testing.T, cn string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &pki{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue signs a leaf certificate; server ones are for 127.0.0.1.
func (p *pki) issue(t *testing.T, cn string, server bool, notBefore, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
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

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSecurityTLSAndClientCertificates(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "aura test CA")
	now := time.Now()
	srvCert, srvKey := ca.issue(t, "aurad", true, now.Add(-time.Hour), now.Add(time.Hour))
	tokens := writeTokens(t, "principals:\n  - {name: ci, cert_subject: ci-runner, roles: [submit, read]}\n")
	d := startDaemon(t, daemonOpts{args: []string{
		"--tls-cert", writeFile(t, dir, "server.pem", srvCert), "--tls-key", writeFile(t, dir, "server-key.pem", srvKey),
		"--client-ca", writeFile(t, dir, "ca.pem", ca.pem), "--auth-tokens", tokens,
	}})
	ctx := ctxT(t, 60*time.Second)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.pem)
	tlsWith := func(certPEM, keyPEM []byte) *tls.Config {
		cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if certPEM != nil {
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		return cfg
	}

	t.Run("client certificate maps to its principal", func(t *testing.T) {
		cert, key := ca.issue(t, "ci-runner", false, now.Add(-time.Hour), now.Add(time.Hour))
		c := dialAs(t, d.addr, client.WithTLS(tlsWith(cert, key)))
		resp, err := c.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"})
		if err != nil {
			t.Fatalf("Submit over mTLS: %v", err)
		}
		if task, err := c.Wait(ctx, resp.TaskId); err != nil || task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
			t.Fatalf("task: %v %v", task.GetStatus(), err)
		}
		// ci holds submit and read only.
		if _, err := c.Exec.CancelTask(ctx, &aurav1.CancelTaskRequest{TaskId: resp.TaskId}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("CancelTask as ci: %v; want PermissionDenied", err)
		}
	})

	t.Run("auractl connects with --tls-ca, --tls-cert and --tls-key", func(t *testing.T) {
		cert, key := ca.issue(t, "ci-runner", false, now.Add(-time.Hour), now.Add(time.Hour))
		out, code := auractl(t, d, "--tls-ca", filepath.Join(dir, "ca.pem"),
			"--tls-cert", writeFile(t, dir, "ci.pem", cert), "--tls-key", writeFile(t, dir, "ci-key.pem", key),
			"submit", "e2e/quick", "--wait")
		if code != 0 || !strings.Contains(out, "SUCCEEDED") {
			t.Fatalf("auractl over mTLS: exit %d\n%s", code, out)
		}
		if out, code := auractl(t, d, "submit", "e2e/quick"); code == 0 {
			t.Fatalf("auractl in plaintext to a TLS port succeeded:\n%s", out)
		}
	})

	t.Run("a token over mTLS wins over the certificate", func(t *testing.T) {
		cert, key := ca.issue(t, "ci-runner", false, now.Add(-time.Hour), now.Add(time.Hour))
		c := dialAs(t, d.addr, client.WithTLS(tlsWith(cert, key)), client.WithToken("tok-cancel"))
		if _, err := c.Exec.GetStats(ctx, &aurav1.GetStatsRequest{}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("GetStats with a cancel-only token: %v; want PermissionDenied", err)
		}
	})

	t.Run("a valid certificate of no principal is unauthenticated", func(t *testing.T) {
		cert, key := ca.issue(t, "stranger", false, now.Add(-time.Hour), now.Add(time.Hour))
		c := dialAs(t, d.addr, client.WithTLS(tlsWith(cert, key)))
		if _, err := c.Exec.GetStats(ctx, &aurav1.GetStatsRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("GetStats as stranger: %v; want Unauthenticated", err)
		}
	})

	refused := map[string]*client.Client{}
	expired, expiredKey := ca.issue(t, "ci-runner", false, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	refused["expired client certificate"] = dialAs(t, d.addr, client.WithTLS(tlsWith(expired, expiredKey)))
	refused["no client certificate"] = dialAs(t, d.addr, client.WithTLS(tlsWith(nil, nil)), client.WithToken("ops"))
	other := newCA(t, "someone else's CA")
	foreign, foreignKey := other.issue(t, "ci-runner", false, now.Add(-time.Hour), now.Add(time.Hour))
	refused["certificate from another CA"] = dialAs(t, d.addr, client.WithTLS(tlsWith(foreign, foreignKey)))
	refused["plaintext client"] = dialAs(t, d.addr, client.WithToken("ops"))
	for what, c := range refused {
		t.Run(what, func(t *testing.T) {
			_, err := c.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
			if code := status.Code(err); code != codes.Unavailable {
				t.Fatalf("GetStats: %v; want the connection refused (Unavailable)", err)
			}
		})
	}
}

func TestSecurityPlanSandboxFromOutside(t *testing.T) {
	d := startDaemon(t, daemonOpts{plans: []string{"testdata/plans/sandbox"}})
	ctx := ctxT(t, 90*time.Second)
	planDir := filepath.Join(d.plans, "sandbox")
	// Secrets outside the plan: next to it, in a sibling sharing its name
	// as a prefix, and reachable through a symlink planted inside it.
	outside := filepath.Join(d.plans, "secret.txt")
	sibling := filepath.Join(d.plans, "sandbox-evil")
	for _, p := range []string{outside, filepath.Join(sibling, "secret.txt")} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("TOP SECRET\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The plan's workspace gets the same trap: reads look there first, and
	// writes and exec's dir only go there.
	workspace := filepath.Join(d.data, "work", "sandbox")
	if err := os.MkdirAll(workspace, 0o750); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{planDir, workspace} {
		if err := os.Symlink(d.plans, filepath.Join(dir, "escape")); err != nil {
			t.Fatal(err)
		}
	}

	run := func(t *testing.T, task string, mode aurav1.ExecutionMode, inputs map[string]any) *aurav1.Task {
		t.Helper()
		in, err := structpb.NewStruct(inputs)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := d.client.Submit(ctx, &aurav1.SubmitRequest{Task: task, Inputs: in, ExecutionMode: mode})
		if err != nil {
			t.Fatalf("Submit %s %v: %v", task, inputs, err)
		}
		return d.wait(ctx, resp.TaskId)
	}
	for _, dir := range []string{planDir, workspace} {
		if err := os.WriteFile(filepath.Join(dir, "secret.txt"), []byte("the plan's own\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Each probe takes a path (or a directory) from its inputs; inside is a
	// control that must work, so a refusal below is the sandbox's doing.
	probes := []struct{ task, input, inside string }{
		{"sandbox/read", "path", "inside.txt"},
		{"sandbox/write", "path", "written.txt"},
		{"sandbox/delete", "path", "written.txt"},
		{"sandbox/list", "path", "."},
		{"sandbox/exec_in", "dir", "."},
	}
	escapes := []string{"../secret.txt", outside, "escape/secret.txt", "../sandbox-evil/secret.txt", "escape/sandbox-evil/secret.txt", "./../secret.txt", "tasks/../../secret.txt"}
	for _, mode := range []aurav1.ExecutionMode{aurav1.ExecutionMode_EXECUTION_MODE_IO, aurav1.ExecutionMode_EXECUTION_MODE_CPU} {
		t.Run(mode.String(), func(t *testing.T) {
			for _, probe := range probes {
				if task := run(t, probe.task, mode, map[string]any{probe.input: probe.inside}); task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
					t.Fatalf("control %s %s=%q: %v %v", probe.task, probe.input, probe.inside, task.Status, task.Error)
				}
				for _, p := range escapes {
					in := p
					if probe.input == "dir" || probe.task == "sandbox/list" {
						in = filepath.Dir(p) // a directory outside
					}
					task := run(t, probe.task, mode, map[string]any{probe.input: in})
					if task.Status != aurav1.TaskStatus_TASK_STATUS_FAILED {
						t.Errorf("%s %s=%q: %v, result %v; want FAILED", probe.task, probe.input, in, task.Status, task.Result)
					}
					if strings.Contains(task.Result.String()+task.Error.String(), "TOP SECRET") {
						t.Errorf("%s %s=%q leaked the secret", probe.task, probe.input, in)
					}
				}
			}
		})
	}
	for _, p := range []string{outside, filepath.Join(sibling, "secret.txt")} {
		b, err := os.ReadFile(p)
		if err != nil || string(b) != "TOP SECRET\n" {
			t.Errorf("%s was changed or removed: %q, %v", p, b, err)
		}
	}
	if _, err := os.Stat(filepath.Join(d.plans, "escape")); !os.IsNotExist(err) {
		t.Errorf("a task wrote through the symlink into %s", d.plans)
	}
	for _, dir := range []string{planDir, workspace} {
		if fi, err := os.Lstat(filepath.Join(dir, "escape")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("the planted symlink in %s was replaced or removed: %v", dir, err)
		}
	}
}

func TestSecurityRunAsUserDropsPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: --run-as-user only switches users when aurad runs as root")
	}
	d := startDaemon(t, daemonOpts{plans: []string{"testdata/plans/sandbox"}, args: []string{"--run-as-user", "nobody"}})
	// The unprivileged child must be able to enter the plan directory.
	for p := d.plans; p != filepath.Dir(p) && strings.HasPrefix(p, os.TempDir()+"/"); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx := ctxT(t, 60*time.Second)
	// On the CPU lane aurad's worker passes the credential to its exec
	// children; on the IO lane aurad does.
	for _, mode := range []aurav1.ExecutionMode{aurav1.ExecutionMode_EXECUTION_MODE_CPU, aurav1.ExecutionMode_EXECUTION_MODE_IO} {
		task := d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "sandbox/whoami", ExecutionMode: mode}))
		if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED || task.Result.GetStringValue() != "65534" {
			t.Fatalf("whoami on %s: %v %v, uid %q; want 65534 (nobody)", mode, task.Status, task.Error, task.Result.GetStringValue())
		}
	}
}

// rawCodec sends arbitrary bytes as a gRPC message body.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// rssKiB is pid's resident memory now, in KiB.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	return procKiB(t, pid, "VmRSS")
}

// procKiB reads one of /proc/<pid>/status's kB figures (VmRSS, VmHWM).
func procKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

func TestSecurityGarbageLeavesTheDaemonServing(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	ctx := ctxT(t, 60*time.Second)
	// Warm up, so the baseline includes what serving normally costs.
	d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"}))
	before := rssKiB(t, d.cmd.Process.Pid)

	const rawConns, preludeConns, calls = 3000, 2000, 5000 // 10,000 in all
	preface := []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	var wg sync.WaitGroup
	jobs := make(chan int)
	var sent sync.Map
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(w), 7))
			for i := range jobs {
				conn, err := net.DialTimeout("tcp", d.addr, 5*time.Second)
				if err != nil {
					sent.Store(i, err)
					continue
				}
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				junk := make([]byte, rng.IntN(2048)+1)
				for j := range junk {
					junk[j] = byte(rng.Uint32())
				}
				if i >= rawConns {
					// A valid HTTP/2 preface, then garbage frames.
					junk = append(append([]byte(nil), preface...), junk...)
				}
				_, _ = conn.Write(junk)
				conn.Close()
			}
		}()
	}
	for i := range rawConns + preludeConns {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	sent.Range(func(k, v any) bool {
		t.Errorf("connection %v: %v", k, v)
		return false
	})

	// Malformed protobuf over well-formed gRPC, on a few connections.
	methods := []string{
		aurav1.ExecutionService_Submit_FullMethodName, aurav1.ExecutionService_GetTask_FullMethodName,
		aurav1.ExecutionService_ListTasks_FullMethodName, aurav1.ExecutionService_CancelTask_FullMethodName,
		aurav1.HookService_Subscribe_FullMethodName,
	}
	var codesSeen sync.Map
	work := make(chan int)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := grpc.NewClient("passthrough:///"+d.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			rng := mrand.New(mrand.NewPCG(uint64(w), 11))
			for i := range work {
				junk := make([]byte, rng.IntN(512))
				for j := range junk {
					junk[j] = byte(rng.Uint32())
				}
				method := methods[i%len(methods)]
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				var err error
				if method == aurav1.HookService_Subscribe_FullMethodName {
					var s grpc.ClientStream
					s, err = conn.NewStream(cctx, &grpc.StreamDesc{ServerStreams: true}, method)
					if err == nil {
						if err = s.SendMsg(&junk); err == nil {
							_ = s.CloseSend()
							var out []byte
							err = s.RecvMsg(&out)
						}
					}
				} else {
					var out []byte
					err = conn.Invoke(cctx, method, &junk, &out)
				}
				cancel()
				codesSeen.Store(status.Code(err), true)
			}
		}()
	}
	for i := range calls {
		work <- i
	}
	close(work)
	wg.Wait()
	if _, ok := codesSeen.Load(codes.Unavailable); ok {
		t.Errorf("some calls found the daemon unavailable")
	}

	// Still serving, still correct.
	task := d.wait(ctx, d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/echo", Inputs: mustStruct(t, map[string]any{"n": 7})}))
	if task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("task after the garbage: %v %v", task.Status, task.Error)
	}
	select {
	case <-d.exited:
		t.Fatalf("aurad exited: %v", d.exitErr)
	default:
	}
	after := rssKiB(t, d.cmd.Process.Pid)
	t.Logf("aurad RSS before %d KiB, after 10,000 garbage requests %d KiB", before, after)
	if after > before+256*1024 {
		t.Fatalf("RSS grew from %d KiB to %d KiB: more than 256 MiB for garbage", before, after)
	}
}

func TestSecurityUnixSocketModeAndGroup(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "aurad.sock")
	args := []string{"--listen", "unix://" + sock}
	wantGID := -1
	if os.Geteuid() == 0 {
		if g, err := user.LookupGroup("daemon"); err == nil {
			args = append(args, "--socket-group", "daemon")
			wantGID, _ = strconv.Atoi(g.Gid)
		}
	}
	startDaemon(t, daemonOpts{args: args})
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v; want a socket with 0660", fi.Mode())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); wantGID >= 0 && (!ok || int(st.Gid) != wantGID) {
		t.Fatalf("socket group %v; want gid %d (--socket-group daemon)", fi.Sys(), wantGID)
	}
	ctx := ctxT(t, 30*time.Second)
	c := dialAs(t, "unix://"+sock)
	resp, err := c.Submit(ctx, &aurav1.SubmitRequest{Task: "e2e/quick"})
	if err != nil {
		t.Fatalf("Submit over the socket: %v", err)
	}
	if task, err := c.Wait(ctx, resp.TaskId); err != nil || task.Status != aurav1.TaskStatus_TASK_STATUS_SUCCEEDED {
		t.Fatalf("task over the socket: %v %v", task.GetStatus(), err)
	}
}
