// Package jobs runs devport's background work on River, in process, on the
// same database as everything else: a job is inserted in the transaction of
// the change that needs it, and a job whose effect is in the database
// completes in that same transaction.
package jobs

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/store"
)

// Options configure the job runner.
type Options struct {
	Store *store.Store
	Fleet *fleet.Fleet
	Log   *slog.Logger
	// Metrics receives the job metrics; nil skips them.
	Metrics prometheus.Registerer
	// Workers is how many jobs run at once (default 20). Most wait on the fleet.
	Workers int
	// SessionIdle is how long a web session may sit unused before cleanup removes it.
	SessionIdle time.Duration
	// MaxAttempts overrides a job kind's attempts (by Kind()), for drills and tests.
	MaxAttempts map[string]int
	// RolloutEvery is how often a rolling update checks its batch (default 2 s).
	RolloutEvery time.Duration
	// NoSchedules leaves out the periodic backup schedule and lease check, for
	// tests that must know every fleet call that happens.
	NoSchedules bool
	// PoolInterval is how often the pools are topped up; 0 leaves them alone
	// (tests refill by hand with RefillPools).
	PoolInterval time.Duration
	// BackupDir is the backup store (mode 0700); "" refuses backups and
	// releases without one.
	BackupDir string
	// BackupInterval is how old a devserver's newest backup may get before a
	// scheduled one is taken (default 24 h).
	BackupInterval time.Duration
	// BackupRetention is how many backups each devserver keeps (default the
	// last 7, and one a day for 30 days).
	BackupRetention Retention
	// LeaseReminders are how long before a short lease ends its owner is
	// reminded (default 72 h and 24 h).
	LeaseReminders []time.Duration
	// ContainerFreshness is how long a pooled container may wait for an
	// owner before it is recycled (default 6 h).
	ContainerFreshness time.Duration
	// ContainerWarning is how long before its end a container's owner is
	// warned (default 2 h).
	ContainerWarning time.Duration
	// Senders send email and chat deliveries; a nil sender is a channel that is off.
	Senders Senders
	// DeliverEvery is how often due deliveries are sent (default 3 s).
	DeliverEvery time.Duration
	// ReplicaID names this process among the replicas sharing a PostgreSQL
	// database (River's client ID, so a job's attempted_by names it);
	// default NewReplicaID().
	ReplicaID string
	// JanitorEvery is how often, on PostgreSQL, the runner looks for running
	// jobs of replicas that stopped (default 3 s).
	JanitorEvery time.Duration
}

// Runner is the in-process job queue and its workers.
type Runner struct {
	client riverClient
	// insert inserts a job in a store transaction, with the engine's client.
	insert  func(ctx context.Context, tx *store.Tx, args river.JobArgs, opts *river.InsertOpts) error
	s       *store.Store
	id      string
	every   time.Duration
	live    *liveness
	log     *slog.Logger
	running atomic.Bool
	metrics *jobMetrics
	stopSub func()
	// attempts overrides MaxAttempts by job kind.
	attempts map[string]int
}

// Per-kind limits. River's one-hour rescue default is far too slow for a
// portal: a job stuck longer than its kind's timeout is rescued within
// minutes. The rescue window must exceed the longest timeout.
const (
	provisionTimeout = 5 * time.Minute
	releaseTimeout   = 5 * time.Minute
	cleanupTimeout   = time.Minute
	backupTimeout    = 5 * time.Minute
	restoreTimeout   = 5 * time.Minute
	scheduleTimeout  = 5 * time.Minute
	rescueAfter      = migrateTimeout + time.Minute // the longest timeout (migrate_devserver)
)

