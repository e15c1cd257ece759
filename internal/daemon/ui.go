package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/aura-dev/aura/internal/auth"
	"github.com/aura-dev/aura/internal/cluster"
	"github.com/aura-dev/aura/internal/hooks"
	"github.com/aura-dev/aura/internal/server"
	"github.com/aura-dev/aura/internal/store"
	"github.com/aura-dev/aura/internal/ui"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// UIConfig says where the web UI listens: the same rules as gRPC
// (plaintext only on loopback unless InsecureRemote; TLS with the gRPC
// certificate elsewhere).
type UIConfig struct {
	Listen         string      // host:port; "" serves no UI
	TLS            *tls.Config // nil: plaintext
	InsecureRemote bool
	// GRPCAddr is the API's address, shown in copy-as-command boxes.
	GRPCAddr string
	// Resources, when set, lists the Resources page; nil lists resources
	// from GetStats and the tasks' tags.
	Resources ui.Resources
	// Optional says nobody asked for this address (it is the default):
	// when another process listens there, the daemon starts without a UI
	// and logs a warning instead of failing.
	Optional bool
}

// uiServer serves the web UI. Its pages call the API through an
// in-process gRPC server built like the public one (same services, same
// authentication, authorization and validation interceptors) but reached
// over an in-memory pipe, so the UI applies exactly the API's rules.
type uiServer struct {
	// Immutable after start.
	log       *slog.Logger
	handler   *ui.Server
	http      *http.Server
	inner     *grpc.Server
	conn      *grpc.ClientConn
	listening string
	served    chan struct{} // closed when the HTTP serving goroutine has returned
	innerDone chan struct{} // closed when the in-process gRPC server has returned
}

// startUI serves the web UI, when asked to.
func (d *Daemon) startUI() error {
	c := d.cfg.UI
	if c.Listen == "" {
		return nil
	}
	lis, err := server.Listen(server.ListenConfig{Addr: c.Listen, TLS: c.TLS != nil, InsecureRemote: c.InsecureRemote})
	if err != nil && c.Optional && errors.Is(err, syscall.EADDRINUSE) {
		d.log.Warn("web UI not served: its default address is in use (another aurad?); give --ui-listen another address, or an empty one to silence this", "ui_listen", c.Listen)
		return nil
	}
	if err != nil {
		return fmt.Errorf("--ui-listen: %w", err)
	}
	if c.TLS != nil {
		lis = tls.NewListener(lis, c.TLS)
	}
	u := &uiServer{log: d.log, served: make(chan struct{}), innerDone: make(chan struct{})}
	pipe := bufconn.Listen(1 << 20)
	clientCodec, serverCodec := newHandoffCodecs(server.MaxRequestSize)
	opts := append(d.Guard.ServerOptions(), d.routingOptions()...)
	u.inner = server.New(server.Deps{Manager: d.Manager, Hub: d.Hub, Hooks: d.Hooks, Logger: d.log, Reload: d.Reload, Pools: d.pools, Schedules: d.Schedules,
		Nodes: nodeList{d}},
		append(opts, grpc.ForceServerCodecV2(serverCodec))...).GRPC
	go func() {
		defer close(u.innerDone)
		_ = u.inner.Serve(pipe)
	}()
	u.conn, err = grpc.NewClient("passthrough:///aurad-ui",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return pipe.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(clientCodec)))
	if err != nil {
		lis.Close()
		u.inner.Stop()
		return fmt.Errorf("web UI: connecting to the in-process API: %w", err)
	}
	core := &uiCore{c: aurav1.NewExecutionServiceClient(u.conn), s: aurav1.NewScheduleServiceClient(u.conn)}
	u.handler, err = ui.NewServer(ui.Options{
		Core: core, Events: uiEvents{hub: d.Hub}, Hooks: uiHooks{d}, Resources: c.Resources,
		AuthOn: d.Guard.AuthOn(), Authenticate: d.uiIdentity, Secure: c.TLS != nil, GRPCAddr: c.GRPCAddr, Logger: d.log,
		Finished: uiFinished(d.Store), Directory: d.uiDirectory(),
	})
	if err != nil {
		lis.Close()
		u.conn.Close()
		u.inner.Stop()
		return fmt.Errorf("web UI: %w", err)
	}
	u.handler.Start()
	u.http = &http.Server{Handler: u.handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() {
		defer close(u.served)
		if err := u.http.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			u.log.Error("web UI stopped", "err", err)
		}
	}()
	u.listening = lis.Addr().String()
	scheme := "http"
	if c.TLS != nil {
		scheme = "https"
	}
	d.log.Info("web UI serving", "listen", u.listening, "url", scheme+"://"+u.listening+"/")
	d.ui = u
	d.parts.add("web ui", func(context.Context) { u.shutdown() })
	return nil
}

