package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/store"
)

// ProvisionContainerArgs asks the fleet to build a container: for a pool,
// or cold for a request the pool could not serve.
type ProvisionContainerArgs struct {
	ContainerID int64 `json:"container_id"`
}

// Kind names the job.
func (ProvisionContainerArgs) Kind() string { return "provision_container" }

// InsertOpts: a container that fails five times is not going to be built soon.
func (ProvisionContainerArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 5} }

// ContainerWork is the work a container needs after a request or a fresh
// one, to enqueue in the same transaction: building when it was not served
// from a pool, setup when features or one-offs are to be put on it, and a
// refill of the pool it was taken from.
func ContainerWork(c store.Container) []Args {
	var out []Args
	switch {
	case c.State == store.ContainerProvisioning:
		out = append(out, ProvisionContainerArgs{ContainerID: c.ID})
	case c.State == store.ContainerReady && c.NeedsSetup():
		out = append(out, ContainerSetupArgs{ContainerID: c.ID})
	}
	if c.FromPool() {
		out = append(out, RefillContainerPoolArgs{Region: c.Region, Type: c.Type, Profile: c.Profile})
	}
	return out
}

type provisionContainerWorker struct {
	river.WorkerDefaults[ProvisionContainerArgs]
	s   *store.Store
	f   *fleet.Fleet
	log *slog.Logger
}

func (w *provisionContainerWorker) Timeout(*river.Job[ProvisionContainerArgs]) time.Duration {
	return provisionTimeout
}

func (w *provisionContainerWorker) NextRetry(job *river.Job[ProvisionContainerArgs]) time.Time {
	return backoff(job.Attempt)
}

// containerKey is the idempotency key of a container's instance.
func containerKey(id int64) string { return "container:" + strconv.FormatInt(id, 10) }

// stackManifest is what a container knows of its type, written at
// .devport/stack.json when it is built.
type stackManifest struct {
	Type    string            `json:"type"`
	Stack   string            `json:"stack"`
	Profile string            `json:"profile"`
	Image   string            `json:"image"`
	Tools   []store.Versioned `json:"tools"`
	Repos   []store.Versioned `json:"repos"`
	BuiltAt time.Time         `json:"built_at"`
}

// StackManifestPath is where a container's manifest is, relative to its home.
const StackManifestPath = ".devport/stack.json"

// Work builds the container. An error on the last attempt fails it (and
// gives its capacity back), whatever the error: a container is never left
// provisioning for ever.
func (w *provisionContainerWorker) Work(ctx context.Context, job *river.Job[ProvisionContainerArgs]) error {
	err := w.work(ctx, job)
	var snooze *rivertype.JobSnoozeError
	var cancel *rivertype.JobCancelError
	if err == nil || job.Attempt < job.MaxAttempts || errors.As(err, &snooze) || errors.As(err, &cancel) {
		return err
	}
	c, lerr := w.s.ContainerByID(ctx, job.Args.ContainerID)
	if lerr != nil || c.State != store.ContainerProvisioning {
		return err
	}
	drv, _ := w.f.Driver(c.Driver)
	return w.fail(ctx, job, c, drv, err)
}

