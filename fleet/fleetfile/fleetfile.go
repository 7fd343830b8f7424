// Package fleetfile reads a fleet file: the YAML that declares a portal's
// regions, its hosts with each host's driver and endpoint, and optionally the
// flavour and feature catalogues. Every problem is reported with the file's
// name and the line it is on, so that a malformed file stops the start with
// a message a person can act on.
package fleetfile

import (
	"cmp"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/devport/devport/store"
)

// File is a parsed and validated fleet file.
type File struct {
	// Path is where the file was read from, as given.
	Path     string
	Regions  []store.Region
	Hosts    []store.Host
	Flavors  []store.Flavor  // nil when the file declares none: the demo catalogue applies
	Features []store.Feature // nil when the file declares none: the demo catalogue applies
	// Endpoints maps a host's name to its engine's endpoint (docker hosts).
	Endpoints map[string]string
}

// Declaration is the inventory the file declares, for store.ReconcileFleet.
func (f File) Declaration() store.FleetDeclaration {
	return store.FleetDeclaration{Source: f.Path, Regions: f.Regions, Hosts: f.Hosts, Flavors: f.Flavors, Features: f.Features}
}

// Engines maps the name of every host that driver runs to its endpoint.
func (f File) Engines(driver string) map[string]string {
	out := map[string]string{}
	for _, h := range f.Hosts {
		if h.Driver == driver {
			out[h.Name] = f.Endpoints[h.Name]
		}
	}
	return out
}

// Uses tells whether any host is run by driver.
func (f File) Uses(driver string) bool {
	return slices.ContainsFunc(f.Hosts, func(h store.Host) bool { return h.Driver == driver })
}

// Problem is one thing wrong in a fleet file, at a line (0 when the whole
// file is concerned).
type Problem struct {
	Line    int
	Message string
}

// Error is every problem found in a fleet file.
type Error struct {
	Path     string
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, 0, len(e.Problems))
	for _, p := range e.Problems {
		if p.Line > 0 {
			lines = append(lines, fmt.Sprintf("%s:%d: %s", e.Path, p.Line, p.Message))
		} else {
			lines = append(lines, fmt.Sprintf("%s: %s", e.Path, p.Message))
		}
	}
	return strings.Join(lines, "\n")
}

// Load reads and validates the fleet file at path. drivers names the fleet
// drivers this devport has.
func Load(path string, drivers []string) (File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("fleet file: %w", err)
	}
	return Parse(path, data, drivers)
}

