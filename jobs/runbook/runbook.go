// Package runbook is the language of runbooks as code: definitions parsed
// from YAML with the line of every value, their validation, the typed
// parameters of runs and operations, and the plan a dry run shows. It does no
// I/O: the engine in package jobs runs what this package describes.
package runbook

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Step kinds.
const (
	KindOperation = "operation"
	KindManual    = "manual"
	KindBarrier   = "barrier"
	KindRunbook   = "runbook"
)

// Parameter types, for a run's parameters and an operation's.
const (
	TypeString   = "string"
	TypeInt      = "int"
	TypeBool     = "bool"
	TypeDuration = "duration"
	TypeRegion   = "region"
	TypeFlavor   = "flavor"
	TypeEmail    = "email"
)

var paramTypes = []string{TypeString, TypeInt, TypeBool, TypeDuration, TypeRegion, TypeFlavor, TypeEmail}

// Limits that keep a definition something a person can read and a run
// something the queue can carry.
const (
	MaxSteps       = 200
	MaxNesting     = 5
	MaxConcurrency = 100
	MaxAttempts    = 20
	MaxTimeout     = 24 * time.Hour
	MaxDeadline    = 30 * 24 * time.Hour
)

// Definition is one version of a runbook.
type Definition struct {
	Name        string
	Version     int
	Description string
	Params      []Param
	// Concurrency is how many steps of a run may run at once (0: no cap).
	Concurrency int
	// Deadline is how long a run may take (0: none).
	Deadline time.Duration
	Steps    []Step
}

// Param is a typed parameter of a run or of an operation.
type Param struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Required bool   `json:"required,omitempty"`
	// Default is the typed default value, nil when there is none.
	Default any    `json:"default,omitempty"`
	Doc     string `json:"doc,omitempty"`
	Line    int    `json:"-"`
}

// Retry is a step's retry policy: how many attempts in all, and the wait
// between them (doubling after each).
type Retry struct {
	Attempts int
	Backoff  time.Duration
}

// Step is one step of a definition.
type Step struct {
	Name    string
	Kind    string
	Needs   []string
	Retry   Retry
	Timeout time.Duration
	// Operation.
	Op     string
	Params map[string]any
	// Manual.
	Instructions string
	// Barrier.
	WaitFor []string
	// Runbook: a nested run of Runbook at RunbookVersion (0: the newest).
	Runbook        string
	RunbookVersion int

	Line, Column int
	// where holds the position of each field and parameter, for messages.
	where map[string]pos
}

type pos struct{ line, col int }

// Param returns the definition's parameter called name.
func (d *Definition) Param(name string) (Param, bool) {
	for _, p := range d.Params {
		if p.Name == name {
			return p, true
		}
	}
	return Param{}, false
}

// Step returns the definition's step called name.
func (d *Definition) Step(name string) (Step, bool) {
	for _, s := range d.Steps {
		if s.Name == name {
			return s, true
		}
	}
	return Step{}, false
}

// Problem is one thing wrong with a definition, where it is.
type Problem struct {
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	where := fmt.Sprintf("line %d", p.Line)
	if p.Column > 0 {
		where += fmt.Sprintf(", column %d", p.Column)
	}
	if p.Path != "" {
		return where + ": " + p.Path + ": " + p.Message
	}
	return where + ": " + p.Message
}

// Problems are everything wrong with a definition, in the order of the text.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Err is ps as an error, nil when there are none.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	ps.sort()
	return ps
}

func (ps Problems) sort() {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Line != ps[j].Line {
			return ps[i].Line < ps[j].Line
		}
		return ps[i].Column < ps[j].Column
	})
}

// Operation is what a registered operation accepts; the engine holds its
// Go functions (plan and run) under the same name.
type Operation struct {
	Name   string  `json:"name"`
	Doc    string  `json:"doc"`
	Params []Param `json:"params"`
}

// Registry is the set of operations a definition may use, by name.
type Registry map[string]Operation

// Catalog finds the definitions nested runs refer to: the given version, or
// the newest when version is 0.
type Catalog interface {
	Definition(name string, version int) (*Definition, bool)
}

// Env is what validation checks a definition against.
type Env struct {
	Ops     Registry
	Catalog Catalog
}
