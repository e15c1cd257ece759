package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// ghzModule is the ghz the unary figure is measured with, pinned.
const ghzModule = "github.com/bojand/ghz/cmd/ghz@v0.93.0"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type config struct {
	quick bool
	only  *regexp.Regexp // nil: every group
	out   string         // "-" is stdout
	raw   string         // "" writes no raw output
	notes string
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "one run per figure with smaller -benchtime: a fast check, not figures of record")
	only := fs.String("only", "", "run only the groups whose name matches this regexp (manager, admission, unary, submitstream, store-create, store-lifecycle, endtoend, idle, cpupool, fanout, hub, hub-tasks, memory, goroutines, engine, interrupts)")
	out := fs.String("out", "", `where to write the report ("-": stdout); default BENCHMARKS.md, or stdout with -only`)
	raw := fs.String("raw", "", "where to write the raw benchmark output; default bench.txt, none with -only")
	notes := fs.String("notes", "", `the "What the figures say" text; default bench/notes.md in the repository`)
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c := config{quick: *quick, out: *out, raw: *raw, notes: *notes}
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			return config{}, fmt.Errorf("-only: %w", err)
		}
		c.only = re
	}
	if c.out == "" {
		c.out = "BENCHMARKS.md"
		if c.only != nil {
			c.out = "-"
		}
	}
	if c.raw == "" && c.only == nil {
		c.raw = "bench.txt"
	}
	return c, nil
}

// run is the whole program; it returns the exit code: 0 when every
// benchmark ran, 1 when some failed (the report is still written), 2 when
// it could not run at all.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "report:", err)
		return 2
	}
	root, err := repoRoot(ctx)
	if err != nil {
		log.Error("finding the repository", "err", err)
		return 2
	}
	if cfg.notes == "" {
		cfg.notes = filepath.Join(root, "bench", "notes.md")
	}
	notes, err := os.ReadFile(cfg.notes)
	if err != nil {
		log.Error("reading the notes", "err", err)
		return 2
	}
	var raw io.Writer = io.Discard
	if cfg.raw != "" {
		f, err := os.Create(cfg.raw)
		if err != nil {
			log.Error("creating the raw output file", "err", err)
			return 2
		}
		defer func() {
			if err := f.Close(); err != nil {
				log.Error("writing the raw output file", "err", err)
			}
		}()
		raw = f
	}
	// The benchmarks' own output goes to the terminal as it comes, on
	// stderr when the report itself goes to stdout.
	progress := stdout
	if cfg.out == "-" {
		progress = stderr
	}

	started := time.Now()
	rep := Report{Machine: readMachine(ctx, root), Date: started, Commit: gitCommit(ctx, root), Quick: cfg.quick, Notes: string(notes), Raw: cfg.raw}
	env := os.Environ()
	groups := suite()
	if needsGhz(groups, cfg.only) {
		ghz, err := ensureGhz(ctx, root, log)
		if err != nil {
			// The unary benchmark then fails and says AURA_GHZ is unset;
			// the other figures are still measured.
			log.Error("no ghz", "err", err)
		} else {
			env = append(env, "AURA_GHZ="+ghz)
		}
	}
	failed := false
	for _, g := range groups {
		var gr GroupRun
		switch {
		case cfg.only != nil && !cfg.only.MatchString(g.Name):
			gr = GroupRun{Group: g, Skipped: "left out by -only"}
		case ctx.Err() != nil:
			gr = GroupRun{Group: g, Skipped: "interrupted"}
		default:
			gr = runGroup(ctx, root, env, g, cfg.quick, raw, progress, log)
			if gr.Err != nil {
				failed = true
				rep.Failures = append(rep.Failures, describeFailure(gr, cfg.quick))
			}
			if ctx.Err() != nil {
				log.Error("interrupted; writing what was measured")
			}
		}
		for _, f := range g.Figures {
			rep.Rows = append(rep.Rows, Evaluate(gr, f, cfg.quick))
		}
	}
	rep.Elapsed, rep.LoadEnd = time.Since(started), loadAverage()

	var md bytes.Buffer
	if err := Render(&md, rep); err != nil {
		log.Error("rendering the report", "err", err)
		return 2
	}
	if cfg.out == "-" {
		_, err = stdout.Write(md.Bytes())
	} else {
		out := md.Bytes()
		if prev, err := os.ReadFile(cfg.out); err == nil {
			out = keepPeersSection(prev, out)
		}
		err = os.WriteFile(cfg.out, out, 0o644)
	}
	if err != nil {
		log.Error("writing the report", "err", err)
		return 2
	}
	log.Info("report written", "out", cfg.out, "raw", cfg.raw, "took", rep.Elapsed.Round(time.Second), "failed", failed)
	if failed {
		return 1
	}
	return 0
}

