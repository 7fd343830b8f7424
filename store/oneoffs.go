package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Dotfile is a file a person wants in the home directory of every environment.
type Dotfile struct {
	Path    string `json:"path"`
	Content string `json:"content"`
}

// Oneoffs is a person's own configuration, applied to every environment
// they get from then on, and re-appliable to an existing one.
type Oneoffs struct {
	Dotfiles    []Dotfile         `json:"dotfiles"`
	SetupScript string            `json:"setup_script"`
	Env         map[string]string `json:"env"`
	UpdatedAt   *time.Time        `json:"updated_at,omitempty"`
}

// Empty tells whether there is nothing to apply.
func (o Oneoffs) Empty() bool {
	return len(o.Dotfiles) == 0 && strings.TrimSpace(o.SetupScript) == "" && len(o.Env) == 0
}

// Limits on one-offs.
const (
	MaxDotfiles       = 50
	MaxDotfileBytes   = 64 << 10
	MaxSetupScript    = 64 << 10
	MaxEnvVars        = 100
	MaxEnvValueLength = 4096
)

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// Validate checks one-offs field by field, and normalises dotfile paths.
func (o *Oneoffs) Validate() error {
	p := Problems{}
	if len(o.Dotfiles) > MaxDotfiles {
		p.Add("dotfiles", fmt.Sprintf("at most %d dotfiles", MaxDotfiles))
	}
	seen := map[string]bool{}
	for i := range o.Dotfiles {
		f := &o.Dotfiles[i]
		field := fmt.Sprintf("dotfiles[%d].path", i)
		raw := strings.TrimSpace(f.Path)
		raw = strings.TrimPrefix(strings.TrimPrefix(raw, "~/"), "$HOME/")
		clean := path.Clean(raw)
		switch {
		case raw == "":
			p.Add(field, "is required")
		case strings.HasPrefix(raw, "/"):
			p.Add(field, "must be relative to the home directory, such as .bashrc")
		case clean == "." || clean == ".." || strings.HasPrefix(clean, "../"):
			p.Add(field, "must stay inside the home directory")
		case len(clean) > 255 || strings.ContainsAny(clean, "\x00\n\r"):
			p.Add(field, "is not a usable file name")
		case seen[clean]:
			p.Add(field, "is listed twice")
		}
		f.Path = clean
		seen[clean] = true
		if len(f.Content) > MaxDotfileBytes {
			p.Add(fmt.Sprintf("dotfiles[%d].content", i), fmt.Sprintf("is larger than %d KiB", MaxDotfileBytes>>10))
		}
	}
	if len(o.SetupScript) > MaxSetupScript {
		p.Add("setup_script", fmt.Sprintf("is larger than %d KiB", MaxSetupScript>>10))
	}
	if len(o.Env) > MaxEnvVars {
		p.Add("env", fmt.Sprintf("at most %d variables", MaxEnvVars))
	}
	for k, v := range o.Env {
		if !envName.MatchString(k) {
			p.Add("env", fmt.Sprintf("%q is not a variable name (letters, digits and _, not starting with a digit)", clip(k)))
		}
		if len(v) > MaxEnvValueLength || strings.ContainsAny(v, "\x00") {
			p.Add("env", fmt.Sprintf("the value of %s is too long or has a NUL byte", clip(k)))
		}
	}
	return p.Err()
}

// EnvFile is the environment as a shell file, sorted, each value quoted.
func (o Oneoffs) EnvFile() string {
	keys := make([]string, 0, len(o.Env))
	for k := range o.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# Written by devport from your one-offs.\n")
	for _, k := range keys {
		b.WriteString("export " + k + "='" + strings.ReplaceAll(o.Env[k], "'", `'\''`) + "'\n")
	}
	return b.String()
}

type oneoffsRow struct {
	Dotfiles    string    `db:"dotfiles"`
	SetupScript string    `db:"setup_script"`
	Env         string    `db:"env"`
	UpdatedAt   time.Time `db:"updated_at"`
}

// Oneoffs returns a person's one-offs (empty when they have none).
func (s *Store) Oneoffs(ctx context.Context, userID int64) (Oneoffs, error) {
	return oneoffsOf(ctx, s.read, userID)
}

