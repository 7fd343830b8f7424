package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Run states.
const (
	RunRunning   = "running"
	RunSucceeded = "succeeded"
	RunFailed    = "failed"
	RunCancelled = "cancelled"
)

// Step states: pending (waits for the steps it needs), ready (may start when
// the run's concurrency allows), running (its job is queued or working),
// waiting (for a person, or for a nested run), then succeeded, failed or
// cancelled.
const (
	StepPending   = "pending"
	StepReady     = "ready"
	StepRunning   = "running"
	StepWaiting   = "waiting"
	StepSucceeded = "succeeded"
	StepFailed    = "failed"
	StepCancelled = "cancelled"
)

// Run event kinds.
const (
	EventRunStarted  = "run_started"
	EventRunFinished = "run_finished"
	EventStarted     = "started"
	EventFinished    = "finished"
	EventFailed      = "failed"
	EventRetried     = "retried"
	EventCancelled   = "cancelled"
	EventLog         = "log"
	EventManualDone  = "manual_done"
	EventWaiting     = "waiting"
)

// RunbookVersion is one version of a runbook definition, as YAML.
type RunbookVersion struct {
	Name        string    `db:"name" json:"name"`
	Version     int       `db:"version" json:"version"`
	Description string    `db:"description" json:"description"`
	YAML        string    `db:"yaml" json:"yaml"`
	Builtin     bool      `db:"builtin" json:"builtin"`
	CreatedAt   time.Time `db:"created_at" json:"created_at"`
	CreatedBy   string    `db:"created_by" json:"created_by"`
}

// Run is one run of a runbook version.
type Run struct {
	ID          int64      `db:"id" json:"id"`
	Runbook     string     `db:"runbook" json:"runbook"`
	Version     int        `db:"version" json:"version"`
	ParamsJSON  string     `db:"params" json:"-"`
	State       string     `db:"state" json:"state"`
	Concurrency int        `db:"concurrency" json:"concurrency"`
	DeadlineAt  *time.Time `db:"deadline_at" json:"deadline_at,omitempty"`
	ParentRunID *int64     `db:"parent_run_id" json:"parent_run_id,omitempty"`
	ParentStep  string     `db:"parent_step" json:"parent_step,omitempty"`
	StartedBy   string     `db:"started_by" json:"started_by"`
	Error       string     `db:"error" json:"error,omitempty"`
	CreatedAt   time.Time  `db:"created_at" json:"created_at"`
	FinishedAt  *time.Time `db:"finished_at" json:"finished_at,omitempty"`
}

// Params are the run's typed parameters (numbers come back as int64).
func (r Run) Params() map[string]any {
	out := map[string]any{}
	dec := json.NewDecoder(strings.NewReader(r.ParamsJSON))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return map[string]any{}
	}
	for k, v := range out {
		if n, ok := v.(json.Number); ok {
			if i, err := n.Int64(); err == nil {
				out[k] = i
			}
		}
	}
	return out
}

// MarshalJSON shows the run with its parameters as an object.
func (r Run) MarshalJSON() ([]byte, error) {
	type plain Run
	return json.Marshal(struct {
		plain
		Params map[string]any `json:"params"`
	}{plain(r), r.Params()})
}

// Finished tells whether the run has ended.
func (r Run) Finished() bool { return r.State != RunRunning }

// RunStep is one step of a run.
type RunStep struct {
	RunID      int64      `db:"run_id" json:"-"`
	Name       string     `db:"name" json:"name"`
	Position   int        `db:"position" json:"position"`
	Kind       string     `db:"kind" json:"kind"`
	NeedsJSON  string     `db:"needs" json:"-"`
	NeedsLeft  int        `db:"needs_left" json:"needs_left"`
	State      string     `db:"state" json:"state"`
	Attempts   int        `db:"attempts" json:"attempts"`
	Error      string     `db:"error" json:"error,omitempty"`
	ChildRunID *int64     `db:"child_run_id" json:"child_run_id,omitempty"`
	DoneBy     string     `db:"done_by" json:"done_by,omitempty"`
	StartedAt  *time.Time `db:"started_at" json:"started_at,omitempty"`
	FinishedAt *time.Time `db:"finished_at" json:"finished_at,omitempty"`
}

// Needs are the names of the steps this one waits for.
func (s RunStep) Needs() []string {
	var out []string
	_ = json.Unmarshal([]byte(s.NeedsJSON), &out)
	return out
}

