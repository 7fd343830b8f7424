package store

import (
	"context"
	"fmt"
	"regexp"
	"time"
)

// Feature states on a devserver.
const (
	FeaturePending   = "pending"
	FeatureInstalled = "installed"
	FeatureRemoving  = "removing"
	FeatureFailed    = "failed"
)

// DevserverFeature is a feature on a devserver: the version wanted or
// installed, and where its install stands.
type DevserverFeature struct {
	DevserverID int64     `db:"devserver_id" json:"-"`
	Feature     string    `db:"feature" json:"feature"`
	Version     string    `db:"version" json:"version"`
	State       string    `db:"state" json:"state"`
	Error       string    `db:"error" json:"error,omitempty"`
	UpdatedAt   time.Time `db:"updated_at" json:"updated_at"`
}

const devserverFeatureColumns = `devserver_id, feature, version, state, error, updated_at`

// DevserverFeatures lists the features on a devserver by name.
func (s *Store) DevserverFeatures(ctx context.Context, devserverID int64) ([]DevserverFeature, error) {
	return devserverFeatures(ctx, s.read, devserverID)
}

func devserverFeatures(ctx context.Context, q queryer, devserverID int64) ([]DevserverFeature, error) {
	var fs []DevserverFeature
	err := selectNamed(ctx, q, &fs, `SELECT `+devserverFeatureColumns+` FROM devserver_features WHERE devserver_id = :id ORDER BY feature`, arg{"id": devserverID})
	if err != nil {
		return nil, fmt.Errorf("devserver features: %w", err)
	}
	return fs, nil
}

// DevserverFeature returns one feature of a devserver.
func (s *Store) DevserverFeature(ctx context.Context, devserverID int64, feature string) (DevserverFeature, error) {
	var f DevserverFeature
	err := getNamed(ctx, s.read, &f, `SELECT `+devserverFeatureColumns+` FROM devserver_features WHERE devserver_id = :id AND feature = :feature`,
		arg{"id": devserverID, "feature": feature})
	if err != nil {
		return DevserverFeature{}, fmt.Errorf("devserver feature %s: %w", feature, err)
	}
	return f, nil
}

// MaxFeatures bounds how many features one request may name.
const MaxFeatures = 50

// RequestFeatures asks for features to be installed on a devserver at their
// catalogue versions. Unknown names are refused; features already there are
// left alone (a failed one is tried again). It returns the features that
// need an install job.
func (tx *Tx) RequestFeatures(ctx context.Context, who Actor, d Devserver, names []string) ([]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	if len(names) > MaxFeatures {
		return nil, &ValidationError{Fields: map[string]string{"features": fmt.Sprintf("at most %d features at once", MaxFeatures)}}
	}
	catalogue := map[string]Feature{}
	var all []Feature
	if err := tx.SelectContext(ctx, &all, `SELECT name, version, description, created_at, updated_at FROM features`); err != nil {
		return nil, fmt.Errorf("request features: %w", err)
	}
	for _, f := range all {
		catalogue[f.Name] = f
	}
	seen := map[string]bool{}
	for _, n := range names {
		if _, ok := catalogue[n]; !ok {
			return nil, &ValidationError{Fields: map[string]string{"features": fmt.Sprintf("%q is not in the features catalogue", clip(n))}}
		}
		if seen[n] {
			return nil, &ValidationError{Fields: map[string]string{"features": fmt.Sprintf("%q is named twice", n)}}
		}
		seen[n] = true
	}
	existing, err := devserverFeatures(ctx, tx, d.ID)
	if err != nil {
		return nil, err
	}
	have := map[string]DevserverFeature{}
	for _, f := range existing {
		have[f.Feature] = f
	}
	var queued []string
	for _, n := range names {
		if f, ok := have[n]; ok && f.State != FeatureFailed {
			continue
		}
		_, err := execNamed(ctx, tx, `
INSERT INTO devserver_features (devserver_id, feature, version, state, error, updated_at)
VALUES (:id, :feature, :version, 'pending', '', :now)
ON CONFLICT (devserver_id, feature) DO UPDATE SET version = excluded.version, state = 'pending', error = '', updated_at = excluded.updated_at`,
			arg{"id": d.ID, "feature": n, "version": catalogue[n].Version, "now": tx.Now()})
		if err != nil {
			return nil, fmt.Errorf("request feature %s: %w", n, err)
		}
		if err := tx.Audit(ctx, who, "devserver.feature_add", "devserver", d.Name, map[string]any{"feature": n, "version": catalogue[n].Version}); err != nil {
			return nil, err
		}
		queued = append(queued, n)
	}
	return queued, nil
}

