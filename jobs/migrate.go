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

// MigrateArgs moves a devserver to another flavour and/or region: backup,
// provision the target, restore, move the hostname, release the source.
type MigrateArgs struct {
	MigrationID int64 `json:"migration_id"`
}

// Kind names the job.
func (MigrateArgs) Kind() string { return "migrate_devserver" }

// InsertOpts: a failed step rolls back at once; attempts only cover the
// portal itself stopping mid-step, after which the job resumes at its step.
func (MigrateArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 5} }

const migrateTimeout = 30 * time.Minute

type migrateWorker struct {
	river.WorkerDefaults[MigrateArgs]
	s     *store.Store
	f     *fleet.Fleet
	files backupFiles
	log   *slog.Logger
}

func (w *migrateWorker) Timeout(*river.Job[MigrateArgs]) time.Duration { return migrateTimeout }

func (w *migrateWorker) NextRetry(job *river.Job[MigrateArgs]) time.Time { return backoff(job.Attempt) }

// migrationKey is the idempotency key of a migration's target instance.
func migrationKey(id int64) string { return "migration:" + strconv.FormatInt(id, 10) }

func (w *migrateWorker) Work(ctx context.Context, job *river.Job[MigrateArgs]) error {
	m, err := w.s.Migration(ctx, job.Args.MigrationID)
	if errors.Is(err, store.ErrNotFound) {
		return river.JobCancel(err)
	}
	if err != nil || m.State != "running" {
		return err
	}
	d, err := w.s.DevserverByID(ctx, m.DevserverID)
	if err != nil {
		return err
	}
	src, err := w.driver(ctx, m.FromHostID)
	if err != nil {
		return err
	}
	dstHost, err := w.s.Host(ctx, m.ToHostID)
	if err != nil {
		return err
	}
	dst, err := w.f.Driver(dstHost.Driver)
	if err != nil {
		return w.rollBack(ctx, job, m, dst, err)
	}
	flavor, err := w.s.Flavor(ctx, m.ToFlavor)
	if err != nil {
		return err
	}

	for m.Step != store.StepDone {
		var stepErr error
		switch m.Step {
		case store.StepBackup:
			stepErr = w.backup(ctx, &m, d)
		case store.StepProvision:
			stepErr = w.provision(ctx, &m, d, dst, dstHost, flavor)
		case store.StepRestore:
			stepErr = w.restore(ctx, &m, dst)
		case store.StepSwitch:
			stepErr = w.switchOver(ctx, &m, dst)
		case store.StepReleaseSource:
			if err := src.Destroy(ctx, m.FromInstanceID); err != nil {
				// The devserver already runs on its target; keep trying to
				// destroy the source before giving its capacity back.
				if job.Attempt < job.MaxAttempts {
					return fmt.Errorf("release source of %s: %w", d.Name, err)
				}
				// Giving up would leave the devserver migrating for ever
				// (nothing can release it then): keep trying, at most a
				// minute apart (a snooze costs no attempt), and say so.
				wait := min(time.Second<<min(job.Attempt-1, 6), time.Minute)
				w.log.Error("Could not destroy a migrated devserver's source; trying again", "devserver", d.Name, "instance", m.FromInstanceID, "wait", wait, "error", err)
				_ = w.s.SetProgress(ctx, d.ID, store.StateMigrating, 90,
					fmt.Sprintf("Step 5 of 5: releasing the source failed %d times; trying again every %s: %v", job.Attempt, wait, err))
				return river.JobSnooze(wait)
			}
			return w.s.InTx(ctx, func(tx *store.Tx) error {
				if err := tx.FinishMigration(ctx, m); err != nil {
					return err
				}
				// The target was restored from a backup: its authorized_keys
				// are as they were then; put today's back.
				if err := enqueueFromJob(ctx, tx, SyncKeysArgs{DevserverID: d.ID}); err != nil {
					return err
				}
				w.log.Info("Migrated devserver", "devserver", d.Name, "region", m.ToRegion, "flavor", m.ToFlavor)
				return completeTx(ctx, tx, job)
			})
		default:
			return fmt.Errorf("migration %d: unknown step %q", m.ID, m.Step)
		}
		if stepErr != nil {
			return w.rollBack(ctx, job, m, dst, stepErr)
		}
	}
	return nil
}

