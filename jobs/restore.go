package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/riverqueue/river"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/store"
)

// RestoreArgs puts a backup back onto a devserver: verify the backup's file,
// take a pre_restore backup of the target, then replace the target's data.
type RestoreArgs struct {
	RestoreID int64 `json:"restore_id"`
}

// Kind names the job.
func (RestoreArgs) Kind() string { return "restore_backup" }

// InsertOpts retries fleet failures a few times before the restore fails.
func (RestoreArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 5} }

type restoreWorker struct {
	river.WorkerDefaults[RestoreArgs]
	s     *store.Store
	f     *fleet.Fleet
	files backupFiles
	log   *slog.Logger
}

func (w *restoreWorker) Timeout(*river.Job[RestoreArgs]) time.Duration { return restoreTimeout }

func (w *restoreWorker) NextRetry(job *river.Job[RestoreArgs]) time.Time { return backoff(job.Attempt) }

func (w *restoreWorker) Work(ctx context.Context, job *river.Job[RestoreArgs]) error {
	r, err := w.s.RestoreByID(ctx, job.Args.RestoreID)
	if errors.Is(err, store.ErrNotFound) {
		return river.JobCancel(err)
	}
	if err != nil {
		return err
	}
	if !r.InFlight() {
		return nil
	}
	b, err := w.s.Backup(ctx, r.BackupID)
	if err != nil {
		return err
	}
	if !b.Restorable() {
		return w.finish(ctx, job, r, fmt.Errorf("backup %d is %s and can no longer be restored", b.ID, b.State))
	}
	d, err := w.s.DevserverByID(ctx, r.DevserverID)
	if err != nil {
		return err
	}
	if d.State != store.StateReady || d.InstanceID == "" {
		return w.finish(ctx, job, r, fmt.Errorf("devserver %s is %s; a backup can only be restored onto a ready devserver", d.Name, d.State))
	}
	drv, err := driverOf(ctx, w.s, w.f, d)
	if err != nil {
		return w.retryOrFail(ctx, job, r, err)
	}

	// 1. The backup's file must be what was recorded, byte for byte.
	if err := w.step(ctx, r.ID, store.RestoreStepVerify, nil); err != nil {
		return err
	}
	if err := w.files.verify(b); err != nil {
		return w.finish(ctx, job, r, err)
	}

	// 2. A pre_restore backup of the target, so the restore can be undone.
	pre, err := w.preRestoreBackup(ctx, r, d)
	if err != nil {
		return err
	}
	switch pre.State {
	case store.BackupPending:
		if err := takeBackup(ctx, w.s, w.f, w.files, pre, d, nil); err != nil {
			if job.Attempt < job.MaxAttempts {
				return err
			}
			return w.s.InTx(ctx, func(tx *store.Tx) error {
				if err := tx.FailBackup(ctx, pre.ID, err.Error()); err != nil {
					return err
				}
				return w.finishTx(ctx, tx, job, r, fmt.Errorf("the backup of %s before restoring failed, so nothing was changed: %w", d.Name, err))
			})
		}
	case store.BackupDone:
	default:
		return w.finish(ctx, job, r, fmt.Errorf("the backup of %s before restoring is %s, so nothing was changed", d.Name, pre.State))
	}

	// 3. Replace the target's data.
	if err := w.step(ctx, r.ID, store.RestoreStepRestore, nil); err != nil {
		return err
	}
	f, err := w.files.open(b)
	if err != nil {
		return w.finish(ctx, job, r, err)
	}
	err = drv.Restore(ctx, d.InstanceID, f)
	f.Close()
	if err != nil {
		return w.retryOrFail(ctx, job, r, fmt.Errorf("restore onto %s: %w", d.Name, err))
	}
	w.log.Info("Restored backup", "backup", b.ID, "devserver", d.Name, "attempt", job.Attempt)
	return w.finish(ctx, job, r, nil)
}

func (w *restoreWorker) step(ctx context.Context, id int64, step string, pre *int64) error {
	return w.s.InTx(ctx, func(tx *store.Tx) error { return tx.SetRestoreStep(ctx, id, step, pre) })
}

// preRestoreBackup returns the restore's backup of its target, recording it
// the first time, so a retried job takes it only once.
func (w *restoreWorker) preRestoreBackup(ctx context.Context, r store.Restore, d store.Devserver) (store.Backup, error) {
	if r.PreBackupID != nil {
		if err := w.step(ctx, r.ID, store.RestoreStepPreBackup, nil); err != nil {
			return store.Backup{}, err
		}
		return w.s.Backup(ctx, *r.PreBackupID)
	}
	var b store.Backup
	err := w.s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if b, err = tx.RequestBackup(ctx, store.System, d, store.BackupPreRestore); err != nil {
			return err
		}
		return tx.SetRestoreStep(ctx, r.ID, store.RestoreStepPreBackup, &b.ID)
	})
	return b, err
}

func (w *restoreWorker) retryOrFail(ctx context.Context, job *river.Job[RestoreArgs], r store.Restore, err error) error {
	if job.Attempt < job.MaxAttempts {
		return err
	}
	return w.finish(ctx, job, r, err)
}

// finish records the restore's outcome (failed when cause is not nil), tells
// whoever owns the target, and completes the job in the same transaction.
func (w *restoreWorker) finish(ctx context.Context, job *river.Job[RestoreArgs], r store.Restore, cause error) error {
	return w.s.InTx(ctx, func(tx *store.Tx) error { return w.finishTx(ctx, tx, job, r, cause) })
}

func (w *restoreWorker) finishTx(ctx context.Context, tx *store.Tx, job *river.Job[RestoreArgs], r store.Restore, cause error) error {
	reason := ""
	n := store.Notification{Kind: "restore", IdempotencyKey: "restore:" + strconv.FormatInt(r.ID, 10), Link: "/devservers/" + r.Devserver,
		Title: fmt.Sprintf("Backup %d of %s was restored onto %s", r.BackupID, r.Source, r.Devserver),
		Body:  "Its data from before the restore is kept as a pre_restore backup.",
	}
	if cause != nil {
		reason = cause.Error()
		w.log.Warn("Restore failed", "restore", r.ID, "devserver", r.Devserver, "attempts", job.Attempt, "error", cause)
		n.Title = fmt.Sprintf("Restoring backup %d onto %s failed", r.BackupID, r.Devserver)
		n.Body = reason
	}
	if err := tx.FinishRestore(ctx, r.ID, reason); err != nil {
		return err
	}
	d, err := tx.DevserverByID(ctx, r.DevserverID)
	if err != nil {
		return err
	}
	if d.OwnerID != 0 {
		n.UserID = d.OwnerID
		if _, err := tx.Notify(ctx, n); err != nil {
			return err
		}
	}
	// The restored home brings back the authorized_keys of its day: put
	// today's owner and collaborators back, and nobody else.
	if err := enqueueFromJob(ctx, tx, SyncKeysArgs{DevserverID: d.ID}); err != nil {
		return err
	}
	return completeTx(ctx, tx, job)
}