// RequestFeatureRemoval marks a feature for removal from a devserver.
func (tx *Tx) RequestFeatureRemoval(ctx context.Context, who Actor, d Devserver, feature string) error {
	n, err := execNamed(ctx, tx, `UPDATE devserver_features SET state = 'removing', error = '', updated_at = :now
WHERE devserver_id = :id AND feature = :feature AND state <> 'removing'`, arg{"id": d.ID, "feature": feature, "now": tx.Now()})
	if err != nil {
		return fmt.Errorf("remove feature %s: %w", feature, err)
	}
	if n == 0 {
		var state string
		err := getNamed(ctx, tx, &state, `SELECT state FROM devserver_features WHERE devserver_id = :id AND feature = :feature`, arg{"id": d.ID, "feature": feature})
		if err != nil {
			return fmt.Errorf("feature %s on %s: %w", feature, d.Name, err)
		}
		return Conflict("invalid_state", fmt.Sprintf("%s is already being removed from %s.", feature, d.Name))
	}
	return tx.Audit(ctx, who, "devserver.feature_remove", "devserver", d.Name, map[string]any{"feature": feature})
}

// FinishFeature records the outcome of a feature job: installed at version,
// removed (the row goes), or failed with the error. It does nothing when the
// feature moved on meanwhile (wasState no longer holds).
func (tx *Tx) FinishFeature(ctx context.Context, d Devserver, feature, wasState, version string, failure error) error {
	a := arg{"id": d.ID, "feature": feature, "was": wasState, "version": version, "now": tx.Now()}
	var err error
	switch {
	case failure != nil:
		a["error"] = clipLong(failure.Error())
		_, err = execNamed(ctx, tx, `UPDATE devserver_features SET state = 'failed', error = :error, updated_at = :now
WHERE devserver_id = :id AND feature = :feature AND state = :was`, a)
	case wasState == FeatureRemoving:
		_, err = execNamed(ctx, tx, `DELETE FROM devserver_features WHERE devserver_id = :id AND feature = :feature AND state = 'removing'`, a)
	default:
		_, err = execNamed(ctx, tx, `UPDATE devserver_features SET state = 'installed', version = :version, error = '', updated_at = :now
WHERE devserver_id = :id AND feature = :feature AND state = :was AND version = :version`, a)
	}
	if err != nil {
		return fmt.Errorf("finish feature %s: %w", feature, err)
	}
	action := "devserver.feature_installed"
	detail := map[string]any{"feature": feature, "version": version}
	switch {
	case failure != nil:
		action, detail["error"] = "devserver.feature_failed", clipLong(failure.Error())
	case wasState == FeatureRemoving:
		action = "devserver.feature_removed"
	}
	return tx.Audit(ctx, System, action, "devserver", d.Name, detail)
}

// FeatureRollout upgrades the devservers that have a feature to its new
// version, a batch at a time.
type FeatureRollout struct {
	ID          int64      `db:"id" json:"id"`
	Feature     string     `db:"feature" json:"feature"`
	FromVersion string     `db:"from_version" json:"from_version"`
	ToVersion   string     `db:"to_version" json:"to_version"`
	BatchSize   int        `db:"batch_size" json:"batch_size"`
	State       string     `db:"state" json:"state"`
	CreatedAt   time.Time  `db:"created_at" json:"created_at"`
	CreatedBy   string     `db:"created_by" json:"created_by"`
	FinishedAt  *time.Time `db:"finished_at" json:"finished_at,omitempty"`
	// Upgraded and Total count the devservers at the new version and all
	// that have the feature; computed, not stored.
	Upgraded int `db:"upgraded" json:"upgraded"`
	Total    int `db:"total" json:"total"`
}

