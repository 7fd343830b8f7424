package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Health failure causes, as the periodic check classifies what the driver said.
const (
	CauseInstanceStopped = "instance_stopped"
	CauseInstanceMissing = "instance_missing"
	CauseHostUnreachable = "host_unreachable"
	CauseDriverError     = "driver_error"
	CauseUnhealthy       = "unhealthy"
)

// Remediation steps and states.
const (
	RemediateRestart  = "restart"
	RemediateRecreate = "recreate"
	RemediateEscalate = "escalate"

	RemediationOpen      = "open"
	RemediationResolved  = "resolved"
	RemediationEscalated = "escalated"
)

// HealthTarget is a ready devserver the periodic check asks the driver about.
type HealthTarget struct {
	ID         int64  `db:"id"`
	Name       string `db:"name"`
	InstanceID string `db:"instance_id"`
	Host       string `db:"host"`
	Driver     string `db:"driver"`
}

// HealthTargets lists a page of ready devservers with an instance, by ID.
func (s *Store) HealthTargets(ctx context.Context, afterID int64, limit int) ([]HealthTarget, error) {
	var ts []HealthTarget
	err := selectNamed(ctx, s.read, &ts, `
SELECT d.id, d.name, d.instance_id, h.name AS host, h.driver FROM devservers d JOIN hosts h ON h.id = d.host_id
WHERE d.state = 'ready' AND d.instance_id <> '' AND d.id > :after ORDER BY d.id LIMIT :limit`, arg{"after": afterID, "limit": limit})
	if err != nil {
		return nil, fmt.Errorf("health targets: %w", err)
	}
	return ts, nil
}

// HealthResult is what one check found.
type HealthResult struct {
	DevserverID int64
	OK          bool
	Cause       string // empty when OK
	Detail      string
	At          time.Time
}

// HealthCheck is one recorded result.
type HealthCheck struct {
	ID          int64     `db:"id" json:"id"`
	DevserverID int64     `db:"devserver_id" json:"-"`
	OK          bool      `db:"ok" json:"ok"`
	Cause       string    `db:"cause" json:"cause,omitempty"`
	Detail      string    `db:"detail" json:"detail"`
	Source      string    `db:"source" json:"source"`
	CheckedAt   time.Time `db:"checked_at" json:"checked_at"`
}

// DevserverHealth is a devserver's latest check.
type DevserverHealth struct {
	DevserverID int64     `db:"devserver_id" json:"-"`
	OK          bool      `db:"ok" json:"ok"`
	Cause       string    `db:"cause" json:"cause,omitempty"`
	Detail      string    `db:"detail" json:"detail"`
	Failures    int       `db:"failures" json:"failures"`
	CheckedAt   time.Time `db:"checked_at" json:"checked_at"`
}

// Remediation is one episode of an unhealthy devserver going through the
// remediation steps.
type Remediation struct {
	ID          int64      `db:"id" json:"id"`
	DevserverID int64      `db:"devserver_id" json:"-"`
	Devserver   string     `db:"devserver" json:"devserver"`
	Cause       string     `db:"cause" json:"cause"`
	Detail      string     `db:"detail" json:"detail"`
	Step        string     `db:"step" json:"step"`
	State       string     `db:"state" json:"state"`
	MigrationID *int64     `db:"migration_id" json:"migration_id,omitempty"`
	OpenedAt    time.Time  `db:"opened_at" json:"opened_at"`
	ClosedAt    *time.Time `db:"closed_at" json:"closed_at,omitempty"`
}

// RemediationAttempt is one action of an episode.
type RemediationAttempt struct {
	ID            int64      `db:"id" json:"id"`
	RemediationID int64      `db:"remediation_id" json:"-"`
	Action        string     `db:"action" json:"action"`
	Outcome       string     `db:"outcome" json:"outcome"`
	Detail        string     `db:"detail" json:"detail"`
	StartedAt     time.Time  `db:"started_at" json:"started_at"`
	FinishedAt    *time.Time `db:"finished_at" json:"finished_at,omitempty"`
}

