package plan

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestResourceTagsCheckedAtLoad: a templated tag must compile and read
// only declared inputs; a literal one goes through Options.ResourceTagValid
// (the daemon's pools), each problem at its own line.
func TestResourceTagsCheckedAtLoad(t *testing.T) {
	root := t.TempDir()
	writeTree(t, filepath.Join(root, "p"), map[string]string{
		"tasks/a.yaml": "meta:\n  resource_tags:\n" +
			"    - \"device:{{ inputs.serial }}\"\n" + // 3: fine
			"    - \"device:{{ inputs.serial \"\n" + // 4: unbalanced
			"    - \"device:{{ nodes.x.output }}\"\n" + // 5: reads more than inputs
			"    - \"device:{{ inputs.missing }}\"\n" + // 6: undeclared input
			"    - \"phone:*\"\n" + // 7: unknown pool (by the validator)
			"    - \"device:*\"\n" + // 8: fine
			"inputs:\n  - {name: serial, type: string}\n" +
			"steps:\n  - action: noop\n",
	})
	valid := func(tag string) error {
		if strings.HasPrefix(tag, "phone") {
			return errors.New(`no pool "phone" is declared`)
		}
		return nil
	}
	var got []string
	for _, p := range CheckWith(root, Options{ResourceTagValid: valid}) {
		got = append(got, fmt.Sprintf("%d: %s", p.Line, p.Msg))
	}
	want := []string{
		`4: meta.resource_tags: bad template "device:{{ inputs.serial ": "{{" without matching "}}"`,
		`5: meta.resource_tags: "device:{{ nodes.x.output }}" may read only inputs (tags are rendered at submit, before anything runs)`,
		`6: meta.resource_tags: "device:{{ inputs.missing }}" reads inputs.missing, which the task does not declare`,
		`7: meta.resource_tags: no pool "phone" is declared`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestTemplatedTagIsCompiled(t *testing.T) {
	root := t.TempDir()
	writeTree(t, filepath.Join(root, "p"), map[string]string{
		"tasks/a.yaml": "meta:\n  resource_tags: [api, \"device:{{ inputs.serial }}\"]\n" +
			"inputs:\n  - {name: serial, type: string}\nsteps:\n  - action: noop\n",
	})
	set, err := Load(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	task, err := set.Task("p/a")
	if err != nil {
		t.Fatal(err)
	}
	tm := task.Meta.ResourceTagTemplates
	if len(tm) != 2 || tm[0] != nil || tm[1] == nil {
		t.Fatalf("templates %v: want only the second compiled", tm)
	}
	got, err := tm[1].Eval(map[string]any{"inputs": map[string]any{"serial": "emulator-5554"}})
	if err != nil || got != "device:emulator-5554" {
		t.Fatalf("rendered %v, %v", got, err)
	}
}
