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

// RefillContainerPoolsArgs tops up every container pool and recycles the
// containers that waited in a pool past the freshness limit. With a region,
// type and profile it does one pool only (after a request took from it).
type RefillContainerPoolsArgs struct{}

// Kind names the job.
func (RefillContainerPoolsArgs) Kind() string { return "refill_container_pools" }

// InsertOpts: a refill that fails is done again at the next tick.
func (RefillContainerPoolsArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: 1}
}

// RefillContainerPoolArgs tops up one pool at once, after a request took a
// container from it. Several requests at once need only one refill.
type RefillContainerPoolArgs struct {
	Region  string `json:"region"`
	Type    string `json:"type"`
	Profile string `json:"profile"`
}

// Kind names the job.
func (RefillContainerPoolArgs) Kind() string { return "refill_container_pool" }

// InsertOpts: a refill that fails is done again by the periodic one. Two
// refills of one pool at once are harmless (each counts the pool in its
// write transaction), and one that is already running may not see the
// change that asked for this one, so they are not made unique.
func (RefillContainerPoolArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 3} }

type containerPoolsWorker struct {
	river.WorkerDefaults[RefillContainerPoolsArgs]
	s         *store.Store
	q         enqueuer
	freshness time.Duration
	log       *slog.Logger
}

func (w *containerPoolsWorker) Timeout(*river.Job[RefillContainerPoolsArgs]) time.Duration {
	return poolRefillTimeout
}

func (w *containerPoolsWorker) Work(ctx context.Context, _ *river.Job[RefillContainerPoolsArgs]) error {
	_, err := RefillContainerPools(ctx, w.s, w.q, w.freshness, w.log)
	return err
}

type containerPoolWorker struct {
	river.WorkerDefaults[RefillContainerPoolArgs]
	s         *store.Store
	q         enqueuer
	freshness time.Duration
	log       *slog.Logger
}

func (w *containerPoolWorker) Timeout(*river.Job[RefillContainerPoolArgs]) time.Duration {
	return poolRefillTimeout
}

func (w *containerPoolWorker) Work(ctx context.Context, job *river.Job[RefillContainerPoolArgs]) error {
	a := job.Args
	_, err := refillContainerPool(ctx, w.s, w.q, store.ContainerPoolTarget{Region: a.Region, Type: a.Type, Profile: a.Profile}, w.freshness, w.log)
	return err
}

// PoolRefill counts what a refill of the container pools did.
type PoolRefill struct {
	Built, Recycled int
}

// RefillContainerPools refills every container pool, each in its own write
// transaction that counts the pool, records the containers it lacks (as far
// as capacity allows), marks the stale ones for recycling, and enqueues
// their building and destruction. freshness 0 means the default (6 h).
func RefillContainerPools(ctx context.Context, s *store.Store, q enqueuer, freshness time.Duration, log *slog.Logger) (PoolRefill, error) {
	keys, err := s.ContainerPoolKeys(ctx)
	if err != nil {
		return PoolRefill{}, err
	}
	var total PoolRefill
	var errs []error
	for _, k := range keys {
		r, err := refillContainerPool(ctx, s, q, k, freshness, log)
		if err != nil {
			// One pool's trouble does not keep the others empty.
			errs = append(errs, err)
			continue
		}
		total.Built += r.Built
		total.Recycled += r.Recycled
	}
	return total, errors.Join(errs...)
}

func refillContainerPool(ctx context.Context, s *store.Store, q enqueuer, k store.ContainerPoolTarget, freshness time.Duration, log *slog.Logger) (PoolRefill, error) {
	if freshness <= 0 {
		freshness = store.DefaultContainerFreshness
	}
	var r store.ContainerPoolRefill
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		r, err = tx.RefillContainerPool(ctx, k.Region, k.Type, k.Profile, tx.Now().Add(-freshness))
		if err != nil {
			return err
		}
		for _, id := range r.Built {
			if err := q.Enqueue(ctx, tx, ProvisionContainerArgs{ContainerID: id}); err != nil {
				return err
			}
		}
		for _, id := range r.Recycled {
			if err := q.Enqueue(ctx, tx, EndContainerArgs{ContainerID: id}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return PoolRefill{}, fmt.Errorf("refill container pool %s: %w", store.ContainerPoolKey(k.Region, k.Type, k.Profile), err)
	}
	if len(r.Built)+len(r.Recycled) > 0 {
		log.Info("Refilling container pool", "region", k.Region, "type", k.Type, "profile", k.Profile,
			"building", len(r.Built), "recycling", len(r.Recycled), "no_room", r.NoRoom)
	}
	return PoolRefill{Built: len(r.Built), Recycled: len(r.Recycled)}, nil
}

// ContainerLifetimesArgs is the periodic look at containers' lifetimes: a
// warning in the owner's inbox before the end, and at the end the container
// is destroyed.
type ContainerLifetimesArgs struct{}

// Kind names the job.
func (ContainerLifetimesArgs) Kind() string { return "check_container_lifetimes" }

// InsertOpts retries a failed check a little; the next tick runs anyway.
func (ContainerLifetimesArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 3} }

