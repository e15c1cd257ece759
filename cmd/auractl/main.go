// Command auractl is the command-line client of aurad.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc/status"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		var ex *exitError
		if errors.As(err, &ex) {
			os.Exit(ex.code)
		}
		if st, ok := status.FromError(err); ok {
			fmt.Fprintf(os.Stderr, "auractl: %s: %s\n", st.Code(), st.Message())
		} else {
			fmt.Fprintf(os.Stderr, "auractl: %v\n", err)
		}
		os.Exit(1)
	}
}

// exitError ends auractl with a code after the output was already printed.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }
