package jobs

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/devport/devport/store"
)

// BackupScheduleArgs is the hourly tick of scheduled backups: it backs up
// every owned, ready devserver whose newest backup is older than the
// backup interval, and applies retention.
type BackupScheduleArgs struct{}

// Kind names the job.
func (BackupScheduleArgs) Kind() string { return "schedule_backups" }

// InsertOpts retries a failed tick a little; the next hour's tick runs anyway.
func (BackupScheduleArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 3} }

// Backup schedule defaults.
const (
	DefaultBackupInterval = 24 * time.Hour
	DefaultBackupKeepLast = 7
	DefaultBackupKeepDays = 30
	backupScheduleEvery   = time.Hour
)

// Retention is how many backups each devserver keeps: the last KeepLast,
// and the newest of each day for KeepDays days.
type Retention struct {
	KeepLast int
	KeepDays int
}

type backupScheduleWorker struct {
	river.WorkerDefaults[BackupScheduleArgs]
	s         *store.Store
	r         *Runner
	files     backupFiles
	interval  time.Duration
	retention Retention
	log       *slog.Logger
}

func (w *backupScheduleWorker) Timeout(*river.Job[BackupScheduleArgs]) time.Duration {
	return scheduleTimeout
}

func (w *backupScheduleWorker) Work(ctx context.Context, _ *river.Job[BackupScheduleArgs]) error {
	now := w.s.Now()
	// Half a tick of slack, so a backup taken a little after one tick is due
	// at the same tick a day later rather than drifting an hour each day.
	cutoff := now.Add(-w.interval + min(backupScheduleEvery, w.interval)/2)
	scheduled := 0
	for {
		due, err := w.s.BackupsDue(ctx, cutoff, 500)
		if err != nil {
			return err
		}
		if len(due) == 0 {
			break
		}
		round := scheduled
		for _, d := range due {
			err := w.s.InTx(ctx, func(tx *store.Tx) error {
				b, err := tx.RequestBackup(ctx, store.System, d, store.BackupScheduled)
				if err != nil {
					return err
				}
				return w.r.Enqueue(ctx, tx, BackupArgs{BackupID: b.ID})
			})
			var ce *store.ConflictError
			if errors.As(err, &ce) {
				continue // changed state meanwhile; the next tick looks again
			}
			if err != nil {
				return err
			}
			scheduled++
		}
		if len(due) < 500 || scheduled == round {
			break // the last page, or nothing could be scheduled: the next tick tries again
		}
	}
	if scheduled > 0 {
		w.log.Info("Scheduled backups", "devservers", scheduled)
	}
	removed, err := w.applyRetention(ctx, now)
	if removed > 0 {
		w.log.Info("Removed backups beyond retention", "backups", removed)
	}
	return err
}

// applyRetention removes the backups beyond retention: the row is marked
// deleted first, then the file goes.
func (w *backupScheduleWorker) applyRetention(ctx context.Context, now time.Time) (int, error) {
	ids, err := w.s.DevserversWithBackups(ctx, w.retention.KeepLast)
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, id := range ids {
		bs, err := w.s.Backups(ctx, store.BackupFilter{DevserverID: id, State: store.BackupDone, Limit: 100000})
		if err != nil {
			return removed, err
		}
		for _, b := range store.RetentionDrops(bs, now, w.retention.KeepLast, w.retention.KeepDays) {
			var deleted bool
			err := w.s.InTx(ctx, func(tx *store.Tx) error {
				var err error
				deleted, err = tx.DeleteBackup(ctx, store.System, b.ID, "retention")
				return err
			})
			if err != nil {
				return removed, err
			}
			if !deleted {
				continue
			}
			if err := w.files.remove(b); err != nil {
				w.log.Warn("Could not remove a deleted backup's file", "backup", b.ID, "error", err)
			}
			removed++
		}
	}
	return removed, nil
}

func (r Retention) withDefaults() Retention {
	if r == (Retention{}) {
		return Retention{KeepLast: DefaultBackupKeepLast, KeepDays: DefaultBackupKeepDays}
	}
	r.KeepLast = max(r.KeepLast, 1) // the newest backup is always kept
	r.KeepDays = max(r.KeepDays, 0)
	return r
}