// RecordHealth records one check of each devserver: its latest result, the
// history of failures and recoveries, and, for a devserver found unhealthy
// that has no open episode and is still ready, a new remediation episode,
// which it returns for the caller to enqueue.
func (tx *Tx) RecordHealth(ctx context.Context, results []HealthResult, source string) ([]Remediation, error) {
	var opened []Remediation
	for _, r := range results {
		var prev DevserverHealth
		err := getNamed(ctx, tx, &prev, `SELECT devserver_id, ok, cause, detail, failures, checked_at FROM devserver_health WHERE devserver_id = :id`, arg{"id": r.DevserverID})
		first := errors.Is(err, ErrNotFound)
		if err != nil && !first {
			return nil, fmt.Errorf("record health: %w", err)
		}
		failures := 0
		if !r.OK {
			failures = prev.Failures + 1
		}
		_, err = execNamed(ctx, tx, `
INSERT INTO devserver_health (devserver_id, ok, cause, detail, failures, checked_at) VALUES (:id, :ok, :cause, :detail, :failures, :at)
ON CONFLICT (devserver_id) DO UPDATE SET ok = excluded.ok, cause = excluded.cause, detail = excluded.detail, failures = excluded.failures,
    checked_at = excluded.checked_at`, arg{"id": r.DevserverID, "ok": r.OK, "cause": r.Cause, "detail": clipLong(r.Detail), "failures": failures, "at": r.At})
		if err != nil {
			return nil, fmt.Errorf("record health: %w", err)
		}
		if !r.OK || (!first && !prev.OK) || source != "periodic" {
			if err := tx.addHealthCheck(ctx, r, source); err != nil {
				return nil, err
			}
		}
		if r.OK || source != "periodic" {
			continue
		}
		rem, ok, err := tx.openRemediation(ctx, r)
		if err != nil {
			return nil, err
		}
		if ok {
			opened = append(opened, rem)
		}
	}
	return opened, nil
}

func (tx *Tx) addHealthCheck(ctx context.Context, r HealthResult, source string) error {
	_, err := execNamed(ctx, tx, `INSERT INTO health_checks (devserver_id, ok, cause, detail, source, checked_at) VALUES (:id, :ok, :cause, :detail, :source, :at)`,
		arg{"id": r.DevserverID, "ok": r.OK, "cause": r.Cause, "detail": clipLong(r.Detail), "source": source, "at": r.At})
	if err != nil {
		return fmt.Errorf("record health check: %w", err)
	}
	return nil
}

// AddHealthCheck records a check made outside the periodic one (a
// remediation's, a rage's) in the history and as the latest result.
func (tx *Tx) AddHealthCheck(ctx context.Context, r HealthResult, source string) error {
	_, err := tx.RecordHealth(ctx, []HealthResult{r}, source)
	return err
}

func (tx *Tx) openRemediation(ctx context.Context, r HealthResult) (Remediation, bool, error) {
	d, err := tx.DevserverByID(ctx, r.DevserverID)
	if err != nil {
		return Remediation{}, false, err
	}
	if d.State != StateReady {
		return Remediation{}, false, nil
	}
	// A host known to be down (a storm) is the storm's to handle: restarting
	// or recreating its devservers one by one would race its recovery.
	var hostState string
	if err := getNamed(ctx, tx, &hostState, `SELECT state FROM hosts WHERE id = :id`, arg{"id": d.HostID}); err != nil {
		return Remediation{}, false, fmt.Errorf("open remediation of %s: %w", d.Name, err)
	}
	if hostState == HostUnreachable {
		return Remediation{}, false, nil
	}
	var id int64
	err = getNamed(ctx, tx, &id, `
INSERT INTO remediations (devserver_id, cause, detail, step, state, opened_at) VALUES (:d, :cause, :detail, 'restart', 'open', :at)
ON CONFLICT DO NOTHING RETURNING id`, arg{"d": d.ID, "cause": r.Cause, "detail": clipLong(r.Detail), "at": tx.Now()})
	if errors.Is(err, ErrNotFound) {
		return Remediation{}, false, nil // an episode is open already
	}
	if err != nil {
		return Remediation{}, false, fmt.Errorf("open remediation of %s: %w", d.Name, err)
	}
	if err := tx.Audit(ctx, System, "devserver.unhealthy", "devserver", d.Name, map[string]any{"cause": r.Cause, "detail": clipLong(r.Detail), "remediation": id}); err != nil {
		return Remediation{}, false, err
	}
	rem, err := remediationBy(ctx, tx, id)
	return rem, err == nil, err
}