// Terminal tells whether the step has ended.
func (s RunStep) Terminal() bool {
	return s.State == StepSucceeded || s.State == StepFailed || s.State == StepCancelled
}

// RunEvent is one entry of a run's timeline.
type RunEvent struct {
	ID      int64     `db:"id" json:"id"`
	RunID   int64     `db:"run_id" json:"run_id"`
	Step    string    `db:"step" json:"step,omitempty"`
	Kind    string    `db:"kind" json:"kind"`
	Message string    `db:"message" json:"message,omitempty"`
	Actor   string    `db:"actor" json:"actor,omitempty"`
	At      time.Time `db:"at" json:"at"`
}

// RunbookSummary is a runbook with its newest version.
type RunbookSummary struct {
	Name        string    `db:"name" json:"name"`
	Latest      int       `db:"latest" json:"latest_version"`
	Versions    int       `db:"versions" json:"versions"`
	Description string    `db:"description" json:"description"`
	UpdatedAt   time.Time `db:"updated_at" json:"updated_at"`
}

// Runbooks lists every runbook by name, with its newest version's description.
func (s *Store) Runbooks(ctx context.Context) ([]RunbookSummary, error) {
	var out []RunbookSummary
	err := selectNamed(ctx, s.read, &out, `
SELECT v.name, v.version AS latest, c.n AS versions, v.description, v.created_at AS updated_at
FROM runbook_versions v
JOIN (SELECT name, MAX(version) AS top, COUNT(*) AS n FROM runbook_versions GROUP BY name) c
  ON c.name = v.name AND c.top = v.version
ORDER BY v.name`, arg{})
	if err != nil {
		return nil, fmt.Errorf("runbooks: %w", err)
	}
	return out, nil
}

// RunbookVersions lists a runbook's versions, newest first; ErrNotFound when
// there is none.
func (s *Store) RunbookVersions(ctx context.Context, name string) ([]RunbookVersion, error) {
	return runbookVersions(ctx, s.read, name)
}

// RunbookVersions lists a runbook's versions inside the transaction.
func (tx *Tx) RunbookVersions(ctx context.Context, name string) ([]RunbookVersion, error) {
	return runbookVersions(ctx, tx, name)
}

