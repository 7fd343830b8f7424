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

// ProvisionArgs asks the fleet to build a reserved devserver.
type ProvisionArgs struct {
	DevserverID int64 `json:"devserver_id"`
}

// Kind names the job.
func (ProvisionArgs) Kind() string { return "provision_devserver" }

// InsertOpts limits retries: a fleet that fails five times in a row is not
// going to succeed soon, and the owner should know.
func (ProvisionArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 5} }

type provisionWorker struct {
	river.WorkerDefaults[ProvisionArgs]
	s   *store.Store
	f   *fleet.Fleet
	log *slog.Logger
}

func (w *provisionWorker) Timeout(*river.Job[ProvisionArgs]) time.Duration { return provisionTimeout }

func (w *provisionWorker) NextRetry(job *river.Job[ProvisionArgs]) time.Time {
	return backoff(job.Attempt)
}

// instanceKey is the idempotency key of a devserver's instance: a retried
// job finds the instance it already made.
func instanceKey(devserverID int64) string {
	return "devserver:" + strconv.FormatInt(devserverID, 10)
}

func (w *provisionWorker) Work(ctx context.Context, job *river.Job[ProvisionArgs]) error {
	id := job.Args.DevserverID
	d, err := w.s.DevserverByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return river.JobCancel(err)
	}
	if err != nil {
		return err
	}
	if d.State != store.StateProvisioning {
		if job.Attempt > 1 && d.InstanceID != "" && (d.State == store.StateReleased || d.State == store.StateFailed) {
			// Released meanwhile, after an earlier attempt made an instance
			// it could not remove: nobody else removes it (destroying is
			// idempotent).
			return w.destroyLeftover(ctx, d)
		}
		return nil // released meanwhile, or already done
	}
	host, err := w.s.Host(ctx, d.HostID)
	if err != nil {
		return err
	}
	flavor, err := w.s.Flavor(ctx, d.Flavor)
	if err != nil {
		return err
	}
	drv, err := w.f.Driver(host.Driver)
	if err != nil {
		return w.fail(ctx, job, d, err)
	}

	if err := w.s.SetProgress(ctx, id, store.StateProvisioning, 10, "Creating on "+host.Name); err != nil {
		return err
	}
	inst, err := drv.Create(ctx, fleet.Spec{
		Key: instanceKey(id), Name: d.Name, Host: host.Name,
		CPUs: flavor.CPUs, MemoryGB: flavor.MemoryGB, DiskGB: flavor.DiskGB, GPUs: flavor.GPUs,
	})
	if err != nil {
		return w.retryOrFail(ctx, job, d, host.Name, fmt.Errorf("create: %w", err))
	}
	recorded, err := w.s.SetInstance(ctx, id, inst.ID)
	if err != nil {
		return err
	}
	if !recorded {
		// The owner released it while it was being created; nobody else knows
		// this instance, so it is ours to remove.
		w.log.Info("Destroying instance of a devserver released while provisioning", "devserver", d.Name, "instance", inst.ID)
		return drv.Destroy(ctx, inst.ID)
	}
	if err := w.s.SetProgress(ctx, id, store.StateProvisioning, 60, "Starting"); err != nil {
		return err
	}
	inst, err = drv.Start(ctx, inst.ID)
	if err != nil {
		return w.retryOrFail(ctx, job, d, host.Name, fmt.Errorf("start: %w", err))
	}
	return w.s.InTx(ctx, func(tx *store.Tx) error {
		ok, err := tx.MarkReady(ctx, id, inst.ID, inst.Address)
		if err != nil {
			return err
		}
		if ok {
			w.log.Info("Provisioned devserver", "devserver", d.Name, "host", host.Name, "attempt", job.Attempt)
			// Put the SSH keys of the owner and sharees on it.
			if err := enqueueFromJob(ctx, tx, SyncKeysArgs{DevserverID: id}); err != nil {
				return err
			}
		}
		return completeTx(ctx, tx, job)
	})
}

// destroyLeftover removes the instance of a devserver that ended while it
// was being provisioned.
func (w *provisionWorker) destroyLeftover(ctx context.Context, d store.Devserver) error {
	host, err := w.s.Host(ctx, d.HostID)
	if err != nil {
		return err
	}
	drv, err := w.f.Driver(host.Driver)
	if err != nil {
		return err
	}
	w.log.Info("Destroying instance of a devserver released while provisioning", "devserver", d.Name, "instance", d.InstanceID)
	return drv.Destroy(ctx, d.InstanceID)
}

// hostWaitLimit is how long provisioning waits for a host that does not answer.
const hostWaitLimit = 6 * time.Hour

// hostWait is the pause before asking a host that did not answer again:
// half the time waited so far, from 2 s up to a minute.
func hostWait(waited time.Duration) time.Duration {
	return min(max(waited/2, 2*time.Second), time.Minute)
}

// retryOrFail retries a fleet error until the last attempt, then fails the
// devserver. A host that does not answer is waited for instead: the job
// snoozes (which costs no attempt) with a growing pause, and the devserver
// says what it waits for; a retried Create finds what an earlier one made.
func (w *provisionWorker) retryOrFail(ctx context.Context, job *river.Job[ProvisionArgs], d store.Devserver, hostName string, err error) error {
	if waited := time.Since(job.CreatedAt); errors.Is(err, fleet.ErrUnreachable) && waited < hostWaitLimit {
		w.log.Warn("Waiting for an unreachable host", "devserver", d.Name, "host", hostName, "waited", waited.Round(time.Second), "error", err)
		_ = w.s.SetProgress(ctx, d.ID, store.StateProvisioning, 5, fmt.Sprintf("Waiting for its host %s: %v", hostName, err))
		return river.JobSnooze(hostWait(waited))
	}
	if job.Attempt < job.MaxAttempts {
		_ = w.s.SetProgress(ctx, d.ID, store.StateProvisioning, 5, fmt.Sprintf("Attempt %d failed, retrying: %v", job.Attempt, err))
		return err
	}
	return w.fail(ctx, job, d, err)
}

// fail records the devserver as failed, gives back its capacity, and
// completes the job in the same transaction: the failure is the job's result.
func (w *provisionWorker) fail(ctx context.Context, job *river.Job[ProvisionArgs], d store.Devserver, cause error) error {
	w.log.Warn("Provisioning failed", "devserver", d.Name, "attempts", job.Attempt, "error", cause)
	if fresh, err := w.s.DevserverByID(ctx, d.ID); err == nil && fresh.InstanceID != "" {
		if host, err := w.s.Host(ctx, d.HostID); err == nil {
			if drv, err := w.f.Driver(host.Driver); err == nil {
				if err := drv.Destroy(ctx, fresh.InstanceID); err != nil {
					// Failing now would give the capacity back while the
					// instance still runs on the host: wait (a snooze costs
					// no attempt) and say so. The next run finds what was
					// made, and fails again or finishes it.
					_ = w.s.SetProgress(ctx, d.ID, store.StateProvisioning, 5,
						fmt.Sprintf("Provisioning failed (%v); removing what was made on %s failed too, trying again: %v", cause, host.Name, err))
					return river.JobSnooze(hostWait(time.Since(job.CreatedAt)))
				}
			}
		}
	}
	return w.s.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.MarkFailed(ctx, d.ID, "Provisioning failed: "+cause.Error()); err != nil {
			return err
		}
		return completeTx(ctx, tx, job)
	})
}
