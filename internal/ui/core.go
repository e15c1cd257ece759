package ui

import (
	"context"
	"errors"
	"time"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Core is what the pages ask of aurad: the ExecutionService's calls, made
// with the credential WithCredential put on ctx. aurad implements it with
// an in-process client of its own gRPC service.
type Core interface {
	Submit(ctx context.Context, req *aurav1.SubmitRequest) (*aurav1.SubmitResponse, error)
	GetTask(ctx context.Context, id string) (*aurav1.Task, error)
	ListTasks(ctx context.Context, req *aurav1.ListTasksRequest) (*aurav1.ListTasksResponse, error)
	CancelTask(ctx context.Context, id, reason string) (*aurav1.Task, error)
	ListPlans(ctx context.Context) ([]*aurav1.Plan, error)
	GetStats(ctx context.Context) (*aurav1.Stats, error)
	ListResources(ctx context.Context) ([]*aurav1.Resource, error)
	ReloadPlans(ctx context.Context) ([]*aurav1.Plan, error)
	// The ScheduleService's calls. ListSchedules of plan "" lists every
	// plan's schedules; a caller limited to some plans must name one.
	ListSchedules(ctx context.Context, plan string) ([]*aurav1.Schedule, error)
	PauseSchedule(ctx context.Context, name string) (*aurav1.Schedule, error)
	ResumeSchedule(ctx context.Context, name string) (*aurav1.Schedule, error)
	TriggerSchedule(ctx context.Context, name string) (*aurav1.TriggerScheduleResponse, error)
}

// Events is the event log as the Stream RPC sees it (task events, no hook
// events), resumable by sequence.
type Events interface {
	// Follow calls send with every task event after *after (nil: from
	// now on), of task taskID only when it is set, in sequence order with
	// no gap, until send fails or ctx ends: its sequence and the event as
	// the Stream RPC encodes it (an aurav1.TaskEvent without its
	// sequence; shared, read-only). It returns ErrPruned when the log no
	// longer holds what follows *after.
	Follow(ctx context.Context, after *uint64, taskID string, send func(seq uint64, event []byte) error) error
	// Last is the sequence of the newest event committed.
	Last() uint64
}

// ErrPruned says the events a follower asked to resume from have been
// pruned from the log: the page must load afresh.
var ErrPruned = errors.New("the event log no longer holds events that old")

// HookStats is what the hooks hub knows of the processes following it.
type HookStats struct {
	Subscribers  int    // event log followers now: Subscribe and Stream calls, the UI's pages
	Interceptors int    // Intercept streams registered
	MaxLag       uint64 // events the furthest-behind follower has yet to get
	LastSequence uint64
	Followers    []HookFollower
	Intercepting []HookInterceptor
	// Hidden says Followers and Intercepting were left out: with
	// authentication on, only the admin role sees them.
	Hidden bool
}

// HookFollower is one follower of the event log.
type HookFollower struct {
	Kind   string // subscribe (HookService/Subscribe), stream (ExecutionService/Stream), ui
	Name   string // its principal
	Peer   string // its remote address
	Plan   string // its plan filter
	TaskID string // the one task it follows
	Hooks  []string
	Cursor uint64 // the last sequence it has passed
	Lag    uint64
}

// HookInterceptor is one interceptor registered through
// HookService/Intercept.
type HookInterceptor struct {
	Name           string
	Plan           string
	Timeout        time.Duration
	FailOpen       bool
	Calls, Denials uint64
}

// Hooks reports the hub's followers.
type Hooks interface {
	HookStats() HookStats
}

// CallError is a refusal from Core: Code is the gRPC code's name
// ("InvalidArgument", "PermissionDenied", ...), Message the server's own
// words, which the page shows as they are.
type CallError struct {
	Code    string
	Message string
}

func (e *CallError) Error() string { return e.Code + ": " + e.Message }

type credentialKey struct{}

// WithCredential returns ctx carrying the signed-in person's bearer token
// ("" when authentication is off), for Core to send with each call.
func WithCredential(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, credentialKey{}, token)
}

// Credential is the bearer token WithCredential put on ctx.
func Credential(ctx context.Context) string {
	s, _ := ctx.Value(credentialKey{}).(string)
	return s
}
