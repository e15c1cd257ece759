package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/aura-dev/aura/internal/testbin"
)

// aurad is the daemon binary built for these tests.
var aurad string

func TestMain(m *testing.M) {
	testbin.Main(m, map[string]*string{"../cmd/aurad": &aurad})
}

var helpFlagRE = regexp.MustCompile(`(?m)^\s+(?:-[a-zA-Z], )?--([a-z0-9][a-z0-9-]*)`)

// serveFlags returns the flags `aurad serve --help` lists.
func serveFlags(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command(aurad, "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("aurad serve --help: %v\n%s", err, out)
	}
	flags := map[string]bool{}
	for _, m := range helpFlagRE.FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if !flags["listen"] || !flags["data"] {
		t.Fatalf("could not read the flags from aurad serve --help:\n%s", out)
	}
	return flags
}

// A flag reference: where it was found, and the flag's name.
type flagRef struct{ where, name string }

var (
	argFlagRE = regexp.MustCompile(`^--([a-z0-9][a-z0-9-]*)(?:=.*)?$`)
	envFlagRE = regexp.MustCompile(`\bAURA_([A-Z0-9_]+)\b`)
	// Any --flag in prose (comments, descriptions).
	proseFlagRE = regexp.MustCompile(`(?:^|[\s(\x60"'/])--([a-z][a-z0-9-]*[a-z0-9])`)
)

// Flags of other programs that the deploy files mention in comments.
var foreignFlags = map[string]bool{
	"build-arg": true, "always": true, // docker build, git describe
	"now":  true,                                             // systemctl enable --now
	"addr": true, "plan": true, "status": true, "wait": true, // auractl
	"build":   true, // docker compose up --build
	"cluster": true, // auractl hooks tail --cluster
}

// Variables that are not aurad flags.
var foreignEnv = map[string]string{"ADDR": "auractl", "TOKEN": "auractl"}

func argRefs(where string, args []string) []flagRef {
	var refs []flagRef
	for _, a := range args {
		if m := argFlagRE.FindStringSubmatch(a); m != nil {
			refs = append(refs, flagRef{where, m[1]})
		}
	}
	return refs
}

// envRefs finds AURA_* names in s: every one is an aurad flag.
func envRefs(where, s string) []flagRef {
	var refs []flagRef
	for _, m := range envFlagRE.FindAllStringSubmatch(s, -1) {
		if _, ok := foreignEnv[m[1]]; ok {
			continue
		}
		refs = append(refs, flagRef{where + " (AURA_" + m[1] + ")", strings.ReplaceAll(strings.ToLower(m[1]), "_", "-")})
	}
	return refs
}

// proseRefs finds --flags mentioned in comments.
func proseRefs(where, s string) []flagRef {
	var refs []flagRef
	for _, m := range proseFlagRE.FindAllStringSubmatch(s, -1) {
		if !foreignFlags[m[1]] {
			refs = append(refs, flagRef{where + " (comment)", m[1]})
		}
	}
	return refs
}

func checkRefs(t *testing.T, flags map[string]bool, refs []flagRef) {
	t.Helper()
	if len(refs) == 0 {
		t.Fatal("found no flag references at all: the parser is broken")
	}
	for _, r := range refs {
		if !flags[r.name] {
			t.Errorf("%s: aurad serve has no flag --%s", r.where, r.name)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// yamlDocs parses every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader([]byte(readFile(t, path))))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no YAML documents", path)
	}
	return docs
}

func yamlFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no YAML files under deploy/")
	}
	return files
}

// get walks a parsed YAML value by keys and list indices.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func strs(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, x := range l {
			out = append(out, fmt.Sprint(x))
		}
	}
	return out
}

func labels(v any) map[string]string {
	out := map[string]string{}
	if m, ok := v.(map[string]any); ok {
		for k, x := range m {
			out[k] = fmt.Sprint(x)
		}
	}
	return out
}

// selects reports whether a label selector (matchLabels) picks labels.
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false // an empty selector matches every pod: never what we mean
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestEveryYAMLFileParses(t *testing.T) {
	for _, f := range yamlFiles(t) {
		docs := yamlDocs(t, f)
		if strings.HasPrefix(f, "kubernetes"+string(filepath.Separator)) || strings.HasPrefix(f, "kubernetes-cluster"+string(filepath.Separator)) {
			for i, d := range docs {
				if d["apiVersion"] == nil || d["kind"] == nil {
					t.Errorf("%s: document %d has no apiVersion or kind", f, i+1)
				}
				if d["kind"] != "Kustomization" && get(d, "metadata", "name") == nil {
					t.Errorf("%s: %s has no metadata.name", f, d["kind"])
				}
			}
		}
	}
}