func (w *migrateWorker) driver(ctx context.Context, hostID int64) (fleet.Driver, error) {
	h, err := w.s.Host(ctx, hostID)
	if err != nil {
		return nil, err
	}
	return w.f.Driver(h.Driver)
}

// next records the step reached, with what the previous step produced.
func (w *migrateWorker) next(ctx context.Context, m *store.DevserverMigration, step string) error {
	m.Step = step
	return w.s.InTx(ctx, func(tx *store.Tx) error { return tx.MigrationStep(ctx, *m, step) })
}

func (w *migrateWorker) backup(ctx context.Context, m *store.DevserverMigration, d store.Devserver) error {
	if m.BackupID == nil {
		err := w.s.InTx(ctx, func(tx *store.Tx) error {
			b, err := tx.RequestBackup(ctx, store.System, d, store.BackupPreMigration)
			if err != nil {
				return err
			}
			m.BackupID = &b.ID
			return tx.MigrationStep(ctx, *m, store.StepBackup)
		})
		if err != nil {
			return err
		}
	}
	b, err := w.s.Backup(ctx, *m.BackupID)
	if err != nil {
		return err
	}
	if b.State != store.BackupDone {
		if err := takeBackup(ctx, w.s, w.f, w.files, b, d, nil); err != nil {
			return fmt.Errorf("backup: %w", err)
		}
	}
	return w.next(ctx, m, store.StepProvision)
}

func (w *migrateWorker) provision(ctx context.Context, m *store.DevserverMigration, d store.Devserver, dst fleet.Driver, host store.Host, f store.Flavor) error {
	inst, err := dst.Create(ctx, fleet.Spec{Key: migrationKey(m.ID), Name: d.Name, Host: host.Name, CPUs: f.CPUs, MemoryGB: f.MemoryGB, DiskGB: f.DiskGB, GPUs: f.GPUs})
	if err != nil {
		return fmt.Errorf("provision the target on %s: %w", host.Name, err)
	}
	m.ToInstanceID = inst.ID // recorded now, so a rollback finds it
	if err := w.s.InTx(ctx, func(tx *store.Tx) error { return tx.MigrationStep(ctx, *m, store.StepProvision) }); err != nil {
		return err
	}
	if inst, err = dst.Start(ctx, inst.ID); err != nil {
		return fmt.Errorf("start the target on %s: %w", host.Name, err)
	}
	m.ToAddress = inst.Address
	return w.next(ctx, m, store.StepRestore)
}

func (w *migrateWorker) restore(ctx context.Context, m *store.DevserverMigration, dst fleet.Driver) error {
	b, err := w.s.Backup(ctx, *m.BackupID)
	if err != nil {
		return err
	}
	if err := w.files.verify(b); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	file, err := w.files.open(b)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer file.Close()
	if err := dst.Restore(ctx, m.ToInstanceID, file); err != nil {
		return fmt.Errorf("restore onto the target: %w", err)
	}
	return w.next(ctx, m, store.StepSwitch)
}

// switchOver moves the hostname to the target, once the target answers as healthy.
func (w *migrateWorker) switchOver(ctx context.Context, m *store.DevserverMigration, dst fleet.Driver) error {
	h, err := dst.Health(ctx, m.ToInstanceID)
	if err != nil {
		return fmt.Errorf("check the target: %w", err)
	}
	if !h.OK {
		return fmt.Errorf("the target is not healthy: %s", h.Detail)
	}
	if err := w.s.InTx(ctx, func(tx *store.Tx) error { return tx.SwitchMigration(ctx, *m) }); err != nil {
		return err
	}
	m.Step = store.StepReleaseSource
	return nil
}

// rollBack destroys what the migration made and returns the devserver to
// its untouched source, saying why.
func (w *migrateWorker) rollBack(ctx context.Context, job *river.Job[MigrateArgs], m store.DevserverMigration, dst fleet.Driver, cause error) error {
	w.log.Warn("Migration failed; rolling back", "migration", m.ID, "step", m.Step, "error", cause)
	if m.ToInstanceID != "" && dst != nil {
		if err := dst.Destroy(ctx, m.ToInstanceID); err != nil {
			// Not rolled back until the target is gone: retry.
			return fmt.Errorf("roll back migration %d: destroy the target: %w (after: %v)", m.ID, err, cause)
		}
	}
	return w.s.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.RollBackMigration(ctx, m, cause); err != nil {
			return err
		}
		return completeTx(ctx, tx, job)
	})
}
