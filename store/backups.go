package store

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Backup kinds.
const (
	BackupScheduled    = "scheduled"
	BackupManual       = "manual"
	BackupPreRelease   = "pre_release"
	BackupPreMigration = "pre_migration"
	BackupPreRestore   = "pre_restore"
	BackupFinal        = "final" // at lease expiry
)

// Backup states.
const (
	BackupPending = "pending"
	BackupDone    = "done"
	BackupFailed  = "failed"
	BackupDeleted = "deleted"
)

var backupKinds = []string{BackupScheduled, BackupManual, BackupPreRelease, BackupPreMigration, BackupPreRestore, BackupFinal}

// Backup is a point-in-time copy of a devserver's persistent data (home
// directory and one-offs), kept in the backup store.
type Backup struct {
	ID          int64      `db:"id" json:"id"`
	DevserverID int64      `db:"devserver_id" json:"-"`
	Devserver   string     `db:"devserver" json:"devserver"`
	OwnerID     int64      `db:"owner_id" json:"-"`
	Kind        string     `db:"kind" json:"kind"`
	State       string     `db:"state" json:"state"`
	SizeBytes   int64      `db:"size_bytes" json:"size_bytes"`
	SHA256      string     `db:"sha256" json:"sha256"`
	Location    string     `db:"location" json:"-"`
	Error       string     `db:"error" json:"error,omitempty"`
	CreatedAt   time.Time  `db:"created_at" json:"created_at"`
	FinishedAt  *time.Time `db:"finished_at" json:"finished_at,omitempty"`
}

// Restorable tells whether the backup can be restored: it finished and its
// file is kept.
func (b Backup) Restorable() bool { return b.State == BackupDone }

const backupSelect = `
SELECT b.id, b.devserver_id, d.name AS devserver, b.owner_id, b.kind, b.state, b.size_bytes, b.sha256, b.location,
       b.error, b.created_at, b.finished_at
FROM backups b
JOIN devservers d ON d.id = b.devserver_id`

// Backup returns a backup by ID.
func (s *Store) Backup(ctx context.Context, id int64) (Backup, error) {
	return backupByID(ctx, s.read, id)
}

// BackupByID returns a backup by ID inside the transaction.
func (tx *Tx) BackupByID(ctx context.Context, id int64) (Backup, error) {
	return backupByID(ctx, tx, id)
}

func backupByID(ctx context.Context, q queryer, id int64) (Backup, error) {
	var b Backup
	if err := getNamed(ctx, q, &b, backupSelect+` WHERE b.id = :id`, arg{"id": id}); err != nil {
		return Backup{}, fmt.Errorf("backup %d: %w", id, err)
	}
	return b, nil
}

// BackupFilter selects backups for a list.
type BackupFilter struct {
	DevserverID int64
	OwnerID     int64
	State       string // "": every state but deleted
	AfterID     int64  // the cursor: the smallest ID of the previous page
	Limit       int
}

// Backups lists backups, newest first, a page at a time.
func (s *Store) Backups(ctx context.Context, f BackupFilter) ([]Backup, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	where := []string{"1 = 1"}
	if f.DevserverID != 0 {
		where = append(where, "b.devserver_id = :devserver_id")
	}
	if f.OwnerID != 0 {
		where = append(where, "b.owner_id = :owner_id")
	}
	if f.State != "" {
		where = append(where, "b.state = :state")
	} else {
		where = append(where, "b.state <> 'deleted'")
	}
	if f.AfterID > 0 {
		where = append(where, "b.id < :after_id")
	}
	var bs []Backup
	err := selectNamed(ctx, s.read, &bs, backupSelect+` WHERE `+strings.Join(where, " AND ")+` ORDER BY b.id DESC LIMIT :limit`,
		arg{"devserver_id": f.DevserverID, "owner_id": f.OwnerID, "state": f.State, "after_id": f.AfterID, "limit": f.Limit})
	if err != nil {
		return nil, fmt.Errorf("backups: %w", err)
	}
	return bs, nil
}