// k8sObjects reads the resources of the kustomize base in dir, by kind.
func k8sObjects(t *testing.T, dir string) map[string][]map[string]any {
	t.Helper()
	kust := yamlDocs(t, filepath.Join(dir, "kustomization.yaml"))[0]
	listed := strs(kust["resources"])
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".yaml") && e.Name() != "kustomization.yaml" && !slices.Contains(listed, e.Name()) {
			t.Errorf("%s/%s is not listed in kustomization.yaml resources", dir, e.Name())
		}
	}
	objs := map[string][]map[string]any{}
	for _, r := range listed {
		for _, d := range yamlDocs(t, filepath.Join(dir, r)) {
			kind := fmt.Sprint(d["kind"])
			objs[kind] = append(objs[kind], d)
		}
	}
	for _, kind := range []string{"StatefulSet", "Service", "PodDisruptionBudget", "ServiceMonitor"} {
		if len(objs[kind]) == 0 {
			t.Fatalf("the kustomize base has no %s", kind)
		}
	}
	return objs
}

// flagValue returns the value of --name=value in args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

func port(t *testing.T, hostport string) int {
	t.Helper()
	i := strings.LastIndexByte(hostport, ':')
	n, err := strconv.Atoi(hostport[i+1:])
	if i < 0 || err != nil {
		t.Fatalf("%q has no port", hostport)
	}
	return n
}

func durationFlag(t *testing.T, args []string, name string, def time.Duration) time.Duration {
	t.Helper()
	v, ok := flagValue(args, name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("--%s=%s: %v", name, v, err)
	}
	return d
}

func TestKubernetesBase(t *testing.T) {
	sts := checkKubernetesBase(t, "kubernetes")
	if r := get(sts, "spec", "replicas"); fmt.Sprint(r) != "1" {
		t.Errorf("replicas %v: the single-node base runs one pod (a cluster is kubernetes-cluster)", r)
	}
}

// TestKubernetesCluster checks the three-node base as the single-node one
// is checked, and what makes it a cluster: every node names itself after
// its pod, advertises its stable DNS name, and reaches an etcd that is
// there.
func TestKubernetesCluster(t *testing.T) {
	const dir = "kubernetes-cluster"
	sts := checkKubernetesBase(t, dir)
	if r := fmt.Sprint(get(sts, "spec", "replicas")); r != "3" {
		t.Errorf("aurad replicas %s, want 3", r)
	}
	c := get(sts, "spec", "template", "spec", "containers", 0)
	args := strs(get(c, "args"))
	env := map[string]any{}
	for _, e := range get(c, "env").([]any) {
		env[fmt.Sprint(get(e, "name"))] = e
	}
	// A node's name is its pod's: stable across restarts, like its volume.
	for _, name := range []string{"AURA_NODE", "POD_NAME"} {
		if p := get(env[name], "valueFrom", "fieldRef", "fieldPath"); p != "metadata.name" {
			t.Errorf("env %s comes from %v, want the pod's metadata.name", name, p)
		}
	}
	headless := fmt.Sprint(get(sts, "spec", "serviceName"))
	advertise, ok := flagValue(args, "advertise")
	listen, _ := flagValue(args, "listen")
	if !ok || advertise != "$(POD_NAME)."+headless+":"+strconv.Itoa(port(t, listen)) {
		t.Errorf("--advertise=%s: want $(POD_NAME).%s:%d, the pod's stable name and the port aurad listens on", advertise, headless, port(t, listen))
	}
	// --cluster-etcd names every member of the etcd StatefulSet by its
	// stable name and client port.
	objs := k8sObjects(t, dir)
	var etcd map[string]any
	for _, s := range objs["StatefulSet"] {
		if get(s, "metadata", "name") == "etcd" {
			etcd = s
		}
	}
	if etcd == nil {
		t.Fatal("no etcd StatefulSet")
	}
	endpoints, _ := flagValue(args, "cluster-etcd")
	n, _ := strconv.Atoi(fmt.Sprint(get(etcd, "spec", "replicas")))
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("http://etcd-%d.%v:2379", i, get(etcd, "spec", "serviceName")))
	}
	if n < 3 || endpoints != strings.Join(want, ",") {
		t.Errorf("--cluster-etcd=%s: want every member of the %d-member etcd, %s", endpoints, n, strings.Join(want, ","))
	}
	etcdArgs := strs(get(etcd, "spec", "template", "spec", "containers", 0, "args"))
	if initial, _ := flagValue(etcdArgs, "initial-cluster"); strings.Count(initial, "=http://") != n {
		t.Errorf("etcd --initial-cluster=%s does not name its %d members", initial, n)
	}
}