// New applies River's migrations and prepares the workers. Start runs them.
func New(ctx context.Context, opts Options) (*Runner, error) {
	if opts.Workers <= 0 {
		opts.Workers = 20
	}
	if opts.SessionIdle <= 0 {
		opts.SessionIdle = 12 * time.Hour
	}
	if opts.ReplicaID == "" {
		opts.ReplicaID = NewReplicaID()
	}
	log := opts.Log.With("component", "jobs")
	engine := engineFor(opts.Store)
	if err := migrateQueue(ctx, opts.Store, engine, log); err != nil {
		return nil, err
	}
	if err := prepareRunbooks(ctx, opts.Store, log); err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}

	files, err := newBackupFiles(opts.BackupDir)
	if err != nil {
		return nil, err
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &provisionWorker{s: opts.Store, f: opts.Fleet, log: log})
	river.AddWorker(workers, &releaseWorker{s: opts.Store, f: opts.Fleet, files: files, log: log})
	river.AddWorker(workers, &sessionCleanupWorker{s: opts.Store, idle: opts.SessionIdle, log: log})
	river.AddWorker(workers, &backupWorker{s: opts.Store, f: opts.Fleet, files: files, log: log})
	river.AddWorker(workers, &restoreWorker{s: opts.Store, f: opts.Fleet, files: files, log: log})
	schedule := &backupScheduleWorker{s: opts.Store, files: files, log: log,
		interval: cmp.Or(opts.BackupInterval, DefaultBackupInterval), retention: opts.BackupRetention.withDefaults()}
	river.AddWorker(workers, schedule)
	leases := newLeaseWorker(opts.Store, log, opts.LeaseReminders)
	river.AddWorker(workers, leases)
	refill := &poolRefillWorker{s: opts.Store, log: log}
	river.AddWorker(workers, refill)
	river.AddWorker(workers, &syncKeysWorker{s: opts.Store, f: opts.Fleet, log: log})
	river.AddWorker(workers, &featureWorker{s: opts.Store, f: opts.Fleet, log: log})
	river.AddWorker(workers, &oneoffsWorker{s: opts.Store, f: opts.Fleet, log: log})
	river.AddWorker(workers, &rolloutWorker{s: opts.Store, log: log, every: cmp.Or(opts.RolloutEvery, 2*time.Second)})
	river.AddWorker(workers, &migrateWorker{s: opts.Store, f: opts.Fleet, files: files, log: log})
	river.AddWorker(workers, &provisionContainerWorker{s: opts.Store, f: opts.Fleet, log: log})
	river.AddWorker(workers, &endContainerWorker{s: opts.Store, f: opts.Fleet, log: log})
	river.AddWorker(workers, &containerSetupWorker{s: opts.Store, f: opts.Fleet, log: log})
	containerPools := &containerPoolsWorker{s: opts.Store, freshness: opts.ContainerFreshness, log: log}
	river.AddWorker(workers, containerPools)
	containerPool := &containerPoolWorker{s: opts.Store, freshness: opts.ContainerFreshness, log: log}
	river.AddWorker(workers, containerPool)
	lifetimes := &containerLifetimesWorker{s: opts.Store, warn: opts.ContainerWarning, log: log}
	river.AddWorker(workers, lifetimes)
	runbookSteps := &runbookStepWorker{s: opts.Store, log: log}
	river.AddWorker(workers, runbookSteps)
	runbookDeadlines := &runbookDeadlineWorker{s: opts.Store}
	river.AddWorker(workers, runbookDeadlines)
	stormReplace := &stormReplaceWorker{s: opts.Store, log: log}
	river.AddWorker(workers, stormReplace)
	river.AddWorker(workers, &wipeDevserverWorker{s: opts.Store, f: opts.Fleet, log: log})
	drainMoves := &drainMoveWorker{s: opts.Store, f: opts.Fleet, log: log}
	river.AddWorker(workers, drainMoves)
	river.AddWorker(workers, &deliverWorker{s: opts.Store, senders: opts.Senders, log: log})
	river.AddWorker(workers, &tasksOverdueWorker{s: opts.Store, log: log})
	river.AddWorker(workers, &followupsOverdueWorker{s: opts.Store, log: log})
	addHostHealthWorkers(workers, opts, log)

	client, insert, err := engine.newClient(&river.Config{
		ID:                          opts.ReplicaID,
		Logger:                      log,
		Queues:                      map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: opts.Workers}},
		Workers:                     workers,
		JobTimeout:                  provisionTimeout,
		RescueStuckJobsAfter:        rescueAfter,
		FetchCooldown:               50 * time.Millisecond,
		FetchPollInterval:           250 * time.Millisecond,
		CompletedJobRetentionPeriod: 24 * time.Hour,
		PeriodicJobs: []*river.PeriodicJob{
			river.NewPeriodicJob(river.PeriodicInterval(15*time.Minute), func() (river.JobArgs, *river.InsertOpts) {
				return SessionCleanupArgs{}, nil
			}, &river.PeriodicJobOpts{RunOnStart: true}),
			river.NewPeriodicJob(river.PeriodicInterval(cmp.Or(opts.DeliverEvery, DefaultDeliverEvery)), func() (river.JobArgs, *river.InsertOpts) {
				return DeliverArgs{}, nil
			}, &river.PeriodicJobOpts{RunOnStart: true}),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	r := &Runner{client: client, insert: insert, s: opts.Store, id: opts.ReplicaID, every: cmp.Or(opts.JanitorEvery, 3*time.Second),
		log: log, attempts: opts.MaxAttempts}
	refill.q, containerPools.q, containerPool.q, lifetimes.q = r, r, r, r
	runbookSteps.q, runbookDeadlines.q = r, r
	stormReplace.q = r
	drainMoves.q = r
	schedule.r, leases.r = r, r
	if !opts.NoSchedules {
		client.PeriodicJobs().Add(healthCheckJob())
		client.PeriodicJobs().Add(river.NewPeriodicJob(river.PeriodicInterval(backupScheduleEvery), func() (river.JobArgs, *river.InsertOpts) {
			return BackupScheduleArgs{}, nil
		}, &river.PeriodicJobOpts{RunOnStart: true}))
		client.PeriodicJobs().Add(river.NewPeriodicJob(river.PeriodicInterval(leaseCheckEvery), func() (river.JobArgs, *river.InsertOpts) {
			return LeaseCheckArgs{}, nil
		}, &river.PeriodicJobOpts{RunOnStart: true}))
		client.PeriodicJobs().Add(river.NewPeriodicJob(river.PeriodicInterval(containerCheckEvery), func() (river.JobArgs, *river.InsertOpts) {
			return ContainerLifetimesArgs{}, nil
		}, &river.PeriodicJobOpts{RunOnStart: true}))
		client.PeriodicJobs().Add(river.NewPeriodicJob(river.PeriodicInterval(tasksOverdueEvery), func() (river.JobArgs, *river.InsertOpts) {
			return TasksOverdueArgs{}, nil
		}, &river.PeriodicJobOpts{RunOnStart: true}))
		client.PeriodicJobs().Add(river.NewPeriodicJob(river.PeriodicInterval(followupsOverdueEvery), func() (river.JobArgs, *river.InsertOpts) {
			return FollowupsOverdueArgs{}, nil
		}, &river.PeriodicJobOpts{RunOnStart: true}))
	}
	if opts.PoolInterval > 0 {
		client.PeriodicJobs().Add(poolRefillJob(opts.PoolInterval))
		client.PeriodicJobs().Add(river.NewPeriodicJob(river.PeriodicInterval(opts.PoolInterval), func() (river.JobArgs, *river.InsertOpts) {
			return RefillContainerPoolsArgs{}, nil
		}, &river.PeriodicJobOpts{RunOnStart: true}))
	}
	if opts.Metrics != nil {
		r.metrics = newJobMetrics(opts.Metrics, []string{ProvisionArgs{}.Kind(), ReleaseArgs{}.Kind(), SessionCleanupArgs{}.Kind(), SyncKeysArgs{}.Kind(), PoolRefillArgs{}.Kind(),
			FeatureArgs{}.Kind(), OneoffsArgs{}.Kind(), RolloutArgs{}.Kind(), MigrateArgs{}.Kind(),
			BackupArgs{}.Kind(), RestoreArgs{}.Kind(), BackupScheduleArgs{}.Kind(), LeaseCheckArgs{}.Kind(),
			ProvisionContainerArgs{}.Kind(), EndContainerArgs{}.Kind(), ContainerSetupArgs{}.Kind(), RefillContainerPoolsArgs{}.Kind(),
			RefillContainerPoolArgs{}.Kind(), ContainerLifetimesArgs{}.Kind(), DeliverArgs{}.Kind(), TasksOverdueArgs{}.Kind(), FollowupsOverdueArgs{}.Kind(),
			RunbookStepArgs{}.Kind(), RunbookDeadlineArgs{}.Kind(), StormReplaceArgs{}.Kind(), WipeDevserverArgs{}.Kind(), DrainMoveArgs{}.Kind(),
			LiveMoveArgs{}.Kind(), HealthCheckArgs{}.Kind(), RemediateArgs{}.Kind(), CollectBundleArgs{}.Kind()})
	}
	return r, nil
}