// AnyBackupPending tells whether any of the backups is still being taken.
func AnyBackupPending(bs []Backup) bool {
	for _, b := range bs {
		if b.State == BackupPending {
			return true
		}
	}
	return false
}

// RequestBackup records a pending backup of the devserver, for a backup job
// (enqueued by the caller in the same transaction) or the job that needs it
// to take. Scheduled and manual backups need a ready devserver and refuse a
// second one while one is being taken.
func (tx *Tx) RequestBackup(ctx context.Context, who Actor, d Devserver, kind string) (Backup, error) {
	known := false
	for _, k := range backupKinds {
		known = known || k == kind
	}
	if !known {
		return Backup{}, fmt.Errorf("request backup of %s: unknown kind %q", d.Name, kind)
	}
	if d.OwnerID == 0 {
		return Backup{}, Conflict("not_ready", fmt.Sprintf("Devserver %s waits in a pool and has nothing to back up.", d.Name))
	}
	if kind == BackupManual || kind == BackupScheduled {
		if d.State != StateReady || d.InstanceID == "" {
			return Backup{}, Conflict("not_ready", fmt.Sprintf("Devserver %s is %s; only a ready devserver can be backed up.", d.Name, d.State))
		}
		var pending int
		if err := getNamed(ctx, tx, &pending, `SELECT COUNT(*) FROM backups WHERE devserver_id = :id AND state = 'pending' AND kind IN ('manual', 'scheduled')`, arg{"id": d.ID}); err != nil {
			return Backup{}, fmt.Errorf("request backup of %s: %w", d.Name, err)
		}
		if pending > 0 {
			return Backup{}, Conflict("backup_in_progress", fmt.Sprintf("A backup of %s is being taken; wait for it to finish.", d.Name))
		}
	} else if d.InstanceID == "" {
		return Backup{}, Conflict("not_ready", fmt.Sprintf("Devserver %s has no environment to back up.", d.Name))
	}
	var id int64
	err := getNamed(ctx, tx, &id, `
INSERT INTO backups (devserver_id, owner_id, kind, state, created_at)
VALUES (:devserver_id, :owner_id, :kind, 'pending', :now)
RETURNING id`, arg{"devserver_id": d.ID, "owner_id": d.OwnerID, "kind": kind, "now": tx.Now()})
	if err != nil {
		return Backup{}, fmt.Errorf("request backup of %s: %w", d.Name, err)
	}
	if err := tx.Audit(ctx, who, "devserver.backup", "devserver", d.Name, map[string]any{"backup": id, "kind": kind}); err != nil {
		return Backup{}, err
	}
	return tx.BackupByID(ctx, id)
}

// FinishBackup records a pending backup as done, with its file. It returns
// false when the backup was no longer pending.
func (tx *Tx) FinishBackup(ctx context.Context, id, size int64, sha256, location string) (bool, error) {
	b, err := tx.BackupByID(ctx, id)
	if err != nil {
		return false, err
	}
	n, err := execNamed(ctx, tx, `
UPDATE backups SET state = 'done', size_bytes = :size, sha256 = :sha256, location = :location, error = '', finished_at = :now
WHERE id = :id AND state = 'pending'`, arg{"id": id, "size": size, "sha256": sha256, "location": location, "now": tx.Now()})
	if err != nil || n == 0 {
		return false, err
	}
	return true, tx.Audit(ctx, System, "devserver.backup_done", "devserver", b.Devserver,
		map[string]any{"backup": id, "kind": b.Kind, "size_bytes": size, "sha256": sha256})
}

// FailBackup records that a pending backup could not be taken.
func (tx *Tx) FailBackup(ctx context.Context, id int64, reason string) error {
	b, err := tx.BackupByID(ctx, id)
	if err != nil {
		return err
	}
	n, err := execNamed(ctx, tx, `UPDATE backups SET state = 'failed', error = :reason, finished_at = :now WHERE id = :id AND state = 'pending'`,
		arg{"id": id, "reason": clipReason(reason), "now": tx.Now()})
	if err != nil || n == 0 {
		return err
	}
	return tx.Audit(ctx, System, "devserver.backup_failed", "devserver", b.Devserver, map[string]any{"backup": id, "kind": b.Kind, "reason": clipReason(reason)})
}