func runbookVersions(ctx context.Context, q queryer, name string) ([]RunbookVersion, error) {
	var out []RunbookVersion
	if err := selectNamed(ctx, q, &out, `SELECT * FROM runbook_versions WHERE name = :name ORDER BY version DESC`, arg{"name": name}); err != nil {
		return nil, fmt.Errorf("runbook %s: %w", name, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("runbook %s: %w", name, ErrNotFound)
	}
	return out, nil
}

// AllRunbookVersions lists every version of every runbook (for validation
// of nested runs).
func (s *Store) AllRunbookVersions(ctx context.Context) ([]RunbookVersion, error) {
	var out []RunbookVersion
	if err := selectNamed(ctx, s.read, &out, `SELECT * FROM runbook_versions ORDER BY name, version`, arg{}); err != nil {
		return nil, fmt.Errorf("runbook versions: %w", err)
	}
	return out, nil
}

// RunbookVersion returns one version of a runbook, or its newest when version is 0.
func (s *Store) RunbookVersion(ctx context.Context, name string, version int) (RunbookVersion, error) {
	return runbookVersion(ctx, s.read, name, version)
}

// RunbookVersion returns one version of a runbook inside the transaction.
func (tx *Tx) RunbookVersion(ctx context.Context, name string, version int) (RunbookVersion, error) {
	return runbookVersion(ctx, tx, name, version)
}

func runbookVersion(ctx context.Context, q queryer, name string, version int) (RunbookVersion, error) {
	var v RunbookVersion
	err := getNamed(ctx, q, &v, `
SELECT * FROM runbook_versions WHERE name = :name AND (:version = 0 OR version = :version)
ORDER BY version DESC LIMIT 1`, arg{"name": name, "version": version})
	if err != nil {
		return RunbookVersion{}, fmt.Errorf("runbook %s version %d: %w", name, version, err)
	}
	return v, nil
}

// AddRunbookVersion records a new, validated version of a runbook. Versions
// only grow: one at or below the newest is a conflict.
func (tx *Tx) AddRunbookVersion(ctx context.Context, who Actor, v RunbookVersion) error {
	var top int
	if err := getNamed(ctx, tx, &top, `SELECT COALESCE(MAX(version), 0) FROM runbook_versions WHERE name = :name`, arg{"name": v.Name}); err != nil {
		return fmt.Errorf("add runbook %s: %w", v.Name, err)
	}
	if v.Version <= top {
		return Conflict("version_not_newer", fmt.Sprintf("Runbook %s is at version %d; a new version must be higher than that.", v.Name, top))
	}
	_, err := execNamed(ctx, tx, `
INSERT INTO runbook_versions (name, version, description, yaml, builtin, created_at, created_by)
VALUES (:name, :version, :description, :yaml, :builtin, :now, :by)`,
		arg{"name": v.Name, "version": v.Version, "description": v.Description, "yaml": v.YAML, "builtin": v.Builtin, "now": tx.Now(), "by": who.Name})
	if err != nil {
		return fmt.Errorf("add runbook %s version %d: %w", v.Name, v.Version, err)
	}
	return tx.Audit(ctx, who, "runbook.add_version", "runbook", v.Name, map[string]any{"version": v.Version, "builtin": v.Builtin})
}

// NewestRunbookVersion is a runbook's highest version, 0 when it has none.
func (tx *Tx) NewestRunbookVersion(ctx context.Context, name string) (int, error) {
	var top int
	if err := getNamed(ctx, tx, &top, `SELECT COALESCE(MAX(version), 0) FROM runbook_versions WHERE name = :name`, arg{"name": name}); err != nil {
		return 0, fmt.Errorf("runbook %s: %w", name, err)
	}
	return top, nil
}

const runSelect = `SELECT * FROM runbook_runs`

// Run returns a run by ID.
func (s *Store) Run(ctx context.Context, id int64) (Run, error) { return runByID(ctx, s.read, id) }

// Run returns a run by ID inside the transaction.
func (tx *Tx) Run(ctx context.Context, id int64) (Run, error) { return runByID(ctx, tx, id) }

func runByID(ctx context.Context, q queryer, id int64) (Run, error) {
	var r Run
	if err := getNamed(ctx, q, &r, runSelect+` WHERE id = :id`, arg{"id": id}); err != nil {
		return Run{}, fmt.Errorf("run %d: %w", id, err)
	}
	return r, nil
}

// Runs lists a runbook's runs (every runbook's when name is ""), newest first.
func (s *Store) Runs(ctx context.Context, name string, limit int) ([]Run, error) {
	if limit <= 0 {
		limit = 50
	}
	var out []Run
	err := selectNamed(ctx, s.read, &out, runSelect+` WHERE (:name = '' OR runbook = :name) ORDER BY id DESC LIMIT :limit`, arg{"name": name, "limit": limit})
	if err != nil {
		return nil, fmt.Errorf("runs of %s: %w", name, err)
	}
	return out, nil
}

// ChildRuns lists the runs nested in a run.
func (tx *Tx) ChildRuns(ctx context.Context, id int64) ([]Run, error) {
	var out []Run
	if err := selectNamed(ctx, tx, &out, runSelect+` WHERE parent_run_id = :id ORDER BY id`, arg{"id": id}); err != nil {
		return nil, fmt.Errorf("runs nested in %d: %w", id, err)
	}
	return out, nil
}

// CreateRun records a run and its steps, with the first event. A step whose
// needs are met starts ready.
func (tx *Tx) CreateRun(ctx context.Context, who Actor, r Run, steps []RunStep) (Run, error) {
	now := tx.Now()
	err := getNamed(ctx, tx, &r.ID, `
INSERT INTO runbook_runs (runbook, version, params, state, concurrency, deadline_at, parent_run_id, parent_step, started_by, created_at)
VALUES (:runbook, :version, :params, 'running', :concurrency, :deadline_at, :parent_run_id, :parent_step, :by, :now)
RETURNING id`, arg{"runbook": r.Runbook, "version": r.Version, "params": r.ParamsJSON, "concurrency": r.Concurrency,
		"deadline_at": r.DeadlineAt, "parent_run_id": r.ParentRunID, "parent_step": r.ParentStep, "by": who.Name, "now": now})
	if err != nil {
		return Run{}, fmt.Errorf("start run of %s: %w", r.Runbook, err)
	}
	for i, st := range steps {
		state := StepPending
		if st.NeedsLeft == 0 {
			state = StepReady
		}
		_, err := execNamed(ctx, tx, `
INSERT INTO runbook_run_steps (run_id, name, position, kind, needs, needs_left, state)
VALUES (:run, :name, :position, :kind, :needs, :left, :state)`,
			arg{"run": r.ID, "name": st.Name, "position": i, "kind": st.Kind, "needs": st.NeedsJSON, "left": st.NeedsLeft, "state": state})
		if err != nil {
			return Run{}, fmt.Errorf("start run of %s: step %s: %w", r.Runbook, st.Name, err)
		}
	}
	msg := fmt.Sprintf("Started %s version %d", r.Runbook, r.Version)
	if r.ParentRunID != nil {
		msg += fmt.Sprintf(" for step %q of run %d", r.ParentStep, *r.ParentRunID)
	}
	if err := tx.AddRunEvent(ctx, RunEvent{RunID: r.ID, Kind: EventRunStarted, Message: msg, Actor: who.Name}); err != nil {
		return Run{}, err
	}
	if err := tx.Audit(ctx, who, "runbook.run", "run", strconv.FormatInt(r.ID, 10), map[string]any{"runbook": r.Runbook, "version": r.Version, "params": json.RawMessage(r.ParamsJSON)}); err != nil {
		return Run{}, err
	}
	return tx.Run(ctx, r.ID)
}

// RunSteps lists a run's steps in the order of the definition.
func (s *Store) RunSteps(ctx context.Context, runID int64) ([]RunStep, error) {
	return runSteps(ctx, s.read, runID)
}

// RunSteps lists a run's steps inside the transaction.
func (tx *Tx) RunSteps(ctx context.Context, runID int64) ([]RunStep, error) {
	return runSteps(ctx, tx, runID)
}

func runSteps(ctx context.Context, q queryer, runID int64) ([]RunStep, error) {
	var out []RunStep
	if err := selectNamed(ctx, q, &out, `SELECT * FROM runbook_run_steps WHERE run_id = :run ORDER BY position`, arg{"run": runID}); err != nil {
		return nil, fmt.Errorf("steps of run %d: %w", runID, err)
	}
	return out, nil
}

// RunStep returns one step of a run inside the transaction.
func (tx *Tx) RunStep(ctx context.Context, runID int64, name string) (RunStep, error) {
	var st RunStep
	if err := getNamed(ctx, tx, &st, `SELECT * FROM runbook_run_steps WHERE run_id = :run AND name = :name`, arg{"run": runID, "name": name}); err != nil {
		return RunStep{}, fmt.Errorf("step %q of run %d: %w", name, runID, err)
	}
	return st, nil
}

// SetStepState moves a step from one of the states in from to state,
// recording when it started and finished, why it failed and who finished it.
// It returns false when the step was in none of from.
func (tx *Tx) SetStepState(ctx context.Context, runID int64, name string, from []string, state, reason, doneBy string) (bool, error) {
	a := arg{"run": runID, "name": name, "state": state, "error": clipReason(reason), "by": doneBy, "now": tx.Now()}
	in := ""
	for i, f := range from {
		k := "from" + strconv.Itoa(i)
		a[k] = f
		if i > 0 {
			in += ", "
		}
		in += ":" + k
	}
	set := `state = :state, error = :error`
	switch state {
	case StepRunning:
		set += `, started_at = COALESCE(started_at, :now)`
	case StepReady, StepPending:
		set += `, finished_at = NULL, done_by = ''`
	case StepSucceeded, StepFailed, StepCancelled:
		set += `, finished_at = :now, done_by = :by`
	}
	n, err := execNamed(ctx, tx, `UPDATE runbook_run_steps SET `+set+` WHERE run_id = :run AND name = :name AND state IN (`+in+`)`, a)
	if err != nil {
		return false, fmt.Errorf("step %q of run %d: %w", name, runID, err)
	}
	return n > 0, nil
}

// CountStepAttempt adds one to a step's attempts and returns the new count.
func (tx *Tx) CountStepAttempt(ctx context.Context, runID int64, name string) (int, error) {
	var n int
	err := getNamed(ctx, tx, &n, `UPDATE runbook_run_steps SET attempts = attempts + 1 WHERE run_id = :run AND name = :name RETURNING attempts`, arg{"run": runID, "name": name})
	if err != nil {
		return 0, fmt.Errorf("step %q of run %d: %w", name, runID, err)
	}
	return n, nil
}

// ResetStep sets a step's attempts back to none and forgets its nested run,
// for a retry by a person (a runbook step starts a fresh nested run).
func (tx *Tx) ResetStep(ctx context.Context, runID int64, name string) error {
	_, err := execNamed(ctx, tx, `UPDATE runbook_run_steps SET attempts = 0, started_at = NULL, child_run_id = NULL WHERE run_id = :run AND name = :name`, arg{"run": runID, "name": name})
	return err
}

// SetStepChild records the nested run a runbook step started.
func (tx *Tx) SetStepChild(ctx context.Context, runID int64, name string, child int64) error {
	_, err := execNamed(ctx, tx, `UPDATE runbook_run_steps SET child_run_id = :child WHERE run_id = :run AND name = :name`, arg{"run": runID, "name": name, "child": child})
	if err != nil {
		return fmt.Errorf("step %q of run %d: %w", name, runID, err)
	}
	return nil
}

// StepDone counts a finished step off the steps that need it: those left
// waiting for nothing become ready.
func (tx *Tx) StepDone(ctx context.Context, runID int64, dependents []string) error {
	for _, d := range dependents {
		_, err := execNamed(ctx, tx, `
UPDATE runbook_run_steps SET needs_left = needs_left - 1,
    state = CASE WHEN needs_left = 1 AND state = 'pending' THEN 'ready' ELSE state END
WHERE run_id = :run AND name = :name AND needs_left > 0`, arg{"run": runID, "name": d})
		if err != nil {
			return fmt.Errorf("step %q of run %d: %w", d, runID, err)
		}
	}
	return nil
}

// FinishRun ends a running run in state (succeeded, failed or cancelled). It
// returns false when the run had already ended.
func (tx *Tx) FinishRun(ctx context.Context, who Actor, id int64, state, reason string) (bool, error) {
	n, err := execNamed(ctx, tx, `UPDATE runbook_runs SET state = :state, error = :error, finished_at = :now WHERE id = :id AND state = 'running'`,
		arg{"id": id, "state": state, "error": clipReason(reason), "now": tx.Now()})
	if err != nil || n == 0 {
		return false, err
	}
	msg := "The run " + state
	if reason != "" {
		msg += ": " + clipReason(reason)
	}
	if err := tx.AddRunEvent(ctx, RunEvent{RunID: id, Kind: EventRunFinished, Message: msg, Actor: who.Name}); err != nil {
		return false, err
	}
	return true, tx.Audit(ctx, who, "runbook.run_"+state, "run", strconv.FormatInt(id, 10), map[string]any{"reason": clipReason(reason)})
}

// ReopenRun sets an ended run running again (a person retries a failed step).
func (tx *Tx) ReopenRun(ctx context.Context, id int64) error {
	_, err := execNamed(ctx, tx, `UPDATE runbook_runs SET state = 'running', error = '', finished_at = NULL WHERE id = :id AND state = 'failed'`, arg{"id": id})
	return err
}

// AddRunEvent appends an event to a run's timeline.
func (tx *Tx) AddRunEvent(ctx context.Context, e RunEvent) error {
	if e.At.IsZero() {
		e.At = tx.Now()
	}
	_, err := execNamed(ctx, tx, `
INSERT INTO runbook_run_events (run_id, step, kind, message, actor, at) VALUES (:run_id, :step, :kind, :message, :actor, :at)`, e)
	if err != nil {
		return fmt.Errorf("event of run %d: %w", e.RunID, err)
	}
	return nil
}

// RunEvents lists a run's timeline, oldest first.
func (s *Store) RunEvents(ctx context.Context, runID int64) ([]RunEvent, error) {
	var out []RunEvent
	if err := selectNamed(ctx, s.read, &out, `SELECT * FROM runbook_run_events WHERE run_id = :run ORDER BY id`, arg{"run": runID}); err != nil {
		return nil, fmt.Errorf("events of run %d: %w", runID, err)
	}
	return out, nil
}

// StepEffect returns what a step recorded under key, and whether it did.
func (tx *Tx) StepEffect(ctx context.Context, runID int64, step, key string) (string, bool, error) {
	var v string
	err := getNamed(ctx, tx, &v, `SELECT value FROM runbook_step_effects WHERE run_id = :run AND step = :step AND key = :key`, arg{"run": runID, "step": step, "key": key})
	if errors.Is(err, ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("effect %s of step %q of run %d: %w", key, step, runID, err)
	}
	return v, true, nil
}

// RecordStepEffect records that a step did something, under key; a second
// record of the same key fails, so an effect is recorded once.
func (tx *Tx) RecordStepEffect(ctx context.Context, runID int64, step, key, value string) error {
	// A second record of the same effect fails and the transaction goes on.
	err := tx.savepoint(ctx, func() error {
		_, err := execNamed(ctx, tx, `INSERT INTO runbook_step_effects (run_id, step, key, value, at) VALUES (:run, :step, :key, :value, :now)`,
			arg{"run": runID, "step": step, "key": key, "value": value, "now": tx.Now()})
		return err
	})
	if err != nil {
		return fmt.Errorf("effect %s of step %q of run %d: %w", key, step, runID, err)
	}
	return nil
}

// StepRetries counts how often a step was retried (by its policy or by a
// person): it only grows, even when a person's retry resets the attempts.
func (tx *Tx) StepRetries(ctx context.Context, runID int64, step string) (int, error) {
	var n int
	err := getNamed(ctx, tx, &n, `SELECT COUNT(*) FROM runbook_run_events WHERE run_id = :run AND step = :step AND kind = 'retried'`, arg{"run": runID, "step": step})
	if err != nil {
		return 0, fmt.Errorf("retries of step %q of run %d: %w", step, runID, err)
	}
	return n, nil
}

// LastStepRetry is when a step was last retried (zero when never).
func (s *Store) LastStepRetry(ctx context.Context, runID int64, step string) (time.Time, error) {
	var at []time.Time
	err := selectNamed(ctx, s.read, &at, `SELECT at FROM runbook_run_events WHERE run_id = :run AND step = :step AND kind = 'retried' ORDER BY id DESC LIMIT 1`, arg{"run": runID, "step": step})
	if err != nil || len(at) == 0 {
		return time.Time{}, err
	}
	return at[0], nil
}

// ReplaceStepEffect changes what a step recorded under key (a backup taken
// again replaces the one that failed).
func (tx *Tx) ReplaceStepEffect(ctx context.Context, runID int64, step, key, value string) error {
	n, err := execNamed(ctx, tx, `UPDATE runbook_step_effects SET value = :value, at = :now WHERE run_id = :run AND step = :step AND key = :key`,
		arg{"run": runID, "step": step, "key": key, "value": value, "now": tx.Now()})
	if err == nil && n == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("effect %s of step %q of run %d: %w", key, step, runID, err)
	}
	return nil
}

