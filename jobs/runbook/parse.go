package runbook

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// MaxSource is the largest definition accepted, in bytes.
const MaxSource = 256 << 10

var (
	namePattern    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	stepPattern    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 _.-]{0,79}$`)
	paramPattern   = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)
	yamlLineInText = regexp.MustCompile(`line (\d+)`)
)

// Parse reads a definition from YAML. It returns every problem of shape and
// type it finds, each with its line and column; a definition with problems
// is nil. Parse does not look at operations or other runbooks (Validate does).
func Parse(src []byte) (*Definition, Problems) {
	if len(src) > MaxSource {
		return nil, Problems{{Line: 1, Message: fmt.Sprintf("the definition is larger than %d KiB", MaxSource>>10)}}
	}
	if len(bytes.TrimSpace(src)) == 0 {
		return nil, Problems{{Line: 1, Message: "the definition is empty"}}
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(src))
	if err := dec.Decode(&doc); err != nil {
		return nil, Problems{yamlProblem(err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Problems{{Line: extra.Line, Column: extra.Column, Message: "only one YAML document is allowed"}}
	}
	p := &parser{}
	d := p.definition(doc.Content[0])
	if len(p.problems) > 0 {
		p.problems.sort()
		return nil, p.problems
	}
	return d, nil
}

// yamlProblem turns the YAML parser's error into a problem on its line.
func yamlProblem(err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 1
	if m := yamlLineInText.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = strings.TrimSpace(strings.Replace(msg, m[0]+":", "", 1))
	}
	return Problem{Line: line, Message: "invalid YAML: " + msg}
}

type parser struct {
	problems Problems
}

func (p *parser) add(n *yaml.Node, path, format string, args ...any) {
	p.problems = append(p.problems, Problem{Line: n.Line, Column: n.Column, Path: path, Message: fmt.Sprintf(format, args...)})
}

// fields walks a mapping node, refusing keys not in allowed and duplicates.
func (p *parser) fields(n *yaml.Node, path string, allowed ...string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	if n.Kind != yaml.MappingNode {
		p.add(n, path, "must be a mapping of keys to values, not %s", describe(n))
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := k.Value
		known := false
		for _, a := range allowed {
			known = known || a == key
		}
		switch {
		case !known:
			p.add(k, join(path, key), "unknown key %q (allowed: %s)", key, strings.Join(allowed, ", "))
		case out[key] != nil:
			p.add(k, join(path, key), "%q is given twice", key)
		default:
			out[key] = v
		}
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.Tag {
	case "!!null":
		return "nothing"
	case "!!int":
		return "a number"
	case "!!bool":
		return "true or false"
	}
	return fmt.Sprintf("%q", n.Value)
}

func (p *parser) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.add(n, path, "must be text, not %s", describe(n))
		return "", false
	}
	return n.Value, true
}

func (p *parser) integer(n *yaml.Node, path string, lo, hi int) (int, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		p.add(n, path, "must be a whole number, not %s", describe(n))
		return 0, false
	}
	v, err := strconv.Atoi(n.Value)
	if err != nil || v < lo || v > hi {
		p.add(n, path, "must be a whole number from %d to %d", lo, hi)
		return 0, false
	}
	return v, true
}

func (p *parser) duration(n *yaml.Node, path string, max time.Duration) (time.Duration, bool) {
	s, ok := p.str(n, path)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > max {
		p.add(n, path, "must be a duration such as 30s, 5m or 2h, at most %s (got %q)", max, s)
		return 0, false
	}
	return d, true
}

func (p *parser) names(n *yaml.Node, path string) ([]string, bool) {
	if n.Kind != yaml.SequenceNode {
		p.add(n, path, "must be a list of step names, not %s", describe(n))
		return nil, false
	}
	out := []string{}
	ok := true
	for i, c := range n.Content {
		s, good := p.str(c, fmt.Sprintf("%s[%d]", path, i))
		ok = ok && good
		out = append(out, s)
	}
	return out, ok
}

// scalar is a parameter value as YAML typed it: a string, an int64 or a bool.
func (p *parser) scalar(n *yaml.Node, path string) (any, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.add(n, path, "must be a single value (text, a number or true/false), not %s", describe(n))
		return nil, false
	}
	switch n.Tag {
	case "!!int":
		v, err := strconv.ParseInt(n.Value, 0, 64)
		if err != nil {
			p.add(n, path, "the number %s is out of range", n.Value)
			return nil, false
		}
		return v, true
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			p.add(n, path, "must be true or false")
			return nil, false
		}
		return b, true
	case "!!float":
		p.add(n, path, "must be a whole number, text or true/false, not the fraction %s", n.Value)
		return nil, false
	}
	return n.Value, true
}

func (p *parser) definition(root *yaml.Node) *Definition {
	f := p.fields(root, "", "name", "version", "description", "params", "concurrency", "deadline", "steps")
	d := &Definition{}
	if n := f["name"]; n == nil {
		p.add(root, "name", "is required")
	} else if s, ok := p.str(n, "name"); ok {
		if !namePattern.MatchString(s) {
			p.add(n, "name", "must be lower-case letters, digits and dashes, at most 63 (got %q)", s)
		}
		d.Name = s
	}
	if n := f["version"]; n == nil {
		p.add(root, "version", "is required")
	} else if v, ok := p.integer(n, "version", 1, 1_000_000); ok {
		d.Version = v
	}
	if n := f["description"]; n != nil {
		d.Description, _ = p.str(n, "description")
	}
	if n := f["concurrency"]; n != nil {
		d.Concurrency, _ = p.integer(n, "concurrency", 1, MaxConcurrency)
	}
	if n := f["deadline"]; n != nil {
		d.Deadline, _ = p.duration(n, "deadline", MaxDeadline)
	}
	if n := f["params"]; n != nil {
		d.Params = p.params(n, "params")
	}
	if n := f["steps"]; n == nil {
		p.add(root, "steps", "is required: a list of steps")
	} else {
		d.Steps = p.steps(n)
	}
	return d
}

func (p *parser) params(n *yaml.Node, path string) []Param {
	if n.Kind != yaml.MappingNode {
		p.add(n, path, "must be a mapping of parameter names to their type, not %s", describe(n))
		return nil
	}
	var out []Param
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := k.Value
		pp := join(path, name)
		if !paramPattern.MatchString(name) {
			p.add(k, pp, "a parameter name is lower-case letters, digits and underscores, starting with a letter")
			continue
		}
		if seen[name] {
			p.add(k, pp, "parameter %q is declared twice", name)
			continue
		}
		seen[name] = true
		par := Param{Name: name, Line: k.Line}
		// "region: region" is shorthand for {type: region}.
		if v.Kind == yaml.ScalarNode {
			par.Type, _ = p.str(v, pp)
		} else {
			pf := p.fields(v, pp, "type", "required", "default", "doc")
			if t := pf["type"]; t == nil {
				p.add(v, join(pp, "type"), "is required (one of %s)", strings.Join(paramTypes, ", "))
			} else {
				par.Type, _ = p.str(t, join(pp, "type"))
			}
			if r := pf["required"]; r != nil {
				if r.Tag != "!!bool" {
					p.add(r, join(pp, "required"), "must be true or false, not %s", describe(r))
				} else {
					_ = r.Decode(&par.Required)
				}
			}
			if doc := pf["doc"]; doc != nil {
				par.Doc, _ = p.str(doc, join(pp, "doc"))
			}
			if def := pf["default"]; def != nil && validType(par.Type) {
				if raw, ok := p.scalar(def, join(pp, "default")); ok {
					v, err := Coerce(par.Type, raw)
					if err != nil {
						p.add(def, join(pp, "default"), "%s", err)
					} else {
						par.Default = v
					}
				}
			}
		}
		if par.Type != "" && !validType(par.Type) {
			p.add(v, join(pp, "type"), "unknown type %q (one of %s)", par.Type, strings.Join(paramTypes, ", "))
		}
		out = append(out, par)
	}
	return out
}

func validType(t string) bool {
	for _, k := range paramTypes {
		if k == t {
			return true
		}
	}
	return false
}

func (p *parser) steps(n *yaml.Node) []Step {
	if n.Kind != yaml.SequenceNode {
		p.add(n, "steps", "must be a list of steps, not %s", describe(n))
		return nil
	}
	if len(n.Content) == 0 {
		p.add(n, "steps", "must hold at least one step")
	}
	if len(n.Content) > MaxSteps {
		p.add(n, "steps", "has %d steps; at most %d are allowed", len(n.Content), MaxSteps)
		return nil
	}
	var out []Step
	for i, sn := range n.Content {
		path := fmt.Sprintf("steps[%d]", i)
		f := p.fields(sn, path, "name", "kind", "needs", "retry", "timeout", "op", "params", "instructions", "wait_for", "runbook", "version")
		st := Step{Line: sn.Line, Column: sn.Column, where: map[string]pos{}}
		for k, v := range f {
			st.where[k] = pos{v.Line, v.Column}
		}
		if v := f["name"]; v == nil {
			p.add(sn, join(path, "name"), "is required")
		} else if s, ok := p.str(v, join(path, "name")); ok {
			if !stepPattern.MatchString(s) {
				p.add(v, join(path, "name"), "a step name is letters, digits, spaces and . _ -, at most 80 (got %q)", s)
			}
			st.Name = s
			path = fmt.Sprintf("steps[%d] %q", i, s)
		}
		// The kind is said, or follows from the key that only it has.
		var implied []string
		for key, kind := range map[string]string{"op": KindOperation, "instructions": KindManual, "wait_for": KindBarrier, "runbook": KindRunbook} {
			if f[key] != nil {
				implied = append(implied, kind)
			}
		}
		if v := f["kind"]; v != nil {
			st.Kind, _ = p.str(v, join(path, "kind"))
			switch st.Kind {
			case KindOperation, KindManual, KindBarrier, KindRunbook:
			case "":
			default:
				p.add(v, join(path, "kind"), "unknown kind %q (operation, manual, barrier or runbook)", st.Kind)
				st.Kind = ""
			}
		} else if len(implied) == 1 {
			st.Kind = implied[0]
		}
		switch {
		case st.Kind == "" && len(implied) == 0 && f["kind"] == nil:
			p.add(sn, path, "says neither its kind nor op, instructions, wait_for or runbook")
		case len(implied) > 1:
			p.add(sn, path, "mixes the keys of several kinds (%s)", strings.Join(sortedCopy(implied), ", "))
		}
		if v := f["needs"]; v != nil {
			if st.Kind == KindBarrier {
				p.add(v, join(path, "needs"), "a barrier waits for the steps in wait_for; it takes no needs")
			}
			st.Needs, _ = p.names(v, join(path, "needs"))
		} else {
			st.Needs = nil // the step before it, filled in below
		}
		if v := f["retry"]; v != nil {
			rf := p.fields(v, join(path, "retry"), "attempts", "backoff")
			st.Retry.Attempts = 1
			if a := rf["attempts"]; a != nil {
				st.Retry.Attempts, _ = p.integer(a, join(path, "retry.attempts"), 1, MaxAttempts)
			}
			if b := rf["backoff"]; b != nil {
				st.Retry.Backoff, _ = p.duration(b, join(path, "retry.backoff"), time.Hour)
			}
		}
		if v := f["timeout"]; v != nil {
			st.Timeout, _ = p.duration(v, join(path, "timeout"), MaxTimeout)
		}
		if v := f["op"]; v != nil {
			st.Op, _ = p.str(v, join(path, "op"))
		}
		if v := f["instructions"]; v != nil {
			st.Instructions, _ = p.str(v, join(path, "instructions"))
		}
		if v := f["wait_for"]; v != nil {
			st.WaitFor, _ = p.names(v, join(path, "wait_for"))
		}
		if v := f["runbook"]; v != nil {
			st.Runbook, _ = p.str(v, join(path, "runbook"))
		}
		if v := f["version"]; v != nil {
			if st.Kind != KindRunbook {
				p.add(v, join(path, "version"), "only a runbook step names a version")
			}
			st.RunbookVersion, _ = p.integer(v, join(path, "version"), 1, 1_000_000)
		}
		if v := f["params"]; v != nil {
			if st.Kind != KindOperation && st.Kind != KindRunbook {
				p.add(v, join(path, "params"), "only operation and runbook steps take params")
			}
			st.Params = map[string]any{}
			if v.Kind != yaml.MappingNode {
				p.add(v, join(path, "params"), "must be a mapping of parameter names to values, not %s", describe(v))
			} else {
				for j := 0; j+1 < len(v.Content); j += 2 {
					k, val := v.Content[j], v.Content[j+1]
					if _, dup := st.Params[k.Value]; dup {
						p.add(k, join(path, "params."+k.Value), "is given twice")
						continue
					}
					if x, ok := p.scalar(val, join(path, "params."+k.Value)); ok {
						st.Params[k.Value] = x
						st.where["params."+k.Value] = pos{val.Line, val.Column}
					}
				}
			}
		}
		switch st.Kind {
		case KindOperation:
			if st.Op == "" && f["op"] == nil {
				p.add(sn, join(path, "op"), "is required for an operation step")
			}
		case KindManual:
			if strings.TrimSpace(st.Instructions) == "" && f["instructions"] == nil {
				p.add(sn, join(path, "instructions"), "is required for a manual step: say what the person must do")
			}
		case KindBarrier:
			if f["wait_for"] == nil {
				p.add(sn, join(path, "wait_for"), "is required for a barrier: the steps it joins")
			}
		case KindRunbook:
			if f["runbook"] == nil {
				p.add(sn, join(path, "runbook"), "is required for a runbook step: the runbook to run")
			}
		}
		out = append(out, st)
	}
	// A plain list is sequential: a step without needs waits for the one before it.
	for i := range out {
		if out[i].Kind == KindBarrier {
			out[i].Needs = append([]string(nil), out[i].WaitFor...)
			continue
		}
		if out[i].Needs == nil {
			out[i].Needs = []string{}
			if i > 0 && out[i-1].Name != "" && out[i-1].Name != out[i].Name {
				out[i].Needs = []string{out[i-1].Name}
			}
		}
	}
	return out
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j] < c[i] {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	return c
}