const remediationSelect = `
SELECT r.id, r.devserver_id, d.name AS devserver, r.cause, r.detail, r.step, r.state, r.migration_id, r.opened_at, r.closed_at
FROM remediations r JOIN devservers d ON d.id = r.devserver_id`

func remediationBy(ctx context.Context, q queryer, id int64) (Remediation, error) {
	var r Remediation
	if err := getNamed(ctx, q, &r, remediationSelect+` WHERE r.id = :id`, arg{"id": id}); err != nil {
		return Remediation{}, fmt.Errorf("remediation %d: %w", id, err)
	}
	return r, nil
}

// Remediation returns one remediation episode.
func (s *Store) Remediation(ctx context.Context, id int64) (Remediation, error) {
	return remediationBy(ctx, s.read, id)
}

// Remediation returns one remediation episode inside the transaction.
func (tx *Tx) Remediation(ctx context.Context, id int64) (Remediation, error) {
	return remediationBy(ctx, tx, id)
}

// Remediations lists a devserver's episodes, newest first (at most limit).
func (s *Store) Remediations(ctx context.Context, devserverID int64, limit int) ([]Remediation, error) {
	var rs []Remediation
	if err := selectNamed(ctx, s.read, &rs, remediationSelect+` WHERE r.devserver_id = :d ORDER BY r.id DESC LIMIT :limit`, arg{"d": devserverID, "limit": limit}); err != nil {
		return nil, fmt.Errorf("remediations: %w", err)
	}
	return rs, nil
}

// RemediationAttempts lists an episode's actions in order.
func (s *Store) RemediationAttempts(ctx context.Context, remediationID int64) ([]RemediationAttempt, error) {
	var as []RemediationAttempt
	err := selectNamed(ctx, s.read, &as, `SELECT id, remediation_id, action, outcome, detail, started_at, finished_at FROM remediation_attempts
WHERE remediation_id = :r ORDER BY id`, arg{"r": remediationID})
	if err != nil {
		return nil, fmt.Errorf("remediation attempts: %w", err)
	}
	return as, nil
}

// BeginRemediationAttempt records that an episode starts an action, once:
// a second call finds the attempt the first began (started false).
func (tx *Tx) BeginRemediationAttempt(ctx context.Context, r Remediation, action string) (RemediationAttempt, bool, error) {
	_, err := execNamed(ctx, tx, `INSERT INTO remediation_attempts (remediation_id, action, outcome, started_at) VALUES (:r, :action, 'running', :now)
ON CONFLICT (remediation_id, action) DO NOTHING`, arg{"r": r.ID, "action": action, "now": tx.Now()})
	if err != nil {
		return RemediationAttempt{}, false, fmt.Errorf("begin %s of remediation %d: %w", action, r.ID, err)
	}
	var a RemediationAttempt
	err = getNamed(ctx, tx, &a, `SELECT id, remediation_id, action, outcome, detail, started_at, finished_at FROM remediation_attempts
WHERE remediation_id = :r AND action = :action`, arg{"r": r.ID, "action": action})
	if err != nil {
		return RemediationAttempt{}, false, fmt.Errorf("begin %s of remediation %d: %w", action, r.ID, err)
	}
	if err := tx.setRemediationStep(ctx, r, action); err != nil {
		return RemediationAttempt{}, false, err
	}
	return a, a.Outcome == "running", nil
}

// AdvanceRemediation moves an open episode on to its next step.
func (tx *Tx) AdvanceRemediation(ctx context.Context, r Remediation, step string) error {
	return tx.setRemediationStep(ctx, r, step)
}

