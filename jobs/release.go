package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/store"
)

// ReleaseArgs asks the fleet to destroy a released devserver and reclaim its capacity.
type ReleaseArgs struct {
	DevserverID int64 `json:"devserver_id"`
}

// Kind names the job.
func (ReleaseArgs) Kind() string { return "release_devserver" }

// InsertOpts lets a release keep trying for a while: capacity is only given
// back once the fleet has destroyed the instance.
func (ReleaseArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 10} }

type releaseWorker struct {
	river.WorkerDefaults[ReleaseArgs]
	s   *store.Store
	f   *fleet.Fleet
	log *slog.Logger
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
		if err := w.s.SetProgress(ctx, d.ID, store.StateReleasing, 40, "Destroying on "+host.Name); err != nil {
			return err
		}
		if err := drv.Destroy(ctx, d.InstanceID); err != nil {
			_ = w.s.SetProgress(ctx, d.ID, store.StateReleasing, 20, fmt.Sprintf("Attempt %d to destroy failed, retrying: %v", job.Attempt, err))
			return fmt.Errorf("destroy %s: %w", d.Name, err)
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