// checkKubernetesBase checks the kustomize base in dir and returns its
// aurad StatefulSet.
func checkKubernetesBase(t *testing.T, dir string) map[string]any {
	t.Helper()
	flags := serveFlags(t)
	objs := k8sObjects(t, dir)
	var sts map[string]any
	for _, s := range objs["StatefulSet"] {
		if get(s, "metadata", "name") == "aurad" {
			sts = s
		}
	}
	if sts == nil {
		t.Fatalf("%s: no StatefulSet named aurad", dir)
	}
	pod := get(sts, "spec", "template")
	podLabels := labels(get(pod, "metadata", "labels"))
	c := get(pod, "spec", "containers", 0)
	args := append(strs(get(c, "command")), strs(get(c, "args"))...)
	if len(args) == 0 || args[0] != "serve" {
		t.Fatalf("container args %v: want aurad serve ...", args)
	}

	// Every flag and AURA_* variable is one aurad has.
	refs := argRefs("statefulset args", args)
	for _, e := range get(c, "env").([]any) {
		refs = append(refs, envRefs("statefulset env", fmt.Sprint(get(e, "name")))...)
	}
	for _, f := range append(strs(get(yamlDocs(t, filepath.Join(dir, "kustomization.yaml"))[0], "resources")), "kustomization.yaml") {
		refs = append(refs, proseRefs(dir+"/"+f, comments(readFile(t, filepath.Join(dir, f))))...)
	}
	checkRefs(t, flags, refs)

	// Ports: the probes ask the gRPC port aurad listens on, plaintext
	// (the kubelet's gRPC probe has no TLS).
	listen, _ := flagValue(args, "listen")
	grpcPort := port(t, listen)
	if _, tls := flagValue(args, "tls-cert"); tls {
		t.Error("gRPC probes cannot use TLS, but --tls-cert is set")
	}
	for _, probe := range []string{"startupProbe", "readinessProbe"} {
		p := get(c, probe, "grpc", "port")
		if fmt.Sprint(p) != strconv.Itoa(grpcPort) {
			t.Errorf("%s: grpc port %v, but aurad listens on %s", probe, p, listen)
		}
	}
	// Liveness asks whether the process is alive, not whether it takes
	// work: gRPC health is NOT_SERVING on a full disk, which a restart
	// would not cure.
	if p, path := get(c, "livenessProbe", "httpGet", "port"), get(c, "livenessProbe", "httpGet", "path"); p != "admin" || path != "/healthz" {
		t.Errorf("livenessProbe: httpGet %v on port %v; want /healthz on the admin port", path, p)
	}
	containerPorts := map[string]int{}
	for _, p := range get(c, "ports").([]any) {
		n, _ := strconv.Atoi(fmt.Sprint(get(p, "containerPort")))
		containerPorts[fmt.Sprint(get(p, "name"))] = n
	}
	admin, ok := flagValue(args, "admin-listen")
	if !ok {
		t.Fatal("no --admin-listen: nothing serves /metrics")
	}
	if containerPorts["grpc"] != grpcPort || containerPorts["admin"] != port(t, admin) {
		t.Errorf("container ports %v do not match --listen %s / --admin-listen %s", containerPorts, listen, admin)
	}

	// Shutdown: the pod is given longer than aurad needs to drain.
	grace := durationFlag(t, args, "shutdown-grace", 30*time.Second) + durationFlag(t, args, "kill-grace", 5*time.Second)
	tgp, _ := strconv.Atoi(fmt.Sprint(get(pod, "spec", "terminationGracePeriodSeconds")))
	if time.Duration(tgp)*time.Second <= grace {
		t.Errorf("terminationGracePeriodSeconds %d is not longer than shutdown-grace + kill-grace (%s)", tgp, grace)
	}

	// The data dir is on the persistent volume.
	data, _ := flagValue(args, "data")
	claim := fmt.Sprint(get(sts, "spec", "volumeClaimTemplates", 0, "metadata", "name"))
	mounted := false
	for _, m := range get(c, "volumeMounts").([]any) {
		if get(m, "name") == claim && get(m, "mountPath") == data {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("--data=%s is not the mount of volume claim %q", data, claim)
	}

	// Hardening.
	if get(pod, "spec", "securityContext", "runAsNonRoot") != true ||
		get(c, "securityContext", "allowPrivilegeEscalation") != false ||
		get(c, "securityContext", "readOnlyRootFilesystem") != true ||
		!slices.Contains(strs(get(c, "securityContext", "capabilities", "drop")), "ALL") {
		t.Error("the container is not locked down (runAsNonRoot, no privilege escalation, read-only root, no capabilities)")
	}

	// Selectors pick the pod, and the Services route to named ports.
	if !selects(labels(get(sts, "spec", "selector", "matchLabels")), podLabels) {
		t.Error("the StatefulSet's selector does not match its pod template")
	}
	for _, pdb := range objs["PodDisruptionBudget"] {
		if get(pdb, "metadata", "name") == "aurad" && !selects(labels(get(pdb, "spec", "selector", "matchLabels")), podLabels) {
			t.Errorf("PodDisruptionBudget %v does not select the aurad pod", get(pdb, "metadata", "name"))
		}
	}
	for _, np := range objs["NetworkPolicy"] {
		if get(np, "metadata", "name") == "aurad" && !selects(labels(get(np, "spec", "podSelector", "matchLabels")), podLabels) {
			t.Errorf("NetworkPolicy %v does not select the aurad pod", get(np, "metadata", "name"))
		}
	}
	svcPorts := map[string]bool{}
	headless := false
	for _, svc := range objs["Service"] {
		name := get(svc, "metadata", "name")
		if !strings.HasPrefix(fmt.Sprint(name), "aurad") {
			continue // etcd's
		}
		if !selects(labels(get(svc, "spec", "selector")), podLabels) {
			t.Errorf("Service %v does not select the aurad pod", name)
		}
		if name == get(sts, "spec", "serviceName") && get(svc, "spec", "clusterIP") == "None" {
			headless = true
		}
		for _, p := range get(svc, "spec", "ports").([]any) {
			svcPorts[fmt.Sprint(get(p, "name"))] = true
			if _, ok := containerPorts[fmt.Sprint(get(p, "targetPort"))]; !ok {
				t.Errorf("Service %v port %v targets %v, which the container does not have", name, get(p, "name"), get(p, "targetPort"))
			}
		}
	}
	if !headless {
		t.Errorf("no headless Service named %v (the StatefulSet's serviceName)", get(sts, "spec", "serviceName"))
	}
	for _, sm := range objs["ServiceMonitor"] {
		for _, ep := range get(sm, "spec", "endpoints").([]any) {
			if !svcPorts[fmt.Sprint(get(ep, "port"))] || get(ep, "path") != "/metrics" {
				t.Errorf("ServiceMonitor endpoint %v is not a Service port serving /metrics", ep)
			}
		}
		sel := labels(get(sm, "spec", "selector", "matchLabels"))
		found := false
		for _, svc := range objs["Service"] {
			if selects(sel, labels(get(svc, "metadata", "labels"))) || selects(sel, kustomizeLabels(t, dir)) {
				found = true
			}
		}
		if !found {
			t.Error("the ServiceMonitor's selector matches no Service")
		}
	}

	// kustomize itself accepts the base, when kubectl is here to ask.
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Log("kubectl not installed: kustomize build not checked")
		return sts
	}
	out, err := exec.Command(kubectl, "kustomize", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, out)
	}
	for _, kind := range []string{"StatefulSet", "Service", "PodDisruptionBudget", "ServiceMonitor", "NetworkPolicy"} {
		if !bytes.Contains(out, []byte("kind: "+kind+"\n")) {
			t.Errorf("kubectl kustomize output has no %s", kind)
		}
	}
	return sts
}

