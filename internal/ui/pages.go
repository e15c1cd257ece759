package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aura-dev/aura/internal/cluster"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

const (
	pageSize = 50
	// searchScan bounds how many tasks one filtered task-list request
	// reads from the store's index when it filters on what the store has
	// no index for (task, tag, input values): a search never scans the
	// whole store at once, and the page continues it from where it
	// stopped ("search older tasks").
	searchScan     = 5000
	searchPages    = searchScan / searchPageSize // for the task page's children
	searchPageSize = 500
	callTimeout    = 15 * time.Second
)

func (s *Server) overview(w http.ResponseWriter, r *http.Request, q *request) {
	data, err := s.overviewData(q.ctx)
	if err != nil {
		s.fail(w, r, q, err)
		return
	}
	s.render(w, r, q, http.StatusOK, "overview", data)
}

type overviewData struct {
	Counts    []kv
	Total     int64
	Running   []taskRow
	Resources []*aurav1.ResourceStats
	Global    *aurav1.ResourceStats
	Pools     []*aurav1.PoolStats
	Rate      rateSummary
	After     uint64 // the event sequence the figures are as of
	// RunningNote says why Running is not shown.
	RunningNote string
	// Nodes are the cluster's live nodes; nil outside a cluster.
	Nodes []nodeRow
}

// nodeRow is one live node of the cluster on the Overview.
type nodeRow struct {
	Name, Address, Version string
	Self                   bool // the node serving this page
	Running, Queued        int
	Capacity               int
	Free                   []string // pool: instances free now
	Started, Updated       string
}

// nodeNames are the live nodes' names for the task list's node filter;
// like the plan names, shown only once this session's own list call
// succeeded (ListNodes asks the same read role).
func (s *Server) nodeNames() []string {
	if s.opts.Directory == nil {
		return nil
	}
	var out []string
	for _, n := range s.opts.Directory.Nodes() {
		out = append(out, n.Name)
	}
	return out
}

func nodeRows(dir cluster.Directory) []nodeRow {
	if dir == nil {
		return nil
	}
	self := dir.Self()
	out := []nodeRow{}
	for _, n := range dir.Nodes() {
		r := nodeRow{Name: n.Name, Address: n.Address, Version: n.Version, Self: n.Name == self, Running: n.Running,
			Queued: n.Queued, Capacity: n.Capacity, Started: when(n.Started), Updated: when(n.Updated)}
		for _, pool := range slices.Sorted(maps.Keys(n.Pools)) {
			r.Free = append(r.Free, fmt.Sprintf("%s: %d of %d", pool, len(n.Free[pool]), len(n.Pools[pool])))
		}
		out = append(out, r)
	}
	return out
}