// uiDirectory is the cluster's live nodes for the UI's node list and
// filter; a nil interface (not a nil *Membership) outside a cluster.
func (d *Daemon) uiDirectory() cluster.Directory {
	if m := d.Cluster(); m != nil {
		return m
	}
	return nil
}

// UIAddr is the address the web UI listens on, or "" when it is off.
func (d *Daemon) UIAddr() string {
	if d.ui == nil {
		return ""
	}
	return d.ui.listening
}

// shutdown ends the event streams and closes every connection, then the
// in-process API.
func (u *uiServer) shutdown() {
	u.handler.Shutdown()
	if err := u.http.Close(); err != nil {
		u.log.Warn("closing the web UI", "err", err)
	}
	<-u.served
	u.conn.Close()
	u.inner.Stop()
	<-u.innerDone
}

func (d *Daemon) uiIdentity(token string) (ui.Identity, bool) {
	p, ok := d.Guard.Authenticate(token)
	if !ok {
		return ui.Identity{}, false
	}
	id := ui.Identity{Name: p.Name, Roles: map[string]bool{}, Scoped: p.Scoped()}
	for _, r := range auth.Roles {
		id.Roles[string(r)] = p.Has(r)
	}
	return id, true
}

// uiCore is ui.Core over the in-process API client: each call carries the
// session's bearer token, and a refusal comes back as a *ui.CallError with
// the server's own message.
type uiCore struct {
	c aurav1.ExecutionServiceClient
	s aurav1.ScheduleServiceClient
}