// DeleteBackup marks a finished or failed backup deleted; the caller removes
// its file afterwards (an orphaned file is harmless, a row without a file is not).
func (tx *Tx) DeleteBackup(ctx context.Context, who Actor, id int64, reason string) (bool, error) {
	b, err := tx.BackupByID(ctx, id)
	if err != nil {
		return false, err
	}
	n, err := execNamed(ctx, tx, `UPDATE backups SET state = 'deleted' WHERE id = :id AND state IN ('done', 'failed')`, arg{"id": id})
	if err != nil || n == 0 {
		return false, err
	}
	return true, tx.Audit(ctx, who, "devserver.backup_deleted", "devserver", b.Devserver, map[string]any{"backup": id, "kind": b.Kind, "reason": reason})
}

// ReleaseBackup returns the backup taken when the devserver was released (a
// pre_release or final backup), so a retried release job takes it only once.
func (tx *Tx) ReleaseBackup(ctx context.Context, devserverID int64) (Backup, error) {
	var b Backup
	err := getNamed(ctx, tx, &b, backupSelect+` WHERE b.devserver_id = :id AND b.kind IN ('pre_release', 'final') ORDER BY b.id DESC LIMIT 1`, arg{"id": devserverID})
	if err != nil {
		return Backup{}, fmt.Errorf("release backup of devserver %d: %w", devserverID, err)
	}
	return b, nil
}

// BackupsDue returns owned, ready devservers whose newest finished backup is
// older than before (or that have none), and that have no backup being taken.
func (s *Store) BackupsDue(ctx context.Context, before time.Time, limit int) ([]Devserver, error) {
	if limit <= 0 {
		limit = 500
	}
	var ds []Devserver
	err := selectNamed(ctx, s.read, &ds, devserverSelect+`
WHERE d.state = 'ready' AND d.owner_id IS NOT NULL AND d.instance_id <> ''
  AND NOT EXISTS (SELECT 1 FROM backups b WHERE b.devserver_id = d.id AND b.state = 'pending')
  AND COALESCE((SELECT MAX(b.created_at) FROM backups b WHERE b.devserver_id = d.id AND b.state = 'done'), :epoch) < :before
ORDER BY d.id LIMIT :limit`, arg{"before": before, "epoch": time.Time{}, "limit": limit})
	if err != nil {
		return nil, fmt.Errorf("backups due: %w", err)
	}
	return ds, nil
}

// DevserversWithBackups returns the IDs of devservers that keep more than
// keepLast finished backups: the only ones retention can trim.
func (s *Store) DevserversWithBackups(ctx context.Context, keepLast int) ([]int64, error) {
	var ids []int64
	err := selectNamed(ctx, s.read, &ids, `SELECT devserver_id FROM backups WHERE state = 'done' GROUP BY devserver_id HAVING COUNT(*) > :keep ORDER BY devserver_id`, arg{"keep": keepLast})
	if err != nil {
		return nil, fmt.Errorf("devservers with backups: %w", err)
	}
	return ids, nil
}

// RetentionDrops returns the finished backups that retention removes: all but
// the newest keepLast, and the newest of each UTC day of the last keepDays
// days. Backups are given in any order.
func RetentionDrops(bs []Backup, now time.Time, keepLast, keepDays int) []Backup {
	done := make([]Backup, 0, len(bs))
	for _, b := range bs {
		if b.State == BackupDone {
			done = append(done, b)
		}
	}
	sort.SliceStable(done, func(i, j int) bool {
		if !done[i].CreatedAt.Equal(done[j].CreatedAt) {
			return done[i].CreatedAt.After(done[j].CreatedAt)
		}
		return done[i].ID > done[j].ID
	})
	today := now.UTC().Truncate(24 * time.Hour)
	oldestDay := today.AddDate(0, 0, -(keepDays - 1))
	daily := map[time.Time]bool{}
	var drops []Backup
	for i, b := range done {
		day := b.CreatedAt.UTC().Truncate(24 * time.Hour)
		keep := i < keepLast
		if keepDays > 0 && !day.Before(oldestDay) && !daily[day] {
			daily[day] = true
			keep = true
		}
		if !keep {
			drops = append(drops, b)
		}
	}
	return drops
}

