package ui

import (
	"encoding/json"
	"fmt"
	"html/template"
	"math"
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
	ID, Task, Status, Created, Started, Took string
	Tags                                     []string
	Labels                                   []string
}

func rowOf(t *aurav1.Task) taskRow {
	r := taskRow{ID: t.GetId(), Task: t.GetTask(), Status: statusName(t.GetStatus()), Created: when(t.GetCreatedAt().AsTime()), Tags: t.GetResourceTags()}
	if t.GetStartedAt() != nil {
		r.Started = when(t.GetStartedAt().AsTime())
	}
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

// graphSVG is a plan's state graph laid out for inline SVG: the states
// on a circle, each transition a curve bending to its right, so that the
// two directions between a pair of states stay apart.
type graphSVG struct {
	Width, Height int
	Nodes         []svgNode
	Edges         []svgEdge
}

type svgNode struct {
	Name           string
	CX, CY, RX, RY int
}

type svgEdge struct {
	Path   string // an SVG path: a quadratic curve
	LX, LY int    // where its label goes
	Label  string
}

func stateGraph(sm *aurav1.StateMap) *graphSVG {
	n := len(sm.GetStates())
	if n == 0 {
		return nil
	}
	const rx, ry, pad = 75, 18, 30
	radius := 0.0
	if n > 1 {
		// Far enough apart that neighbouring ellipses do not touch.
		radius = math.Max(110, float64(n)*(2*rx+30)/(2*math.Pi))
	}
	cx, cy := radius+rx+pad, radius+ry+pad
	g := &graphSVG{Width: int(2 * cx), Height: int(2 * cy)}
	pos := map[string][2]float64{}
	for i, st := range sm.GetStates() {
		a := 2*math.Pi*float64(i)/float64(n) - math.Pi/2
		x, y := cx+radius*math.Cos(a), cy+radius*math.Sin(a)
		pos[st.GetName()] = [2]float64{x, y}
		g.Nodes = append(g.Nodes, svgNode{Name: st.GetName(), CX: int(x), CY: int(y), RX: rx, RY: ry})
	}
	// rim is where the ray from an ellipse's centre toward (tx, ty) leaves it.
	rim := func(c [2]float64, tx, ty float64) (float64, float64) {
		dx, dy := tx-c[0], ty-c[1]
		d := math.Sqrt(dx*dx/(rx*rx) + dy*dy/(ry*ry))
		if d == 0 {
			return c[0], c[1]
		}
		return c[0] + dx/d, c[1] + dy/d
	}
	for _, tr := range sm.GetTransitions() {
		a, okA := pos[tr.GetFrom()]
		b, okB := pos[tr.GetTo()]
		if !okA || !okB || tr.GetFrom() == tr.GetTo() {
			continue
		}
		mx, my := (a[0]+b[0])/2, (a[1]+b[1])/2
		dx, dy := b[0]-a[0], b[1]-a[1]
		l := math.Hypot(dx, dy)
		// The control point: off the midpoint, to the right of a→b.
		bend := 0.25 * l
		qx, qy := mx-dy/l*bend, my+dx/l*bend
		x1, y1 := rim(a, qx, qy)
		x2, y2 := rim(b, qx, qy)
		g.Edges = append(g.Edges, svgEdge{
			Path:  fmt.Sprintf("M %.0f %.0f Q %.0f %.0f %.0f %.0f", x1, y1, qx, qy, x2, y2),
			LX:    int(0.25*x1 + 0.5*qx + 0.25*x2),
			LY:    int(0.25*y1+0.5*qy+0.25*y2) - 4,
			Label: tr.GetTask(),
		})
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

func compactJSON(in []byte) string {
	var x any
	if json.Unmarshal(in, &x) != nil {
		return string(in)
	}
	// Without HTML escaping: the command is for a shell, and the page
	// escapes it for HTML on its own.
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(x) != nil {
		return string(in)
	}
	return strings.TrimSuffix(b.String(), "\n")
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
