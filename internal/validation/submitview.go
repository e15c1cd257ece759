package validation

import (
	"unicode/utf8"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// Every submission is checked against the .proto rules, and protovalidate
// walks all of a message it is given: a SubmitRequest's inputs, a
// google.protobuf.Struct no rule can be written on, value by value; its
// timeout and each resource tag through CEL programs. Those were more than
// half the cost of validating a submission. So the .proto rules see a view
// of the request without the parts that cannot break them: the inputs
// always (no rules), the timeout and the resource tags when they certainly
// lie inside the bounds their annotations state. Anything not certainly
// inside is shown, so every refusal and its message are protovalidate's,
// as before. The bounds are read from the annotations themselves, and a
// rule this file does not understand (a message or oneof rule that could
// read the whole request, another duration or list rule, a rule on inputs)
// turns the shortcut off for that part: it can only ever skip work, never
// a rule.
var submitView = newSubmitViewer((&aurav1.SubmitRequest{}).ProtoReflect().Descriptor())

type submitViewer struct {
	// inputs, timeout and tags say which fields may be left out of the
	// view; false where the shortcut is off.
	inputs, timeout, tags bool
	// gt and lte are the timeout's exclusive lower and inclusive upper
	// bounds, from its annotation.
	gt, lte *durationpb.Duration
	// maxTags, minTagLen and maxTagLen are resource_tags' bounds: items,
	// and characters per tag.
	maxTags, minTagLen, maxTagLen uint64
}

func newSubmitViewer(md protoreflect.MessageDescriptor) submitViewer {
	var s submitViewer
	if proto.HasExtension(md.Options(), validate.E_Message) {
		return s
	}
	for i := range md.Oneofs().Len() {
		if proto.HasExtension(md.Oneofs().Get(i).Options(), validate.E_Oneof) {
			return s
		}
	}
	if fd := md.Fields().ByName("inputs"); fd != nil && fd.Message() != nil &&
		fd.Message().FullName() == "google.protobuf.Struct" && !proto.HasExtension(fd.Options(), validate.E_Field) {
		s.inputs = true
	}
	if fd := md.Fields().ByName("timeout"); fd != nil {
		fr, _ := proto.GetExtension(fd.Options(), validate.E_Field).(*validate.FieldRules)
		if d := fr.GetDuration(); d.HasGt() && d.HasLte() && exactDuration(d.GetGt()) && exactDuration(d.GetLte()) {
			rest := proto.Clone(fr).(*validate.FieldRules)
			rest.GetDuration().ClearGt()
			rest.GetDuration().ClearLte()
			if proto.Size(rest.GetDuration()) == 0 {
				rest.ClearDuration()
				if proto.Size(rest) == 0 {
					s.timeout, s.gt, s.lte = true, d.GetGt(), d.GetLte()
				}
			}
		}
	}
	if fd := md.Fields().ByName("resource_tags"); fd != nil && fd.IsList() && fd.Kind() == protoreflect.StringKind {
		fr, _ := proto.GetExtension(fd.Options(), validate.E_Field).(*validate.FieldRules)
		r := fr.GetRepeated()
		str := r.GetItems().GetString()
		if r.HasMaxItems() && str.HasMinLen() && str.HasMaxLen() {
			rest := proto.Clone(fr).(*validate.FieldRules)
			rest.GetRepeated().GetItems().GetString().ClearMinLen()
			rest.GetRepeated().GetItems().GetString().ClearMaxLen()
			if proto.Size(rest.GetRepeated().GetItems().GetString()) == 0 {
				rest.GetRepeated().GetItems().ClearString()
				if proto.Size(rest.GetRepeated().GetItems()) == 0 {
					rest.GetRepeated().ClearItems()
					rest.GetRepeated().ClearMaxItems()
					if proto.Size(rest.GetRepeated()) == 0 {
						rest.ClearRepeated()
						if proto.Size(rest) == 0 {
							s.tags, s.maxTags, s.minTagLen, s.maxTagLen = true, r.GetMaxItems(), str.GetMinLen(), str.GetMaxLen()
						}
					}
				}
			}
		}
	}
	return s
}

// tagsHold reports whether tags certainly satisfy resource_tags' rules.
// Lengths are in characters, as the rules count them; a tag that is not
// valid UTF-8 is left to the rules.
func (s submitViewer) tagsHold(tags []string) bool {
	if !s.tags || uint64(len(tags)) > s.maxTags {
		return false
	}
	for _, t := range tags {
		if uint64(len(t)) < s.minTagLen || !utf8.ValidString(t) {
			return false
		}
		if n := uint64(utf8.RuneCountInString(t)); n < s.minTagLen || n > s.maxTagLen {
			return false
		}
	}
	return true
}

// exactDuration reports whether d is a valid duration that CEL (which
// holds durations as time.Duration) represents exactly.
func exactDuration(d *durationpb.Duration) bool {
	const maxSeconds = 9_000_000_000 // below time.Duration's ±292 years
	return d.CheckValid() == nil && d.GetSeconds() > -maxSeconds && d.GetSeconds() < maxSeconds
}

// compareDuration orders two valid durations (their seconds and nanos
// share a sign, so the pair orders lexicographically).
func compareDuration(a, b *durationpb.Duration) int {
	switch {
	case a.GetSeconds() != b.GetSeconds():
		if a.GetSeconds() < b.GetSeconds() {
			return -1
		}
		return 1
	case a.GetNanos() < b.GetNanos():
		return -1
	case a.GetNanos() > b.GetNanos():
		return 1
	}
	return 0
}

// timeoutHolds reports whether d certainly satisfies the timeout's rules.
func (s submitViewer) timeoutHolds(d *durationpb.Duration) bool {
	return s.timeout && exactDuration(d) && compareDuration(d, s.gt) > 0 && compareDuration(d, s.lte) <= 0
}

// of returns the view of m the .proto rules are checked on: m itself when
// nothing can be left out, else a new request sharing m's other fields.
// m is only read. TestSubmitViewKeepsEveryOtherField fails when a field
// added to SubmitRequest is not carried here.
func (s submitViewer) of(m *aurav1.SubmitRequest) *aurav1.SubmitRequest {
	skipInputs := s.inputs && m.GetInputs() != nil
	skipTimeout := m.GetTimeout() != nil && s.timeoutHolds(m.GetTimeout())
	skipTags := len(m.GetResourceTags()) > 0 && s.tagsHold(m.GetResourceTags())
	if !skipInputs && !skipTimeout && !skipTags {
		return m
	}
	v := &aurav1.SubmitRequest{
		Task:           m.GetTask(),
		Inputs:         m.GetInputs(),
		Timeout:        m.GetTimeout(),
		ResourceTags:   m.GetResourceTags(),
		ExecutionMode:  m.GetExecutionMode(),
		Priority:       m.GetPriority(),
		IdempotencyKey: m.GetIdempotencyKey(),
		Labels:         m.GetLabels(),
		SkipPlanning:   m.GetSkipPlanning(),
		Preempt:        m.GetPreempt(),
		Preemptible:    m.GetPreemptible(),
	}
	if skipInputs {
		v.Inputs = nil
	}
	if skipTimeout {
		v.Timeout = nil
	}
	if skipTags {
		v.ResourceTags = nil
	}
	return v
}
