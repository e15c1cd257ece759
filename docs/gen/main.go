// Command gen writes docs/api.md from the comments and declarations in
// proto/aura/v1/*.proto. Run it from the repository root after changing a
// .proto file:
//
//	go run ./docs/gen
//
// docs/gen's test fails while docs/api.md is stale.
package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

func main() {
	out, err := render("proto/aura/v1")
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	if err := os.WriteFile("docs/api.md", []byte(out), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// A protoFile is what the generator reads from one .proto file.
type protoFile struct {
	name     string
	services []*service
	messages []*message
	enums    []*enum
}

type service struct {
	name, doc string
	rpcs      []rpc
}

type rpc struct {
	name, doc, in, out  string
	streamIn, streamOut bool
}

type message struct {
	name, doc string
	fields    []field
}

type field struct {
	name, typ, label, oneof, doc string
	number                       string
}

type enum struct {
	name, doc string
	values    []enumValue
}

type enumValue struct{ name, number, doc string }

var (
	serviceRE = regexp.MustCompile(`^service\s+(\w+)\s*\{$`)
	messageRE = regexp.MustCompile(`^message\s+(\w+)\s*\{\s*(\})?$`)
	enumRE    = regexp.MustCompile(`^enum\s+(\w+)\s*\{$`)
	oneofRE   = regexp.MustCompile(`^oneof\s+(\w+)\s*\{$`)
	rpcRE     = regexp.MustCompile(`^rpc\s+(\w+)\s*\(\s*(stream\s+)?([\w.]+)\s*\)\s*returns\s*\(\s*(stream\s+)?([\w.]+)\s*\)\s*;$`)
	fieldRE   = regexp.MustCompile(`^(repeated\s+|optional\s+)?(map<\s*\w+\s*,\s*[\w.]+\s*>|[\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;$`)
	valueRE   = regexp.MustCompile(`^(\w+)\s*=\s*(-?\d+)\s*;$`)
)

// parse reads the declarations this API uses: services with rpcs, flat
// messages (fields, maps, oneofs) and enums, each with the // comment
// block right above it.
func parse(path string) (*protoFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pf := &protoFile{name: filepath.Base(path)}
	var (
		doc   []string
		svc   *service
		msg   *message
		en    *enum
		oneof string
		n     int
	)
	takeDoc := func() string {
		d := strings.Join(doc, " ")
		doc = nil
		return d
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if c, ok := strings.CutPrefix(line, "//"); ok {
			doc = append(doc, strings.TrimSpace(c))
			continue
		}
		if line == "" {
			doc = nil
			continue
		}
		// Field options (protovalidate rules) may span lines; the reference
		// shows the field without them.
		for strings.Count(line, "[") > strings.Count(line, "]") && sc.Scan() {
			n++
			line += " " + strings.TrimSpace(sc.Text())
		}
		if i := strings.Index(line, "["); i >= 0 {
			if j := strings.LastIndex(line, "]"); j > i {
				line = strings.TrimSpace(line[:i]) + line[j+1:]
			}
		}
		bad := func() error { return fmt.Errorf("%s:%d: cannot read %q", path, n, line) }
		switch {
		case line == "}":
			switch {
			case oneof != "":
				oneof = ""
			case svc != nil:
				pf.services, svc = append(pf.services, svc), nil
			case msg != nil:
				pf.messages, msg = append(pf.messages, msg), nil
			case en != nil:
				pf.enums, en = append(pf.enums, en), nil
			default:
				return nil, bad()
			}
			doc = nil
		case svc != nil:
			m := rpcRE.FindStringSubmatch(line)
			if m == nil {
				return nil, bad()
			}
			svc.rpcs = append(svc.rpcs, rpc{name: m[1], doc: takeDoc(), streamIn: m[2] != "", in: m[3], streamOut: m[4] != "", out: m[5]})
		case en != nil:
			m := valueRE.FindStringSubmatch(line)
			if m == nil {
				return nil, bad()
			}
			en.values = append(en.values, enumValue{name: m[1], number: m[2], doc: takeDoc()})
		case msg != nil:
			if m := oneofRE.FindStringSubmatch(line); m != nil {
				oneof = m[1]
				doc = nil
				continue
			}
			m := fieldRE.FindStringSubmatch(line)
			if m == nil {
				return nil, bad()
			}
			msg.fields = append(msg.fields, field{label: strings.TrimSpace(m[1]), typ: strings.ReplaceAll(m[2], " ", ""),
				name: m[3], number: m[4], oneof: oneof, doc: takeDoc()})
		default:
			if m := serviceRE.FindStringSubmatch(line); m != nil {
				svc = &service{name: m[1], doc: takeDoc()}
			} else if m := messageRE.FindStringSubmatch(line); m != nil {
				msg = &message{name: m[1], doc: takeDoc()}
				if m[2] != "" { // message X {}
					pf.messages, msg = append(pf.messages, msg), nil
				}
			} else if m := enumRE.FindStringSubmatch(line); m != nil {
				en = &enum{name: m[1], doc: takeDoc()}
			} else if strings.HasPrefix(line, "syntax") || strings.HasPrefix(line, "package") ||
				strings.HasPrefix(line, "import") || strings.HasPrefix(line, "option") {
				doc = nil
			} else {
				return nil, bad()
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if svc != nil || msg != nil || en != nil {
		return nil, fmt.Errorf("%s: unexpected end of file", path)
	}
	return pf, nil
}

// render returns api.md for the .proto files in dir.
func render(dir string) (string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.proto"))
	if err != nil {
		return "", err
	}
	if len(paths) == 0 {
		return "", fmt.Errorf("no .proto files in %s", dir)
	}
	sort.Strings(paths)
	var files []*protoFile
	local := map[string]bool{}
	for _, p := range paths {
		pf, err := parse(p)
		if err != nil {
			return "", err
		}
		files = append(files, pf)
		for _, m := range pf.messages {
			local[m.name] = true
		}
		for _, e := range pf.enums {
			local[e.name] = true
		}
	}
	var b strings.Builder
	b.WriteString("<!-- Generated by `go run ./docs/gen` from proto/aura/v1/*.proto. Do not edit. -->\n\n")
	b.WriteString("# API reference (`aura.v1`)\n\n")
	b.WriteString("aurad serves these gRPC services, plus `grpc.health.v1.Health` and server\n")
	b.WriteString("reflection (so `grpcurl` needs no .proto files). The Go client in `client/`\n")
	b.WriteString("wraps the common calls. JSON names are the lowerCamelCase of the field names\n")
	b.WriteString("(protojson), as `auractl -o json` prints them.\n\n")
	for _, f := range files {
		for _, s := range f.services {
			fmt.Fprintf(&b, "- [%s](#%s) (%s)\n", s.name, anchor(s.name), f.name)
		}
	}
	b.WriteString("- [Messages](#messages)\n- [Enums](#enums)\n\n")
	for _, f := range files {
		for _, s := range f.services {
			fmt.Fprintf(&b, "## %s\n\n", s.name)
			if s.doc != "" {
				b.WriteString(s.doc + "\n\n")
			}
			b.WriteString("| RPC | Request | Response | Description |\n|---|---|---|---|\n")
			for _, r := range s.rpcs {
				fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", r.name, typeRef(r.in, r.streamIn, local), typeRef(r.out, r.streamOut, local), cell(r.doc))
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("## Messages\n\n")
	for _, f := range files {
		for _, m := range f.messages {
			fmt.Fprintf(&b, "### %s\n\n", m.name)
			if m.doc != "" {
				b.WriteString(m.doc + "\n\n")
			}
			if len(m.fields) == 0 {
				b.WriteString("No fields.\n\n")
				continue
			}
			b.WriteString("| Field | Type | # | Description |\n|---|---|---|---|\n")
			for _, fl := range m.fields {
				typ := fieldType(fl, local)
				desc := fl.doc
				if fl.oneof != "" {
					desc = strings.TrimSpace("One of `" + fl.oneof + "`. " + desc)
				}
				fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", fl.name, typ, fl.number, cell(desc))
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("## Enums\n\n")
	for _, f := range files {
		for _, e := range f.enums {
			fmt.Fprintf(&b, "### %s\n\n", e.name)
			if e.doc != "" {
				b.WriteString(e.doc + "\n\n")
			}
			b.WriteString("| Name | # | Description |\n|---|---|---|\n")
			for _, v := range e.values {
				fmt.Fprintf(&b, "| `%s` | %s | %s |\n", v.name, v.number, cell(v.doc))
			}
			b.WriteString("\n")
		}
	}
	return strings.TrimRight(b.String(), "\n") + "\n", nil
}

// anchor is GitHub's heading anchor for a one-word heading.
func anchor(s string) string { return strings.ToLower(s) }

func typeRef(t string, stream bool, local map[string]bool) string {
	s := "`" + t + "`"
	if local[t] {
		s = "[`" + t + "`](#" + anchor(t) + ")"
	}
	if stream {
		s = "stream " + s
	}
	return s
}

func fieldType(f field, local map[string]bool) string {
	if strings.HasPrefix(f.typ, "map<") {
		k, v, _ := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(f.typ, "map<"), ">"), ",")
		return "map<`" + k + "`, " + typeRef(v, false, local) + ">"
	}
	s := typeRef(f.typ, false, local)
	if f.label != "" {
		s = f.label + " " + s
	}
	return s
}

// cell makes text safe inside a Markdown table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