func (w *provisionContainerWorker) work(ctx context.Context, job *river.Job[ProvisionContainerArgs]) error {
	c, err := w.s.ContainerByID(ctx, job.Args.ContainerID)
	if errors.Is(err, store.ErrNotFound) {
		return river.JobCancel(err)
	}
	if err != nil {
		return err
	}
	if c.State != store.ContainerProvisioning {
		if job.Attempt > 1 && c.InstanceID != "" && (c.State == store.ContainerEnded || c.State == store.ContainerFailed) {
			// Ended while an earlier attempt was creating it, and that
			// attempt could not remove what it made: nobody else will
			// (destroying what is gone succeeds).
			drv, err := w.f.Driver(c.Driver)
			if err != nil {
				return err
			}
			w.log.Info("Destroying the instance of a container ended while it was built", "container", c.Name, "instance", c.InstanceID)
			return drv.Destroy(ctx, c.InstanceID)
		}
		return nil // ended meanwhile: its end removes what was made
	}
	drv, err := w.f.Driver(c.Driver)
	if err != nil {
		return w.fail(ctx, job, c, nil, err)
	}
	t, err := w.s.ContainerType(ctx, c.Type)
	if err != nil {
		return err
	}
	_ = w.s.SetContainerProgress(ctx, c.ID, store.ContainerProvisioning, 10, "Creating on "+c.Host)
	inst, err := drv.Create(ctx, fleet.Spec{
		Key: containerKey(c.ID), Name: c.Name, Host: c.Host, Image: c.Image,
		CPUs: c.CPUs, MemoryGB: c.MemoryGB, DiskGB: c.DiskGB, GPUs: c.GPUs,
	})
	if err != nil {
		return w.retryOrFail(ctx, job, c, drv, fmt.Errorf("create: %w", err))
	}
	recorded, err := w.s.SetContainerInstance(ctx, c.ID, inst.ID)
	if err != nil {
		return err
	}
	if !recorded {
		// Ended while it was being created; its end may not have known the
		// instance, so it is ours to remove.
		w.log.Info("Destroying a container ended while it was built", "container", c.Name, "instance", inst.ID)
		return drv.Destroy(ctx, inst.ID)
	}
	_ = w.s.SetContainerProgress(ctx, c.ID, store.ContainerProvisioning, 50, "Starting")
	inst, err = drv.Start(ctx, inst.ID)
	if err != nil {
		return w.retryOrFail(ctx, job, c, drv, fmt.Errorf("start: %w", err))
	}
	_ = w.s.SetContainerProgress(ctx, c.ID, store.ContainerProvisioning, 80, "Setting up the "+t.Name+" stack")
	manifest, _ := json.MarshalIndent(stackManifest{
		Type: t.Name, Stack: t.Stack, Profile: c.Profile, Image: c.Image, Tools: t.Tools, Repos: t.Repos, BuiltAt: w.s.Now(),
	}, "", "  ")
	if err := execOK(ctx, drv, inst.ID, fleet.WriteFileCmd(StackManifestPath, string(manifest)+"\n")); err != nil {
		return w.retryOrFail(ctx, job, c, drv, fmt.Errorf("set up the stack: %w", err))
	}
	return w.s.InTx(ctx, func(tx *store.Tx) error {
		ok, err := tx.MarkContainerReady(ctx, c.ID, inst.Address)
		if err != nil {
			return err
		}
		if ok {
			w.log.Info("Built container", "container", c.Name, "type", c.Type, "profile", c.Profile, "host", c.Host, "pooled", c.Pooled())
			if c.NeedsSetup() {
				if err := enqueueFromJob(ctx, tx, ContainerSetupArgs{ContainerID: c.ID}); err != nil {
					return err
				}
			}
		}
		return completeTx(ctx, tx, job)
	})
}

// retryOrFail retries a fleet error until the last attempt, then fails the
// container; a host that does not answer is waited for (a snooze costs no
// attempt) for as long as provisioning waits for devservers.
func (w *provisionContainerWorker) retryOrFail(ctx context.Context, job *river.Job[ProvisionContainerArgs], c store.Container, drv fleet.Driver, err error) error {
	if waited := time.Since(job.CreatedAt); errors.Is(err, fleet.ErrUnreachable) && waited < hostWaitLimit {
		_ = w.s.SetContainerProgress(ctx, c.ID, store.ContainerProvisioning, 5, fmt.Sprintf("Waiting for its host %s: %v", c.Host, err))
		return river.JobSnooze(hostWait(waited))
	}
	if job.Attempt < job.MaxAttempts {
		_ = w.s.SetContainerProgress(ctx, c.ID, store.ContainerProvisioning, 5, fmt.Sprintf("Attempt %d failed, retrying: %v", job.Attempt, err))
		return err
	}
	return w.fail(ctx, job, c, drv, err)
}

// fail removes what was made, then records the container as failed and
// gives its capacity back, completing the job in the same transaction.
func (w *provisionContainerWorker) fail(ctx context.Context, job *river.Job[ProvisionContainerArgs], c store.Container, drv fleet.Driver, cause error) error {
	w.log.Warn("Building a container failed", "container", c.Name, "attempts", job.Attempt, "error", cause)
	if fresh, err := w.s.ContainerByID(ctx, c.ID); err == nil && fresh.InstanceID != "" && drv != nil {
		if err := drv.Destroy(ctx, fresh.InstanceID); err != nil {
			_ = w.s.SetContainerProgress(ctx, c.ID, store.ContainerProvisioning, 5,
				fmt.Sprintf("Building failed (%v); removing what was made on %s failed too, trying again: %v", cause, c.Host, err))
			return river.JobSnooze(hostWait(time.Since(job.CreatedAt)))
		}
	}
	return w.s.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.MarkContainerFailed(ctx, c.ID, "Building it failed: "+cause.Error()+"."); err != nil {
			return err
		}
		return completeTx(ctx, tx, job)
	})
}

// EndContainerArgs asks the fleet to destroy an ending container; its
// capacity is given back once the instance is gone.
type EndContainerArgs struct {
	ContainerID int64 `json:"container_id"`
}

// Kind names the job.
func (EndContainerArgs) Kind() string { return "end_container" }