// Restore states and steps.
const (
	RestorePending = "pending"
	RestoreRunning = "running"
	RestoreDone    = "done"
	RestoreFailed  = "failed"

	RestoreStepVerify    = "verify"
	RestoreStepPreBackup = "pre_backup"
	RestoreStepRestore   = "restore"
	RestoreStepDone      = "done"
)

// Restore is a backup being put back onto a devserver of the same owner:
// verify the file, back up the target, then replace its data.
type Restore struct {
	ID          int64      `db:"id" json:"id"`
	BackupID    int64      `db:"backup_id" json:"backup_id"`
	DevserverID int64      `db:"devserver_id" json:"-"`
	Devserver   string     `db:"devserver" json:"devserver"`
	Source      string     `db:"source" json:"source"` // the devserver the backup was taken of
	PreBackupID *int64     `db:"pre_backup_id" json:"pre_restore_backup_id,omitempty"`
	State       string     `db:"state" json:"state"`
	Step        string     `db:"step" json:"step"`
	Error       string     `db:"error" json:"error,omitempty"`
	RequestedBy string     `db:"requested_by" json:"requested_by"`
	CreatedAt   time.Time  `db:"created_at" json:"created_at"`
	UpdatedAt   time.Time  `db:"updated_at" json:"updated_at"`
	FinishedAt  *time.Time `db:"finished_at" json:"finished_at,omitempty"`
}

// InFlight tells whether the restore is still running.
func (r Restore) InFlight() bool { return r.State == RestorePending || r.State == RestoreRunning }

// Progress is how far the restore has come, 0 to 100.
func (r Restore) Progress() int {
	switch {
	case r.State == RestoreDone:
		return 100
	case r.State == RestorePending:
		return 0
	}
	switch r.Step {
	case RestoreStepVerify:
		return 10
	case RestoreStepPreBackup:
		return 40
	case RestoreStepRestore:
		return 75
	}
	return 100
}

// AnyRestoreInFlight tells whether any of the restores is running.
func AnyRestoreInFlight(rs []Restore) bool {
	for _, r := range rs {
		if r.InFlight() {
			return true
		}
	}
	return false
}

const restoreSelect = `
SELECT r.id, r.backup_id, r.devserver_id, d.name AS devserver, sd.name AS source, r.pre_backup_id, r.state, r.step,
       r.error, r.requested_by, r.created_at, r.updated_at, r.finished_at
FROM restores r
JOIN devservers d ON d.id = r.devserver_id
JOIN backups b ON b.id = r.backup_id
JOIN devservers sd ON sd.id = b.devserver_id`

// RestoreByID returns a restore.
func (s *Store) RestoreByID(ctx context.Context, id int64) (Restore, error) {
	return restoreByID(ctx, s.read, id)
}

// RestoreByID returns a restore inside the transaction.
func (tx *Tx) RestoreByID(ctx context.Context, id int64) (Restore, error) {
	return restoreByID(ctx, tx, id)
}

func restoreByID(ctx context.Context, q queryer, id int64) (Restore, error) {
	var r Restore
	if err := getNamed(ctx, q, &r, restoreSelect+` WHERE r.id = :id`, arg{"id": id}); err != nil {
		return Restore{}, fmt.Errorf("restore %d: %w", id, err)
	}
	return r, nil
}

// Restores lists the latest restores onto a devserver, newest first.
func (s *Store) Restores(ctx context.Context, devserverID int64, limit int) ([]Restore, error) {
	if limit <= 0 {
		limit = 10
	}
	var rs []Restore
	err := selectNamed(ctx, s.read, &rs, restoreSelect+` WHERE r.devserver_id = :id ORDER BY r.id DESC LIMIT :limit`, arg{"id": devserverID, "limit": limit})
	if err != nil {
		return nil, fmt.Errorf("restores: %w", err)
	}
	return rs, nil
}

