package ui

import (
	"encoding/json"
	"fmt"
	"html/template"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

var funcs = template.FuncMap{
	"status": statusName,
	"stepStatus": func(s aurav1.StepStatus) string {
		return strings.TrimPrefix(s.String(), "STEP_STATUS_")
	},
	"lower": strings.ToLower,
	"sub":   func(a, b int) int { return a - b },
	"when":  when,
	"since": func(t time.Time) string { return time.Since(t).Round(time.Second).String() },
}

func statusName(s aurav1.TaskStatus) string { return strings.TrimPrefix(s.String(), "TASK_STATUS_") }

func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// statuses are the TaskStatus names a filter may pick, in lifecycle order.
var statuses = func() []string {
	var out []string
	for i := 1; i < len(aurav1.TaskStatus_name); i++ {
		out = append(out, statusName(aurav1.TaskStatus(i)))
	}
	return out
}()

func parseStatus(s string) (aurav1.TaskStatus, bool) {
	if s == "" {
		return aurav1.TaskStatus_TASK_STATUS_UNSPECIFIED, true
	}
	v, ok := aurav1.TaskStatus_value["TASK_STATUS_"+strings.ToUpper(s)]
	return aurav1.TaskStatus(v), ok
}

func terminal(s aurav1.TaskStatus) bool { return s >= aurav1.TaskStatus_TASK_STATUS_SUCCEEDED }

// taskRow is one line of the task list.
type taskRow struct {
	ID, Task, Status, Created, Took string
	Tags                            []string
	Labels                          []string
}

func rowOf(t *aurav1.Task) taskRow {
	r := taskRow{ID: t.GetId(), Task: t.GetTask(), Status: statusName(t.GetStatus()), Created: when(t.GetCreatedAt().AsTime()), Tags: t.GetResourceTags()}
	if t.GetFinishedAt() != nil && t.GetCreatedAt() != nil {
		r.Took = t.GetFinishedAt().AsTime().Sub(t.GetCreatedAt().AsTime()).Round(time.Millisecond).String()
	}
	for _, k := range sortedKeys(t.GetLabels()) {
		r.Labels = append(r.Labels, k+"="+t.GetLabels()[k])
	}
	return r
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// kv is one name and its value as text.
type kv struct{ Name, Value string }

func structRows(s *structpb.Struct) []kv {
	var out []kv
	for _, k := range sortedKeys(s.GetFields()) {
		out = append(out, kv{k, valueText(s.GetFields()[k])})
	}
	return out
}

// valueText is a value as JSON text, indented when it is an object or a
// list, so a person can read it.
func valueText(v *structpb.Value) string {
	if v == nil {
		return ""
	}
	b, err := protojson.Marshal(v)
	if err != nil {
		return fmt.Sprint(v.AsInterface())
	}
	var x any
	if json.Unmarshal(b, &x) == nil {
		if _, ok := x.(string); !ok {
			if ind, err := json.MarshalIndent(x, "", "  "); err == nil {
				return string(ind)
			}
		}
		if s, ok := x.(string); ok {
			return s
		}
	}
	return string(b)
}

// stepNode is one step of a task drawn in the step graph.
type stepNode struct {
	ID, Action, Status, Error string
	Attempts                  int32
	DependsOn                 []string
}

// stepLayers puts each step in the layer after its last dependency: a
// simple layered drawing of the step graph, left to right.
func stepLayers(info *aurav1.TaskInfo, states []*aurav1.StepState) [][]stepNode {
	state := map[string]*aurav1.StepState{}
	for _, s := range states {
		state[s.GetId()] = s
	}
	nodes := map[string]stepNode{}
	var order []string
	for _, st := range info.GetSteps() {
		n := stepNode{ID: st.GetId(), Action: st.GetAction(), Status: "PENDING", DependsOn: st.GetDependsOn()}
		if info.GetSequential() && len(order) > 0 && len(n.DependsOn) == 0 {
			n.DependsOn = []string{order[len(order)-1]}
		}
		nodes[n.ID] = n
		order = append(order, n.ID)
	}
	// Steps the task ran that its definition no longer names (the plan was
	// reloaded) still show, in a layer of their own.
	for _, s := range states {
		if _, ok := nodes[s.GetId()]; !ok {
			nodes[s.GetId()] = stepNode{ID: s.GetId()}
			order = append(order, s.GetId())
		}
	}
	for id, n := range nodes {
		if s := state[id]; s != nil {
			n.Status = strings.TrimPrefix(s.GetStatus().String(), "STEP_STATUS_")
			n.Error, n.Attempts = s.GetError(), s.GetAttempts()
		}
		nodes[id] = n
	}
	layer := map[string]int{}
	var depth func(id string, seen map[string]bool) int
	depth = func(id string, seen map[string]bool) int {
		if l, ok := layer[id]; ok {
			return l
		}
		if seen[id] {
			return 0 // a cycle the plan loader refuses; never loop on it
		}
		seen[id] = true
		l := 0
		for _, d := range nodes[id].DependsOn {
			if _, ok := nodes[d]; ok {
				l = max(l, depth(d, seen)+1)
			}
		}
		layer[id] = l
		return l
	}
	var out [][]stepNode
	for _, id := range order {
		l := depth(id, map[string]bool{})
		for len(out) <= l {
			out = append(out, nil)
		}
		out[l] = append(out[l], nodes[id])
	}
	return out
}

// graphSVG lays a plan's state graph out in layers (breadth first from
// the states nothing leads to) for drawing as inline SVG.
type graphSVG struct {
	Width, Height int
	Nodes         []svgNode
	Edges         []svgEdge
}

type svgNode struct {
	Name       string
	X, Y, W, H int
	TX, TY     int
}

type svgEdge struct {
	X1, Y1, X2, Y2 int
	LX, LY         int
	Label          string
}

func stateGraph(sm *aurav1.StateMap) *graphSVG {
	if sm == nil || len(sm.GetStates()) == 0 {
		return nil
	}
	names := make([]string, 0, len(sm.GetStates()))
	for _, st := range sm.GetStates() {
		names = append(names, st.GetName())
	}
	incoming := map[string]int{}
	out := map[string][]string{}
	for _, tr := range sm.GetTransitions() {
		incoming[tr.GetTo()]++
		out[tr.GetFrom()] = append(out[tr.GetFrom()], tr.GetTo())
	}
	layer := map[string]int{}
	var queue []string
	for _, n := range names {
		if incoming[n] == 0 {
			layer[n] = 0
			queue = append(queue, n)
		}
	}
	if len(queue) == 0 {
		layer[names[0]] = 0
		queue = append(queue, names[0])
	}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, to := range out[n] {
			if _, ok := layer[to]; !ok {
				layer[to] = layer[n] + 1
				queue = append(queue, to)
			}
		}
	}
	maxLayer := 0
	for _, n := range names {
		if _, ok := layer[n]; !ok {
			layer[n] = 0 // unreachable from any root: shown in the first column
		}
		maxLayer = max(maxLayer, layer[n])
	}
	const colW, rowH, boxW, boxH, pad = 200, 70, 150, 36, 20
	rows := map[int]int{}
	pos := map[string]svgNode{}
	g := &graphSVG{}
	for _, n := range names {
		l := layer[n]
		x, y := pad+l*colW, pad+rows[l]*rowH
		rows[l]++
		nd := svgNode{Name: n, X: x, Y: y, W: boxW, H: boxH, TX: x + boxW/2, TY: y + boxH/2 + 5}
		pos[n] = nd
		g.Nodes = append(g.Nodes, nd)
		g.Height = max(g.Height, y+boxH+pad)
	}
	g.Width = pad*2 + maxLayer*colW + boxW
	for _, tr := range sm.GetTransitions() {
		a, okA := pos[tr.GetFrom()]
		b, okB := pos[tr.GetTo()]
		if !okA || !okB {
			continue
		}
		e := svgEdge{X1: a.X + a.W, Y1: a.Y + a.H/2, X2: b.X, Y2: b.Y + b.H/2, Label: tr.GetTask()}
		if b.X <= a.X { // a transition back: from the box's bottom
			e = svgEdge{X1: a.X + a.W/2, Y1: a.Y + a.H, X2: b.X + b.W/2, Y2: b.Y + b.H, Label: tr.GetTask()}
		}
		e.LX, e.LY = (e.X1+e.X2)/2, (e.Y1+e.Y2)/2-4
		g.Edges = append(g.Edges, e)
	}
	return g
}

// commands are the copy-as-command lines for submitting t again.
func commands(t *aurav1.Task, grpcAddr string) (auractl, grpcurl string) {
	args := []string{"auractl"}
	if grpcAddr != "" && grpcAddr != "127.0.0.1:7070" {
		args = append(args, "--addr", shellQuote(grpcAddr))
	}
	args = append(args, "submit", shellQuote(t.GetTask()))
	if len(t.GetInputs().GetFields()) > 0 {
		b, _ := protojson.Marshal(t.GetInputs())
		args = append(args, "--inputs-json", shellQuote(compactJSON(b)))
	}
	for _, tag := range t.GetResourceTags() {
		args = append(args, "--tag", shellQuote(tag))
	}
	if t.GetPriority() != 0 {
		args = append(args, "--priority", fmt.Sprint(t.GetPriority()))
	}
	auractl = strings.Join(args, " ")
	req := &aurav1.SubmitRequest{Task: t.GetTask(), Inputs: t.GetInputs(), ResourceTags: t.GetResourceTags(), Priority: t.GetPriority(), Labels: t.GetLabels()}
	b, _ := protojson.Marshal(req)
	addr := grpcAddr
	if addr == "" {
		addr = "127.0.0.1:7070"
	}
	grpcurl = "grpcurl -plaintext -d " + shellQuote(compactJSON(b)) + " " + shellQuote(addr) + " aura.v1.ExecutionService/Submit"
	return auractl, grpcurl
}

func compactJSON(b []byte) string {
	var x any
	if json.Unmarshal(b, &x) != nil {
		return string(b)
	}
	out, _ := json.Marshal(x)
	return string(out)
}

func shellQuote(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@,", r))
	}) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// inputField is one input of a submit form.