// repoRoot is the directory of the main module's go.mod.
func repoRoot(ctx context.Context) (string, error) {
	gomod, err := output(ctx, ".", "go", "env", "GOMOD")
	if err != nil {
		return "", err
	}
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the Aura module: run from the repository")
	}
	return filepath.Dir(gomod), nil
}

func needsGhz(groups []Group, only *regexp.Regexp) bool {
	for _, g := range groups {
		if g.NeedsGhz && (only == nil || only.MatchString(g.Name)) {
			return true
		}
	}
	return false
}

// ensureGhz returns the ghz to use: $AURA_GHZ when set, else bin/ghz,
// installed (pinned) when missing.
func ensureGhz(ctx context.Context, root string, log *slog.Logger) (string, error) {
	if p := os.Getenv("AURA_GHZ"); p != "" {
		// The benchmark runs in its package's directory: a relative path
		// would point elsewhere there.
		return filepath.Abs(p)
	}
	bin := filepath.Join(root, "bin")
	p := filepath.Join(bin, "ghz")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	log.Info("installing ghz", "module", ghzModule, "into", bin)
	cmd := exec.CommandContext(ctx, "go", "install", ghzModule)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOBIN="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s: %w\n%s", ghzModule, err, out)
	}
	return p, nil
}

// runGroup runs one group's go test, streaming its output to the terminal
// and to raw, and parses it.
func runGroup(ctx context.Context, root string, env []string, g Group, quick bool, raw, terminal io.Writer, log *slog.Logger) GroupRun {
	log.Info("running", "group", g.Name, "command", g.Command(quick))
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", g.Args(quick)...)
	cmd.Dir = root
	cmd.Env = env
	cmd.Stdout = io.MultiWriter(&out, raw, terminal)
	cmd.Stderr = io.MultiWriter(&errOut, os.Stderr)
	// go test waits for its test binary rather than passing an interrupt
	// on, so the run gets its own process group and an interrupt goes to
	// all of it: go test, the test binary and the aurad it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) }
	cmd.WaitDelay = 30 * time.Second
	started := time.Now()
	runErr := cmd.Run()
	gr := GroupRun{Group: g}
	parsed, err := Parse(bytes.NewReader(out.Bytes()))
	if err != nil {
		runErr = errors.Join(runErr, err)
	} else {
		gr.Out = parsed
	}
	if runErr != nil {
		if last := lastLine(errOut.String()); last != "" {
			runErr = fmt.Errorf("%w: %s", runErr, last)
		}
		if parsed != nil && len(parsed.Failures) == 0 && len(parsed.Panics) == 0 {
			// No benchmark failed: the test binary did (TestMain building
			// aurad, say), and said why in its last lines.
			if why := unexplained(out.String(), 4); len(why) > 0 {
				runErr = fmt.Errorf("%w: %s", runErr, strings.Join(why, "; "))
			}
		}
		gr.Err = runErr
	}
	log.Info("done", "group", g.Name, "took", time.Since(started).Round(time.Second), "err", runErr)
	return gr
}

// describeFailure says which benchmarks of a failed group failed, and
// how.
func describeFailure(gr GroupRun, quick bool) GroupFailure {
	f := GroupFailure{Command: gr.Group.Command(quick), Err: gr.Err.Error()}
	if gr.Out != nil {
		for _, fail := range gr.Out.Failures {
			// The first lines say what failed; what follows is usually the
			// daemon's log, which the terminal output has in full.
			var msg []string
			for _, m := range fail.Message[:min(len(fail.Message), 3)] {
				msg = append(msg, truncate(m, 300))
			}
			f.Details = append(f.Details, fmt.Sprintf("%s: %s", fail.Name, strings.Join(msg, " / ")))
		}
		f.Details = append(f.Details, gr.Out.Panics...)
	}
	return f
}

// unexplained returns up to n last lines of go test's output that are not
// results, headers or its closing FAIL lines.
func unexplained(out string, n int) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		t := strings.TrimSpace(l)
		switch {
		case t == "", t == "PASS", t == "FAIL", strings.HasPrefix(t, "FAIL\t"), strings.HasPrefix(t, "ok "),
			strings.HasPrefix(t, "exit status "), strings.HasPrefix(l, "Benchmark"),
			strings.HasPrefix(t, "goos: "), strings.HasPrefix(t, "goarch: "), strings.HasPrefix(t, "pkg: "), strings.HasPrefix(t, "cpu: "):
			continue
		}
		lines = append(lines, truncate(t, 200))
	}
	return lines[max(0, len(lines)-n):]
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