// SetDevserverNote shows a ready devserver's owner what is happening to it
// (an empty note clears it).
func (tx *Tx) SetDevserverNote(ctx context.Context, id int64, note string) error {
	_, err := execNamed(ctx, tx, `UPDATE devservers SET status_note = :note, updated_at = :now WHERE id = :id AND state = 'ready'`,
		arg{"id": id, "note": clipLong(note), "now": tx.Now()})
	return err
}

func (tx *Tx) setRemediationStep(ctx context.Context, r Remediation, step string) error {
	_, err := execNamed(ctx, tx, `UPDATE remediations SET step = :step WHERE id = :id AND state = 'open'`, arg{"id": r.ID, "step": step})
	return err
}

// FinishRemediationAttempt records an action's outcome.
func (tx *Tx) FinishRemediationAttempt(ctx context.Context, r Remediation, action, outcome, detail string) error {
	_, err := execNamed(ctx, tx, `UPDATE remediation_attempts SET outcome = :outcome, detail = :detail, finished_at = :now
WHERE remediation_id = :r AND action = :action AND outcome = 'running'`, arg{"r": r.ID, "action": action, "outcome": outcome, "detail": clipLong(detail), "now": tx.Now()})
	if err != nil {
		return fmt.Errorf("finish %s of remediation %d: %w", action, r.ID, err)
	}
	return tx.Audit(ctx, System, "devserver.remediation."+action, "devserver", r.Devserver, map[string]any{"remediation": r.ID, "outcome": outcome, "detail": clipLong(detail)})
}

// SetRemediationMigration records the migration that recreates the devserver.
func (tx *Tx) SetRemediationMigration(ctx context.Context, r Remediation, migrationID int64) error {
	_, err := execNamed(ctx, tx, `UPDATE remediations SET migration_id = :m WHERE id = :id`, arg{"id": r.ID, "m": migrationID})
	return err
}

// ResolveRemediation closes an episode whose last action made the devserver healthy.
func (tx *Tx) ResolveRemediation(ctx context.Context, r Remediation) error {
	return tx.closeRemediation(ctx, r, RemediationResolved)
}

func (tx *Tx) closeRemediation(ctx context.Context, r Remediation, state string) error {
	n, err := execNamed(ctx, tx, `UPDATE remediations SET state = :state, closed_at = :now WHERE id = :id AND state = 'open'`,
		arg{"id": r.ID, "state": state, "now": tx.Now()})
	if err != nil || n == 0 {
		return err
	}
	return tx.Audit(ctx, System, "devserver.remediation_"+state, "devserver", r.Devserver, map[string]any{"remediation": r.ID, "cause": r.Cause})
}

// EscalateRemediation closes an episode that remediation could not mend:
// its owner gets a task, every admin a notification, each once.
func (tx *Tx) EscalateRemediation(ctx context.Context, r Remediation, why string) error {
	d, err := tx.DevserverByID(ctx, r.DevserverID)
	if err != nil {
		return err
	}
	link := "/devservers/" + d.Name
	key := "remediation:" + strconv.FormatInt(r.ID, 10)
	if d.Owner != "" {
		_, err := tx.NotifyAudience(ctx, System, Audience{Kind: AudienceUsers, Emails: []string{d.Owner}}, Message{
			Kind: "health", Key: key + ":owner", Link: link,
			Title: fmt.Sprintf("Devserver %s is unhealthy and could not be repaired automatically", d.Name),
			Body: fmt.Sprintf("The health check found %s (%s). Restarting it and recreating it from its latest backup did not help: %s. "+
				"The platform team has been told. Check your work is saved elsewhere, then release it and reserve a new one, or wait for the platform team.", d.Name, r.Cause, why),
			Task: &TaskSpec{Title: fmt.Sprintf("Decide what to do with unhealthy devserver %s", d.Name), Due: tx.Now().Add(72 * time.Hour)},
		})
		if err != nil {
			return err
		}
	}
	err = tx.notifyAdmins(ctx, Message{
		Kind: "health", Key: key + ":admins", Link: "/admin/health",
		Title: fmt.Sprintf("Auto-remediation gave up on devserver %s (%s)", d.Name, r.Cause),
		Body:  fmt.Sprintf("Devserver %s of %s on host %s: %s. Restart and recreate from backup did not help: %s.", d.Name, d.Owner, d.Host, r.Detail, why),
	})
	if err != nil {
		return err
	}
	return tx.closeRemediation(ctx, r, RemediationEscalated)
}

