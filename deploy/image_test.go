package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

// dockerfileFacts are what the compose file must agree with.
func dockerfileFacts(t *testing.T) (expose map[string]bool, volumes []string) {
	t.Helper()
	expose = map[string]bool{}
	for _, in := range parseDockerfile(readFile(t, "Dockerfile")) {
		switch in.cmd {
		case "EXPOSE":
			for _, p := range strings.Fields(in.args) {
				expose[strings.TrimSuffix(p, "/tcp")] = true
			}
		case "VOLUME":
			var v []string
			if err := yaml.Unmarshal([]byte(in.args), &v); err != nil {
				t.Fatalf("VOLUME %s: %v", in.args, err)
			}
			volumes = append(volumes, v...)
		}
	}
	return expose, volumes
}

func TestComposeFile(t *testing.T) {
	const path = "compose.yaml"
	doc := yamlDocs(t, path)[0]
	checkComposeService(t, path, doc, "aurad")
	composeConfig(t, path)
}

// TestClusterComposeFile checks each node of the three-node Compose file
// as the single one is checked, and what makes them a cluster: distinct
// node names, each advertising the address the others reach it at, and
// every one pointed at every etcd member the file runs.
func TestClusterComposeFile(t *testing.T) {
	const path = "compose-cluster.yaml"
	doc := yamlDocs(t, path)[0]
	services, _ := get(doc, "services").(map[string]any)
	var etcd []string
	for name := range services {
		if strings.HasPrefix(name, "etcd") {
			etcd = append(etcd, "http://"+name+":2379")
		}
	}
	slices.Sort(etcd)
	if len(etcd) < 3 {
		t.Errorf("%d etcd members: a cluster that survives losing one needs 3", len(etcd))
	}
	nodes := map[string]bool{}
	for name := range services {
		if !strings.HasPrefix(name, "aurad") {
			continue
		}
		args := checkComposeService(t, path, doc, name)
		node, _ := flagValue(args, "node")
		if node == "" || nodes[node] {
			t.Errorf("%s: --node=%q is missing or not unique", name, node)
		}
		nodes[node] = true
		if adv, _ := flagValue(args, "advertise"); adv != name+":7070" {
			t.Errorf("%s: --advertise=%s, want %s:7070 (its name on the Compose network)", name, adv, name)
		}
		if eps, _ := flagValue(args, "cluster-etcd"); eps != strings.Join(etcd, ",") {
			t.Errorf("%s: --cluster-etcd=%s, want every etcd member: %s", name, eps, strings.Join(etcd, ","))
		}
	}
	if len(nodes) != 3 {
		t.Errorf("%d aurad nodes, want 3", len(nodes))
	}
	composeConfig(t, path)
}

