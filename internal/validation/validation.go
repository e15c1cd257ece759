// Package validation decides whether an aura.v1 request is well formed,
// before anything acts on it, and names the field when it is not.
//
// Each rule is written once. What the .proto can state (lengths, counts,
// patterns, ranges, defined enum values) is a protovalidate annotation in
// proto/aura/v1/*.proto, enforced here from the generated descriptors; what
// it cannot (the resource-tag grammar, task names without ".." segments,
// inputs size and depth, label keys aurad reserves, characters a label may
// not hide) is Go in this package, run after those rules. Request is the one
// entry point, and returns an *Error naming the field. The .proto rules see
// a submission without the parts that cannot break them (submitview.go), as
// walking those was most of the cost of validating it.
//
// Who calls it: internal/server's interceptor, for every request but
// SubmitRequest; and internal/execmgr, for SubmitRequest, because every
// submission passes through the manager (gRPC Submit and SubmitStream,
// in-process callers, tests) while only some pass through the server. So a
// submission is checked once, by the layer no submitter can go around.
package validation

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/internal/admission"
	"github.com/aura-dev/aura/internal/cluster"
	"github.com/aura-dev/aura/internal/hooks"
	"github.com/aura-dev/aura/internal/plan"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Error is a request refused by a rule: Field names the field as the API
// does ("labels[team]", "resource_tags[1]"), Msg says what is wrong with it.
type Error struct {
	Field, Msg string
}

func (e *Error) Error() string { return e.Field + ": " + e.Msg }

// Bounds the .proto files cannot state. The others (task name and tag
// lengths, tag and label counts, the timeout's range, ...) are written
// only in the .proto annotations.
const (
	maxTaskNameBytes = 256 // plan filters are bounded like task names
	maxInputsBytes   = 1 << 20
	// MaxInputsDepth is how deep inputs may nest maps and lists.
	MaxInputsDepth = 32
	// maxTaskIDBytes fits a cluster's task ids: a node name (at most 63
	// bytes), a dot, and the node's own id.
	maxTaskIDBytes = 100
	maxCallIDBytes = 64
	maxTextBytes   = 1024 // reasons, selectors, page tokens
	maxNameBytes   = 128  // interceptor names
)