// notifyAdmins sends m to every admin (once per Key and admin); with no
// admin it does nothing.
func (tx *Tx) notifyAdmins(ctx context.Context, m Message) error {
	var admins []string
	if err := tx.SelectContext(ctx, &admins, `SELECT u.email FROM users u JOIN user_roles r ON r.user_id = u.id AND r.role = 'admin' ORDER BY u.email`); err != nil {
		return fmt.Errorf("admins: %w", err)
	}
	if len(admins) == 0 {
		return nil
	}
	_, err := tx.NotifyAudience(ctx, System, Audience{Kind: AudienceUsers, Emails: admins}, m)
	return err
}

// HealthHistory lists a devserver's recorded checks, newest first.
func (s *Store) HealthHistory(ctx context.Context, devserverID int64, limit int) ([]HealthCheck, error) {
	var cs []HealthCheck
	err := selectNamed(ctx, s.read, &cs, `SELECT id, devserver_id, ok, cause, detail, source, checked_at FROM health_checks
WHERE devserver_id = :d ORDER BY id DESC LIMIT :limit`, arg{"d": devserverID, "limit": limit})
	if err != nil {
		return nil, fmt.Errorf("health history: %w", err)
	}
	return cs, nil
}

// LatestHealth returns a devserver's latest check.
func (s *Store) LatestHealth(ctx context.Context, devserverID int64) (DevserverHealth, error) {
	var h DevserverHealth
	err := getNamed(ctx, s.read, &h, `SELECT devserver_id, ok, cause, detail, failures, checked_at FROM devserver_health WHERE devserver_id = :d`, arg{"d": devserverID})
	if err != nil {
		return DevserverHealth{}, fmt.Errorf("latest health of %d: %w", devserverID, err)
	}
	return h, nil
}

// CauseCount is how often a failure cause opened a remediation episode.
type CauseCount struct {
	Cause      string     `db:"cause" json:"cause"`
	Total      int        `db:"total" json:"total"`
	Recent     int        `db:"recent" json:"recent"`
	Devservers int        `db:"devservers" json:"devservers"`
	Resolved   int        `db:"resolved" json:"resolved"`
	Escalated  int        `db:"escalated" json:"escalated"`
	Open       int        `db:"open" json:"open"`
	LastAt     *time.Time `db:"-" json:"last_at"`
	// LastAtRaw is MAX(opened_at), which SQLite returns as text.
	LastAtRaw aggTime `db:"last_at" json:"-"`
}

// aggTime is a time an aggregate (MAX) returned: SQLite keeps times as text
// and loses the column type through MAX; PostgreSQL returns a timestamptz;
// NULL (no rows) is nil.
type aggTime struct{ t *time.Time }

func (a *aggTime) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		a.t = nil
	case time.Time:
		t := v.UTC()
		a.t = &t
	case string:
		a.t = sqlTime(v)
	case []byte:
		a.t = sqlTime(string(v))
	default:
		return fmt.Errorf("a time from an aggregate: unexpected %T", v)
	}
	return nil
}

// sqlTime reads a time an aggregate returned as text.
func sqlTime(s string) *time.Time {
	for _, layout := range []string{"2006-01-02 15:04:05.999999999-07:00", "2006-01-02T15:04:05.999999999-07:00", "2006-01-02 15:04:05.999999999", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			t = t.UTC()
			return &t
		}
	}
	return nil
}

