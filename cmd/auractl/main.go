// Command auractl is the command-line client of aurad.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
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
	cmd, err := root.ExecuteContextC(ctx)
	cancel(nil)
	if err != nil && cmd != nil && isCobraUsageError(err) {
		err = &usageError{err: err, cmd: cmd}
	}
	if err != nil {
		var ex *exitError
		if errors.As(err, &ex) {
			if ex.msg != "" {
				fmt.Fprintf(os.Stderr, "auractl: %s\n", ex.msg)
			}
			os.Exit(ex.code)
		}
		fmt.Fprintf(os.Stderr, "auractl: %s\n", explain(err, g, cmd))
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

// isCobraUsageError recognizes the command-line errors cobra makes before
// any RunE: an unknown command, and flags used together that may not be.
// (Flag parsing and argument errors are marked by markUsageErrors.)
func isCobraUsageError(err error) bool {
	var ue *usageError
	if errors.As(err, &ue) {
		return false
	}
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command ") || strings.HasPrefix(msg, "if any flags in the group ") ||
		strings.HasPrefix(msg, "required flag(s) ")
}