// DefaultContainerWarning is how long before its end a container's owner is warned.
const DefaultContainerWarning = 2 * time.Hour

// containerCheckEvery is how often lifetimes are checked: an expired
// container lives at most this much longer.
const containerCheckEvery = time.Minute

type containerLifetimesWorker struct {
	river.WorkerDefaults[ContainerLifetimesArgs]
	s    *store.Store
	q    enqueuer
	warn time.Duration
	log  *slog.Logger
}

func (w *containerLifetimesWorker) Timeout(*river.Job[ContainerLifetimesArgs]) time.Duration {
	return scheduleTimeout
}

func (w *containerLifetimesWorker) Work(ctx context.Context, _ *river.Job[ContainerLifetimesArgs]) error {
	_, _, err := CheckContainerLifetimes(ctx, w.s, w.q, w.warn, w.log)
	return err
}

// CheckContainerLifetimes warns the owners of containers that end within
// warn (once per container and end) and ends the containers whose lifetime
// ran out. It returns how many it warned and ended. warn 0 means the
// default (2 h).
func CheckContainerLifetimes(ctx context.Context, s *store.Store, q enqueuer, warn time.Duration, log *slog.Logger) (warned, ended int, err error) {
	if warn <= 0 {
		warn = DefaultContainerWarning
	}
	now := s.Now()
	cs, err := s.ContainersExpiringBy(ctx, now.Add(warn), 0)
	if err != nil {
		return 0, 0, err
	}
	for _, c := range cs {
		if c.ExpiresAt.After(now) {
			err := s.InTx(ctx, func(tx *store.Tx) error {
				// Read again in the transaction: ended a moment ago, it is warned of nothing.
				if fresh, err := tx.ContainerByID(ctx, c.ID); err != nil || !fresh.Live() {
					return err
				}
				sent, err := tx.Notify(ctx, store.Notification{
					UserID: c.OwnerID, Kind: "container_ending", Link: "/containers/" + c.Name,
					IdempotencyKey: fmt.Sprintf("container:%s:warn:%d", c.Name, c.ExpiresAt.Unix()),
					Title:          fmt.Sprintf("Your %s container %s ends within %s", c.Type, c.Name, offsetWords(warn)),
					Body: fmt.Sprintf("%s is destroyed at %s, with everything on it: containers are ephemeral and have no backups. "+
						"Push your work, or take a fresh one from its page.", c.Name, c.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC")),
				})
				if sent {
					warned++
				}
				return err
			})
			if err != nil {
				return warned, ended, err
			}
			continue
		}
		err := s.InTx(ctx, func(tx *store.Tx) error {
			fresh, err := tx.ContainerByID(ctx, c.ID)
			if err != nil {
				return err
			}
			if !fresh.Live() || fresh.ExpiresAt == nil || fresh.ExpiresAt.After(now) {
				return nil
			}
			fresh, needsFleet, err := tx.EndContainer(ctx, store.System, fresh, store.EndExpired)
			if err != nil {
				return err
			}
			if needsFleet {
				if err := q.Enqueue(ctx, tx, EndContainerArgs{ContainerID: fresh.ID}); err != nil {
					return err
				}
			}
			ended++
			_, err = tx.Notify(ctx, store.Notification{
				UserID: fresh.OwnerID, Kind: "container_expired", Link: "/containers/" + fresh.Name,
				IdempotencyKey: "container:" + fresh.Name + ":expired",
				Title:          fmt.Sprintf("Your %s container %s reached the end of its lifetime", fresh.Type, fresh.Name),
				Body:           "It is being destroyed. Request a new one from the Containers page whenever you need it.",
			})
			return err
		})
		var ce *store.ConflictError
		if errors.As(err, &ce) {
			continue // ended meanwhile
		}
		if err != nil {
			return warned, ended, err
		}
	}
	if warned+ended > 0 {
		log.Info("Checked container lifetimes", "warned", warned, "ended", ended)
	}
	return warned, ended, nil
}
