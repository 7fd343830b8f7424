package runbook

import (
	"fmt"
	"math"
	"net/mail"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

var (
	codePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	refPattern  = regexp.MustCompile(`\$\{([^}]*)\}`)
)

// Coerce turns a value from YAML, JSON or a form into the parameter type's
// canonical Go value: a string (string, duration, region, flavor, email),
// an int64 or a bool. Durations are kept as their canonical text ("1h30m0s").
func Coerce(typ string, v any) (any, error) {
	switch typ {
	case TypeInt:
		switch x := v.(type) {
		case int64:
			return x, nil
		case int:
			return int64(x), nil
		case float64:
			if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
				return nil, fmt.Errorf("must be a whole number, not %v", x)
			}
			return int64(x), nil
		case string:
			n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("must be a whole number, not %q", clip(x))
			}
			return n, nil
		}
		return nil, fmt.Errorf("must be a whole number, not %s", kindOf(v))
	case TypeBool:
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			switch strings.ToLower(strings.TrimSpace(x)) {
			case "true", "yes", "on", "1":
				return true, nil
			case "false", "no", "off", "0", "":
				return false, nil
			}
			return nil, fmt.Errorf("must be true or false, not %q", clip(x))
		}
		return nil, fmt.Errorf("must be true or false, not %s", kindOf(v))
	}
	s, ok := v.(string)
	if !ok {
		if typ == TypeString {
			switch x := v.(type) {
			case int64, int, bool:
				return fmt.Sprint(x), nil
			case float64:
				return strconv.FormatFloat(x, 'f', -1, 64), nil
			}
		}
		return nil, fmt.Errorf("must be text, not %s", kindOf(v))
	}
	switch typ {
	case TypeString:
		if len(s) > 4000 {
			return nil, fmt.Errorf("is longer than 4000 characters")
		}
		return s, nil
	case TypeDuration:
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil || d < 0 {
			return nil, fmt.Errorf("must be a duration such as 30s, 5m or 2h, not %q", clip(s))
		}
		return d.String(), nil
	case TypeRegion, TypeFlavor:
		s = strings.TrimSpace(s)
		if !codePattern.MatchString(s) {
			return nil, fmt.Errorf("must be a %s code, not %q", typ, clip(s))
		}
		return s, nil
	case TypeEmail:
		a, err := mail.ParseAddress(strings.TrimSpace(s))
		if err != nil || a.Name != "" {
			return nil, fmt.Errorf("must be an email address, not %q", clip(s))
		}
		return strings.ToLower(a.Address), nil
	}
	return nil, fmt.Errorf("has the unknown type %q", typ)
}

func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "nothing"
	case bool:
		return "true or false"
	case int, int64, float64:
		return "a number"
	case string:
		return "text"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// Bind checks a run's parameters against the definition's: unknown ones,
// missing required ones and wrong types are problems (by parameter name);
// defaults fill the rest. The result holds canonical values.
func Bind(params []Param, given map[string]any) (map[string]any, map[string]string) {
	out := map[string]any{}
	problems := map[string]string{}
	known := map[string]bool{}
	for _, p := range params {
		known[p.Name] = true
		raw, ok := given[p.Name]
		if !ok || raw == nil || raw == "" {
			switch {
			case p.Default != nil:
				out[p.Name] = p.Default
			case p.Required:
				problems[p.Name] = "is required"
			case p.Type == TypeBool:
				out[p.Name] = false
			case p.Type == TypeInt:
				out[p.Name] = int64(0)
			default:
				out[p.Name] = ""
			}
			continue
		}
		v, err := Coerce(p.Type, raw)
		if err != nil {
			problems[p.Name] = err.Error()
			continue
		}
		out[p.Name] = v
	}
	for k := range given {
		if !known[k] {
			problems[k] = "is not a parameter of this runbook"
		}
	}
	return out, problems
}

// Expand replaces references to run parameters ("${region}") in a step's
// parameter values. A value that is exactly one reference takes the run
// parameter's typed value; references inside text are replaced by its text.
func Expand(stepParams, run map[string]any) map[string]any {
	out := make(map[string]any, len(stepParams))
	for k, v := range stepParams {
		s, ok := v.(string)
		if !ok {
			out[k] = v
			continue
		}
		if m := refPattern.FindStringSubmatch(s); m != nil && m[0] == s {
			if rv, ok := run[strings.TrimSpace(m[1])]; ok {
				out[k] = rv
			} else {
				out[k] = ""
			}
			continue
		}
		out[k] = refPattern.ReplaceAllStringFunc(s, func(ref string) string {
			name := strings.TrimSpace(ref[2 : len(ref)-1])
			if rv, ok := run[name]; ok {
				return fmt.Sprint(rv)
			}
			return ""
		})
	}
	return out
}

// refs lists the run parameters a value refers to.
func refs(v any) []string {
	s, ok := v.(string)
	if !ok {
		return nil
	}
	var out []string
	for _, m := range refPattern.FindAllStringSubmatch(s, -1) {
		out = append(out, strings.TrimSpace(m[1]))
	}
	return out
}

// Args checks an operation's parameters, after Expand: unknown ones,
// missing required ones and wrong types are problems (by parameter name).
// Defaults fill the rest; the result holds canonical values.
func (op Operation) Args(given map[string]any) (map[string]any, map[string]string) {
	return Bind(op.Params, given)
}

// ProblemText is a parameter problem map as one sentence, names in order.
func ProblemText(problems map[string]string) string {
	keys := make([]string, 0, len(problems))
	for k := range problems {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " " + problems[k]
	}
	return strings.Join(parts, "; ")
}

// String returns a canonical string value, "" when absent.
func String(args map[string]any, name string) string {
	s, _ := args[name].(string)
	return s
}

// Int returns a canonical int value, 0 when absent.
func Int(args map[string]any, name string) int64 {
	n, _ := args[name].(int64)
	return n
}

// Bool returns a canonical bool value, false when absent.
func Bool(args map[string]any, name string) bool {
	b, _ := args[name].(bool)
	return b
}

// Duration returns a canonical duration value, 0 when absent.
func Duration(args map[string]any, name string) time.Duration {
	d, _ := time.ParseDuration(String(args, name))
	return d
}
