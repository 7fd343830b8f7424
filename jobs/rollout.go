package jobs

import (
	"context"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/devport/devport/store"
)

// RolloutArgs drives a rolling feature update: batch by batch, each batch
// once the previous one has finished.
type RolloutArgs struct {
	RolloutID int64 `json:"rollout_id"`
}

// Kind names the job.
func (RolloutArgs) Kind() string { return "feature_rollout" }

type rolloutWorker struct {
	river.WorkerDefaults[RolloutArgs]
	s   *store.Store
	log *slog.Logger
	// every is how often the rollout looks at its batch.
	every time.Duration
}

func (w *rolloutWorker) Timeout(*river.Job[RolloutArgs]) time.Duration { return time.Minute }

func (w *rolloutWorker) Work(ctx context.Context, job *river.Job[RolloutArgs]) error {
	var running bool
	err := w.s.InTx(ctx, func(tx *store.Tx) error {
		r, batch, err := tx.NextRolloutBatch(ctx, job.Args.RolloutID)
		if err != nil {
			return err
		}
		for _, id := range batch {
			if err := enqueueFromJob(ctx, tx, FeatureArgs{DevserverID: id, Feature: r.Feature}); err != nil {
				return err
			}
		}
		if len(batch) > 0 {
			w.log.Info("Rolling update batch", "feature", r.Feature, "version", r.ToVersion, "devservers", len(batch))
		}
		if running = r.State == "running"; !running {
			return completeTx(ctx, tx, job)
		}
		return nil
	})
	if err != nil || !running {
		return err
	}
	return river.JobSnooze(w.every)
}