// FailureCauses counts remediation episodes by cause, most frequent first;
// Recent counts those opened since since.
func (s *Store) FailureCauses(ctx context.Context, since time.Time) ([]CauseCount, error) {
	var cs []CauseCount
	err := selectNamed(ctx, s.read, &cs, `
SELECT cause, COUNT(*) AS total, SUM(CASE WHEN opened_at >= :since THEN 1 ELSE 0 END) AS recent,
       COUNT(DISTINCT devserver_id) AS devservers,
       SUM(CASE WHEN state = 'resolved' THEN 1 ELSE 0 END) AS resolved,
       SUM(CASE WHEN state = 'escalated' THEN 1 ELSE 0 END) AS escalated,
       SUM(CASE WHEN state = 'open' THEN 1 ELSE 0 END) AS open,
       MAX(opened_at) AS last_at
FROM remediations GROUP BY cause ORDER BY total DESC, cause`, arg{"since": since})
	if err != nil {
		return nil, fmt.Errorf("failure causes: %w", err)
	}
	for i := range cs {
		cs[i].LastAt = cs[i].LastAtRaw.t
	}
	return cs, nil
}

// RecurringFailure is a devserver that went unhealthy more than once.
type RecurringFailure struct {
	Devserver string     `db:"devserver" json:"devserver"`
	Episodes  int        `db:"episodes" json:"episodes"`
	Causes    string     `db:"causes" json:"causes"`
	LastAt    *time.Time `db:"-" json:"last_at"`
	// LastAtRaw is MAX(opened_at) as the engine returns it.
	LastAtRaw aggTime `db:"last_at" json:"-"`
}

// RecurringFailures lists the devservers with at least two episodes, most first.
func (s *Store) RecurringFailures(ctx context.Context, limit int) ([]RecurringFailure, error) {
	var rs []RecurringFailure
	err := selectNamed(ctx, s.read, &rs, `
SELECT d.name AS devserver, COUNT(*) AS episodes, `+s.d.listDistinct("r.cause")+` AS causes, MAX(r.opened_at) AS last_at
FROM remediations r JOIN devservers d ON d.id = r.devserver_id
GROUP BY d.name HAVING COUNT(*) > 1 ORDER BY episodes DESC, devserver LIMIT :limit`, arg{"limit": limit})
	if err != nil {
		return nil, fmt.Errorf("recurring failures: %w", err)
	}
	for i := range rs {
		rs[i].LastAt = rs[i].LastAtRaw.t
	}
	return rs, nil
}

// OpenRemediations lists the episodes still open, oldest first.
func (s *Store) OpenRemediations(ctx context.Context) ([]Remediation, error) {
	var rs []Remediation
	if err := s.read.SelectContext(ctx, &rs, remediationSelect+` WHERE r.state = 'open' ORDER BY r.id`); err != nil {
		return nil, fmt.Errorf("open remediations: %w", err)
	}
	return rs, nil
}

// DiagnosticBundle is what a "rage" collected about a devserver.
type DiagnosticBundle struct {
	ID int64 `db:"id" json:"id"`
	// DevserverID is nil for a bundle the CLI sent about no devserver.
	DevserverID *int64 `db:"devserver_id" json:"-"`
	Devserver   string `db:"devserver" json:"devserver,omitempty"`
	// Source is BundleFromDevserver (a rage, collected by a job) or
	// BundleFromCLI (sent whole by `devport doctor --rage`).
	Source      string     `db:"source" json:"source"`
	RequestedBy string     `db:"requested_by" json:"requested_by"`
	Note        string     `db:"note" json:"note,omitempty"`
	State       string     `db:"state" json:"state"`
	Body        string     `db:"body" json:"-"`
	Error       string     `db:"error" json:"error,omitempty"`
	CreatedAt   time.Time  `db:"created_at" json:"created_at"`
	ReadyAt     *time.Time `db:"ready_at" json:"ready_at,omitempty"`
}

// Parts is the bundle's JSON body decoded by part name.
func (b DiagnosticBundle) Parts() map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	_ = json.Unmarshal([]byte(b.Body), &out)
	return out
}

// RagePause is how long a person waits before raging again about the same devserver.
const RagePause = 10 * time.Minute

// Where a bundle came from.
const (
	BundleFromDevserver = "devserver"
	BundleFromCLI       = "cli"
)