// InsertOpts: an end keeps trying; capacity comes back only once it is done.
func (EndContainerArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 10} }

type endContainerWorker struct {
	river.WorkerDefaults[EndContainerArgs]
	s   *store.Store
	f   *fleet.Fleet
	log *slog.Logger
}

func (w *endContainerWorker) Timeout(*river.Job[EndContainerArgs]) time.Duration {
	return releaseTimeout
}

func (w *endContainerWorker) NextRetry(job *river.Job[EndContainerArgs]) time.Time {
	return backoff(job.Attempt)
}

func (w *endContainerWorker) Work(ctx context.Context, job *river.Job[EndContainerArgs]) error {
	c, err := w.s.ContainerByID(ctx, job.Args.ContainerID)
	if errors.Is(err, store.ErrNotFound) {
		return river.JobCancel(err)
	}
	if err != nil {
		return err
	}
	if c.State != store.ContainerEnding {
		return nil
	}
	if c.InstanceID != "" {
		drv, err := w.f.Driver(c.Driver)
		if err != nil {
			return err
		}
		_ = w.s.SetContainerProgress(ctx, c.ID, store.ContainerEnding, 40, "Destroying on "+c.Host)
		if err := drv.Destroy(ctx, c.InstanceID); err != nil {
			wait := min(time.Second<<min(job.Attempt-1, 6), time.Minute)
			_ = w.s.SetContainerProgress(ctx, c.ID, store.ContainerEnding, 20, fmt.Sprintf("Destroying on %s failed, trying again: %v", c.Host, err))
			if job.Attempt < job.MaxAttempts {
				return fmt.Errorf("destroy %s: %w", c.Name, err)
			}
			return river.JobSnooze(wait)
		}
	}
	return w.s.InTx(ctx, func(tx *store.Tx) error {
		ended, err := tx.MarkContainerEnded(ctx, c.ID)
		if err != nil {
			return err
		}
		if ended {
			w.log.Info("Ended container", "container", c.Name, "reason", c.EndReason)
		}
		return completeTx(ctx, tx, job)
	})
}

// ContainerSetupArgs puts a container's features and its owner's one-offs on it.
type ContainerSetupArgs struct {
	ContainerID int64 `json:"container_id"`
}

// Kind names the job.
func (ContainerSetupArgs) Kind() string { return "setup_container" }

// InsertOpts retries a fleet that does not answer a few times.
func (ContainerSetupArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 4} }

type containerSetupWorker struct {
	river.WorkerDefaults[ContainerSetupArgs]
	s   *store.Store
	f   *fleet.Fleet
	log *slog.Logger
}

func (w *containerSetupWorker) Timeout(*river.Job[ContainerSetupArgs]) time.Duration {
	return featureTimeout
}

func (w *containerSetupWorker) NextRetry(job *river.Job[ContainerSetupArgs]) time.Time {
	return backoff(job.Attempt)
}

func (w *containerSetupWorker) Work(ctx context.Context, job *river.Job[ContainerSetupArgs]) error {
	c, err := w.s.ContainerByID(ctx, job.Args.ContainerID)
	if errors.Is(err, store.ErrNotFound) {
		return river.JobCancel(err)
	}
	if err != nil {
		return err
	}
	switch {
	case c.State == store.ContainerProvisioning:
		return river.JobSnooze(waitForReady)
	case c.State != store.ContainerReady || !c.NeedsSetup():
		return nil
	}
	drv, err := w.f.Driver(c.Driver)
	if err != nil {
		return err
	}
	failed := map[string]string{}
	for _, f := range c.Features {
		if f.State != "pending" {
			continue
		}
		if err := execOK(ctx, drv, c.InstanceID, fleet.WriteFileCmd(featurePath(f.Feature), f.Feature+" "+f.Version+"\n")); err != nil {
			if job.Attempt < job.MaxAttempts {
				return fmt.Errorf("install %s: %w", f.Feature, err)
			}
			failed[f.Feature] = err.Error()
		}
	}
	var oneoffs error
	if c.OwnerID != 0 {
		o, err := w.s.Oneoffs(ctx, c.OwnerID)
		if err != nil {
			return err
		}
		if !o.Empty() {
			for _, cmd := range OneoffCommands(o) {
				if oneoffs = execOK(ctx, drv, c.InstanceID, cmd); oneoffs != nil {
					break
				}
			}
		}
		if oneoffs != nil && job.Attempt < job.MaxAttempts {
			return fmt.Errorf("one-offs: %w", oneoffs)
		}
	}
	return w.s.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.FinishContainerSetup(ctx, c.ID, failed, oneoffs); err != nil {
			return err
		}
		return completeTx(ctx, tx, job)
	})
}
