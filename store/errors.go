package store

import (
	"errors"
	"sort"
	"strings"
)

// ErrNotFound is returned when an object does not exist or the caller may not see it.
var ErrNotFound = errors.New("not found")

// ConflictError is a request that cannot be carried out in the current state
// of the world, such as no capacity in a region.
type ConflictError struct {
	Code    string // snake_case, part of the API contract: no_capacity, region_not_active, ...
	Message string
}

func (e *ConflictError) Error() string { return e.Message }

// Conflict returns a ConflictError.
func Conflict(code, message string) error { return &ConflictError{Code: code, Message: message} }

// ValidationError is input that is well-formed but not acceptable, field by field.
type ValidationError struct {
	Fields map[string]string
}

func (e *ValidationError) Error() string {
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+": "+e.Fields[k])
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

// Problems collects validation problems; Err is nil when there are none.
type Problems map[string]string

// Add records what is wrong with field, keeping the first problem per field.
func (p Problems) Add(field, problem string) {
	if _, ok := p[field]; !ok {
		p[field] = problem
	}
}

// Err is the ValidationError for the problems, or nil.
func (p Problems) Err() error {
	if len(p) == 0 {
		return nil
	}
	return &ValidationError{Fields: p}
}
