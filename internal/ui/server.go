package ui

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/aura-dev/aura/internal/cluster"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure a Server.
type Options struct {
	Core   Core
	Events Events
	Hooks  Hooks
	// Resources lists resources for the Resources page; nil lists them
	// from ListResources and GetStats (APIResources).
	Resources Resources
	// AuthOn says the API wants credentials: the UI then asks for a token
	// at sign-in. Without it every browser is the anonymous principal.
	AuthOn bool
	// Authenticate finds who holds token (compared in constant time);
	// with AuthOn false it is called with "" and names the anonymous
	// principal.
	Authenticate func(token string) (Identity, bool)
	// Secure marks the session cookie Secure: the UI is served over TLS.
	Secure bool
	// GRPCAddr is the API's address, for the "copy as command" boxes.
	GRPCAddr string
	// SearchScan bounds the tasks one task-list search reads from the
	// store's index before it offers to search older tasks; 0 means 5,000.
	SearchScan int
	// Finished reads finished tasks from the store for the Overview's
	// throughput and latency over the last hour; nil counts them from the
	// event log as it goes by, since the UI started.
	Finished FinishedSince
	// Directory is the cluster's live nodes, for the Overview's node list
	// and the task list's node filter; nil outside a cluster, where both
	// are left out (every task is this aurad's).
	Directory cluster.Directory
	Logger    *slog.Logger
}

// Server is the web UI as an http.Handler. Start its throughput tracker
// with Start; Shutdown ends it and every open event stream.
type Server struct {
	// Immutable after NewServer.
	opts     Options
	log      *slog.Logger
	pages    map[string]*template.Template
	mux      *http.ServeMux
	sessions *sessions
	rate     *throughput
	stored   *storeRate // nil without Options.Finished
	// eventJSON is shared by every event stream.
	eventJSON jsonCache

	plansMu sync.Mutex // guards plans and plansAt
	plans   []string   // plan names, as of plansAt; shared, read-only
	plansAt time.Time

	// life ends every event stream at Shutdown.
	life    context.Context
	endLife context.CancelFunc
	wg      sync.WaitGroup
}

// NewServer builds the UI.
func NewServer(o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Resources == nil {
		o.Resources = APIResources{Core: o.Core}
	}
	s := &Server{opts: o, log: o.Logger, sessions: newSessions(), rate: newThroughput(time.Now)}
	if o.Finished != nil {
		s.stored = &storeRate{read: o.Finished, now: time.Now}
	}
	s.life, s.endLife = context.WithCancel(context.Background())
	if err := s.parseTemplates(); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

func (s *Server) parseTemplates() error {
	s.pages = map[string]*template.Template{}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return err
		}
		s.pages[base] = t
	}
	return nil
}

func (s *Server) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /signin", s.signinPage)
	m.HandleFunc("POST /signin", s.signin)
	m.HandleFunc("POST /signout", s.withSession(true, s.signout))
	m.HandleFunc("GET /{$}", s.withSession(false, s.overview))
	m.HandleFunc("GET /tasks", s.withSession(false, s.taskList))
	m.HandleFunc("GET /tasks/{id}", s.withSession(false, s.taskPage))
	m.HandleFunc("POST /tasks/{id}/cancel", s.withSession(true, s.cancel))
	m.HandleFunc("POST /tasks/{id}/rerun", s.withSession(true, s.rerun))
	m.HandleFunc("GET /plans", s.withSession(false, s.plansPage))
	m.HandleFunc("GET /plans/{plan}", s.withSession(false, s.planPage))
	m.HandleFunc("POST /submit", s.withSession(true, s.submit))
	m.HandleFunc("POST /plans/reload", s.withSession(true, s.reload))
	m.HandleFunc("GET /resources", s.withSession(false, s.resourcesPage))
	m.HandleFunc("GET /hooks", s.withSession(false, s.hooksPage))
	m.HandleFunc("GET /events/hooks", s.withSession(false, s.hooksEvents))
	m.HandleFunc("GET /api/hooks", s.withSession(false, s.hooksAPI))
	m.HandleFunc("GET /api/events", s.withSession(false, s.pollEvents))
	m.HandleFunc("GET /schedules", s.withSession(false, s.schedulesPage))
	m.HandleFunc("POST /schedules/{action}", s.withSession(true, s.scheduleAction))
	m.HandleFunc("GET /events", s.withSession(false, s.events))
	m.HandleFunc("GET /api/overview", s.withSession(false, s.overviewJSON))
	m.HandleFunc("GET /api/schedules", s.withSession(false, s.schedulesJSON))
	// 204 while the session lives, 401 after: how a page whose stream
	// was refused learns whether to sign in again.
	m.HandleFunc("GET /api/session", s.withSession(false, func(w http.ResponseWriter, _ *http.Request, _ *request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	s.mux = m
}

// Start follows the event log for the Overview's throughput and latency
// figures, until Shutdown, unless the store gives them (Options.Finished).
func (s *Server) Start() {
	if s.stored != nil {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.rate.follow(s.life, s.opts.Events, s.log)
	}()
}

// Shutdown ends the open event streams and the tracker.
func (s *Server) Shutdown() {
	s.endLife()
	s.wg.Wait()
}

// contentSecurityPolicy allows only the UI's own script and style files:
// no inline script, no framing, forms only to itself.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// ServeHTTP serves the UI with its security headers.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, "/static/") {
		h.Set("Cache-Control", "no-store")
	}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.log.Error("ui handler panicked", "path", r.URL.Path, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			http.Error(w, "internal error", http.StatusInternalServerError)
		}
	}()
	s.mux.ServeHTTP(w, r)
}