// Start runs the workers until Stop.
func (r *Runner) Start(ctx context.Context) error {
	if r.metrics != nil {
		events, cancel := r.client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed, river.EventKindJobCancelled)
		r.stopSub = cancel
		go r.metrics.observe(events)
	}
	if r.s.Engine() == store.Postgres {
		live, err := startLiveness(ctx, r.s, r.id, r.every, r.log)
		if err != nil {
			if r.stopSub != nil {
				r.stopSub()
			}
			return fmt.Errorf("jobs: start: %w", err)
		}
		r.live = live
	}
	if err := r.client.Start(ctx); err != nil {
		if r.live != nil {
			r.live.stop()
		}
		return fmt.Errorf("jobs: start: %w", err)
	}
	r.running.Store(true)
	r.log.Info("Started job runner", "replica", r.id)
	return nil
}

// Running tells whether the runner is working (for /readyz).
func (r *Runner) Running() bool { return r.running.Load() }

// Stop lets running jobs finish until ctx ends, then cancels them; a cancelled
// job is retried at the next start.
func (r *Runner) Stop(ctx context.Context) error {
	r.running.Store(false)
	defer func() {
		if r.stopSub != nil {
			r.stopSub()
		}
		// The replica's lock goes last: until its jobs are stopped, no
		// other replica may take them.
		if r.live != nil {
			r.live.stop()
		}
	}()
	err := r.client.Stop(ctx)
	if err != nil && ctx.Err() != nil {
		hard, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return r.client.StopAndCancel(hard)
	}
	return err
}