type inputField struct {
	Name, Type, Description, Default, Value string
	Required                                bool
}

func formFields(ti *aurav1.TaskInfo, values map[string]string) []inputField {
	var out []inputField
	for _, in := range ti.GetInputs() {
		f := inputField{Name: in.GetName(), Type: in.GetType(), Description: in.GetDescription(), Required: in.GetRequired()}
		if in.GetDefault() != nil {
			f.Default = valueText(in.GetDefault())
		}
		f.Value = values[in.GetName()]
		out = append(out, f)
	}
	return out
}

// formInputs turns a submit form's text fields into inputs: a string
// input's text is the string; any other text is read as JSON when it
// parses (42, true, [1,2], {"a":1}) and as a string otherwise, so that
// the server, not the page, says when a value has the wrong type. Empty
// fields are left out, so defaults apply.
func formInputs(ti *aurav1.TaskInfo, get func(string) string) (*structpb.Struct, error) {
	fields := map[string]*structpb.Value{}
	for _, in := range ti.GetInputs() {
		text := get("input." + in.GetName())
		if text == "" {
			continue
		}
		if in.GetType() == "string" || in.GetType() == "" {
			fields[in.GetName()] = structpb.NewStringValue(text)
			continue
		}
		var x any
		if err := json.Unmarshal([]byte(text), &x); err != nil {
			fields[in.GetName()] = structpb.NewStringValue(text)
			continue
		}
		v, err := structpb.NewValue(x)
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", in.GetName(), err)
		}
		fields[in.GetName()] = v
	}
	return &structpb.Struct{Fields: fields}, nil
}

func findTask(plans []*aurav1.Plan, name string) (*aurav1.Plan, *aurav1.TaskInfo) {
	planName, _, _ := strings.Cut(name, "/")
	for _, p := range plans {
		if p.GetName() != planName {
			continue
		}
		i := slices.IndexFunc(p.GetTasks(), func(t *aurav1.TaskInfo) bool { return t.GetId() == name })
		if i >= 0 {
			return p, p.GetTasks()[i]
		}
		return p, nil
	}
	return nil, nil
}