// request is one call's session and context.
type request struct {
	sess *session
	ctx  context.Context // carries the session's credential for Core
}

// withSession finds the caller's session: without one, with
// authentication on, pages redirect to sign-in and the event stream and
// JSON answer 401; with it off, a session is made on the spot (it carries
// the CSRF token). A change (change true) must carry the session's CSRF
// token and come from this origin, or nothing happens.
func (s *Server) withSession(change bool, h func(http.ResponseWriter, *http.Request, *request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess := s.sessions.get(r)
		if sess == nil && !s.opts.AuthOn {
			if id, ok := s.opts.Authenticate(""); ok {
				sess = s.sessions.start("", id)
				s.setCookie(w, sess)
			}
		}
		if sess == nil {
			if r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, "/events") && !strings.HasPrefix(r.URL.Path, "/api/") {
				http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			http.Error(w, "sign in first: this needs a session (GET /signin)", http.StatusUnauthorized)
			return
		}
		if change {
			if !sameOrigin(r) {
				http.Error(w, "refused: the request came from another site", http.StatusForbidden)
				return
			}
			got := r.Header.Get("X-CSRF-Token")
			if got == "" {
				got = r.PostFormValue("csrf")
			}
			if !sess.validCSRF(got) {
				http.Error(w, "refused: the CSRF token is missing or stale; reload the page and try again", http.StatusForbidden)
				return
			}
		}
		h(w, r, &request{sess: sess, ctx: WithCredential(r.Context(), sess.token)})
	}
}

// sameOrigin refuses a request whose Origin names another site. Browsers
// send Origin on every POST; a request without one (curl) is judged by its
// CSRF token alone.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func (s *Server) setCookie(w http.ResponseWriter, sess *session) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: sess.id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: s.opts.Secure, Expires: sess.expires})
}

func (s *Server) signinPage(w http.ResponseWriter, r *http.Request) {
	if !s.opts.AuthOn {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	s.render(w, r, nil, http.StatusOK, "signin", map[string]any{"Next": safeNext(r.URL.Query().Get("next"))})
}

func (s *Server) signin(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "refused: the request came from another site", http.StatusForbidden)
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	next := safeNext(r.PostFormValue("next"))
	id, ok := s.opts.Authenticate(token)
	if !ok || (s.opts.AuthOn && token == "") {
		s.log.Warn("ui sign-in refused", "peer", r.RemoteAddr)
		s.render(w, r, nil, http.StatusUnauthorized, "signin", map[string]any{"Next": next, "Error": "That token is not accepted."})
		return
	}
	if old := s.sessions.get(r); old != nil {
		s.sessions.end(old.id)
	}
	sess := s.sessions.start(token, id)
	s.setCookie(w, sess)
	s.log.Info("ui sign-in", "principal", id.Name)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// safeNext keeps a post-sign-in redirect on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return "/"
	}
	return next
}

func (s *Server) signout(w http.ResponseWriter, r *http.Request, q *request) {
	s.sessions.end(q.sess.id)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.opts.Secure})
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

// page is what every template gets.
type page struct {
	Title    string
	Nav      string
	Identity Identity
	AuthOn   bool
	CSRF     string
	Data     any
	// After is the event sequence a live page's data is as of (renderAt).
	After uint64
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, q *request, code int, name string, data any) {
	s.renderAt(w, r, q, code, name, data, 0)
}

// renderAt renders a page whose data was read after event sequence after:
// its script follows the events from there and refreshes the page's live
// regions.
func (s *Server) renderAt(w http.ResponseWriter, r *http.Request, q *request, code int, name string, data any, after uint64) {
	t := s.pages[name]
	p := page{Title: name, Nav: name, AuthOn: s.opts.AuthOn, Data: data, After: after}
	if q != nil {
		p.Identity, p.CSRF = q.sess.identity, q.sess.csrf
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout.html", p); err != nil {
		s.log.Error("ui template", "page", name, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(b.Bytes())
}

// fail shows a Core refusal as a page with the server's message.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, q *request, err error) {
	code, msg := httpStatus(err)
	if code == http.StatusUnauthorized && s.opts.AuthOn {
		// The token was revoked by a tokens file reload: sign in again.
		s.sessions.end(q.sess.id)
		http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	s.render(w, r, q, code, "error", map[string]any{"Code": code, "Message": msg})
}

func httpStatus(err error) (int, string) {
	var ce *CallError
	if !errors.As(err, &ce) {
		return http.StatusInternalServerError, err.Error()
	}
	switch ce.Code {
	case "InvalidArgument", "OutOfRange", "FailedPrecondition":
		return http.StatusBadRequest, ce.Message
	case "NotFound":
		return http.StatusNotFound, ce.Message
	case "PermissionDenied":
		return http.StatusForbidden, ce.Message
	case "Unauthenticated":
		return http.StatusUnauthorized, ce.Message
	case "ResourceExhausted":
		return http.StatusTooManyRequests, ce.Message
	case "Unavailable":
		return http.StatusServiceUnavailable, ce.Message
	}
	return http.StatusInternalServerError, ce.Message
}