var versionPattern = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$`)

// BumpFeature sets a feature's catalogue version and starts a rolling update
// of the devservers that have it. Only one rollout per feature runs at a time.
func (tx *Tx) BumpFeature(ctx context.Context, who Actor, feature, version string, batchSize int) (FeatureRollout, error) {
	p := Problems{}
	if !versionPattern.MatchString(version) {
		p.Add("version", "must be a version such as 1.2.3 (letters, digits, . + _ -)")
	}
	if batchSize < 1 || batchSize > 1000 {
		p.Add("batch_size", "must be from 1 to 1000")
	}
	if err := p.Err(); err != nil {
		return FeatureRollout{}, err
	}
	var f Feature
	if err := getNamed(ctx, tx, &f, `SELECT name, version, description, created_at, updated_at FROM features WHERE name = :name`, arg{"name": feature}); err != nil {
		return FeatureRollout{}, fmt.Errorf("feature %s: %w", feature, err)
	}
	if f.Version == version {
		return FeatureRollout{}, &ValidationError{Fields: map[string]string{"version": "is the current version already"}}
	}
	var running int
	if err := getNamed(ctx, tx, &running, `SELECT COUNT(*) FROM feature_rollouts WHERE feature = :f AND state = 'running'`, arg{"f": feature}); err != nil {
		return FeatureRollout{}, err
	}
	if running > 0 {
		return FeatureRollout{}, Conflict("rollout_running", fmt.Sprintf("A rolling update of %s is still running; wait for it or cancel it.", feature))
	}
	now := tx.Now()
	if _, err := execNamed(ctx, tx, `UPDATE features SET version = :v, updated_at = :now WHERE name = :name`, arg{"v": version, "now": now, "name": feature}); err != nil {
		return FeatureRollout{}, fmt.Errorf("bump feature %s: %w", feature, err)
	}
	var id int64
	err := getNamed(ctx, tx, &id, `
INSERT INTO feature_rollouts (feature, from_version, to_version, batch_size, state, created_at, created_by)
VALUES (:feature, :from, :to, :batch, 'running', :now, :by) RETURNING id`,
		arg{"feature": feature, "from": f.Version, "to": version, "batch": batchSize, "now": now, "by": who.Name})
	if err != nil {
		if isUniqueViolation(err) {
			return FeatureRollout{}, Conflict("rollout_running", fmt.Sprintf("A rolling update of %s is already running.", feature))
		}
		return FeatureRollout{}, fmt.Errorf("bump feature %s: %w", feature, err)
	}
	if err := tx.Audit(ctx, who, "feature.bump", "feature", feature, map[string]any{"from": f.Version, "to": version, "batch_size": batchSize}); err != nil {
		return FeatureRollout{}, err
	}
	return tx.Rollout(ctx, id)
}

const rolloutSelect = `
SELECT r.id, r.feature, r.from_version, r.to_version, r.batch_size, r.state, r.created_at, r.created_by, r.finished_at,
  (SELECT COUNT(*) FROM devserver_features df WHERE df.feature = r.feature AND df.version = r.to_version AND df.state = 'installed') AS upgraded,
  (SELECT COUNT(*) FROM devserver_features df WHERE df.feature = r.feature AND df.state <> 'removing') AS total