var (
	regionCode   = regexp.MustCompile(`^[a-z][a-z0-9-]{0,15}$`)
	hostName     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	catalogName  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	tagName      = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,31}$`)
	yamlLineErr  = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	hostKinds    = []string{"hypervisor", "physical", "container"}
	flavorKinds  = []string{"vm", "physical", "container"}
	fileStates   = []string{"ready", "maintenance"}
	topFields    = []string{"regions", "hosts", "flavors", "features"}
	regionFields = []string{"code", "name", "position"}
	hostFields   = []string{"name", "region", "kind", "driver", "endpoint", "state", "cpus", "memory_gb", "disk_gb", "gpus", "tags"}
	flavorFields = []string{"name", "kind", "description", "cpus", "memory_gb", "disk_gb", "gpus", "accelerator", "position"}
	featureField = []string{"name", "version", "description"}
	// Words people write for a field that has another name here.
	didYouMean = map[string]string{"flavours": "flavors", "memory": "memory_gb", "disk": "disk_gb", "cpu": "cpus", "gpu": "gpus", "type": "kind", "host": "endpoint", "tag": "tags"}
)

// parser collects problems while it reads the document.
type parser struct {
	problems []Problem
	merges   int // merged mappings read, bounded against alias bombs
}

func (p *parser) add(line int, format string, args ...any) {
	p.problems = append(p.problems, Problem{Line: line, Message: fmt.Sprintf(format, args...)})
}

// Parse validates a fleet file's content; name is how messages call the file.
func Parse(name string, data []byte, drivers []string) (File, error) {
	f := File{Path: name, Endpoints: map[string]string{}}
	var p parser
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		line := 0
		if m := yamlLineErr.FindStringSubmatch(err.Error()); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		if strings.Contains(msg, "tab character") {
			// The parser names the line its context began on; the tab is
			// what a person must find.
			for i, l := range strings.Split(string(data), "\n") {
				if strings.HasPrefix(strings.TrimLeft(l, " "), "\t") {
					line, msg = i+1, "a tab indents this line; indent with spaces"
					break
				}
			}
		}
		p.add(line, "not valid YAML: %s", msg)
		return File{}, &Error{Path: name, Problems: p.problems}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		p.add(0, "the file is empty: declare regions and hosts")
		return File{}, &Error{Path: name, Problems: p.problems}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		p.add(root.Line, "the file must be a mapping with regions and hosts, not %s", describe(root))
		return File{}, &Error{Path: name, Problems: p.problems}
	}
	top := p.fields(root, "the file", topFields)

	regions := map[string]int{} // code → line
	for i, n := range p.list(top["regions"], "regions") {
		fs := p.fields(n, label("region", n, "code", i), regionFields)
		r := store.Region{Status: "active", Position: i + 1}
		r.Code = p.str(fs["code"], "region", "code", true, n.Line)
		what := fmt.Sprintf("region %q", r.Code)
		if r.Code != "" && !regionCode.MatchString(r.Code) {
			p.add(fs["code"].Line, "%s: the code must be lower-case letters, digits and dashes, starting with a letter (at most 16)", what)
		}
		if line, dup := regions[r.Code]; dup && r.Code != "" {
			p.add(fs["code"].Line, "%s is declared twice (first on line %d)", what, line)
		} else if r.Code != "" {
			regions[r.Code] = fs["code"].Line
		}
		r.Name = p.str(fs["name"], what, "name", false, 0)
		if r.Name == "" {
			r.Name = r.Code
		}
		if fs["position"] != nil {
			r.Position = p.size(fs["position"], what, "position")
		}
		f.Regions = append(f.Regions, r)
	}
	if top["regions"] == nil {
		p.add(0, "no regions: declare at least one under regions:")
	}

	hosts := map[string]int{}
	for i, n := range p.list(top["hosts"], "hosts") {
		fs := p.fields(n, label("host", n, "name", i), hostFields)
		h := store.Host{}
		h.Name = p.str(fs["name"], "host", "name", true, n.Line)
		what := fmt.Sprintf("host %q", h.Name)
		if h.Name != "" && !hostName.MatchString(h.Name) {
			p.add(fs["name"].Line, "%s: the name must be lower-case letters, digits and dashes (a DNS label)", what)
		}
		if line, dup := hosts[h.Name]; dup && h.Name != "" {
			p.add(fs["name"].Line, "%s is declared twice (first on line %d)", what, line)
		} else if h.Name != "" {
			hosts[h.Name] = fs["name"].Line
		}
		h.Region = p.str(fs["region"], what, "region", true, n.Line)
		if _, ok := regions[h.Region]; h.Region != "" && !ok {
			p.add(fs["region"].Line, "%s: region %q is not declared under regions (%s)", what, h.Region, keys(regions))
		}
		h.Kind = p.oneOf(fs["kind"], what, "kind", "a kind of host", hostKinds, n.Line)
		h.Driver = p.oneOf(fs["driver"], what, "driver", "a driver this devport has", drivers, n.Line)
		if s := p.str(fs["state"], what, "state", false, 0); s != "" {
			h.State = p.oneOf(fs["state"], what, "state", "a state a fleet file may set", fileStates, n.Line)
		}
		endpoint := p.str(fs["endpoint"], what, "endpoint", false, 0)
		switch {
		case h.Driver == "docker" && endpoint == "":
			p.add(n.Line, "%s: a docker host needs an endpoint, such as unix:///var/run/docker.sock", what)
		case h.Driver == "docker":
			if problem := checkEndpoint(endpoint); problem != "" {
				p.add(fs["endpoint"].Line, "%s: endpoint %q %s", what, endpoint, problem)
			}
			f.Endpoints[h.Name] = endpoint
		case endpoint != "" && h.Driver != "":
			p.add(fs["endpoint"].Line, "%s: an endpoint is only for docker hosts; driver %q has none", what, h.Driver)
		}
		h.CPUs = p.positive(fs["cpus"], what, "cpus", n.Line)
		h.MemoryGB = p.positive(fs["memory_gb"], what, "memory_gb", n.Line)
		h.DiskGB = p.positive(fs["disk_gb"], what, "disk_gb", n.Line)
		if fs["gpus"] != nil {
			h.GPUs = p.size(fs["gpus"], what, "gpus")
		}
		h.Tags = strings.Join(p.tags(fs["tags"], what), ",")
		f.Hosts = append(f.Hosts, h)
	}
	if top["hosts"] == nil {
		p.add(0, "no hosts: declare at least one under hosts:")
	}

	if top["flavors"] != nil {
		f.Flavors = []store.Flavor{}
		seen := map[string]int{}
		for i, n := range p.list(top["flavors"], "flavors") {
			fs := p.fields(n, label("flavor", n, "name", i), flavorFields)
			fl := store.Flavor{Position: i + 1}
			fl.Name = p.str(fs["name"], "flavor", "name", true, n.Line)
			what := fmt.Sprintf("flavor %q", fl.Name)
			if fl.Name != "" && !catalogName.MatchString(fl.Name) {
				p.add(fs["name"].Line, "%s: the name must be lower-case letters, digits, dots and dashes", what)
			}
			if line, dup := seen[fl.Name]; dup && fl.Name != "" {
				p.add(fs["name"].Line, "%s is declared twice (first on line %d)", what, line)
			} else if fl.Name != "" {
				seen[fl.Name] = fs["name"].Line
			}
			fl.Kind = p.oneOf(fs["kind"], what, "kind", "a kind of flavour", flavorKinds, n.Line)
			fl.Description = p.str(fs["description"], what, "description", false, 0)
			fl.CPUs = p.positive(fs["cpus"], what, "cpus", n.Line)
			fl.MemoryGB = p.positive(fs["memory_gb"], what, "memory_gb", n.Line)
			fl.DiskGB = p.positive(fs["disk_gb"], what, "disk_gb", n.Line)
			if fs["gpus"] != nil {
				fl.GPUs = p.size(fs["gpus"], what, "gpus")
			}
			fl.Accelerator = p.str(fs["accelerator"], what, "accelerator", false, 0)
			if fs["position"] != nil {
				fl.Position = p.size(fs["position"], what, "position")
			}
			f.Flavors = append(f.Flavors, fl)
		}
	}
	if top["features"] != nil {
		f.Features = []store.Feature{}
		seen := map[string]int{}
		for i, n := range p.list(top["features"], "features") {
			fs := p.fields(n, label("feature", n, "name", i), featureField)
			ft := store.Feature{}
			ft.Name = p.str(fs["name"], "feature", "name", true, n.Line)
			what := fmt.Sprintf("feature %q", ft.Name)
			if ft.Name != "" && !catalogName.MatchString(ft.Name) {
				p.add(fs["name"].Line, "%s: the name must be lower-case letters, digits, dots and dashes", what)
			}
			if line, dup := seen[ft.Name]; dup && ft.Name != "" {
				p.add(fs["name"].Line, "%s is declared twice (first on line %d)", what, line)
			} else if ft.Name != "" {
				seen[ft.Name] = fs["name"].Line
			}
			ft.Version = p.str(fs["version"], what, "version", true, n.Line)
			ft.Description = p.str(fs["description"], what, "description", false, 0)
			f.Features = append(f.Features, ft)
		}
	}

	if len(p.problems) > 0 {
		slices.SortStableFunc(p.problems, func(a, b Problem) int { return cmp.Compare(a.Line, b.Line) })
		return File{}, &Error{Path: name, Problems: p.problems}
	}
	return f, nil
}

// fields reads a mapping, reporting keys that are unknown or given twice.
// A merge key ("<<: *defaults") brings in the anchored mapping's fields that
// are not given here.
func (p *parser) fields(n *yaml.Node, what string, known []string) map[string]*yaml.Node {
	return p.mergedFields(n, what, known, 0)
}

func (p *parser) mergedFields(n *yaml.Node, what string, known []string, depth int) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	n = deref(n)
	if depth > 0 {
		p.merges++
	}
	if depth > 8 || p.merges > 1000 {
		p.add(n.Line, "%s: merges (<<: *name) refer to themselves, nest too deep or are too many", what)
		return out
	}
	if n.Kind != yaml.MappingNode {
		p.add(n.Line, "%s must be a mapping of %s, not %s", what, strings.Join(known, ", "), describe(n))
		return out
	}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		switch {
		case k.Tag == "!!merge":
			merges = append(merges, v)
		case !slices.Contains(known, k.Value):
			hint := ""
			if alt, ok := didYouMean[k.Value]; ok && slices.Contains(known, alt) {
				hint = fmt.Sprintf(" (did you mean %q?)", alt)
			}
			p.add(k.Line, "%s: unknown field %q%s; known fields are %s", what, k.Value, hint, strings.Join(known, ", "))
		case out[k.Value] != nil:
			p.add(k.Line, "%s: field %q is given twice (first on line %d)", what, k.Value, out[k.Value].Line)
		default:
			out[k.Value] = v
		}
	}
	for _, m := range merges {
		for key, val := range p.mergedFields(m, what, known, depth+1) {
			if out[key] == nil {
				out[key] = val
			}
		}
	}
	return out
}

// list reads a sequence.
func (p *parser) list(n *yaml.Node, what string) []*yaml.Node {
	if n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		return nil
	}
	n = deref(n)
	if n.Kind != yaml.SequenceNode {
		p.add(n.Line, "%s must be a list (lines starting with \"- \"), not %s", what, describe(n))
		return nil
	}
	return n.Content
}

// str reads a text field; a required one that is missing is reported at line.
func (p *parser) str(n *yaml.Node, what, field string, required bool, line int) string {
	if n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		if required {
			p.add(line, "%s: %s is required", what, field)
		}
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		p.add(n.Line, "%s: %s must be text, not %s", what, field, describe(n))
		return ""
	}
	v := strings.TrimSpace(n.Value)
	if v == "" && required {
		p.add(n.Line, "%s: %s is required", what, field)
	}
	return v
}

func (p *parser) oneOf(n *yaml.Node, what, field, kind string, allowed []string, line int) string {
	v := p.str(n, what, field, true, line)
	if v != "" && !slices.Contains(allowed, v) {
		p.add(n.Line, "%s: %s %q is not %s (%s)", what, field, v, kind, strings.Join(allowed, ", "))
		return ""
	}
	return v
}

// size reads a whole number that is zero or more.
func (p *parser) size(n *yaml.Node, what, field string) int {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		p.add(n.Line, "%s: %s must be a whole number, not %s", what, field, describe(n))
		return 0
	}
	v, err := strconv.Atoi(strings.ReplaceAll(n.Value, "_", ""))
	if err != nil || v > 1<<30 {
		p.add(n.Line, "%s: %s %s is out of range", what, field, n.Value)
		return 0
	}
	if v < 0 {
		p.add(n.Line, "%s: %s is %d; a size cannot be negative", what, field, v)
		return 0
	}
	return v
}

// positive reads a required whole number above zero.
func (p *parser) positive(n *yaml.Node, what, field string, line int) int {
	if n == nil {
		p.add(line, "%s: %s is required", what, field)
		return 0
	}
	before := len(p.problems)
	v := p.size(n, what, field)
	if v == 0 && len(p.problems) == before {
		p.add(n.Line, "%s: %s must be more than 0", what, field)
	}
	return v
}

// tags reads a list of tags, or one comma-separated text.
func (p *parser) tags(n *yaml.Node, what string) []string {
	if n == nil {
		return nil
	}
	n = deref(n)
	var items []*yaml.Node
	switch {
	case n.Kind == yaml.SequenceNode:
		items = n.Content
	case n.Kind == yaml.ScalarNode && n.Tag == "!!null":
	case n.Kind == yaml.ScalarNode:
		for _, part := range strings.Split(n.Value, ",") {
			items = append(items, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: strings.TrimSpace(part), Line: n.Line})
		}
	default:
		p.add(n.Line, "%s: tags must be a list, not %s", what, describe(n))
	}
	var out []string
	for _, t := range items {
		v := p.str(t, what, "a tag", false, 0)
		switch {
		case v == "":
		case !tagName.MatchString(v):
			p.add(t.Line, "%s: tag %q must be lower-case letters, digits, dots, dashes and underscores", what, v)
		case !slices.Contains(out, v):
			out = append(out, v)
		}
	}
	return out
}

// checkEndpoint says what is wrong with a Docker endpoint, or "".
func checkEndpoint(v string) string {
	u, err := url.Parse(v)
	if err != nil {
		return "is not a URL"
	}
	switch u.Scheme {
	case "unix":
		if u.Path == "" {
			return "needs the socket's path, such as unix:///var/run/docker.sock"
		}
	case "tcp", "http", "https":
		if u.Host == "" {
			return "needs a host and port, such as tcp://10.0.0.5:2376"
		}
	default:
		return "must start with unix://, tcp://, http:// or https://"
	}
	return ""
}

// label names the i-th entry of a list in messages: by its key field
// (`host "prn-ct01"`) when it has one, else by its position (`host 3`).
func label(kind string, n *yaml.Node, key string, i int) string {
	n = deref(n)
	if n.Kind == yaml.MappingNode {
		for j := 0; j+1 < len(n.Content); j += 2 {
			if v := deref(n.Content[j+1]); n.Content[j].Value == key && v.Kind == yaml.ScalarNode && strings.TrimSpace(v.Value) != "" {
				return fmt.Sprintf("%s %q", kind, strings.TrimSpace(v.Value))
			}
		}
	}
	return fmt.Sprintf("%s %d", kind, i+1)
}

// deref follows an alias (*name) to the node it names.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 8; i++ {
		n = n.Alias
	}
	return n
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
	if n.Tag == "!!null" {
		return "nothing"
	}
	return strconv.Quote(n.Value)
}

func keys(m map[string]int) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	if len(ks) == 0 {
		return "none declared"
	}
	return strings.Join(ks, ", ")
}
