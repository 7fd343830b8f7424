package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/devport/devport/store"
)

// poolRefillTimeout bounds one refill of every pool.
const poolRefillTimeout = time.Minute

// PoolRefillArgs tops up every pool to its target, within capacity.
type PoolRefillArgs struct{}

// Kind names the job.
func (PoolRefillArgs) Kind() string { return "refill_pools" }

// InsertOpts: a refill that fails is simply done again at the next tick.
func (PoolRefillArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 1} }

// poolRefillJob is the periodic refill, every interval and once at start.
func poolRefillJob(interval time.Duration) *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(interval), func() (river.JobArgs, *river.InsertOpts) {
		return PoolRefillArgs{}, nil
	}, &river.PeriodicJobOpts{RunOnStart: true})
}

// enqueuer inserts a job in the transaction of the change that needs it.
type enqueuer interface {
	Enqueue(ctx context.Context, tx *store.Tx, args river.JobArgs) error
}

type poolRefillWorker struct {
	river.WorkerDefaults[PoolRefillArgs]
	s   *store.Store
	q   enqueuer // the runner, known once it exists
	log *slog.Logger
}

func (w *poolRefillWorker) Timeout(*river.Job[PoolRefillArgs]) time.Duration {
	return poolRefillTimeout
}

func (w *poolRefillWorker) Work(ctx context.Context, _ *river.Job[PoolRefillArgs]) error {
	_, err := RefillPools(ctx, w.s, w.q, w.log)
	return err
}

// RefillPools tops up every pool with a target: each pool in its own write
// transaction that counts what the pool has, records the devservers it lacks
// (as far as capacity allows) and enqueues their provisioning. It returns how
// many devservers it started building. Two refills at once never over-fill:
// the count and the new devservers are in one write transaction.
func RefillPools(ctx context.Context, s *store.Store, q enqueuer, log *slog.Logger) (int, error) {
	pools, err := s.PoolsToFill(ctx)
	if err != nil {
		return 0, err
	}
	started := 0
	var errs []error
	for _, p := range pools {
		var made []store.Devserver
		err := s.InTx(ctx, func(tx *store.Tx) error {
			var err error
			if made, err = tx.FillPool(ctx, p.Region, p.Flavor); err != nil {
				return err
			}
			for _, d := range made {
				if err := q.Enqueue(ctx, tx, ProvisionArgs{DevserverID: d.ID}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			// One pool's trouble does not keep the others empty.
			errs = append(errs, fmt.Errorf("refill pool %s: %w", store.PoolKey(p.Region, p.Flavor), err))
			continue
		}
		if len(made) > 0 {
			started += len(made)
			log.Info("Refilling pool", "region", p.Region, "flavor", p.Flavor, "target", p.Target, "building", len(made))
		}
	}
	return started, errors.Join(errs...)
}
