package runbook

import (
	"fmt"
	"sort"
	"strings"
)

// Check parses and validates a definition: every problem, with its line.
func Check(src []byte, env Env) (*Definition, Problems) {
	d, ps := Parse(src)
	if len(ps) > 0 {
		return nil, ps
	}
	if ps := Validate(d, env); len(ps) > 0 {
		return nil, ps
	}
	return d, nil
}

// Validate checks a parsed definition against the registered operations and
// the catalog of runbooks: unknown operations and parameters, parameters of
// the wrong type, duplicate and unknown step names, cycles, barriers that can
// never be satisfied, and nested runbooks that do not exist or nest themselves.
func Validate(d *Definition, env Env) Problems {
	v := &validator{d: d, env: env, index: map[string]int{}}
	v.names()
	for i := range d.Steps {
		v.step(&d.Steps[i])
	}
	v.barriers()
	v.cycles()
	v.problems.sort()
	return v.problems
}

type validator struct {
	d        *Definition
	env      Env
	index    map[string]int // step name → position
	problems Problems
	// skip are needs edges already reported (a barrier's impossible wait),
	// left out of the cycle search so one mistake is told once.
	skip map[[2]string]bool
}

func (v *validator) at(st *Step, field string) (int, int) {
	if p, ok := st.where[field]; ok {
		return p.line, p.col
	}
	return st.Line, st.Column
}

