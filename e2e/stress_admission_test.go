package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/client"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Full-size versions of the admission attacks, for `make stress`: minutes
// of CPU and, against an unbounded queue, gigabytes of memory. They run
// only with AURA_STRESS=1 and report figures with t.Log; they assert only
// what the scaled-down tests assert. AURA_STRESS_ARGS adds aurad flags.

func stressArgs(t *testing.T) []string {
	t.Helper()
	if os.Getenv("AURA_STRESS") == "" {
		t.Skip("full-size attack; run with AURA_STRESS=1 (make stress)")
	}
	return strings.Fields(os.Getenv("AURA_STRESS_ARGS"))
}

// floodCount sends n copies of req over `streams` SubmitStreams at once and
// counts the answers.
func floodCount(ctx context.Context, c *client.Client, req *aurav1.SubmitRequest, n, streams int) (accepted, refused int, first *aurav1.SubmitError, err error) {
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
	)
	for s := range streams {
		count := n / streams
		if s < n%streams {
			count++
		}
		wg.Go(func() {
			stream, err := c.Exec.SubmitStream(ctx)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			go func() {
				for range count {
					if stream.Send(req) != nil {
						return
					}
				}
				_ = stream.CloseSend()
			}()
			ok, bad := 0, 0
			var firstBad *aurav1.SubmitError
			for {
				r, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					break
				}
				if e := r.GetError(); e != nil {
					bad++
					if firstBad == nil {
						firstBad = e
					}
				} else {
					ok++
				}
			}
			mu.Lock()
			accepted += ok
			refused += bad
			if first == nil {
				first = firstBad
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return accepted, refused, first, errors.Join(errs...)
}

// 1,000,003 submissions behind one running task: with the default bounds
// all but 100,000 are refused and aurad's memory stays small; without
// bounds every one is queued.
func TestStressQueueFlood(t *testing.T) {
	args := append([]string{"--max-concurrent", "1"}, stressArgs(t)...)
	d := startDaemon(t, daemonOpts{args: args})
	ctx := ctxT(t, 30*time.Minute)
	hold, err := structpb.NewStruct(map[string]any{"ms": 1_800_000})
	if err != nil {
		t.Fatal(err)
	}
	holder := d.submit(ctx, &aurav1.SubmitRequest{Task: "e2e/hold", Inputs: hold})
	waitFor(t, "the holder to run", time.Minute, func() bool {
		task, err := d.client.Get(ctx, holder)
		return err == nil && task.Status == aurav1.TaskStatus_TASK_STATUS_RUNNING
	})
	pid := d.cmd.Process.Pid
	idle := procKiB(t, pid, "VmRSS")
	const flood = 1_000_003
	start := time.Now()
	accepted, refused, first, err := floodCount(ctx, d.client, &aurav1.SubmitRequest{Task: "e2e/quick"}, flood, 4)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	rss, peak := procKiB(t, pid, "VmRSS"), procKiB(t, pid, "VmHWM")
	t.Logf("flood of %d submissions in %s: %d accepted, %d refused (first refusal: %s %q)",
		flood, took.Round(time.Millisecond), accepted, refused, codeName(first), first.GetMessage())
	t.Logf("aurad RSS: %d MB before, %d MB after, peak %d MB", idle/1024, rss/1024, peak/1024)
	if accepted+refused != flood {
		t.Fatalf("%d answers to %d submissions", accepted+refused, flood)
	}
	d.kill() // a million queued tasks need not be drained
}

func codeName(e *aurav1.SubmitError) string {
	if e == nil {
		return "none"
	}
	return fmt.Sprint(e.GetCode())
}

// plan a's token floods 500,000 no-op tasks; plan b's token then submits
// one. Reported: how long b's task waited for a slot, and how many of a's
// started meanwhile.
func TestStressFairShareUnderAFlood(t *testing.T) {
	extra := stressArgs(t)
	args := append([]string{"--auth-tokens", admissionTokens(t, "")}, extra...)
	d := startDaemon(t, daemonOpts{args: args})
	ctx := ctxT(t, 30*time.Minute)
	a := dialAs(t, d.addr, client.WithToken("tok-plan-a"))
	b := dialAs(t, d.addr, client.WithToken("tok-plan-b"))
	const flood = 500_000
	start := time.Now()
	accepted, refused, first, err := floodCount(ctx, a, &aurav1.SubmitRequest{Task: "e2e/quick"}, flood, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("plan a: %d of %d accepted in %s (%d refused: %q)", accepted, flood, time.Since(start).Round(time.Millisecond), refused, first.GetMessage())
	waited, overtook, total := behindTheFlood(t, ctx, a, b)
	st, err := a.Exec.GetStats(ctx, &aurav1.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("plan b's task waited %s for a slot; %d of plan a's %d tasks started meanwhile; %d still queued",
		waited.Round(time.Millisecond), overtook, total, st.CountsByStatus["TASK_STATUS_QUEUED"])
	d.kill()
}