// Enqueue inserts a job in the write transaction of the change that needs it.
func (r *Runner) Enqueue(ctx context.Context, tx *store.Tx, args river.JobArgs) error {
	var opts *river.InsertOpts
	if n, ok := r.attempts[args.Kind()]; ok {
		opts = &river.InsertOpts{MaxAttempts: n}
	}
	if err := r.insert(ctx, tx, args, opts); err != nil {
		return fmt.Errorf("enqueue %s: %w", args.Kind(), err)
	}
	return nil
}

// ReplicaID is this runner's name among the replicas (River's client ID).
func (r *Runner) ReplicaID() string { return r.id }

// completeTx marks a job done inside the transaction that records its effect.
func completeTx[T river.JobArgs](ctx context.Context, tx *store.Tx, job *river.Job[T]) error {
	var err error
	if tx.Engine() == store.Postgres {
		err = tx.River(func(ptx pgx.Tx) error {
			_, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, ptx, job)
			return err
		})
	} else {
		_, err = river.JobCompleteTx[*riversqlite.Driver](ctx, tx.SQLTx(), job)
	}
	if err != nil {
		return fmt.Errorf("complete job %d: %w", job.ID, err)
	}
	return nil
}

// enqueueFromJob inserts another job in the transaction of the job that
// needs it, with the client that runs the job (from its context).
func enqueueFromJob(ctx context.Context, tx *store.Tx, args river.JobArgs) error {
	var err error
	if tx.Engine() == store.Postgres {
		err = tx.River(func(ptx pgx.Tx) error {
			_, err := river.ClientFromContext[pgx.Tx](ctx).InsertTx(ctx, ptx, args, nil)
			return err
		})
	} else {
		_, err = river.ClientFromContext[*sql.Tx](ctx).InsertTx(ctx, tx.SQLTx(), args, nil)
	}
	if err != nil {
		return fmt.Errorf("enqueue %s: %w", args.Kind(), err)
	}
	return nil
}