const bundleColumns = `id, devserver_id, devserver, source, requested_by, note, state, body, error, created_at, ready_at`

// RequestBundle records a rage on a devserver: a bundle to collect. The
// caller enqueues the job that collects it.
func (tx *Tx) RequestBundle(ctx context.Context, who Actor, d Devserver, note string) (DiagnosticBundle, error) {
	if len(note) > maxBundleNote {
		return DiagnosticBundle{}, &ValidationError{Fields: map[string]string{"note": fmt.Sprintf("is longer than %d characters", maxBundleNote)}}
	}
	// One rage per person and devserver in ragePause: each one opens a
	// task for every admin.
	var recent int
	err := getNamed(ctx, tx, &recent, `SELECT COUNT(*) FROM diagnostic_bundles WHERE devserver_id = :d AND requested_by = :by AND created_at > :since`,
		arg{"d": d.ID, "by": who.Name, "since": tx.Now().Add(-RagePause)})
	if err != nil {
		return DiagnosticBundle{}, fmt.Errorf("rage %s: %w", d.Name, err)
	}
	if recent > 0 {
		return DiagnosticBundle{}, &QuotaError{Message: fmt.Sprintf("You sent diagnostics of %s less than %s ago; the platform team has them.", d.Name, RagePause)}
	}
	var id int64
	err = getNamed(ctx, tx, &id, `INSERT INTO diagnostic_bundles (devserver_id, devserver, requested_by, note, state, created_at)
VALUES (:d, :name, :by, :note, 'collecting', :now) RETURNING id`, arg{"d": d.ID, "name": d.Name, "by": who.Name, "note": note, "now": tx.Now()})
	if err != nil {
		return DiagnosticBundle{}, fmt.Errorf("rage %s: %w", d.Name, err)
	}
	if err := tx.Audit(ctx, who, "devserver.rage", "devserver", d.Name, map[string]any{"bundle": id}); err != nil {
		return DiagnosticBundle{}, err
	}
	return bundleBy(ctx, tx, id)
}

func bundleBy(ctx context.Context, q queryer, id int64) (DiagnosticBundle, error) {
	var b DiagnosticBundle
	if err := getNamed(ctx, q, &b, `SELECT `+bundleColumns+` FROM diagnostic_bundles WHERE id = :id`, arg{"id": id}); err != nil {
		return DiagnosticBundle{}, fmt.Errorf("diagnostic bundle %d: %w", id, err)
	}
	return b, nil
}

// Bundle returns one diagnostic bundle.
func (s *Store) Bundle(ctx context.Context, id int64) (DiagnosticBundle, error) {
	return bundleBy(ctx, s.read, id)
}

// Bundles lists the newest diagnostic bundles (without their bodies' parts decoded).
func (s *Store) Bundles(ctx context.Context, limit int) ([]DiagnosticBundle, error) {
	var bs []DiagnosticBundle
	if err := selectNamed(ctx, s.read, &bs, `SELECT `+bundleColumns+` FROM diagnostic_bundles ORDER BY id DESC LIMIT :limit`, arg{"limit": limit}); err != nil {
		return nil, fmt.Errorf("diagnostic bundles: %w", err)
	}
	return bs, nil
}

// CompleteBundle stores what was collected and opens a support task for
// every admin (once per bundle and admin).
func (tx *Tx) CompleteBundle(ctx context.Context, b DiagnosticBundle, parts map[string]any) error {
	body, err := json.Marshal(parts)
	if err != nil {
		return fmt.Errorf("bundle %d: %w", b.ID, err)
	}
	n, err := execNamed(ctx, tx, `UPDATE diagnostic_bundles SET state = 'ready', body = :body, ready_at = :now WHERE id = :id AND state = 'collecting'`,
		arg{"id": b.ID, "body": string(body), "now": tx.Now()})
	if err != nil || n == 0 {
		return err
	}
	if err := tx.notifyBundle(ctx, b); err != nil {
		return err
	}
	return tx.Audit(ctx, System, "bundle.ready", "devserver", b.Devserver, map[string]any{"bundle": b.ID, "bytes": len(body)})
}

