package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/aura-dev/aura/client"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// signalError is the cause of the command's context when Ctrl-C (SIGINT)
// or SIGTERM stopped auractl.
type signalError struct{ sig syscall.Signal }

func (e *signalError) Error() string { return "interrupted by " + e.sig.String() }

// interruptedBy returns the signal that ended ctx, or nil.
func interruptedBy(ctx context.Context) *signalError {
	var se *signalError
	if errors.As(context.Cause(ctx), &se) {
		return se
	}
	return nil
}

// Exit codes beyond the task outcomes (see exitCode).
const (
	// exitNothingToCancel: cancel found the task already ended.
	exitNothingToCancel = 7
)

// signalExitCode is the shell's convention for a process ended by a
// signal: 128 + its number (130 for Ctrl-C).
func signalExitCode(ctx context.Context) int {
	if se := interruptedBy(ctx); se != nil {
		return 128 + int(se.sig)
	}
	return 1
}

// detached is what stopping to follow a task says: the task itself goes
// on in aurad, and how to find it again or stop it.
func (g *globals) detached(c *client.Client, id string, code int) error {
	// The command's context is over; ask with a fresh, short one.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	state := ""
	if t, err := c.Get(ctx, id); err == nil {
		state = " (" + statusName(t.Status) + ")"
	}
	return &exitError{code: code, msg: fmt.Sprintf(
		"stopped following; task %s goes on in aurad%s.\n  follow it again: %s watch %s\n  cancel it:       %s cancel %s", id, state, g.self(), id, g.self(), id)}
}

// explain turns an error into the line auractl prints: gRPC errors as
// "Code: message", and a daemon that cannot be reached, a TLS mismatch or
// a refused credential as what to do.
func explain(err error, g *globals, cmd *cobra.Command) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	addr := g.addr
	msg := st.Message()
	switch st.Code() {
	case codes.Unavailable:
		if why, ok := dialFailure(msg); ok {
			return fmt.Sprintf("no aurad at %s (%s).\n  Is it running? Start it with: aurad serve --plans DIR --data DIR\n  or point --addr (or AURA_ADDR) at where it listens.", addr, why)
		}
		switch {
		case strings.Contains(msg, "first record does not look like a TLS handshake"):
			return fmt.Sprintf("aurad at %s does not use TLS, but auractl was asked to (--tls, --tls-ca or --tls-cert, or AURA_TLS*): leave those out", addr)
		case strings.Contains(msg, "x509: ") || strings.Contains(msg, "tls: failed to verify certificate"):
			return fmt.Sprintf("aurad's certificate at %s could not be verified (%s).\n  Give the CA that signed it with --tls-ca FILE (env AURA_TLS_CA), or the name it was issued to with --tls-server-name.",
				addr, tlsReason(msg))
		case strings.Contains(msg, "error reading server preface") && !g.usesTLS():
			return fmt.Sprintf("aurad at %s closed the connection without answering: it probably wants TLS.\n  Connect with --tls (and --tls-ca FILE when its certificate is not from a public CA).", addr)
		}
	case codes.Unauthenticated:
		if g.hasToken() {
			return fmt.Sprintf("%s: %s: aurad did not accept the token given (--token-file or AURA_TOKEN); "+
				"its sha256 must be in aurad's --auth-tokens file (aurad token hash prints it)", st.Code(), msg)
		}
		return fmt.Sprintf("%s: %s: aurad at %s wants a token: give it with --token-file FILE or AURA_TOKEN "+
			"(aurad token new makes one; SECURITY.md says how it is set up)", st.Code(), msg, addr)
	case codes.PermissionDenied:
		if msg == "permission denied" && cmd != nil {
			return fmt.Sprintf("%s: %s: the token's roles or plans do not allow %s: it needs the %s, "+
				"and for a task, the task's plan among the token's plans (aurad's --auth-tokens file says both)",
				st.Code(), msg, cmd.CommandPath(), neededRole(cmd))
		}
	}
	// Every command that takes a task id (get, cancel, watch, logs,
	// rerun) gets the same answer for one aurad does not know.
	if st.Code() == codes.NotFound && strings.HasPrefix(msg, "task_id: ") {
		msg += "; auractl list shows the newest tasks and their ids"
	}
	return fmt.Sprintf("%s: %s", st.Code(), msg)
}

// usageError is a command line auractl cannot act on (an unknown command
// or flag, a wrong number of arguments): it is printed with where to find
// the command's usage.
type usageError struct {
	err error
	cmd *cobra.Command
}

func (e *usageError) Error() string {
	return fmt.Sprintf("%v\n  %s --help shows how to use it", e.err, e.cmd.CommandPath())
}

func (e *usageError) Unwrap() error { return e.err }

// markUsageErrors makes the argument and flag errors of cmd and of every
// command under it usageErrors.
func markUsageErrors(cmd *cobra.Command) {
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &usageError{err: err, cmd: c} })
	if args := cmd.Args; args != nil {
		cmd.Args = func(c *cobra.Command, a []string) error {
			if err := args(c, a); err != nil {
				return &usageError{err: err, cmd: c}
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		markUsageErrors(sub)
	}
}

// neededRole is the role aurad checks for what cmd mainly does.
func neededRole(cmd *cobra.Command) string {
	switch cmd.CommandPath() {
	case "auractl submit", "auractl rerun":
		return "submit role (and the read role to wait or follow)"
	case "auractl cancel":
		return "cancel role"
	case "auractl hooks tail":
		return "hooks role"
	case "auractl plans reload":
		return "admin role"
	}
	return "read role"
}

// tlsReason is the last clause of a TLS handshake error: what was wrong
// with the certificate.
func tlsReason(msg string) string {
	msg = strings.TrimSuffix(msg, `"`)
	if i := strings.Index(msg, "x509: "); i >= 0 {
		msg = msg[i:]
	}
	if i := strings.Index(msg, " (possibly because"); i >= 0 {
		msg = msg[:i]
	}
	return msg
}

// dialFailure recognizes grpc-go's "connection error: desc = \"transport:
// Error while dialing: dial tcp ...: connect: connection refused\"" and
// returns its last clause.
func dialFailure(msg string) (string, bool) {
	if !strings.Contains(msg, "while dialing") {
		return "", false
	}
	msg = strings.TrimSuffix(msg, `"`)
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg, true
}

// taskNameArg accepts exactly one task name, PLAN/TASK.
func taskNameArg(cmd *cobra.Command, args []string) error {
	switch len(args) {
	case 1:
		return nil
	case 0:
		return fmt.Errorf("%s needs a task name, PLAN/TASK (auractl plans lists them)", cmd.CommandPath())
	}
	return fmt.Errorf("%s takes one task name, got %d arguments: %s (inputs are given with --input NAME=VALUE)",
		cmd.CommandPath(), len(args), strings.Join(args, " "))
}

// taskIDArg accepts exactly one task id, and when it is given what `submit`
// prints ("ID  QUEUED") explains how to keep the id alone.
func taskIDArg(cmd *cobra.Command, args []string) error {
	if len(args) == 1 {
		return nil
	}
	if len(args) == 0 {
		return fmt.Errorf("%s needs a task id (auractl list shows them)", cmd.CommandPath())
	}
	msg := fmt.Sprintf("%s takes one task id, got %d arguments: %s", cmd.CommandPath(), len(args), strings.Join(args, " "))
	if _, isStatus := aurav1.TaskStatus_value["TASK_STATUS_"+args[len(args)-1]]; isStatus {
		msg += ` (to capture only the id of a new task: id=$(auractl submit -q PLAN/TASK))`
	}
	return errors.New(msg)
}
