// Command clientdesc writes the aura.v1 API (execution.proto, hooks.proto and
// the well-known types they import) as a FileDescriptorSet for client code
// generators, with the server's protovalidate rules taken out.
//
// The rules (buf.validate options) are enforced by aurad; a client does not
// need them, and keeping them would make every generated client import the
// buf/validate package at run time, which Debian's Python packages, for one,
// do not have. The messages, fields, numbers and services are unchanged, so
// the stubs speak exactly the wire format aurad speaks. The descriptors come
// from the generated Go code, so this needs no .proto file on disk:
//
//	go run ./proto/tools/clientdesc OUT.pb
//	python3 -m grpc_tools.protoc --descriptor_set_in=OUT.pb \
//	    --python_out=DIR --grpc_python_out=DIR aura/v1/execution.proto aura/v1/hooks.proto
package main

import (
	"fmt"
	"os"
	"slices"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	aurav1 "github.com/aura-dev/aura/proto/aura/v1"
)

const validateProto = "buf/validate/validate.proto"

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: clientdesc OUT.pb")
		os.Exit(2)
	}
	b, err := proto.Marshal(clientSet(aurav1.File_aura_v1_execution_proto, aurav1.File_aura_v1_hooks_proto))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := os.WriteFile(os.Args[1], b, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// clientSet returns files and their imports, dependencies first, without
// buf/validate and without any option that refers to it.
func clientSet(files ...protoreflect.FileDescriptor) *descriptorpb.FileDescriptorSet {
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{validateProto: true}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := 0; i < imports.Len(); i++ {
			add(imports.Get(i).FileDescriptor)
		}
		fdp := protodesc.ToFileDescriptorProto(fd)
		stripValidate(fdp)
		set.File = append(set.File, fdp)
	}
	for _, fd := range files {
		add(fd)
	}
	return set
}

// withoutDependency drops index i from a list of indices into Dependency
// and moves the indices after it down by one, as removing Dependency[i]
// does.
func withoutDependency(indices []int32, i int32) []int32 {
	var out []int32
	for _, d := range indices {
		switch {
		case d < i:
			out = append(out, d)
		case d > i:
			out = append(out, d-1)
		}
	}
	return out
}

// stripValidate removes the buf/validate import and every buf.validate
// option from fdp.
func stripValidate(fdp *descriptorpb.FileDescriptorProto) {
	if i := slices.Index(fdp.Dependency, validateProto); i >= 0 {
		fdp.Dependency = slices.Delete(fdp.Dependency, i, i+1)
		fdp.PublicDependency = withoutDependency(fdp.PublicDependency, int32(i))
		fdp.WeakDependency = withoutDependency(fdp.WeakDependency, int32(i))
	}
	for _, m := range fdp.MessageType {
		stripMessage(m)
	}
}

func stripMessage(m *descriptorpb.DescriptorProto) {
	if m.Options != nil {
		proto.ClearExtension(m.Options, validate.E_Message)
	}
	for _, f := range m.Field {
		if f.Options != nil {
			proto.ClearExtension(f.Options, validate.E_Field)
			if isEmpty(f.Options) {
				f.Options = nil
			}
		}
	}
	for _, o := range m.OneofDecl {
		if o.Options != nil {
			proto.ClearExtension(o.Options, validate.E_Oneof)
			if isEmpty(o.Options) {
				o.Options = nil
			}
		}
	}
	if m.Options != nil && isEmpty(m.Options) {
		m.Options = nil
	}
	for _, n := range m.NestedType {
		stripMessage(n)
	}
}

func isEmpty(m proto.Message) bool { return proto.Size(m) == 0 }