// notifyBundle opens a support task for every admin about a ready bundle
// (once per bundle and admin).
func (tx *Tx) notifyBundle(ctx context.Context, b DiagnosticBundle) error {
	m := Message{
		Kind: "support", Key: "bundle:" + strconv.FormatInt(b.ID, 10), Link: "/admin/support/" + strconv.FormatInt(b.ID, 10),
		Title: fmt.Sprintf("%s raged about devserver %s", b.RequestedBy, b.Devserver),
		Body:  "A diagnostic bundle (health checks, recent jobs, driver state, audit events) is attached. " + b.Note,
		Task:  &TaskSpec{Title: fmt.Sprintf("Look into %s's report on devserver %s", b.RequestedBy, b.Devserver), Due: tx.Now().Add(24 * time.Hour)},
	}
	if b.Source == BundleFromCLI {
		about := ""
		if b.Devserver != "" {
			about = " about devserver " + b.Devserver
		}
		m.Title = fmt.Sprintf("%s sent a diagnostic bundle from the CLI%s", b.RequestedBy, about)
		m.Body = "The devport CLI's doctor report is attached. " + b.Note
		m.Task = &TaskSpec{Title: fmt.Sprintf("Look into %s's report from the CLI%s", b.RequestedBy, about), Due: tx.Now().Add(24 * time.Hour)}
	}
	return tx.notifyAdmins(ctx, m)
}

// FailBundle records that collecting a bundle failed.
func (tx *Tx) FailBundle(ctx context.Context, b DiagnosticBundle, cause error) error {
	n, err := execNamed(ctx, tx, `UPDATE diagnostic_bundles SET state = 'failed', error = :error, ready_at = :now WHERE id = :id AND state = 'collecting'`,
		arg{"id": b.ID, "error": clipLong(cause.Error()), "now": tx.Now()})
	if err != nil || n == 0 {
		return err
	}
	return tx.Audit(ctx, System, "bundle.failed", "devserver", b.Devserver, map[string]any{"bundle": b.ID, "error": clipLong(cause.Error())})
}

// JobRecord is a row of the job queue about one devserver, for a bundle.
type JobRecord struct {
	ID          int64      `db:"id" json:"id"`
	Kind        string     `db:"kind" json:"kind"`
	State       string     `db:"state" json:"state"`
	Attempt     int        `db:"attempt" json:"attempt"`
	Args        string     `db:"args" json:"args"`
	Errors      *string    `db:"errors" json:"errors,omitempty"`
	CreatedAt   time.Time  `db:"created_at" json:"created_at"`
	FinalizedAt *time.Time `db:"finalized_at" json:"finalized_at,omitempty"`
}

// DevserverJobs lists the newest queue rows about a devserver: those whose
// arguments name it, its migrations, its backups or its remediations.
func (s *Store) DevserverJobs(ctx context.Context, devserverID int64, limit int) ([]JobRecord, error) {
	var js []JobRecord
	err := selectNamed(ctx, s.read, &js, `
SELECT id, kind, state, attempt, `+s.d.jsonText("args")+` AS args, `+s.d.jsonArrayText("errors")+` AS errors, created_at, finalized_at
FROM river_job
WHERE `+s.d.riverArg("devserver_id")+` = :d
   OR `+s.d.riverArg("migration_id")+` IN (SELECT id FROM devserver_migrations WHERE devserver_id = :d)
   OR `+s.d.riverArg("backup_id")+` IN (SELECT id FROM backups WHERE devserver_id = :d)
   OR `+s.d.riverArg("remediation_id")+` IN (SELECT id FROM remediations WHERE devserver_id = :d)
   OR `+s.d.riverArg("move_id")+` IN (SELECT id FROM host_moves WHERE devserver_id = :d)
ORDER BY id DESC LIMIT :limit`, arg{"d": devserverID, "limit": limit})
	if err != nil {
		return nil, fmt.Errorf("jobs of devserver %d: %w", devserverID, err)
	}
	return js, nil
}
