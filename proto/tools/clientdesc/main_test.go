package main

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

// The set stands on its own without buf/validate, and describes the same
// wire format as the API aurad serves.
func TestClientSetHasNoValidationAndTheSameMessages(t *testing.T) {
	set := clientSet(aurav1.File_aura_v1_execution_proto, aurav1.File_aura_v1_hooks_proto)
	for _, f := range set.File {
		if strings.HasPrefix(f.GetName(), "buf/") {
			t.Errorf("the set holds %s", f.GetName())
		}
		for _, d := range f.Dependency {
			if strings.HasPrefix(d, "buf/") {
				t.Errorf("%s still imports %s", f.GetName(), d)
			}
		}
	}
	// Every import resolves within the set itself (a generator given only
	// this set must find everything).
	files, err := protodesc.NewFiles(set)
	if err != nil {
		t.Fatalf("the set does not stand on its own: %v", err)
	}
	for _, orig := range []protoreflect.FileDescriptor{aurav1.File_aura_v1_execution_proto, aurav1.File_aura_v1_hooks_proto} {
		got, err := files.FindFileByPath(orig.Path())
		if err != nil {
			t.Fatal(err)
		}
		if got.Services().Len() != orig.Services().Len() || got.Messages().Len() != orig.Messages().Len() {
			t.Errorf("%s: services or messages differ", orig.Path())
		}
		msgs := orig.Messages()
		for i := 0; i < msgs.Len(); i++ {
			om := msgs.Get(i)
			gm := got.Messages().ByName(om.Name())
			if gm == nil {
				t.Errorf("%s missing", om.FullName())
				continue
			}
			for j := 0; j < om.Fields().Len(); j++ {
				of := om.Fields().Get(j)
				gf := gm.Fields().ByNumber(of.Number())
				if gf == nil || gf.Name() != of.Name() || gf.Kind() != of.Kind() || gf.Cardinality() != of.Cardinality() ||
					gf.HasPresence() != of.HasPresence() {
					t.Errorf("%s field %d differs", om.FullName(), of.Number())
				}
			}
		}
	}
	// No option carries a buf.validate extension, known or unknown to the
	// reader: round-trip through bytes and look for unknown fields.
	b, err := proto.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	var back descriptorpb.FileDescriptorSet
	if err := (proto.UnmarshalOptions{Resolver: (*protoregistry.Types)(nil)}).Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for _, f := range back.File {
		for _, m := range f.MessageType {
			if m.Options != nil && len(m.Options.ProtoReflect().GetUnknown()) > 0 {
				t.Errorf("%s keeps options the generator cannot resolve", m.GetName())
			}
			for _, fl := range m.Field {
				if fl.Options != nil && len(fl.Options.ProtoReflect().GetUnknown()) > 0 {
					t.Errorf("%s.%s keeps options the generator cannot resolve", m.GetName(), fl.GetName())
				}
			}
		}
	}
}