// checkComposeService checks one aurad service of a Compose file and
// returns its command.
func checkComposeService(t *testing.T, path string, doc map[string]any, name string) []string {
	t.Helper()
	svc := get(doc, "services", name)
	if svc == nil {
		t.Fatalf("%s: no services.%s", path, name)
	}

	// It builds the Dockerfile from the repository root.
	ctx, df := fmt.Sprint(get(svc, "build", "context")), fmt.Sprint(get(svc, "build", "dockerfile"))
	if _, err := os.Stat(filepath.Join(ctx, df)); err != nil {
		t.Errorf("build: context %s, dockerfile %s: %v", ctx, df, err)
	}
	if _, err := os.Stat(filepath.Join(ctx, "go.mod")); err != nil {
		t.Errorf("build context %s is not the repository root: %v", ctx, err)
	}
	if plans := get(svc, "build", "args", "PLANS"); plans != nil {
		if _, err := os.Stat(filepath.Join(ctx, fmt.Sprint(plans))); err != nil {
			t.Errorf("build arg PLANS=%v: %v", plans, err)
		}
	}

	// The command is aurad serve with flags aurad has.
	args := strs(get(svc, "command"))
	if len(args) == 0 || args[0] != "serve" {
		t.Fatalf("command %v: want [serve, ...] (the image's entrypoint is aurad)", args)
	}
	flags := serveFlags(t)
	refs := argRefs("compose command", args[1:])
	for k := range labels(get(svc, "environment")) {
		refs = append(refs, envRefs("compose environment", k)...)
	}
	refs = append(refs, proseRefs(path, comments(readFile(t, path)))...)
	checkRefs(t, flags, refs)

	// Plaintext off loopback is only acceptable because the published
	// ports are bound to the host's loopback.
	insecure := containsArg(args, "--insecure-listen-remote")
	expose, volumes := dockerfileFacts(t)
	ports := strs(get(svc, "ports"))
	if len(ports) == 0 {
		t.Error("no ports published")
	}
	for _, p := range ports {
		parts := strings.Split(p, ":")
		container := parts[len(parts)-1]
		if !expose[container] {
			t.Errorf("port %s: the image does not EXPOSE %s", p, container)
		}
		if insecure && (len(parts) != 3 || !strings.HasPrefix(parts[0], "127.")) {
			t.Errorf("port %s: with --insecure-listen-remote, publish on the host's loopback only (127.0.0.1:HOST:CONTAINER)", p)
		}
	}

	// The data directory is a named volume.
	mounted := false
	for _, v := range strs(get(svc, "volumes")) {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && len(volumes) > 0 && parts[1] == volumes[0] && hasKey(get(doc, "volumes"), parts[0]) {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("no named volume (declared under top-level volumes) is mounted at the image's data volume %v", volumes)
	}

	// A stop gives aurad time to drain before SIGKILL.
	grace := durationFlag(t, args, "shutdown-grace", 30*time.Second) + durationFlag(t, args, "kill-grace", 5*time.Second)
	stop, err := time.ParseDuration(fmt.Sprint(get(svc, "stop_grace_period")))
	if err != nil || stop <= grace {
		t.Errorf("stop_grace_period %v must be longer than shutdown-grace + kill-grace (%s)", get(svc, "stop_grace_period"), grace)
	}
	return args
}

// composeConfig asks Docker Compose's own verdict on path, when an
// engine-less docker has the compose plugin (config needs no engine).
func composeConfig(t *testing.T, path string) {
	t.Helper()
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Log("docker is not installed: docker compose config not checked")
		return
	}
	if err := exec.Command(docker, "compose", "version").Run(); err != nil {
		t.Log("docker has no compose plugin: docker compose config not checked")
		return
	}
	if out, err := exec.Command(docker, "compose", "-f", path, "config", "-q").CombinedOutput(); err != nil {
		t.Errorf("docker compose config: %v\n%s", err, out)
	}
}

func containsArg(args []string, a string) bool {
	for _, x := range args {
		if x == a {
			return true
		}
	}
	return false
}

func hasKey(v any, k string) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	_, ok = m[k]
	return ok
}

// TestImageRunsExamplePlans builds the image with `make image` and runs the
// example plans' exec steps in it, as the image's non-root user. It needs a
// Docker engine; without one it is skipped, saying why.
func TestImageRunsExamplePlans(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: building the image takes minutes")
	}
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("docker is not installed: the image is not built here (TestDockerfile and TestComposeFile check the files)")
	}
	if out, err := exec.Command(docker, "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("docker is installed but no Docker engine answers (%s): the image is not built here (TestDockerfile and TestComposeFile check the files)",
			strings.TrimSpace(firstLine(string(out))))
	}
	tag := fmt.Sprintf("aurad-test:%d", time.Now().UnixNano())
	build := exec.Command("make", "image", "IMAGE="+tag)
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(docker, "rmi", "-f", tag).Run() })

	name := strings.ReplaceAll(strings.TrimPrefix(tag, "aurad-test:"), ":", "-")
	name = "aurad-test-" + name
	if out, err := exec.Command(docker, "run", "-d", "--name", name, tag, "serve", "--insecure-listen-remote").CombinedOutput(); err != nil {
		t.Fatalf("docker run: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command(docker, "logs", name).CombinedOutput()
			t.Logf("container log:\n%s", out)
		}
		_ = exec.Command(docker, "rm", "-f", name).Run()
	})
	inContainer := func(args ...string) (string, error) {
		out, err := exec.Command(docker, append([]string{"exec", name}, args...)...).CombinedOutput()
		return string(out), err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, err := inContainer("auractl", "--addr", "127.0.0.1:7070", "stats")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("aurad in the container did not answer within 2 minutes: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if out, err := inContainer("id", "-u"); err != nil || strings.TrimSpace(out) == "0" {
		t.Errorf("the container runs as uid %q (%v), want non-root", strings.TrimSpace(out), err)
	}
	// demo/hello runs echo; stateful/play runs its checks and transitions
	// (test, mkdir, touch, sh) first: both need the image's userland.
	out, err := inContainer("auractl", "--addr", "127.0.0.1:7070", "submit", "demo/hello", "--input", "name=image", "--wait", "-o", "json")
	if err != nil || !strings.Contains(out, "hello, image") {
		t.Errorf("demo/hello in the image: %v\n%s", err, out)
	}
	if out, err := inContainer("auractl", "--addr", "127.0.0.1:7070", "submit", "stateful/play", "--wait"); err != nil {
		t.Errorf("stateful/play in the image: %v\n%s", err, out)
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}
