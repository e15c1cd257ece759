package server

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/aura-dev/aura/internal/admission"
	"github.com/aura-dev/aura/internal/auth"
	"github.com/aura-dev/aura/internal/hooks"
	"github.com/aura-dev/aura/internal/plan"
	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Bounds on what one request may carry. They are checked before anything
// else touches a request, so no handler sees an oversized or malformed one.
// The declarative ones are also protovalidate rules in the .proto files
// (checked first, by the same numbers); the grammars protovalidate cannot
// state (resource tags, task names without "..", inputs size and depth)
// are Go below.
const (
	maxTaskNameBytes    = 256
	maxTags             = 32
	maxTagBytes         = 256
	maxLabels           = 64
	maxLabelKeyBytes    = 63
	maxLabelValueBytes  = 253
	maxInputsBytes      = 1 << 20
	maxInputsDepth      = 32
	maxSubmitTimeout    = 7 * 24 * time.Hour
	maxIdempotencyBytes = 256
	maxTaskIDBytes      = 64
	maxTextBytes        = 1024 // reasons, selectors, page tokens
	maxNameBytes        = 128  // interceptor names
)

var (
	taskIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	// Label keys use the characters the label selector accepts.
	labelKeyPattern = regexp.MustCompile(`^[A-Za-z0-9._/-]+$`)
	namePattern     = regexp.MustCompile(`^[A-Za-z0-9._@:-]+$`)
	planPattern     = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`) // as plan directories
)

// ValidationUnaryInterceptor refuses an invalid request with
// INVALID_ARGUMENT naming the field before the handler runs.
func ValidationUnaryInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := validateRequest(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// ValidationStreamInterceptor checks every message a client streams in. On
// SubmitStream an invalid request is answered in its place with its error
// and the stream goes on, as the API promises; elsewhere it ends the stream.
func ValidationStreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod == aurav1.ExecutionService_SubmitStream_FullMethodName {
		return handler(srv, &auth.CheckedStream{ServerStream: ss, Check: validateRequest, Reject: auth.SubmitRejection})
	}
	return handler(srv, &validatedStream{ServerStream: ss})
}

type validatedStream struct {
	grpc.ServerStream
}

func (s *validatedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return validateRequest(m)
}

// rules checks the protovalidate rules written in the .proto files.
var rules = func() protovalidate.Validator {
	v, err := protovalidate.New()
	if err != nil {
		panic(fmt.Sprintf("protovalidate: %v", err)) // only a broken build gets here
	}
	return v
}()

// validateRules applies the .proto rules: INVALID_ARGUMENT naming each field.
func validateRules(msg proto.Message) error {
	err := rules.Validate(msg)
	if err == nil {
		return nil
	}
	var ve *protovalidate.ValidationError
	if !errors.As(err, &ve) {
		return status.Errorf(codes.Internal, "validating %s: %v", msg.ProtoReflect().Descriptor().FullName(), err)
	}
	// Name the outermost violation (a list too long before its items) and
	// count the rest; never echo a long value back.
	first := ve.Violations[0]
	for _, v := range ve.Violations[1:] {
		if len(v.Proto.GetField().GetElements()) < len(first.Proto.GetField().GetElements()) {
			first = v
		}
	}
	text := fmt.Sprintf("%s: %s", fieldPath(first.Proto.GetField()), first.Proto.GetMessage())
	if sr, ok := msg.(*aurav1.SubmitRequest); ok && first.Proto.GetRuleId() == "string.pattern" && fieldPath(first.Proto.GetField()) == "task" {
		// A regex says nothing to someone who typed a task name.
		text = fmt.Sprintf(`task: %q is not a task name: want PLAN/TASK, e.g. "demo/hello"`, short(sr.GetTask()))
	}
	if n := len(ve.Violations) - 1; n > 0 {
		text += fmt.Sprintf(" (and %d more)", n)
	}
	return status.Error(codes.InvalidArgument, text)
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

// validateRequest checks one request message: the .proto rules, then the
// grammars; nil for types it does not know (health, reflection).
func validateRequest(msg any) error {
	if m, ok := msg.(proto.Message); ok && strings.HasPrefix(string(m.ProtoReflect().Descriptor().FullName()), "aura.v1.") {
		if err := validateRules(m); err != nil {
			return err
		}
	}
	switch m := msg.(type) {
	case *aurav1.SubmitRequest:
		return validateSubmit(m)
	case *aurav1.GetTaskRequest:
		return validateTaskID("task_id", m.GetTaskId(), true)
	case *aurav1.CancelTaskRequest:
		if err := validateTaskID("task_id", m.GetTaskId(), true); err != nil {
			return err
		}
		return validateText("reason", m.GetReason())
	case *aurav1.StreamRequest:
		return validateTaskID("task_id", m.GetTaskId(), false)
	case *aurav1.ListTasksRequest:
		return validateList(m)
	case *aurav1.SubscribeRequest:
		if err := validateHooks("hooks", m.GetHooks()); err != nil {
			return err
		}
		return validatePlanName("plan", m.GetPlan())
	case *aurav1.InterceptReply:
		return validateIntercept(m)
	}
	return nil
}

func fieldErr(field, format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, "%s: %s", field, fmt.Sprintf(format, args...))
}

// validateTaskName checks a "plan/task" name: the grammar plan.SplitTaskID
// accepts, within a length bound.
func validateTaskName(field, name string) error {
	if name == "" {
		return fieldErr(field, `required: "plan/task"`)
	}
	if len(name) > maxTaskNameBytes {
		return fieldErr(field, "at most %d bytes, got %d", maxTaskNameBytes, len(name))
	}
	if _, _, err := plan.SplitTaskID(name); err != nil {
		return fieldErr(field, "%v", err)
	}
	return nil
}

// validateTag checks one resource tag with the admission grammar.
func validateTag(field, tag string) error {
	if len(tag) > maxTagBytes {
		return fieldErr(field, "at most %d bytes, got %d", maxTagBytes, len(tag))
	}
	if _, err := admission.ParseTag(tag); err != nil {
		return fieldErr(field, "%v", err)
	}
	return nil
}

func validateSubmit(m *aurav1.SubmitRequest) error {
	if err := validateTaskName("task", m.GetTask()); err != nil {
		return err
	}
	if in := m.GetInputs(); in != nil {
		if n := proto.Size(in); n > maxInputsBytes {
			return fieldErr("inputs", "at most %d bytes encoded, got %d", maxInputsBytes, n)
		}
		if depthExceeds(in, maxInputsDepth) {
			return fieldErr("inputs", "nested deeper than %d levels", maxInputsDepth)
		}
	}
	if d := m.GetTimeout(); d != nil {
		if err := d.CheckValid(); err != nil {
			return fieldErr("timeout", "%v", err)
		}
		if t := d.AsDuration(); t <= 0 || t > maxSubmitTimeout {
			return fieldErr("timeout", "must be more than 0 and at most %s, got %s", maxSubmitTimeout, t)
		}
	}
	if n := len(m.GetResourceTags()); n > maxTags {
		return fieldErr("resource_tags", "at most %d tags, got %d", maxTags, n)
	}
	for i, t := range m.GetResourceTags() {
		if err := validateTag(fmt.Sprintf("resource_tags[%d]", i), t); err != nil {
			return err
		}
	}
	if _, ok := aurav1.ExecutionMode_name[int32(m.GetExecutionMode())]; !ok {
		return fieldErr("execution_mode", "unknown mode %d", m.GetExecutionMode())
	}
	if k := m.GetIdempotencyKey(); len(k) > maxIdempotencyBytes || !printableASCII(k) {
		return fieldErr("idempotency_key", "at most %d printable ASCII characters without spaces", maxIdempotencyBytes)
	}
	if n := len(m.GetLabels()); n > maxLabels {
		return fieldErr("labels", "at most %d labels, got %d", maxLabels, n)
	}
	for k, v := range m.GetLabels() {
		if len(k) == 0 || len(k) > maxLabelKeyBytes || !labelKeyPattern.MatchString(k) {
			return fieldErr("labels", "key %q: 1-%d letters, digits or . _ / -", truncate(k), maxLabelKeyBytes)
		}
		if strings.HasPrefix(k, internalLabelPrefix) {
			return fieldErr("labels["+k+"]", "keys starting with %q are set by aurad itself (%s marks a state transition's parent task); use another key", internalLabelPrefix, internalLabelPrefix+"parent")
		}
		if len(v) > maxLabelValueBytes || !cleanText(v) {
			return fieldErr("labels["+k+"]", "at most %d bytes of text without control characters", maxLabelValueBytes)
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

func validateTaskID(field, id string, required bool) error {
	if id == "" {
		if required {
			return fieldErr(field, "required")
		}
		return nil
	}
	if len(id) > maxTaskIDBytes || !taskIDPattern.MatchString(id) {
		return fieldErr(field, "not a task id")
	}
	return nil
}

func validateText(field, s string) error {
	if len(s) > maxTextBytes || !cleanText(s) {
		return fieldErr(field, "at most %d bytes of text without control characters", maxTextBytes)
	}
	return nil
}

func validatePlanName(field, name string) error {
	if name == "" {
		return nil
	}
	if len(name) > maxTaskNameBytes || !planPattern.MatchString(name) || name == "." || name == ".." {
		return fieldErr(field, "not a plan name (letters, digits, _ . -)")
	}
	return nil
}

func validateHooks(field string, hs []string) error {
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

func validateList(m *aurav1.ListTasksRequest) error {
	if _, ok := aurav1.TaskStatus_name[int32(m.GetStatus())]; !ok {
		return fieldErr("status", "unknown status %d", m.GetStatus())
	}
	if err := validatePlanName("plan", m.GetPlan()); err != nil {
		return err
	}
	// Above the store's maximum a page is served at the maximum (AIP-158).
	if n := m.GetPageSize(); n < 0 {
		return fieldErr("page_size", "must not be negative, got %d", n)
	}
	if err := validateText("label_selector", m.GetLabelSelector()); err != nil {
		return err
	}
	return validateText("page_token", m.GetPageToken())
}

func validateIntercept(m *aurav1.InterceptReply) error {
	if reg := m.GetRegister(); reg != nil {
		if n := reg.GetName(); n == "" || len(n) > maxNameBytes || !namePattern.MatchString(n) {
			return fieldErr("register.name", "1-%d letters, digits or . _ @ : -", maxNameBytes)
		}
		if err := validateHooks("register.hooks", reg.GetHooks()); err != nil {
			return err
		}
		return validatePlanName("register.plan", reg.GetPlan())
	}
	if d := m.GetDecision(); d != nil {
		if len(d.GetCallId()) > maxTaskIDBytes {
			return fieldErr("decision.call_id", "at most %d bytes", maxTaskIDBytes)
		}
		return validateText("decision.reason", d.GetReason())
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