// RequestRestore records a restore of backup b onto target, for a restore job
// the caller enqueues in the same transaction. The backup must belong to the
// target's owner (otherwise it does not exist, as far as the caller knows),
// be finished, and the target must be ready with nothing else restoring onto it.
func (tx *Tx) RequestRestore(ctx context.Context, who Actor, b Backup, target Devserver) (Restore, error) {
	if target.OwnerID == 0 || b.OwnerID != target.OwnerID {
		return Restore{}, fmt.Errorf("restore backup %d onto %s: %w", b.ID, target.Name, ErrNotFound)
	}
	if !b.Restorable() {
		return Restore{}, Conflict("backup_not_restorable", fmt.Sprintf("Backup %d is %s; only a finished backup can be restored.", b.ID, b.State))
	}
	if target.State != StateReady || target.InstanceID == "" {
		return Restore{}, Conflict("not_ready", fmt.Sprintf("Devserver %s is %s; a backup can only be restored onto a ready devserver.", target.Name, target.State))
	}
	now := tx.Now()
	var id int64
	// Under a savepoint: a caller may handle the conflict and go on.
	err := tx.savepoint(ctx, func() error {
		return getNamed(ctx, tx, &id, `
INSERT INTO restores (backup_id, devserver_id, state, step, requested_by, created_at, updated_at)
VALUES (:backup_id, :devserver_id, 'pending', 'verify', :by, :now, :now)
RETURNING id`, arg{"backup_id": b.ID, "devserver_id": target.ID, "by": who.Name, "now": now})
	})
	if isUniqueViolation(err) {
		return Restore{}, Conflict("restore_in_progress", fmt.Sprintf("A restore onto %s is already running; wait for it to finish.", target.Name))
	}
	if err != nil {
		return Restore{}, fmt.Errorf("restore backup %d onto %s: %w", b.ID, target.Name, err)
	}
	if err := tx.Audit(ctx, who, "devserver.restore", "devserver", target.Name, map[string]any{"backup": b.ID, "from": b.Devserver, "restore": id}); err != nil {
		return Restore{}, err
	}
	return tx.RestoreByID(ctx, id)
}

// SetRestoreStep records that a running restore reached step; preBackupID,
// when not nil, is the target's pre_restore backup.
func (tx *Tx) SetRestoreStep(ctx context.Context, id int64, step string, preBackupID *int64) error {
	_, err := execNamed(ctx, tx, `
UPDATE restores SET state = 'running', step = :step, pre_backup_id = COALESCE(:pre, pre_backup_id), updated_at = :now
WHERE id = :id AND state IN ('pending', 'running')`, arg{"id": id, "step": step, "pre": preBackupID, "now": tx.Now()})
	if err != nil {
		return fmt.Errorf("restore %d step %s: %w", id, step, err)
	}
	return nil
}

// FinishRestore records a restore as done, or as failed when reason is not empty.
func (tx *Tx) FinishRestore(ctx context.Context, id int64, reason string) error {
	r, err := tx.RestoreByID(ctx, id)
	if err != nil {
		return err
	}
	if !r.InFlight() {
		return nil
	}
	state, step, action := RestoreDone, RestoreStepDone, "devserver.restored"
	detail := map[string]any{"backup": r.BackupID, "restore": id}
	if reason != "" {
		state, step, action = RestoreFailed, r.Step, "devserver.restore_failed"
		detail["reason"] = clipReason(reason)
	}
	now := tx.Now()
	_, err = execNamed(ctx, tx, `
UPDATE restores SET state = :state, step = :step, error = :reason, updated_at = :now, finished_at = :now
WHERE id = :id AND state IN ('pending', 'running')`, arg{"id": id, "state": state, "step": step, "reason": clipReason(reason), "now": now})
	if err != nil {
		return fmt.Errorf("finish restore %d: %w", id, err)
	}
	return tx.Audit(ctx, System, action, "devserver", r.Devserver, detail)
}

// clipReason keeps an error message short enough to store and show.
func clipReason(s string) string {
	if len(s) > 500 {
		return s[:500] + "…"
	}
	return s
}