// riverClient is what the runner does with River's client, whatever the
// engine's transaction type: *river.Client[*sql.Tx] on SQLite,
// *river.Client[pgx.Tx] on PostgreSQL.
type riverClient interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	StopAndCancel(ctx context.Context) error
	Subscribe(kinds ...river.EventKind) (<-chan *river.Event, func())
	PeriodicJobs() *river.PeriodicJobBundle
}

// engineClient builds River's migrator and client for one engine's driver.
type engineClient struct {
	migrate   func(ctx context.Context, log *slog.Logger) error
	newClient func(cfg *river.Config) (riverClient, func(context.Context, *store.Tx, river.JobArgs, *river.InsertOpts) error, error)
}

// engineFor is River's migrator and client for the store's engine.
func engineFor(s *store.Store) engineClient {
	if s.Engine() == store.Postgres {
		return newEngineClient(riverpgxv5.New(s.Pool()), func(tx *store.Tx, fn func(pgx.Tx) error) error { return tx.River(fn) })
	}
	return newEngineClient(riversqlite.New(s.WriteDB()), func(tx *store.Tx, fn func(*sql.Tx) error) error { return fn(tx.SQLTx()) })
}

// MigrateQueue creates or upgrades River's job tables in the store's
// database, under the store's migration lock, as a portal does at start
// (devport migrate-data needs them before it moves jobs).
func MigrateQueue(ctx context.Context, s *store.Store, log *slog.Logger) error {
	return migrateQueue(ctx, s, engineFor(s), log)
}

func migrateQueue(ctx context.Context, s *store.Store, engine engineClient, log *slog.Logger) error {
	if err := s.WithMigrationLock(ctx, func(ctx context.Context) error { return engine.migrate(ctx, log) }); err != nil {
		return fmt.Errorf("jobs: migrate: %w", err)
	}
	return nil
}

// newEngineClient is engineClient over driver; lend hands fn the River
// transaction of a store transaction (the *sql.Tx itself on SQLite, its
// connection lent as a pgx.Tx on PostgreSQL).
func newEngineClient[TTx any](driver riverdriver.Driver[TTx], lend func(tx *store.Tx, fn func(TTx) error) error) engineClient {
	return engineClient{
		migrate: func(ctx context.Context, log *slog.Logger) error {
			m, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: log})
			if err != nil {
				return err
			}
			_, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil)
			return err
		},
		newClient: func(cfg *river.Config) (riverClient, func(context.Context, *store.Tx, river.JobArgs, *river.InsertOpts) error, error) {
			c, err := river.NewClient(driver, cfg)
			if err != nil {
				return nil, nil, err
			}
			insert := func(ctx context.Context, tx *store.Tx, args river.JobArgs, opts *river.InsertOpts) error {
				return lend(tx, func(ttx TTx) error {
					_, err := c.InsertTx(ctx, ttx, args, opts)
					return err
				})
			}
			return c, insert, nil
		},
	}
}

// backoff is a short exponential retry schedule: 1 s, 2 s, 4 s … capped at a minute.
func backoff(attempt int) time.Time {
	d := time.Second << min(attempt-1, 6)
	return time.Now().Add(min(d, time.Minute))
}

// Args is a job's arguments, as handlers enqueue them.
type Args = river.JobArgs