// stepBackupsJoin joins a step's "backup:NAME" effects with the backups
// they name, by backups' primary key: for each effect one lookup, not a scan
// of every backup (joining on CAST(b.id AS TEXT) made SQLite scan the whole
// table per effect, seconds inside the write transaction for a region).
// Only the backup effects' values are cast: the step's other effects hold
// counts or text, and PostgreSQL fails a cast of text that is not a number.
const stepBackupsJoin = `runbook_step_effects e JOIN backups b
  ON b.id = CAST(CASE WHEN e.key LIKE 'backup::%' THEN e.value END AS BIGINT)`

// FailedStepBackups are the devservers whose backup, requested by a step,
// failed or was deleted, and that still exist to be backed up again.
func (tx *Tx) FailedStepBackups(ctx context.Context, runID int64, step string) ([]Devserver, error) {
	var ids []int64
	err := selectNamed(ctx, tx, &ids, `
SELECT b.devserver_id FROM `+stepBackupsJoin+`
WHERE e.run_id = :run AND e.step = :step AND e.key LIKE 'backup::%' AND b.state IN ('failed', 'deleted')
ORDER BY e.key`, arg{"run": runID, "step": step})
	if err != nil {
		return nil, fmt.Errorf("failed backups of step %q of run %d: %w", step, runID, err)
	}
	out := make([]Devserver, 0, len(ids))
	for _, id := range ids {
		d, err := tx.DevserverByID(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// StepBackups counts the backups a step requested (recorded as effects
// "backup:NAME" holding the backup's ID) by state, and names the devservers
// whose backup failed: one query, however many devservers a region holds.
func (tx *Tx) StepBackups(ctx context.Context, runID int64, step string) (map[string]int, []string, error) {
	var rows []struct {
		Devserver string `db:"devserver"`
		State     string `db:"state"`
		Error     string `db:"error"`
	}
	err := selectNamed(ctx, tx, &rows, `
SELECT substr(e.key, 8) AS devserver, b.state, b.error
FROM `+stepBackupsJoin+`
WHERE e.run_id = :run AND e.step = :step AND e.key LIKE 'backup::%'
ORDER BY e.key`, arg{"run": runID, "step": step})
	if err != nil {
		return nil, nil, fmt.Errorf("backups of step %q of run %d: %w", step, runID, err)
	}
	counts := map[string]int{}
	var failed []string
	for _, r := range rows {
		counts[r.State]++
		if r.State == BackupFailed || r.State == BackupDeleted {
			failed = append(failed, r.Devserver+" ("+r.Error+")")
		}
	}
	return counts, failed, nil
}
