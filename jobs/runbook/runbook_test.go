package runbook_test

import (
	"strings"
	"testing"

	"github.com/devport/devport/jobs/runbook"
)

var ops = runbook.Registry{
	"log": {Name: "log", Params: []runbook.Param{{Name: "message", Type: runbook.TypeString, Required: true}}},
	"set_pool_target": {Name: "set_pool_target", Params: []runbook.Param{
		{Name: "region", Type: runbook.TypeRegion, Required: true},
		{Name: "flavor", Type: runbook.TypeFlavor, Required: true},
		{Name: "target", Type: runbook.TypeInt, Required: true},
	}},
}

type catalog map[string]*runbook.Definition

func (c catalog) Definition(name string, version int) (*runbook.Definition, bool) {
	d, ok := c[name]
	if !ok || version != 0 && version != d.Version {
		return nil, false
	}
	return d, true
}

func mustParse(t *testing.T, src string) *runbook.Definition {
	t.Helper()
	d, ps := runbook.Parse([]byte(src))
	if len(ps) > 0 {
		t.Fatalf("parse: %v", ps)
	}
	return d
}

func env(t *testing.T) runbook.Env {
	leaf := mustParse(t, `
name: leaf
version: 2
params:
  region: {type: region, required: true}
steps:
  - name: say
    op: log
    params: {message: "in ${region}"}
`)
	loopA := mustParse(t, `
name: loop-a
version: 1
steps:
  - name: again
    runbook: loop-b
`)
	loopB := mustParse(t, `
name: loop-b
version: 1
steps:
  - name: back
    runbook: loop-a
`)
	return runbook.Env{Ops: ops, Catalog: catalog{"leaf": leaf, "loop-a": loopA, "loop-b": loopB}}
}