func outgoing(ctx context.Context) context.Context {
	if tok := ui.Credential(ctx); tok != "" {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	return ctx
}

func callError(err error) error {
	if err == nil {
		return nil
	}
	st := status.Convert(err)
	return &ui.CallError{Code: st.Code().String(), Message: st.Message()}
}

func (u *uiCore) Submit(ctx context.Context, req *aurav1.SubmitRequest) (*aurav1.SubmitResponse, error) {
	resp, err := u.c.Submit(outgoing(ctx), req)
	return resp, callError(err)
}

func (u *uiCore) GetTask(ctx context.Context, id string) (*aurav1.Task, error) {
	t, err := u.c.GetTask(outgoing(ctx), &aurav1.GetTaskRequest{TaskId: id})
	return t, callError(err)
}

func (u *uiCore) ListTasks(ctx context.Context, req *aurav1.ListTasksRequest) (*aurav1.ListTasksResponse, error) {
	resp, err := u.c.ListTasks(outgoing(ctx), req)
	return resp, callError(err)
}

func (u *uiCore) CancelTask(ctx context.Context, id, reason string) (*aurav1.Task, error) {
	resp, err := u.c.CancelTask(outgoing(ctx), &aurav1.CancelTaskRequest{TaskId: id, Reason: reason})
	return resp.GetTask(), callError(err)
}

func (u *uiCore) ListPlans(ctx context.Context) ([]*aurav1.Plan, error) {
	resp, err := u.c.ListPlans(outgoing(ctx), &aurav1.ListPlansRequest{})
	return resp.GetPlans(), callError(err)
}

func (u *uiCore) GetStats(ctx context.Context) (*aurav1.Stats, error) {
	st, err := u.c.GetStats(outgoing(ctx), &aurav1.GetStatsRequest{})
	return st, callError(err)
}

func (u *uiCore) ListResources(ctx context.Context) ([]*aurav1.Resource, error) {
	resp, err := u.c.ListResources(outgoing(ctx), &aurav1.ListResourcesRequest{})
	return resp.GetResources(), callError(err)
}

func (u *uiCore) ReloadPlans(ctx context.Context) ([]*aurav1.Plan, error) {
	resp, err := u.c.ReloadPlans(outgoing(ctx), &aurav1.ReloadPlansRequest{})
	return resp.GetPlans(), callError(err)
}

// uiNextFires is how many next fire times the Schedules page shows.
const uiNextFires = 3

func (u *uiCore) ListSchedules(ctx context.Context, plan string) ([]*aurav1.Schedule, error) {
	resp, err := u.s.ListSchedules(outgoing(ctx), &aurav1.ListSchedulesRequest{Plan: plan, NextCount: uiNextFires})
	return resp.GetSchedules(), callError(err)
}

func (u *uiCore) PauseSchedule(ctx context.Context, name string) (*aurav1.Schedule, error) {
	s, err := u.s.PauseSchedule(outgoing(ctx), &aurav1.PauseScheduleRequest{Schedule: name})
	return s, callError(err)
}

func (u *uiCore) ResumeSchedule(ctx context.Context, name string) (*aurav1.Schedule, error) {
	s, err := u.s.ResumeSchedule(outgoing(ctx), &aurav1.ResumeScheduleRequest{Schedule: name})
	return s, callError(err)
}

func (u *uiCore) TriggerSchedule(ctx context.Context, name string) (*aurav1.TriggerScheduleResponse, error) {
	resp, err := u.s.TriggerSchedule(outgoing(ctx), &aurav1.TriggerScheduleRequest{Schedule: name})
	return resp, callError(err)
}

// uiEvents follows the event log through the hub, as the Stream RPC does.
type uiEvents struct{ hub *hooks.Hub }

func (e uiEvents) Last() uint64 { return e.hub.Last() }

func (e uiEvents) Follow(ctx context.Context, after *uint64, taskID string, send func(uint64, []byte) error) error {
	f := hooks.Filter{TaskID: taskID, Match: func(ev store.Event) bool { return !ev.Hook }, Who: hooks.Follower{Kind: "ui", Name: "web UI"}}
	err := e.hub.Follow(ctx, after, f,
		func(ev store.Event) (bool, error) { return false, send(ev.Seq, ev.Data) })
	var oor *hooks.OutOfRangeError
	if errors.As(err, &oor) {
		return ui.ErrPruned
	}
	return err
}

type uiHooks struct{ d *Daemon }

func (h uiHooks) HookStats() ui.HookStats {
	n, lag := h.d.Hub.Lag()
	hs := ui.HookStats{Subscribers: n, Interceptors: h.d.Hooks.Interceptors(), MaxLag: lag, LastSequence: h.d.Hub.Last()}
	for _, f := range h.d.Hub.Snapshot() {
		hs.Followers = append(hs.Followers, ui.HookFollower{Kind: f.Kind, Name: f.Name, Peer: f.Peer, Plan: f.Plan,
			TaskID: f.TaskID, Hooks: f.Hooks, Cursor: f.Cursor, Lag: f.Lag})
	}
	for _, ic := range h.d.Hooks.Snapshot() {
		hs.Intercepting = append(hs.Intercepting, ui.HookInterceptor{Name: ic.Name, Plan: ic.Plan, Timeout: ic.Timeout,
			FailOpen: ic.FailOpen, Calls: ic.Calls, Denials: ic.Denials})
	}
	return hs
}