func oneoffsOf(ctx context.Context, q queryer, userID int64) (Oneoffs, error) {
	var row oneoffsRow
	err := getNamed(ctx, q, &row, `SELECT dotfiles, setup_script, env, updated_at FROM oneoffs WHERE user_id = :id`, arg{"id": userID})
	if errors.Is(err, ErrNotFound) {
		return Oneoffs{Env: map[string]string{}}, nil
	}
	if err != nil {
		return Oneoffs{}, fmt.Errorf("oneoffs: %w", err)
	}
	o := Oneoffs{SetupScript: row.SetupScript, Env: map[string]string{}, UpdatedAt: &row.UpdatedAt}
	if err := json.Unmarshal([]byte(row.Dotfiles), &o.Dotfiles); err != nil {
		return Oneoffs{}, fmt.Errorf("oneoffs dotfiles: %w", err)
	}
	if err := json.Unmarshal([]byte(row.Env), &o.Env); err != nil {
		return Oneoffs{}, fmt.Errorf("oneoffs env: %w", err)
	}
	return o, nil
}

// SaveOneoffs validates and stores a person's one-offs.
func (tx *Tx) SaveOneoffs(ctx context.Context, who Actor, userID int64, o Oneoffs) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if o.Dotfiles == nil {
		o.Dotfiles = []Dotfile{}
	}
	if o.Env == nil {
		o.Env = map[string]string{}
	}
	dotfiles, _ := json.Marshal(o.Dotfiles)
	env, _ := json.Marshal(o.Env)
	_, err := execNamed(ctx, tx, `
INSERT INTO oneoffs (user_id, dotfiles, setup_script, env, updated_at) VALUES (:id, :dotfiles, :script, :env, :now)
ON CONFLICT (user_id) DO UPDATE SET dotfiles = excluded.dotfiles, setup_script = excluded.setup_script, env = excluded.env, updated_at = excluded.updated_at`,
		arg{"id": userID, "dotfiles": string(dotfiles), "script": o.SetupScript, "env": string(env), "now": tx.Now()})
	if err != nil {
		return fmt.Errorf("save oneoffs: %w", err)
	}
	return tx.Audit(ctx, who, "user.oneoffs_save", "user", who.Name, map[string]any{"dotfiles": len(o.Dotfiles), "env": len(o.Env), "setup_script": o.SetupScript != ""})
}

// RequestOneoffs marks a devserver's one-offs to be (re)applied.
func (tx *Tx) RequestOneoffs(ctx context.Context, who Actor, d Devserver) error {
	_, err := execNamed(ctx, tx, `UPDATE devservers SET oneoffs_state = 'pending', oneoffs_error = '', updated_at = :now WHERE id = :id`,
		arg{"id": d.ID, "now": tx.Now()})
	if err != nil {
		return fmt.Errorf("request oneoffs: %w", err)
	}
	return tx.Audit(ctx, who, "devserver.oneoffs_apply", "devserver", d.Name, nil)
}

// FinishOneoffs records the outcome of applying one-offs to a devserver.
func (tx *Tx) FinishOneoffs(ctx context.Context, d Devserver, failure error) error {
	a := arg{"id": d.ID, "now": tx.Now(), "state": "applied", "error": ""}
	action := "devserver.oneoffs_applied"
	detail := map[string]any{}
	if failure != nil {
		a["state"], a["error"] = "failed", clipLong(failure.Error())
		action, detail["error"] = "devserver.oneoffs_failed", clipLong(failure.Error())
	}
	_, err := execNamed(ctx, tx, `UPDATE devservers SET oneoffs_state = :state, oneoffs_error = :error, updated_at = :now,
    oneoffs_applied_at = CASE WHEN :state = 'applied' THEN :now ELSE oneoffs_applied_at END
WHERE id = :id AND oneoffs_state = 'pending'`, a)
	if err != nil {
		return fmt.Errorf("finish oneoffs: %w", err)
	}
	return tx.Audit(ctx, System, action, "devserver", d.Name, detail)
}