func (v *validator) add(st *Step, field, format string, args ...any) {
	line, col := v.at(st, field)
	path := fmt.Sprintf("step %q", st.Name)
	if field != "" {
		path += " " + field
	}
	v.problems = append(v.problems, Problem{Line: line, Column: col, Path: path, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) names() {
	for i := range v.d.Steps {
		st := &v.d.Steps[i]
		if st.Name == "" {
			continue
		}
		if j, dup := v.index[st.Name]; dup {
			v.add(st, "name", "the step name %q is used twice (first on line %d)", st.Name, v.d.Steps[j].Line)
			continue
		}
		v.index[st.Name] = i
	}
}

func (v *validator) step(st *Step) {
	field := "needs"
	if st.Kind == KindBarrier {
		field = "wait_for"
	}
	for _, n := range st.Needs {
		if n == st.Name {
			v.add(st, field, "the step waits for itself")
			continue
		}
		if _, ok := v.index[n]; !ok && st.Kind != KindBarrier {
			v.add(st, field, "needs %q, which is not a step of this runbook", n)
		}
	}
	switch st.Kind {
	case KindOperation:
		op, ok := v.env.Ops[st.Op]
		if !ok {
			v.add(st, "op", "unknown operation %q (known: %s)", st.Op, strings.Join(v.opNames(), ", "))
			return
		}
		v.params(st, op.Name, "operation", op.Params)
	case KindRunbook:
		v.nested(st)
	}
}

func (v *validator) opNames() []string {
	names := make([]string, 0, len(v.env.Ops))
	for n := range v.env.Ops {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// params checks a step's parameters against what the operation or nested
// runbook declares, and their references against the run's parameters.
func (v *validator) params(st *Step, what, noun string, declared []Param) {
	byName := map[string]Param{}
	for _, p := range declared {
		byName[p.Name] = p
	}
	keys := make([]string, 0, len(st.Params))
	for k := range st.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		val := st.Params[k]
		field := "params." + k
		p, ok := byName[k]
		if !ok {
			names := make([]string, 0, len(declared))
			for _, d := range declared {
				names = append(names, d.Name)
			}
			v.add(st, field, "unknown parameter %q of %s %s (it takes: %s)", k, noun, what, strings.Join(names, ", "))
			continue
		}
		rs := refs(val)
		if len(rs) == 0 {
			if _, err := Coerce(p.Type, val); err != nil {
				v.add(st, field, "parameter %q of %s %s is a %s and %s", k, noun, what, p.Type, err)
			}
			continue
		}
		for _, r := range rs {
			rp, ok := v.d.Param(r)
			if !ok {
				v.add(st, field, "refers to ${%s}, which is not a parameter of this runbook", r)
				continue
			}
			whole := len(rs) == 1 && strings.TrimSpace(val.(string)) == "${"+r+"}"
			if whole && !compatible(rp.Type, p.Type) {
				v.add(st, field, "parameter %q of %s %s is a %s, but ${%s} is a %s", k, noun, what, p.Type, r, rp.Type)
			} else if whole && p.Required && p.Default == nil && !rp.Required && rp.Default == nil {
				// The run may leave it out, and then the step cannot run.
				v.add(st, field, "parameter %q of %s %s is required, but ${%s} is optional with no default: make it required or give it a default", k, noun, what, r)
			}
		}
	}
	for _, p := range declared {
		if _, given := st.Params[p.Name]; !given && p.Required && p.Default == nil {
			v.add(st, "", "%s %s needs the parameter %q (%s)", noun, what, p.Name, p.Type)
		}
	}
}

// compatible tells whether a run parameter of type from may fill an
// operation parameter of type to: the same type, or text from anything.
func compatible(from, to string) bool {
	return from == to || to == TypeString
}

func (v *validator) nested(st *Step) {
	if st.Runbook == v.d.Name {
		v.add(st, "runbook", "the runbook %q runs itself", st.Runbook)
		return
	}
	if v.env.Catalog == nil {
		v.add(st, "runbook", "no runbook %q exists", st.Runbook)
		return
	}
	nd, ok := v.env.Catalog.Definition(st.Runbook, st.RunbookVersion)
	if !ok {
		if st.RunbookVersion > 0 {
			v.add(st, "runbook", "no runbook %q at version %d exists", st.Runbook, st.RunbookVersion)
		} else {
			v.add(st, "runbook", "no runbook %q exists", st.Runbook)
		}
		return
	}
	if chain, loops := v.nestsBack(nd, []string{v.d.Name, nd.Name}, 1); loops {
		v.add(st, "runbook", "the runbook nests itself: %s", strings.Join(chain, " → "))
		return
	} else if len(chain) > MaxNesting+1 {
		v.add(st, "runbook", "runbooks nest more than %d deep: %s", MaxNesting, strings.Join(chain, " → "))
		return
	}
	v.params(st, nd.Name, "runbook", nd.Params)
}

// nestsBack follows nested runbooks from d, looking for v.d's name.
func (v *validator) nestsBack(d *Definition, chain []string, depth int) ([]string, bool) {
	if depth > MaxNesting {
		return chain, false
	}
	for _, st := range d.Steps {
		if st.Kind != KindRunbook {
			continue
		}
		next := append(append([]string(nil), chain...), st.Runbook)
		if st.Runbook == v.d.Name {
			return next, true
		}
		nd, ok := v.env.Catalog.Definition(st.Runbook, st.RunbookVersion)
		if !ok || st.Runbook == d.Name {
			continue
		}
		if c, loops := v.nestsBack(nd, next, depth+1); loops || len(c) > MaxNesting+1 {
			return c, loops
		}
	}
	return chain, false
}

// downstream tells whether step from (transitively) needs step target.
func (v *validator) downstream(from, target string, seen map[string]bool) bool {
	if seen[from] {
		return false
	}
	seen[from] = true
	i, ok := v.index[from]
	if !ok {
		return false
	}
	for _, n := range v.d.Steps[i].Needs {
		if n == target || v.downstream(n, target, seen) {
			return true
		}
	}
	return false
}

// barriers finds joins that can never complete: waiting for a step that does
// not exist, or for one that itself waits for the barrier.
func (v *validator) barriers() {
	v.skip = map[[2]string]bool{}
	for i := range v.d.Steps {
		st := &v.d.Steps[i]
		if st.Kind != KindBarrier {
			continue
		}
		if len(st.WaitFor) == 0 {
			v.add(st, "wait_for", "the barrier waits for no step")
		}
		for _, w := range st.WaitFor {
			if w == st.Name {
				continue // told already
			}
			if _, ok := v.index[w]; !ok {
				v.add(st, "wait_for", "the barrier can never be satisfied: it waits for %q, which is not a step of this runbook", w)
				continue
			}
			if v.downstream(w, st.Name, map[string]bool{}) {
				v.add(st, "wait_for", "the barrier can never be satisfied: it waits for %q, which comes after the barrier (it needs the barrier)", w)
				v.skip[[2]string{st.Name, w}] = true
			}
		}
	}
}

// cycles reports each cycle of needs once, naming its steps in order.
func (v *validator) cycles() {
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	reported := map[string]bool{}
	var visit func(name string)
	visit = func(name string) {
		color[name] = grey
		stack = append(stack, name)
		st := &v.d.Steps[v.index[name]]
		for _, n := range st.Needs {
			if _, ok := v.index[n]; !ok || n == name || v.skip[[2]string{name, n}] {
				continue
			}
			switch color[n] {
			case white:
				visit(n)
			case grey:
				// The cycle is the stack from n to here: each step needs
				// the next.
				var cyc []string
				for j := len(stack) - 1; j >= 0; j-- {
					cyc = append(cyc, stack[j])
					if stack[j] == n {
						break
					}
				}
				for l, r := 0, len(cyc)-1; l < r; l, r = l+1, r-1 {
					cyc[l], cyc[r] = cyc[r], cyc[l]
				}
				key := cycleKey(cyc)
				if !reported[key] {
					reported[key] = true
					first := &v.d.Steps[v.index[n]]
					for _, c := range cyc {
						if v.index[c] < v.index[first.Name] {
							first = &v.d.Steps[v.index[c]]
						}
					}
					ring := append(append([]string(nil), cyc...), cyc[0])
					v.add(first, "needs", "the steps wait for each other in a cycle (each needs the next): %s", strings.Join(ring, " → "))
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[name] = black
	}
	for _, st := range v.d.Steps {
		if _, ok := v.index[st.Name]; ok && color[st.Name] == white && v.d.Steps[v.index[st.Name]].Line == st.Line {
			visit(st.Name)
		}
	}
}

func cycleKey(c []string) string {
	s := append([]string(nil), c...)
	sort.Strings(s)
	return strings.Join(s, "\x00")
}

// Order is the steps in an order they may run: each after the steps it
// needs, ties kept in the order of the text. It assumes a valid definition.
func (d *Definition) Order() []Step {
	done := map[string]bool{}
	var out []Step
	for len(out) < len(d.Steps) {
		progressed := false
		for _, st := range d.Steps {
			if done[st.Name] {
				continue
			}
			ready := true
			for _, n := range st.Needs {
				ready = ready && done[n]
			}
			if ready {
				done[st.Name] = true
				out = append(out, st)
				progressed = true
				break
			}
		}
		if !progressed {
			break
		}
	}
	return out
}

// Dependents maps each step to the steps that need it.
func (d *Definition) Dependents() map[string][]string {
	out := map[string][]string{}
	for _, st := range d.Steps {
		for _, n := range st.Needs {
			out[n] = append(out[n], st.Name)
		}
	}
	return out
}

// PlanStep is what one step of a dry run would do, in order.
type PlanStep struct {
	Step  string   `json:"step"`
	Kind  string   `json:"kind"`
	Needs []string `json:"needs,omitempty"`
	Lines []string `json:"lines"`
	// Run is a nested runbook's plan.
	Run *Plan `json:"run,omitempty"`
	// Error is why the step could not be planned (such as a parameter the
	// inventory does not know).
	Error string `json:"error,omitempty"`
}

// Plan is a dry run of a definition with its parameters.
type Plan struct {
	Runbook string         `json:"runbook"`
	Version int            `json:"version"`
	Params  map[string]any `json:"params"`
	Steps   []PlanStep     `json:"steps"`
}