func (s *Server) overviewData(ctx context.Context) (*overviewData, error) {
	st, err := s.opts.Core.GetStats(ctx)
	if err != nil {
		return nil, err
	}
	d := &overviewData{After: st.GetLastSequence(), Global: st.GetGlobal(), Resources: st.GetResources(), Pools: st.GetPools(),
		Nodes: nodeRows(s.opts.Directory)}
	if s.stored == nil {
		d.Rate = s.rate.summary()
	} else if d.Rate, err = s.stored.summary(ctx); err != nil {
		return nil, fmt.Errorf("reading the last hour's finished tasks from the store: %w", err)
	}
	for _, name := range statuses {
		n := st.GetCountsByStatus()["TASK_STATUS_"+name]
		d.Counts = append(d.Counts, kv{name, json.Number(itoa(n)).String()})
		d.Total += n
	}
	running, err := s.opts.Core.ListTasks(ctx, &aurav1.ListTasksRequest{Status: aurav1.TaskStatus_TASK_STATUS_RUNNING, PageSize: 20})
	if err != nil {
		code, msg := httpStatus(err)
		if code != http.StatusForbidden {
			return nil, err
		}
		// A principal limited to some plans may not list every plan's
		// tasks; the counts above are still its to see.
		d.RunningNote = msg
	}
	for _, t := range running.GetTasks() {
		d.Running = append(d.Running, rowOf(t))
	}
	return d, nil
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// overviewJSON is the Overview's figures as JSON.
func (s *Server) overviewJSON(w http.ResponseWriter, r *http.Request, q *request) {
	d, err := s.overviewData(q.ctx)
	if err != nil {
		code, msg := httpStatus(err)
		http.Error(w, msg, code)
		return
	}
	out := map[string]any{"counts": d.Counts, "total": d.Total, "running": d.Running, "rate": d.Rate, "nodes": d.Nodes}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

type taskListData struct {
	Statuses                                            []string
	Status, Plan, Node, Task, Label, Tag, Q, Page, Next string
	// Cluster says this aurad is a node of a cluster: the node filter is
	// offered, with Nodes, the live nodes' names, to choose from.
	Cluster bool
	Nodes   []string
	Rows    []taskRow
	Scanned int // tasks this request read from the index
	// ScannedTotal is what this search has read over every request that
	// continued it; Back is the creation time of the oldest task read.
	ScannedTotal int
	Back         string
	Filtered     bool // filters the store has no index for
	Plans        []string
	Error        string
	After        uint64 // the event sequence the list is as of
}

func (s *Server) taskList(w http.ResponseWriter, r *http.Request, q *request) {
	v := r.URL.Query()
	d := &taskListData{Statuses: statuses, Status: v.Get("status"), Plan: v.Get("plan"), Node: v.Get("node"), Task: v.Get("task"),
		Label: v.Get("label"), Tag: v.Get("tag"), Q: strings.TrimSpace(v.Get("q")), Page: v.Get("page")}
	d.Cluster = s.opts.Directory != nil
	status, ok := parseStatus(d.Status)
	if !ok {
		d.Error = "unknown status " + d.Status
	} else if d.Node != "" && !d.Cluster {
		d.Error = "node " + d.Node + ": this aurad is not a node of a cluster, so its task ids name no node; leave the node filter empty"
	}
	if d.Error != "" {
		d.Plans = s.ownPlanNames(q.ctx)
		s.render(w, r, q, http.StatusBadRequest, "tasks", d)
		return
	}
	if d.Q != "" && d.Page == "" {
		// An exact task id goes straight to that task.
		if t, err := s.opts.Core.GetTask(q.ctx, d.Q); err == nil {
			d.Rows = []taskRow{rowOf(t)}
			d.Plans, d.Nodes = s.planNames(q.ctx), s.nodeNames()
			s.render(w, r, q, http.StatusOK, "tasks", d)
			return
		}
	}
	// The sequence first, then the list: the page's stream replays what
	// changed in between rather than miss it.
	d.After = s.opts.Events.Last()
	plan := d.Plan
	if plan == "" && d.Task != "" {
		plan, _, _ = strings.Cut(d.Task, "/")
	}
	req := &aurav1.ListTasksRequest{Status: status, Plan: plan, LabelSelector: d.Label, PageSize: pageSize, PageToken: d.Page}
	// The store has no index of the node a task id names: in a cluster,
	// ListTasks answers every node's tasks and the page keeps the node's.
	d.Filtered = d.Task != "" || d.Tag != "" || d.Q != "" || d.Node != ""
	if !d.Filtered {
		resp, err := s.opts.Core.ListTasks(q.ctx, req)
		if err != nil {
			s.listError(w, r, q, d, err)
			return
		}
		for _, t := range resp.GetTasks() {
			d.Rows = append(d.Rows, rowOf(t))
		}
		d.Next = resp.GetNextPageToken()
		d.Plans, d.Nodes = s.planNames(q.ctx), s.nodeNames()
		s.render(w, r, q, http.StatusOK, "tasks", d)
		return
	}
	d.ScannedTotal = atoiOr(v.Get("scanned"), 0)
	scanned, back, err := s.search(q.ctx, req, d)
	d.Scanned, d.Back = scanned, back
	if err != nil {
		s.listError(w, r, q, d, err)
		return
	}
	d.ScannedTotal += d.Scanned
	d.Plans, d.Nodes = s.planNames(q.ctx), s.nodeNames()
	s.render(w, r, q, http.StatusOK, "tasks", d)
}

// search reads at most the search bound of tasks from the store's index,
// from req's page token on, keeping in d.Rows those that match, and stops
// early once a page's worth matched. d.Next is where the next request
// continues ("" once the index is read to its end).
func (s *Server) search(ctx context.Context, req *aurav1.ListTasksRequest, d *taskListData) (scanned int, back string, err error) {
	bound := s.opts.SearchScan
	if bound <= 0 {
		bound = searchScan
	}
	for scanned < bound {
		req.PageSize = int32(min(searchPageSize, bound-scanned))
		resp, err := s.opts.Core.ListTasks(ctx, req)
		if err != nil {
			return scanned, back, err
		}
		scanned += len(resp.GetTasks())
		for _, t := range resp.GetTasks() {
			if matches(t, d.Node, d.Task, d.Tag, d.Q) {
				d.Rows = append(d.Rows, rowOf(t))
			}
			back = when(t.GetCreatedAt().AsTime())
		}
		d.Next = resp.GetNextPageToken()
		req.PageToken = d.Next
		if d.Next == "" || len(d.Rows) >= pageSize {
			break
		}
	}
	return scanned, back, nil
}

// atoiOr parses a non-negative count from a URL, def when it is not one.
func atoiOr(s string, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return def
	}
	return n
}

func (s *Server) listError(w http.ResponseWriter, r *http.Request, q *request, d *taskListData, err error) {
	code, msg := httpStatus(err)
	if code == http.StatusUnauthorized {
		s.fail(w, r, q, err)
		return
	}
	d.Error = msg
	d.Plans = s.ownPlanNames(q.ctx)
	s.render(w, r, q, code, "tasks", d)
}

// matches applies the filters the store has no index for: the node the
// task's id names, the task's name, a resource tag, and a search text
// found in an input value, a label or the id.
func matches(t *aurav1.Task, node, task, tag, text string) bool {
	if node != "" {
		if n, _ := cluster.NodeOf(t.GetId()); n != node {
			return false
		}
	}
	if task != "" && t.GetTask() != task {
		return false
	}
	if tag != "" && !slices.Contains(t.GetResourceTags(), tag) {
		return false
	}
	if text == "" {
		return true
	}
	text = strings.ToLower(text)
	if strings.Contains(strings.ToLower(t.GetId()), text) {
		return true
	}
	for _, f := range t.GetInputs().GetFields() {
		if strings.Contains(strings.ToLower(valueText(f)), text) {
			return true
		}
	}
	for k, v := range t.GetLabels() {
		if strings.Contains(strings.ToLower(k+"="+v), text) {
			return true
		}
	}
	return false
}

type taskData struct {
	T                *aurav1.Task
	Row              taskRow
	Inputs           []kv
	Result           string
	Terminal         bool
	Steps            [][]stepNode
	Children         []taskRow
	ChildrenScanned  int
	ChildrenAfter    uint64 // the event sequence Children is as of
	Auractl, Grpcurl string
	Error            string
}

func (s *Server) taskPage(w http.ResponseWriter, r *http.Request, q *request) {
	s.showTask(w, r, q, http.StatusOK, r.PathValue("id"), "")
}

func (s *Server) showTask(w http.ResponseWriter, r *http.Request, q *request, code int, id, msg string) {
	t, err := s.opts.Core.GetTask(q.ctx, id)
	if err != nil {
		s.fail(w, r, q, err)
		return
	}
	d := &taskData{T: t, Row: rowOf(t), Inputs: structRows(t.GetInputs()), Terminal: terminal(t.GetStatus()), Error: msg}
	if t.GetResult() != nil {
		d.Result = valueText(t.GetResult())
	}
	d.Auractl, d.Grpcurl = commands(t, s.opts.GRPCAddr)
	info := &aurav1.TaskInfo{}
	if plans, err := s.opts.Core.ListPlans(q.ctx); err == nil {
		if _, ti := findTask(plans, t.GetTask()); ti != nil {
			info = ti
		}
	}
	d.Steps = stepLayers(info, t.GetSteps())
	// Taken before the list is read: a child that changes meanwhile is
	// sent to the page again, never missed.
	d.ChildrenAfter = s.opts.Events.Last()
	d.Children, d.ChildrenScanned = s.children(q.ctx, t)
	s.render(w, r, q, code, "task", d)
}

// children finds the tasks t started (state transitions): they are in
// t's plan and newer than t, so the newest-first index is read down to t.
func (s *Server) children(ctx context.Context, t *aurav1.Task) ([]taskRow, int) {
	var out []taskRow
	scanned := 0
	req := &aurav1.ListTasksRequest{Plan: strings.SplitN(t.GetTask(), "/", 2)[0], PageSize: searchPageSize}
	for range searchPages {
		resp, err := s.opts.Core.ListTasks(ctx, req)
		if err != nil {
			return out, scanned
		}
		for _, c := range resp.GetTasks() {
			scanned++
			if c.GetParentId() == t.GetId() {
				out = append(out, rowOf(c))
			}
			if c.GetId() == t.GetId() || (c.GetCreatedAt() != nil && c.GetCreatedAt().AsTime().Before(t.GetCreatedAt().AsTime())) {
				return out, scanned
			}
		}
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	return out, scanned
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request, q *request) {
	id := r.PathValue("id")
	ctx, stop := context.WithTimeout(q.ctx, callTimeout)
	defer stop()
	if _, err := s.opts.Core.CancelTask(ctx, id, "cancelled from the web UI by "+q.sess.identity.Name); err != nil {
		code, msg := httpStatus(err)
		s.showTask(w, r, q, code, id, msg)
		return
	}
	http.Redirect(w, r, "/tasks/"+url.PathEscape(id), http.StatusSeeOther)
}

// rerun submits the task again with its inputs, tags, labels, priority,
// mode and timeout.
func (s *Server) rerun(w http.ResponseWriter, r *http.Request, q *request) {
	id := r.PathValue("id")
	t, err := s.opts.Core.GetTask(q.ctx, id)
	if err != nil {
		s.fail(w, r, q, err)
		return
	}
	req := &aurav1.SubmitRequest{Task: t.GetTask(), Inputs: t.GetInputs(), ResourceTags: t.GetResourceTags(),
		Priority: t.GetPriority(), Labels: t.GetLabels(), Timeout: t.GetTimeout(), ExecutionMode: t.GetExecutionMode(), SkipPlanning: t.GetSkipPlanning()}
	resp, err := s.opts.Core.Submit(q.ctx, req)
	if err != nil {
		code, msg := httpStatus(err)
		s.showTask(w, r, q, code, id, msg)
		return
	}
	http.Redirect(w, r, "/tasks/"+url.PathEscape(resp.GetTaskId()), http.StatusSeeOther)
}

type plansData struct {
	Plans []*aurav1.Plan
	Error string
}

func (s *Server) plansPage(w http.ResponseWriter, r *http.Request, q *request) {
	plans, err := s.opts.Core.ListPlans(q.ctx)
	if err != nil {
		s.fail(w, r, q, err)
		return
	}
	s.render(w, r, q, http.StatusOK, "plans", &plansData{Plans: plans, Error: r.URL.Query().Get("reloaded")})
}

type planData struct {
	P     *aurav1.Plan
	Tasks []planTask
	Graph *graphSVG
}

type planTask struct {
	Info   *aurav1.TaskInfo
	Name   string
	Fields []inputField
	Steps  [][]stepNode
	Error  string // the server's refusal of this form's last submission
}

func (s *Server) planPage(w http.ResponseWriter, r *http.Request, q *request) {
	s.showPlan(w, r, q, http.StatusOK, r.PathValue("plan"), "", "", nil)
}

func (s *Server) showPlan(w http.ResponseWriter, r *http.Request, q *request, code int, name, failedTask, msg string, values map[string]string) {
	plans, err := s.opts.Core.ListPlans(q.ctx)
	if err != nil {
		s.fail(w, r, q, err)
		return
	}
	i := slices.IndexFunc(plans, func(p *aurav1.Plan) bool { return p.GetName() == name })
	if i < 0 {
		s.render(w, r, q, http.StatusNotFound, "error", map[string]any{"Code": http.StatusNotFound, "Message": "no plan " + name})
		return
	}
	p := plans[i]
	d := &planData{P: p, Graph: stateGraph(p.GetStateMap())}
	for _, ti := range p.GetTasks() {
		pt := planTask{Info: ti, Name: ti.GetId(), Steps: stepLayers(ti, nil)}
		var vals map[string]string
		if pt.Name == failedTask {
			pt.Error, vals = msg, values
		}
		pt.Fields = formFields(ti, vals)
		d.Tasks = append(d.Tasks, pt)
	}
	s.render(w, r, q, code, "plan", d)
}

// submit takes a plan page's form: the task, its inputs as text, tags
// and labels.
func (s *Server) submit(w http.ResponseWriter, r *http.Request, q *request) {
	name := r.PostFormValue("task")
	planName, _, _ := strings.Cut(name, "/")
	plans, err := s.opts.Core.ListPlans(q.ctx)
	if err != nil {
		s.fail(w, r, q, err)
		return
	}
	values := map[string]string{}
	for k, v := range r.PostForm {
		if n, ok := strings.CutPrefix(k, "input."); ok && len(v) > 0 {
			values[n] = v[0]
		}
	}
	_, ti := findTask(plans, name)
	if ti == nil {
		s.showPlan(w, r, q, http.StatusBadRequest, planName, name, "no task "+name, values)
		return
	}
	inputs, err := formInputs(ti, r.PostFormValue)
	if err != nil {
		s.showPlan(w, r, q, http.StatusBadRequest, planName, name, err.Error(), values)
		return
	}
	req := &aurav1.SubmitRequest{Task: name, Inputs: inputs}
	req.ResourceTags = strings.Fields(strings.ReplaceAll(r.PostFormValue("tags"), ",", " "))
	if lbl := strings.TrimSpace(r.PostFormValue("labels")); lbl != "" {
		req.Labels = map[string]string{}
		for _, pair := range strings.Split(lbl, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(pair), "=")
			req.Labels[k] = v
		}
	}
	resp, err := s.opts.Core.Submit(q.ctx, req)
	if err == nil && resp.GetError() != nil {
		err = &CallError{Code: "InvalidArgument", Message: resp.GetError().GetMessage()}
	}
	if err != nil {
		code, msg := httpStatus(err)
		if code == http.StatusUnauthorized {
			s.fail(w, r, q, err)
			return
		}
		s.showPlan(w, r, q, code, planName, name, msg, values)
		return
	}
	http.Redirect(w, r, "/tasks/"+url.PathEscape(resp.GetTaskId()), http.StatusSeeOther)
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request, q *request) {
	if _, err := s.opts.Core.ReloadPlans(q.ctx); err != nil {
		s.fail(w, r, q, err)
		return
	}
	http.Redirect(w, r, "/plans?reloaded=Plans+reloaded.", http.StatusSeeOther)
}

func (s *Server) resourcesPage(w http.ResponseWriter, r *http.Request, q *request) {
	// The sequence first: the page's stream replays what changed since.
	after := s.opts.Events.Last()
	res, err := s.opts.Resources.Resources(q.ctx)
	if err != nil {
		s.fail(w, r, q, err)
		return
	}
	s.renderAt(w, r, q, http.StatusOK, "resources", res, after)
}

// planNames lists the plans for the task list's filter, asking the API at
// most every planNamesTTL: the list is the same for every caller that may
// read, so it is called only once this session's own ListTasks or GetTask
// call has succeeded (the same read role ListPlans asks). A page whose
// call failed asks ownPlanNames instead, so a session that may not read
// never sees names another session fetched.
func (s *Server) planNames(ctx context.Context) []string {
	s.plansMu.Lock()
	defer s.plansMu.Unlock()
	if time.Since(s.plansAt) < planNamesTTL && s.plansAt != (time.Time{}) {
		return s.plans
	}
	plans, err := s.opts.Core.ListPlans(ctx)
	if err != nil {
		return s.plans
	}
	s.plans = s.plans[:0:0]
	for _, p := range plans {
		s.plans = append(s.plans, p.GetName())
	}
	s.plansAt = time.Now()
	return s.plans
}

const planNamesTTL = 5 * time.Second

// ownPlanNames asks the API for the plan names with this session's own
// credential, bypassing the cache: nil when it may not list them.
func (s *Server) ownPlanNames(ctx context.Context) []string {
	plans, err := s.opts.Core.ListPlans(ctx)
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(plans))
	for _, p := range plans {
		names = append(names, p.GetName())
	}
	return names
}