// kustomizeLabels are the labels the kustomization in dir puts on every object.
func kustomizeLabels(t *testing.T, dir string) map[string]string {
	kust := yamlDocs(t, filepath.Join(dir, "kustomization.yaml"))[0]
	return labels(get(kust, "labels", 0, "pairs"))
}

// comments returns the comment text of a #-commented file.
func comments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if i := strings.Index(l, "#"); i >= 0 {
			b.WriteString(l[i+1:])
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// unitLine is one directive of a systemd unit file.
type unitLine struct {
	section, key, value string
	line                int
}

// parseUnit reads a unit file the way systemd does: [Section] headers,
// Key=Value directives, # and ; comments, and backslash continuations.
func parseUnit(text string) ([]unitLine, error) {
	var out []unitLine
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	n := 0
	keyRE := regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*$`)
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		start := n
		for strings.HasSuffix(line, `\`) && sc.Scan() {
			n++
			next := strings.TrimSpace(sc.Text())
			if strings.HasPrefix(next, "#") || strings.HasPrefix(next, ";") {
				continue
			}
			line = strings.TrimSuffix(line, `\`) + " " + next
		}
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("line %d: bad section header %q", start, line)
			}
			section = line[1 : len(line)-1]
			if !slices.Contains([]string{"Unit", "Service", "Install"}, section) {
				return nil, fmt.Errorf("line %d: unexpected section [%s]", start, section)
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			k = strings.TrimSpace(k)
			if !ok || !keyRE.MatchString(k) {
				return nil, fmt.Errorf("line %d: want Key=Value, got %q", start, line)
			}
			if section == "" {
				return nil, fmt.Errorf("line %d: %s outside any section", start, k)
			}
			out = append(out, unitLine{section, k, strings.TrimSpace(v), start})
		}
	}
	return out, sc.Err()
}

func TestSystemdUnit(t *testing.T) {
	const unitPath = "systemd/aurad.service"
	text := readFile(t, unitPath)
	lines, err := parseUnit(text)
	if err != nil {
		t.Fatalf("%s: %v", unitPath, err)
	}
	dir := map[string][]string{}
	for _, l := range lines {
		dir[l.section+"."+l.key] = append(dir[l.section+"."+l.key], l.value)
	}
	one := func(key string) string {
		v := dir[key]
		if len(v) == 0 {
			return ""
		}
		return v[len(v)-1]
	}

	// The hardening the unit promises.
	for key, want := range map[string]string{
		"Service.User":                  "aura",
		"Service.NoNewPrivileges":       "yes",
		"Service.ProtectSystem":         "strict",
		"Service.ProtectHome":           "yes",
		"Service.PrivateTmp":            "yes",
		"Service.CapabilityBoundingSet": "",
		"Service.KillMode":              "mixed",
		"Service.LimitNOFILE":           "65536",
		"Install.WantedBy":              "multi-user.target",
	} {
		if len(dir[key]) == 0 || one(key) != want {
			t.Errorf("%s: %s=%q, want %q", unitPath, key, one(key), want)
		}
	}

	execStart := strings.Fields(one("Service.ExecStart"))
	if len(execStart) < 2 || filepath.Base(execStart[0]) != "aurad" || execStart[1] != "serve" {
		t.Fatalf("ExecStart %v: want aurad serve ...", execStart)
	}
	flags := serveFlags(t)
	refs := argRefs("aurad.service ExecStart", execStart[2:])
	refs = append(refs, envRefs("aurad.service", text)...)
	refs = append(refs, proseRefs(unitPath, comments(text))...)
	checkRefs(t, flags, refs)

	// The socket lives in the RuntimeDirectory, the store in the StateDirectory.
	listen, _ := flagValue(execStart, "listen")
	runtime := strings.Fields(one("Service.RuntimeDirectory"))
	if len(runtime) == 0 || !strings.HasPrefix(listen, "unix:///run/"+runtime[0]+"/") {
		t.Errorf("--listen=%s is not a socket in RuntimeDirectory %v", listen, runtime)
	}
	for _, name := range []string{"data", "plans"} {
		v, _ := flagValue(execStart, name)
		ok := false
		for _, sd := range strings.Fields(one("Service.StateDirectory")) {
			if v == "/var/lib/"+sd || strings.HasPrefix(v, "/var/lib/"+sd+"/") {
				ok = true
			}
		}
		if !ok {
			t.Errorf("--%s=%s is not under a StateDirectory (the only writable place with ProtectSystem=strict)", name, v)
		}
	}
	grace := durationFlag(t, execStart, "shutdown-grace", 30*time.Second) + durationFlag(t, execStart, "kill-grace", 5*time.Second)
	stop, err := time.ParseDuration(one("Service.TimeoutStopSec"))
	if err != nil || stop <= grace {
		t.Errorf("TimeoutStopSec=%s must be longer than shutdown-grace + kill-grace (%s)", one("Service.TimeoutStopSec"), grace)
	}

	// systemd's own verdict, when systemd-analyze is installed (Debian:
	// package systemd). It warns but exits 0 on unknown keys, so any
	// message about the unit fails the test.
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: checked the unit's syntax only")
		return
	}
	tmp := t.TempDir()
	// verify insists that ExecStart's binary exists: point it at ours.
	unit := strings.Replace(text, execStart[0], aurad, 1)
	if err := os.WriteFile(filepath.Join(tmp, "aurad.service"), []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sa, "verify", "--man=no", filepath.Join(tmp, "aurad.service"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	runErr := cmd.Run()
	var complaints []string
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(l, "aurad.service") {
			complaints = append(complaints, l)
		}
	}
	if runErr != nil || len(complaints) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", runErr, strings.Join(complaints, "\n"))
	}
	// And its exposure score stays low (1.5 when written; 10 is unprotected).
	out, err := exec.Command(sa, "security", "--offline=true", "--threshold=20", "--no-pager",
		filepath.Join(tmp, "aurad.service")).CombinedOutput()
	if err != nil && bytes.Contains(bytes.ToLower(out), []byte("unrecognized option")) {
		t.Logf("systemd-analyze too old for security --offline (systemd >= 250): score not checked")
		return
	}
	if err != nil {
		t.Fatalf("systemd-analyze security: exposure above 2.0 (%v):\n%s", err, out)
	}
}

// instruction is one Dockerfile instruction, continuations joined.
type instruction struct {
	cmd, args string
	stage     int // index of the FROM it belongs to
}

func parseDockerfile(text string) []instruction {
	var out []instruction
	stage := -1
	var cur strings.Builder
	for _, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue // a comment inside a continued instruction
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		cur.WriteString(line)
		full := cur.String()
		cur.Reset()
		cmd, args, _ := strings.Cut(full, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, instruction{cmd, strings.TrimSpace(args), stage})
	}
	return out
}

func TestDockerfile(t *testing.T) {
	text := readFile(t, "Dockerfile")
	ins := parseDockerfile(text)
	var froms []string
	for _, in := range ins {
		if in.cmd == "FROM" {
			froms = append(froms, in.args)
		}
	}
	if len(froms) < 2 {
		t.Fatalf("want a multi-stage build, got FROM %v", froms)
	}
	final := froms[len(froms)-1]
	if strings.HasPrefix(final, "${") {
		final = argDefault(ins, strings.Trim(final, "${}"))
	}
	// The example plans' exec steps run sh and coreutils: the final image
	// needs a userland, which distroless and scratch do not have.
	if strings.Contains(final, "distroless") || final == "scratch" || !strings.HasPrefix(final, "debian:") {
		t.Errorf("final stage %q: want a Debian base with a shell and coreutils for exec steps", final)
	}
	last := len(froms) - 1
	var user, entry, cmdArgs, finalRun, finalCopy string
	var cgoOff, goBuild bool
	for _, in := range ins {
		if in.cmd == "RUN" && in.stage == last {
			finalRun += in.args + "\n"
		}
		if in.cmd == "COPY" && in.stage == last {
			finalCopy += in.args + "\n"
		}
		switch in.cmd {
		case "RUN":
			if strings.Contains(in.args, "go build") {
				goBuild = true
				cgoOff = cgoOff || strings.Contains(in.args, "CGO_ENABLED=0")
			}
		case "ENV":
			cgoOff = cgoOff || strings.Contains(in.args, "CGO_ENABLED=0")
		}
		if in.stage != last {
			continue
		}
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entry = in.args
		case "CMD":
			cmdArgs = in.args
		}
	}
	if !goBuild || !cgoOff {
		t.Error("the binaries are not built with CGO_ENABLED=0 (static)")
	}
	u, _, _ := strings.Cut(user, ":")
	if u == "" || u == "0" || u == "root" {
		t.Errorf("final stage runs as %q, want a non-root USER", user)
	}
	// A named user must exist in the image, or the container does not start.
	if _, err := strconv.Atoi(u); err != nil && !regexp.MustCompile(`useradd\b[^\n]*\s`+regexp.QuoteMeta(u)+`\s*(&&|\n|$)`).MatchString(finalRun) {
		t.Errorf("USER %s is not created by a useradd in the final stage", u)
	}
	if !strings.Contains(finalRun, "tini") && !strings.Contains(finalCopy, "tini") {
		t.Error("the final stage neither installs nor copies tini, which the ENTRYPOINT runs")
	}
	var entryv, cmdv []string
	if err := yaml.Unmarshal([]byte(entry), &entryv); err != nil || len(entryv) < 3 {
		t.Fatalf("ENTRYPOINT %s: want exec form [init, --, aurad] (%v)", entry, err)
	}
	if filepath.Base(entryv[0]) != "tini" || filepath.Base(entryv[len(entryv)-1]) != "aurad" {
		t.Errorf("ENTRYPOINT %v: want tini (it reaps zombies) running aurad", entryv)
	}
	if err := yaml.Unmarshal([]byte(cmdArgs), &cmdv); err != nil || len(cmdv) == 0 || cmdv[0] != "serve" {
		t.Errorf("CMD %s: want exec form starting with serve", cmdArgs)
	}

	flags := serveFlags(t)
	refs := argRefs("Dockerfile CMD", cmdv)
	refs = append(refs, envRefs("Dockerfile", text)...)
	refs = append(refs, proseRefs("Dockerfile", comments(text))...)
	checkRefs(t, flags, refs)

	// What the build copies from the context exists (the context is the
	// repository root).
	for _, in := range ins {
		if in.cmd != "COPY" || strings.Contains(in.args, "--from=") {
			continue
		}
		fields := strings.Fields(in.args)
		for _, src := range fields[:len(fields)-1] {
			if strings.HasPrefix(src, "--") {
				continue
			}
			if strings.HasPrefix(src, "${") {
				src = argDefault(ins, strings.Trim(src, "${}"))
			}
			if _, err := os.Stat(filepath.Join("..", src)); err != nil {
				t.Errorf("COPY %s: %v", src, err)
			}
		}
	}
}

// argDefault returns the default of ARG name in the Dockerfile.
func argDefault(ins []instruction, name string) string {
	for _, in := range ins {
		if k, v, ok := strings.Cut(in.args, "="); in.cmd == "ARG" && ok && k == name {
			return v
		}
	}
	return ""
}

var metricRE = regexp.MustCompile(`\b(aura_[a-z0-9_]+)`)

func TestAlertRules(t *testing.T) {
	doc := yamlDocs(t, "prometheus/aura-alerts.yaml")[0]
	groups, _ := doc["groups"].([]any)
	if len(groups) == 0 {
		t.Fatal("no rule groups")
	}
	metricsSrc := ""
	if err := filepath.WalkDir("../internal/metrics", func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			metricsSrc += readFile(t, p)
		}
		return err
	}); err != nil {
		t.Fatalf("reading internal/metrics: %v", err)
	}
	n := 0
	for _, g := range groups {
		for _, r := range get(g, "rules").([]any) {
			n++
			name, expr := fmt.Sprint(get(r, "alert")), fmt.Sprint(get(r, "expr"))
			if get(r, "alert") == nil || get(r, "expr") == nil {
				t.Errorf("rule %d: want alert and expr", n)
				continue
			}
			if get(r, "labels", "severity") == nil || get(r, "annotations", "summary") == nil {
				t.Errorf("%s: want labels.severity and annotations.summary", name)
			}
			if strings.Count(expr, "(") != strings.Count(expr, ")") {
				t.Errorf("%s: unbalanced parentheses in %s", name, expr)
			}
			// Every Aura metric an alert reads is one aurad exports.
			for _, m := range metricRE.FindAllString(expr, -1) {
				base := m
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					base = strings.TrimSuffix(base, suf)
				}
				if !strings.Contains(metricsSrc, `"`+base+`"`) {
					t.Errorf("%s: metric %s is not defined in internal/metrics", name, m)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no rules")
	}
}