// TestValidation has one case per class of error; each names the line (and
// the column where there is one) of what is wrong.
func TestValidation(t *testing.T) {
	cases := []struct {
		name, src string
		want      []string // "line N" prefixes and a part of the message, in order
	}{
		{"invalid YAML gives the parser's line", "name: x\nversion: 1\nsteps: a: b\n", []string{"line 3: invalid YAML: mapping values are not allowed in this context"}},
		{"a tab in the indentation", "name: x\nversion: 1\nsteps:\n\t- name: a\n", []string{"line 4: invalid YAML: found character that cannot start any token"}},
		{"an unknown key", "name: x\nversion: 1\nsteps:\n  - name: a\n    op: log\n    params: {message: hi}\n    colour: red\n", []string{`line 7, column 5: steps[0].colour: unknown key "colour"`}},
		{"a value of the wrong type", "name: x\nversion: one\nsteps:\n  - name: a\n    op: log\n    params: {message: hi}\n", []string{"line 2, column 10: version: must be a whole number"}},
		{"a missing required key", "version: 1\nsteps:\n  - name: a\n    op: log\n    params: {message: hi}\n", []string{"line 1, column 1: name: is required"}},
		{"an unknown operation", "name: x\nversion: 1\nsteps:\n  - name: a\n    op: frobnicate\n", []string{`line 5, column 9: step "a" op: unknown operation "frobnicate"`}},
		{"an unknown parameter of an operation", "name: x\nversion: 1\nsteps:\n  - name: a\n    op: log\n    params:\n      message: hi\n      volume: 11\n", []string{`line 8, column 15: step "a" params.volume: unknown parameter "volume"`}},
		{"a parameter of the wrong type", "name: x\nversion: 1\nsteps:\n  - name: a\n    op: set_pool_target\n    params: {region: prn, flavor: vm.small, target: lots}\n", []string{`line 6, column 53: step "a" params.target: parameter "target" of operation set_pool_target is a int and must be a whole number`}},
		{"a reference of the wrong type", "name: x\nversion: 1\nparams:\n  n: bool\nsteps:\n  - name: a\n    op: set_pool_target\n    params: {region: prn, flavor: vm.small, target: \"${n}\"}\n", []string{`line 8, column 53: step "a" params.target: parameter "target" of operation set_pool_target is a int, but ${n} is a bool`}},
		{"a required parameter filled from an optional one without default", "name: x\nversion: 1\nparams:\n  msg: string\nsteps:\n  - name: a\n    op: log\n    params: {message: \"${msg}\"}\n", []string{`line 8, column 23: step "a" params.message: parameter "message" of operation log is required, but ${msg} is optional with no default`}},
		{"a reference to an unknown run parameter", "name: x\nversion: 1\nsteps:\n  - name: a\n    op: log\n    params: {message: \"in ${region}\"}\n", []string{`line 6, column 23: step "a" params.message: refers to ${region}`}},
		{"a missing operation parameter", "name: x\nversion: 1\nsteps:\n  - name: a\n    op: log\n", []string{`line 4, column 5: step "a": operation log needs the parameter "message"`}},
		{"a duplicate step name", "name: x\nversion: 1\nsteps:\n  - name: a\n    op: log\n    params: {message: hi}\n  - name: a\n    op: log\n    params: {message: hi}\n", []string{`line 7, column 11: step "a" name: the step name "a" is used twice (first on line 4)`}},
		{"a missing step name", "name: x\nversion: 1\nsteps:\n  - op: log\n    params: {message: hi}\n", []string{`line 4, column 5: steps[0].name: is required`}},
		{"needs of an unknown step", "name: x\nversion: 1\nsteps:\n  - name: a\n    needs: [ghost]\n    op: log\n    params: {message: hi}\n", []string{`line 5, column 12: step "a" needs: needs "ghost", which is not a step`}},
		{"a cycle is named", "name: x\nversion: 1\nsteps:\n  - name: a\n    needs: [c]\n    instructions: do a\n  - name: b\n    instructions: do b\n  - name: c\n    instructions: do c\n", []string{`line 5, column 12: step "a" needs: the steps wait for each other in a cycle (each needs the next): a → c → b → a`}},
		{"a barrier waiting for an unknown step", "name: x\nversion: 1\nsteps:\n  - name: a\n    instructions: do a\n  - name: join\n    wait_for: [a, ghost]\n", []string{`line 7, column 15: step "join" wait_for: the barrier can never be satisfied: it waits for "ghost"`}},
		{"a barrier waiting for a step after it", "name: x\nversion: 1\nsteps:\n  - name: a\n    instructions: do a\n  - name: join\n    wait_for: [a, later]\n  - name: later\n    instructions: then this\n", []string{`line 7, column 15: step "join" wait_for: the barrier can never be satisfied: it waits for "later", which comes after the barrier`}},
		{"a nested runbook that does not exist", "name: x\nversion: 1\nsteps:\n  - name: inner\n    runbook: nowhere\n", []string{`line 5, column 14: step "inner" runbook: no runbook "nowhere" exists`}},
		{"a nested runbook at a version that does not exist", "name: x\nversion: 1\nsteps:\n  - name: inner\n    runbook: leaf\n    version: 7\n    params: {region: prn}\n", []string{`line 5, column 14: step "inner" runbook: no runbook "leaf" at version 7 exists`}},
		{"a runbook that runs itself", "name: x\nversion: 1\nsteps:\n  - name: inner\n    runbook: x\n", []string{`line 5, column 14: step "inner" runbook: the runbook "x" runs itself`}},
		{"a runbook that nests itself through others", "name: loop-b\nversion: 2\nsteps:\n  - name: inner\n    runbook: loop-a\n", []string{`line 5, column 14: step "inner" runbook: the runbook nests itself: loop-b → loop-a → loop-b`}},
		{"a nested run without its required parameter", "name: x\nversion: 1\nsteps:\n  - name: inner\n    runbook: leaf\n", []string{`line 4, column 5: step "inner": runbook leaf needs the parameter "region"`}},
		{"a run parameter of an unknown type", "name: x\nversion: 1\nparams:\n  when: date\nsteps:\n  - name: a\n    instructions: do\n", []string{`line 4, column 9: params.when.type: unknown type "date"`}},
		{"a default of the wrong type", "name: x\nversion: 1\nparams:\n  n: {type: int, default: many}\nsteps:\n  - name: a\n    instructions: do\n", []string{`line 4, column 27: params.n.default: must be a whole number`}},
		{"every problem at once, in line order", "name: x\nversion: 1\nsteps:\n  - name: a\n    op: nope\n  - name: a\n    runbook: ghost\n", []string{`line 5, column 9: step "a" op: unknown operation`, `line 6, column 11: step "a" name: the step name "a" is used twice`, `line 7, column 14: step "a" runbook: no runbook "ghost"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, ps := runbook.Check([]byte(c.src), env(t))
			if d != nil || len(ps) == 0 {
				t.Fatalf("accepted:\n%s", c.src)
			}
			if len(ps) != len(c.want) {
				t.Fatalf("%d problems, want %d:\n%v", len(ps), len(c.want), ps)
			}
			for i, w := range c.want {
				if !strings.HasPrefix(ps[i].String(), w) && !strings.Contains(ps[i].String(), w) {
					t.Errorf("problem %d = %q, want it to start with %q", i, ps[i].String(), w)
				}
			}
		})
	}
}

func TestValidDefinition(t *testing.T) {
	src := `
name: drill
version: 3
description: A drill.
params:
  region: {type: region, required: true}
  target: {type: int, default: 2}
concurrency: 2
deadline: 1h
steps:
  - name: announce
    op: log
    params: {message: "Drill in ${region}"}
  - name: left
    needs: [announce]
    instructions: Check the left side.
  - name: right
    needs: [announce]
    op: set_pool_target
    params: {region: "${region}", flavor: vm.small, target: "${target}"}
    retry: {attempts: 3, backoff: 1s}
    timeout: 5m
  - name: join
    wait_for: [left, right]
  - name: nested
    runbook: leaf
    params: {region: "${region}"}
  - name: done
    op: log
    params: {message: done}
`
	d, ps := runbook.Check([]byte(src), env(t))
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	if d.Concurrency != 2 || d.Deadline.String() != "1h0m0s" || len(d.Steps) != 6 {
		t.Fatalf("definition %+v", d)
	}
	t.Run("a plain list is sequential", func(t *testing.T) {
		if s, _ := d.Step("nested"); len(s.Needs) != 1 || s.Needs[0] != "join" {
			t.Errorf("nested needs %v, want [join]", s.Needs)
		}
		if s, _ := d.Step("join"); strings.Join(s.Needs, ",") != "left,right" {
			t.Errorf("join needs %v", s.Needs)
		}
	})
	t.Run("order puts each step after what it needs", func(t *testing.T) {
		var names []string
		for _, s := range d.Order() {
			names = append(names, s.Name)
		}
		if got := strings.Join(names, ","); got != "announce,left,right,join,nested,done" {
			t.Errorf("order %s", got)
		}
	})
	t.Run("binds run parameters with defaults and types", func(t *testing.T) {
		got, problems := runbook.Bind(d.Params, map[string]any{"region": "prn"})
		if len(problems) > 0 || got["region"] != "prn" || got["target"] != int64(2) {
			t.Errorf("bind: %v %v", got, problems)
		}
		_, problems = runbook.Bind(d.Params, map[string]any{"target": "x", "extra": 1})
		if problems["region"] != "is required" || !strings.Contains(problems["target"], "whole number") || problems["extra"] == "" {
			t.Errorf("problems: %v", problems)
		}
	})
	t.Run("expands references with their types", func(t *testing.T) {
		s, _ := d.Step("right")
		got := runbook.Expand(s.Params, map[string]any{"region": "prn", "target": int64(4)})
		if got["region"] != "prn" || got["target"] != int64(4) || got["flavor"] != "vm.small" {
			t.Errorf("expand: %v", got)
		}
	})
}

func TestCoerce(t *testing.T) {
	cases := []struct {
		typ  string
		in   any
		want any
		bad  bool
	}{
		{runbook.TypeInt, "12", int64(12), false},
		{runbook.TypeInt, float64(3), int64(3), false},
		{runbook.TypeInt, 2.5, nil, true},
		{runbook.TypeInt, "x", nil, true},
		{runbook.TypeBool, "true", true, false},
		{runbook.TypeBool, "maybe", nil, true},
		{runbook.TypeDuration, "90m", "1h30m0s", false},
		{runbook.TypeDuration, "soon", nil, true},
		{runbook.TypeEmail, "A@Example.com", "a@example.com", false},
		{runbook.TypeEmail, "not an email", nil, true},
		{runbook.TypeRegion, "prn", "prn", false},
		{runbook.TypeRegion, "PR N", nil, true},
		{runbook.TypeString, int64(5), "5", false},
		{runbook.TypeFlavor, true, nil, true},
	}
	for _, c := range cases {
		got, err := runbook.Coerce(c.typ, c.in)
		if (err != nil) != c.bad || !c.bad && got != c.want {
			t.Errorf("Coerce(%s, %v) = %v, %v", c.typ, c.in, got, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("name: x\nversion: 1\nsteps:\n  - name: a\n    op: log\n    params: {message: hi}\n")
	f.Add("name: x\nversion: 1\nsteps:\n  - {name: a, wait_for: [a]}\n")
	f.Add("[1, 2")
	f.Fuzz(func(t *testing.T, src string) {
		d, ps := runbook.Parse([]byte(src))
		if d == nil && len(ps) == 0 {
			t.Fatal("no definition and no problem")
		}
		if d != nil {
			runbook.Validate(d, runbook.Env{Ops: ops})
			d.Order()
		}
		for _, p := range ps {
			if p.Line < 1 {
				t.Fatalf("problem without a line: %v", p)
			}
		}
	})
}
