// Command auractl is the command-line client of aurad.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		// A second Ctrl-C ends auractl at once, the default way.
		signal.Stop(sigs)
		cancel(&signalError{sig: s.(syscall.Signal)})
	}()
	root, g := newRoot()
	err := root.ExecuteContext(ctx)
	cancel(nil)
	if err != nil {
		var ex *exitError
		if errors.As(err, &ex) {
			if ex.msg != "" {
				fmt.Fprintf(os.Stderr, "auractl: %s\n", ex.msg)
			}
			os.Exit(ex.code)
		}
		fmt.Fprintf(os.Stderr, "auractl: %s\n", explain(err, g.addr))
		if interruptedBy(ctx) != nil {
			os.Exit(signalExitCode(ctx))
		}
		os.Exit(1)
	}
}

// exitError ends auractl with a code, after the output was printed, with
// msg (when set) on stderr.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return fmt.Sprintf("exit %d", e.code)
}
