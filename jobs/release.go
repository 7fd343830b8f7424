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

// ReleaseArgs asks the fleet to destroy a released devserver and reclaim its capacity.
type ReleaseArgs struct {
	DevserverID int64 `json:"devserver_id"`
	// BackupKind is the kind of the backup taken before the instance is
	// destroyed: pre_release (the default) or final (at lease expiry).
	BackupKind string `json:"backup_kind,omitempty"`
}

// Kind names the job.
func (ReleaseArgs) Kind() string { return "release_devserver" }

// InsertOpts lets a release keep trying for a while: capacity is only given
// back once the fleet has destroyed the instance.
func (ReleaseArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 10} }

type releaseWorker struct {
	river.WorkerDefaults[ReleaseArgs]
	s     *store.Store
	f     *fleet.Fleet
	files backupFiles
	log   *slog.Logger
}

func (w *releaseWorker) Timeout(*river.Job[ReleaseArgs]) time.Duration { return releaseTimeout }

func (w *releaseWorker) NextRetry(job *river.Job[ReleaseArgs]) time.Time { return backoff(job.Attempt) }

func (w *releaseWorker) Work(ctx context.Context, job *river.Job[ReleaseArgs]) error {
	d, err := w.s.DevserverByID(ctx, job.Args.DevserverID)
	if errors.Is(err, store.ErrNotFound) {
		return river.JobCancel(err)
	}
	if err != nil {
		return err
	}
	if d.State != store.StateReleasing {
		return nil
	}
	if d.InstanceID != "" {
		host, err := w.s.Host(ctx, d.HostID)
		if err != nil {
			return err
		}
		drv, err := w.f.Driver(host.Driver)
		if err != nil {
			return err
		}
		if err := w.backUp(ctx, job, d); err != nil {
			return err
		}
		if err := w.s.SetProgress(ctx, d.ID, store.StateReleasing, 40, "Destroying on "+host.Name); err != nil {
			return err
		}
		if err := drv.Destroy(ctx, d.InstanceID); err != nil {
			if job.Attempt < job.MaxAttempts {
				_ = w.s.SetProgress(ctx, d.ID, store.StateReleasing, 20, fmt.Sprintf("Attempt %d to destroy failed, retrying: %v", job.Attempt, err))
				return fmt.Errorf("destroy %s: %w", d.Name, err)
			}
			// The capacity is only given back once the instance is gone, and
			// nothing else would ever release it: keep trying, at most a
			// minute apart (a snooze costs no attempt), and say so.
			wait := min(time.Second<<min(job.Attempt-1, 6), time.Minute)
			_ = w.s.SetProgress(ctx, d.ID, store.StateReleasing, 20, fmt.Sprintf("Destroying on %s failed %d times; trying again every %s: %v", host.Name, job.Attempt, wait, err))
			return river.JobSnooze(wait)
		}
	}
	return w.s.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.MarkReleased(ctx, d.ID); err != nil {
			return err
		}
		w.log.Info("Released devserver", "devserver", d.Name)
		return completeTx(ctx, tx, job)
	})
}

// releaseBackupAttempts is how many attempts of a release try to take its
// backup; after that the release goes ahead and the backup is recorded as
// failed, so a broken backup cannot hold capacity forever.
const releaseBackupAttempts = 5

// backUp takes the release's backup (pre_release, or final at lease expiry)
// of a devserver that was ever ready, once: a retried job finds the backup
// it recorded.
func (w *releaseWorker) backUp(ctx context.Context, job *river.Job[ReleaseArgs], d store.Devserver) error {
	if d.OwnerID == 0 || d.ReadyAt == nil || d.InstanceID == "" {
		return nil // a pooled or never-ready devserver holds nobody's data
	}
	if w.files.dir == "" {
		w.log.Warn("Releasing without a backup: no backup directory is configured", "devserver", d.Name)
		return nil
	}
	kind := job.Args.BackupKind
	if kind != store.BackupFinal {
		kind = store.BackupPreRelease
	}
	var b store.Backup
	err := w.s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		b, err = tx.ReleaseBackup(ctx, d.ID)
		if errors.Is(err, store.ErrNotFound) {
			b, err = tx.RequestBackup(ctx, store.System, d, kind)
		}
		return err
	})
	if err != nil || b.State != store.BackupPending {
		return err
	}
	if err := w.s.SetProgress(ctx, d.ID, store.StateReleasing, 20, "Backing up before release"); err != nil {
		return err
	}
	err = takeBackup(ctx, w.s, w.f, w.files, b, d, nil)
	if err == nil {
		return nil
	}
	if job.Attempt < min(releaseBackupAttempts, job.MaxAttempts) {
		_ = w.s.SetProgress(ctx, d.ID, store.StateReleasing, 10, fmt.Sprintf("Attempt %d to back up before release failed, retrying: %v", job.Attempt, err))
		return err
	}
	w.log.Warn("Releasing without a backup: the backup failed", "devserver", d.Name, "attempts", job.Attempt, "error", err)
	return w.s.InTx(ctx, func(tx *store.Tx) error {
		return tx.FailBackup(ctx, b.ID, err.Error()+" (released without it after "+strconv.Itoa(job.Attempt)+" attempts)")
	})
}