var (
	taskIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	// Label keys use the characters the label selector accepts.
	labelKeyPattern = regexp.MustCompile(`^[A-Za-z0-9._/-]+$`)
	namePattern     = regexp.MustCompile(`^[A-Za-z0-9._@:-]+$`)
	planPattern     = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`) // as plan directories
)

// Request checks one request message: the .proto rules, then the rules Go
// states. It returns nil for a type it has no rules for (health,
// reflection), an *Error for a bad request, and another error only if the
// rules themselves cannot be evaluated.
func Request(msg any) error {
	if sr, ok := msg.(*aurav1.SubmitRequest); ok {
		if err := checkRules(submitView.of(sr)); err != nil {
			return err
		}
	} else if m, ok := msg.(proto.Message); ok && strings.HasPrefix(string(m.ProtoReflect().Descriptor().FullName()), "aura.v1.") {
		if err := checkRules(m); err != nil {
			return err
		}
	}
	switch m := msg.(type) {
	case *aurav1.SubmitRequest:
		return checkSubmit(m)
	case *aurav1.GetTaskRequest:
		return checkTaskID("task_id", m.GetTaskId(), true)
	case *aurav1.CancelTaskRequest:
		if err := checkTaskID("task_id", m.GetTaskId(), true); err != nil {
			return err
		}
		return checkText("reason", m.GetReason())
	case *aurav1.StreamRequest:
		return checkTaskID("task_id", m.GetTaskId(), false)
	case *aurav1.ListTasksRequest:
		return checkList(m)
	case *aurav1.SubscribeRequest:
		if err := checkHooks("hooks", m.GetHooks()); err != nil {
			return err
		}
		return checkPlanName("plan", m.GetPlan())
	case *aurav1.InterceptReply:
		return checkIntercept(m)
	}
	return nil
}

// rules evaluates the protovalidate annotations of the .proto files.
var rules = func() protovalidate.Validator {
	v, err := protovalidate.New()
	if err != nil {
		panic(fmt.Sprintf("protovalidate: %v", err)) // only a broken build gets here
	}
	return v
}()

// checkRules applies the .proto rules, naming the outermost violation.
func checkRules(msg proto.Message) error {
	err := rules.Validate(msg)
	if err == nil {
		return nil
	}
	var ve *protovalidate.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("validating %s: %w", msg.ProtoReflect().Descriptor().FullName(), err)
	}
	// Name the outermost violation (a list too long before its items) and
	// count the rest; never echo a long value back.
	first := ve.Violations[0]
	for _, v := range ve.Violations[1:] {
		if len(v.Proto.GetField().GetElements()) < len(first.Proto.GetField().GetElements()) {
			first = v
		}
	}
	e := &Error{Field: fieldPath(first.Proto.GetField()), Msg: first.Proto.GetMessage()}
	if sr, ok := msg.(*aurav1.SubmitRequest); ok && first.Proto.GetRuleId() == "string.pattern" && e.Field == "task" {
		// A regex says nothing to someone who typed a task name.
		e.Msg = fmt.Sprintf(`%q is not a task name: want PLAN/TASK, e.g. "demo/hello"`, short(sr.GetTask()))
	}
	if n := len(ve.Violations) - 1; n > 0 {
		e.Msg += fmt.Sprintf(" (and %d more)", n)
	}
	return e
}

// short is s cut to 64 bytes, for echoing a client's value in an error.
func short(s string) string {
	if len(s) <= 64 {
		return s
	}
	return strings.ToValidUTF8(s[:64], "") + "..."
}

// fieldPath renders a violation's field as the Go checks name fields:
// labels[k], resource_tags[2]; a long map key is left out.
func fieldPath(p *validate.FieldPath) string {
	var b strings.Builder
	for i, el := range p.GetElements() {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(el.GetFieldName())
		switch el.WhichSubscript() {
		case validate.FieldPathElement_Index_case:
			fmt.Fprintf(&b, "[%d]", el.GetIndex())
		case validate.FieldPathElement_StringKey_case:
			if k := el.GetStringKey(); len(k) <= 32 && utf8.ValidString(k) {
				fmt.Fprintf(&b, "[%s]", k)
			}
		}
	}
	return b.String()
}

func fieldErr(field, format string, args ...any) error {
	return &Error{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// checkTaskName checks a "plan/task" name with the grammar
// plan.SplitTaskID accepts; the .proto bounds its length and characters.
func checkTaskName(field, name string) error {
	if _, _, err := plan.SplitTaskID(name); err != nil {
		return fieldErr(field, "%v", err)
	}
	return nil
}

// checkTag checks one resource tag with the admission grammar; the .proto
// bounds its length.
func checkTag(field, tag string) error {
	if _, err := admission.ParseTag(tag); err != nil {
		return fieldErr(field, "%v", err)
	}
	return nil
}

// checkSubmit holds the rules of a SubmitRequest the .proto cannot state.
func checkSubmit(m *aurav1.SubmitRequest) error {
	if err := checkTaskName("task", m.GetTask()); err != nil {
		return err
	}
	if in := m.GetInputs(); in != nil {
		if n := proto.Size(in); n > maxInputsBytes {
			return fieldErr("inputs", "at most %d bytes encoded, got %d", maxInputsBytes, n)
		}
		if depthExceeds(in, MaxInputsDepth) {
			return fieldErr("inputs", "nested deeper than %d levels", MaxInputsDepth)
		}
	}
	if d := m.GetTimeout(); d != nil {
		// The range is a .proto rule; a Duration whose seconds and nanos
		// disagree in sign, or whose nanos overflow, is not a duration at all.
		if err := d.CheckValid(); err != nil {
			return fieldErr("timeout", "%v", err)
		}
	}
	for i, t := range m.GetResourceTags() {
		if err := checkTag(fmt.Sprintf("resource_tags[%d]", i), t); err != nil {
			return err
		}
	}
	if k := m.GetIdempotencyKey(); !printableASCII(k) {
		return fieldErr("idempotency_key", "at most 256 printable ASCII characters without spaces")
	}
	for k, v := range m.GetLabels() {
		if !labelKeyPattern.MatchString(k) {
			return fieldErr("labels", "key %q: 1-63 letters, digits or . _ / -", truncate(k))
		}
		if strings.HasPrefix(k, internalLabelPrefix) {
			return fieldErr("labels["+k+"]", "keys starting with %q are set by aurad itself (%s marks a state transition's parent task); use another key", internalLabelPrefix, internalLabelPrefix+"parent")
		}
		if !cleanText(v) {
			return fieldErr("labels["+k+"]", "at most 253 bytes of text without control characters")
		}
		if r, ok := invisibleFormat(v); ok {
			return fieldErr("labels["+k+"]", "value holds the invisible formatting character %U (bidirectional control or zero-width); labels are shown to people, who could be misled by it", r)
		}
	}
	return nil
}

// internalLabelPrefix marks labels aurad sets on the tasks it records
// itself (aura.parent on a state transition); a client may not forge them.
const internalLabelPrefix = "aura."

// invisibleFormat finds a Unicode format character (category Cf: the
// bidirectional overrides and isolates, zero-width space and joiners, the
// byte order mark): it changes how the text around it is shown without
// being seen, so a label could read as something it is not.
func invisibleFormat(s string) (rune, bool) {
	for _, r := range s {
		if unicode.Is(unicode.Cf, r) {
			return r, true
		}
	}
	return 0, false
}

func checkTaskID(field, id string, required bool) error {
	if id == "" {
		if required {
			return fieldErr(field, "required")
		}
		return nil
	}
	if len(id) > maxTaskIDBytes {
		return fieldErr(field, "not a task id")
	}
	// A task of a cluster's node names its node: <node>.<id>.
	if node, local, ok := strings.Cut(id, "."); ok {
		if cluster.CheckNodeName(node) != nil || !taskIDPattern.MatchString(local) {
			return fieldErr(field, "not a task id (a cluster's task id is <node>.<id>, the node's name a DNS label)")
		}
		return nil
	}
	if !taskIDPattern.MatchString(id) {
		return fieldErr(field, "not a task id")
	}
	return nil
}

func checkText(field, s string) error {
	if len(s) > maxTextBytes || !cleanText(s) {
		return fieldErr(field, "at most %d bytes of text without control characters", maxTextBytes)
	}
	return nil
}

func checkPlanName(field, name string) error {
	if name == "" {
		return nil
	}
	if len(name) > maxTaskNameBytes || !planPattern.MatchString(name) || name == "." || name == ".." {
		return fieldErr(field, "not a plan name (letters, digits, _ . -)")
	}
	return nil
}

func checkHooks(field string, hs []string) error {
	if len(hs) > len(hooks.Points) {
		return fieldErr(field, "at most %d hooks, got %d", len(hooks.Points), len(hs))
	}
	for i, h := range hs {
		if !hooks.ValidPoint(h) {
			return fieldErr(fmt.Sprintf("%s[%d]", field, i), "unknown hook %q (want one of %s)", truncate(h), strings.Join(hooks.Points, ", "))
		}
	}
	return nil
}

func checkList(m *aurav1.ListTasksRequest) error {
	if err := checkPlanName("plan", m.GetPlan()); err != nil {
		return err
	}
	if err := checkText("label_selector", m.GetLabelSelector()); err != nil {
		return err
	}
	return checkText("page_token", m.GetPageToken())
}

func checkIntercept(m *aurav1.InterceptReply) error {
	if reg := m.GetRegister(); reg != nil {
		if n := reg.GetName(); n == "" || len(n) > maxNameBytes || !namePattern.MatchString(n) {
			return fieldErr("register.name", "1-%d letters, digits or . _ @ : -", maxNameBytes)
		}
		if err := checkHooks("register.hooks", reg.GetHooks()); err != nil {
			return err
		}
		return checkPlanName("register.plan", reg.GetPlan())
	}
	if d := m.GetDecision(); d != nil {
		if len(d.GetCallId()) > maxCallIDBytes {
			return fieldErr("decision.call_id", "at most %d bytes", maxCallIDBytes)
		}
		return checkText("decision.reason", d.GetReason())
	}
	return nil
}

// depthExceeds reports whether s nests maps or lists more than max levels
// deep. It stops as soon as it knows, so a hostile input costs little.
func depthExceeds(s *structpb.Struct, max int) bool {
	var value func(v *structpb.Value, depth int) bool
	value = func(v *structpb.Value, depth int) bool {
		switch k := v.GetKind().(type) {
		case *structpb.Value_StructValue:
			if depth+1 > max {
				return true
			}
			for _, f := range k.StructValue.GetFields() {
				if value(f, depth+1) {
					return true
				}
			}
		case *structpb.Value_ListValue:
			if depth+1 > max {
				return true
			}
			for _, e := range k.ListValue.GetValues() {
				if value(e, depth+1) {
					return true
				}
			}
		}
		return false
	}
	return value(structpb.NewStructValue(s), 0)
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func cleanText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return false
		}
	}
	return true
}

// truncate keeps an echoed bad value short.
func truncate(s string) string {
	if len(s) > 64 {
		return strings.ToValidUTF8(s[:64], "") + "…"
	}
	return s
}