FROM feature_rollouts r`

// Rollout returns a rollout inside the transaction.
func (tx *Tx) Rollout(ctx context.Context, id int64) (FeatureRollout, error) {
	var r FeatureRollout
	if err := getNamed(ctx, tx, &r, rolloutSelect+` WHERE r.id = :id`, arg{"id": id}); err != nil {
		return FeatureRollout{}, fmt.Errorf("rollout %d: %w", id, err)
	}
	return r, nil
}

// Rollouts lists the newest rollouts.
func (s *Store) Rollouts(ctx context.Context, limit int) ([]FeatureRollout, error) {
	var rs []FeatureRollout
	if err := selectNamed(ctx, s.read, &rs, rolloutSelect+` ORDER BY r.id DESC LIMIT :limit`, arg{"limit": limit}); err != nil {
		return nil, fmt.Errorf("rollouts: %w", err)
	}
	return rs, nil
}

// NextRolloutBatch advances a running rollout: when no upgrade of its batch
// is still in flight, it marks the next batch of ready devservers that have
// an older version pending at the new version, and returns their IDs. Devservers
// that are migrating (or otherwise not ready) are skipped until they are.
// When nothing is left to upgrade the rollout is done.
func (tx *Tx) NextRolloutBatch(ctx context.Context, id int64) (FeatureRollout, []int64, error) {
	r, err := tx.Rollout(ctx, id)
	if err != nil || r.State != "running" {
		return r, nil, err
	}
	var inFlight int
	err = getNamed(ctx, tx, &inFlight, `SELECT COUNT(*) FROM devserver_features WHERE feature = :f AND version = :v AND state = 'pending'`,
		arg{"f": r.Feature, "v": r.ToVersion})
	if err != nil || inFlight > 0 {
		return r, nil, err
	}
	var ids []int64
	err = selectNamed(ctx, tx, &ids, `
SELECT df.devserver_id FROM devserver_features df JOIN devservers d ON d.id = df.devserver_id
WHERE df.feature = :f AND df.version <> :v AND df.state IN ('installed', 'failed') AND d.state = 'ready'
ORDER BY df.devserver_id LIMIT :batch`, arg{"f": r.Feature, "v": r.ToVersion, "batch": r.BatchSize})
	if err != nil {
		return r, nil, fmt.Errorf("rollout batch: %w", err)
	}
	now := tx.Now()
	if len(ids) == 0 {
		var waiting int
		err := getNamed(ctx, tx, &waiting, `
SELECT COUNT(*) FROM devserver_features df JOIN devservers d ON d.id = df.devserver_id
WHERE df.feature = :f AND df.version <> :v AND df.state <> 'removing' AND d.state NOT IN ('released', 'failed', 'lost')`,
			arg{"f": r.Feature, "v": r.ToVersion})
		if err != nil || waiting > 0 {
			return r, nil, err // some are migrating or unreachable: try again later
		}
		if _, err := execNamed(ctx, tx, `UPDATE feature_rollouts SET state = 'done', finished_at = :now WHERE id = :id`, arg{"id": id, "now": now}); err != nil {
			return r, nil, err
		}
		if err := tx.Audit(ctx, System, "feature.rollout_done", "feature", r.Feature, map[string]any{"version": r.ToVersion}); err != nil {
			return r, nil, err
		}
		r, err = tx.Rollout(ctx, id)
		return r, nil, err
	}
	for _, d := range ids {
		_, err := execNamed(ctx, tx, `UPDATE devserver_features SET version = :v, state = 'pending', error = '', updated_at = :now
WHERE devserver_id = :d AND feature = :f`, arg{"v": r.ToVersion, "now": now, "d": d, "f": r.Feature})
		if err != nil {
			return r, nil, fmt.Errorf("rollout batch: %w", err)
		}
	}
	return r, ids, nil
}

// AnyRolloutRunning tells whether any of the rollouts still runs.
func AnyRolloutRunning(rs []FeatureRollout) bool {
	for _, r := range rs {
		if r.State == "running" {
			return true
		}
	}
	return false
}

func clipLong(s string) string {
	if len(s) > 2000 {
		return s[:2000] + "…"
	}
	return s
}
