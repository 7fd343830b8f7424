package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/store"
)

// Health checks and auto-remediation: every minute the driver is asked
// about every ready devserver; an unhealthy one is restarted, then recreated
// from its latest backup, then escalated to its owner and the admins.

// HealthCheckEvery is how often every ready devserver is checked.
const HealthCheckEvery = time.Minute

const (
	healthPage        = 500
	healthParallel    = 8
	healthCallTimeout = 10 * time.Second
)

// HealthCheckArgs checks every ready devserver once.
type HealthCheckArgs struct{}

// Kind names the job.
func (HealthCheckArgs) Kind() string { return "health_check" }

// InsertOpts: one check at a time; a missed one is made up by the next.
func (HealthCheckArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: 1, UniqueOpts: river.UniqueOpts{ByState: []rivertype.JobState{
		rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning, rivertype.JobStateScheduled, rivertype.JobStateRetryable,
	}}}
}

type healthCheckWorker struct {
	river.WorkerDefaults[HealthCheckArgs]
	s   *store.Store
	f   *fleet.Fleet
	log *slog.Logger
}

func (w *healthCheckWorker) Timeout(*river.Job[HealthCheckArgs]) time.Duration {
	return 5 * time.Minute
}

func (w *healthCheckWorker) Work(ctx context.Context, job *river.Job[HealthCheckArgs]) error {
	checked, unhealthy, opened, err := CheckHealth(ctx, w.s, w.f, func(ctx context.Context, tx *store.Tx, a river.JobArgs) error {
		return enqueueFromJob(ctx, tx, a)
	})
	if err != nil {
		return err
	}
	if unhealthy > 0 {
		w.log.Info("Checked devservers' health", "checked", checked, "unhealthy", unhealthy, "remediations", opened)
	}
	return nil
}

// CheckHealth asks the driver about every ready devserver, a page at a time
// and a few at once, records the results and opens a remediation (its job
// enqueued in the same transaction) for each newly unhealthy devserver.
func CheckHealth(ctx context.Context, s *store.Store, f *fleet.Fleet, enqueue func(context.Context, *store.Tx, river.JobArgs) error) (checked, unhealthy, opened int, err error) {
	var after int64
	for {
		targets, err := s.HealthTargets(ctx, after, healthPage)
		if err != nil {
			return checked, unhealthy, opened, err
		}
		if len(targets) == 0 {
			return checked, unhealthy, opened, nil
		}
		after = targets[len(targets)-1].ID
		results := make([]store.HealthResult, len(targets))
		var wg sync.WaitGroup
		sem := make(chan struct{}, healthParallel)
		for i, t := range targets {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				results[i] = checkOne(ctx, s, f, t.ID, t.Driver, t.InstanceID)
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			return checked, unhealthy, opened, ctx.Err()
		}
		for _, r := range results {
			if !r.OK {
				unhealthy++
			}
		}
		checked += len(results)
		err = s.InTx(ctx, func(tx *store.Tx) error {
			rems, err := tx.RecordHealth(ctx, results, "periodic")
			if err != nil {
				return err
			}
			for _, r := range rems {
				if err := enqueue(ctx, tx, RemediateArgs{RemediationID: r.ID}); err != nil {
					return err
				}
			}
			opened += len(rems)
			return nil
		})
		if err != nil {
			return checked, unhealthy, opened, err
		}
		if len(targets) < healthPage {
			return checked, unhealthy, opened, nil
		}
	}
}

// checkOne asks a devserver's driver about its instance.
func checkOne(ctx context.Context, s *store.Store, f *fleet.Fleet, devserverID int64, driver, instanceID string) store.HealthResult {
	r := store.HealthResult{DevserverID: devserverID, At: s.Now()}
	drv, err := f.Driver(driver)
	if err != nil {
		r.Cause, r.Detail = store.CauseDriverError, err.Error()
		return r
	}
	cctx, cancel := context.WithTimeout(ctx, healthCallTimeout)
	defer cancel()
	h, err := drv.Health(cctx, instanceID)
	switch {
	case errors.Is(err, fleet.ErrNotFound):
		r.Cause, r.Detail = store.CauseInstanceMissing, err.Error()
	case errors.Is(err, fleet.ErrUnreachable):
		r.Cause, r.Detail = store.CauseHostUnreachable, err.Error()
	case err != nil:
		r.Cause, r.Detail = store.CauseDriverError, err.Error()
	default:
		r.OK, r.Detail = h.OK, h.Detail
		if !h.OK {
			r.Cause = HealthCause(h.Detail)
		}
	}
	return r
}

// HealthCause classifies what a driver said about an unhealthy instance.
func HealthCause(detail string) string {
	d := strings.ToLower(detail)
	switch {
	case strings.Contains(d, "unreachable"):
		return store.CauseHostUnreachable
	case strings.Contains(d, "destroyed"), strings.Contains(d, "not found"), strings.Contains(d, "no such"):
		return store.CauseInstanceMissing
	case strings.Contains(d, "stopped"), strings.Contains(d, "exited"), strings.Contains(d, "created"), strings.Contains(d, "not running"):
		return store.CauseInstanceStopped
	case strings.Contains(d, "fail"), strings.Contains(d, "error"):
		return store.CauseDriverError
	}
	return store.CauseUnhealthy
}

// RemediateArgs takes an unhealthy devserver through the remediation steps.
type RemediateArgs struct {
	RemediationID int64 `json:"remediation_id"`
}

// Kind names the job.
func (RemediateArgs) Kind() string { return "remediate_devserver" }

// InsertOpts: each step records its outcome, so attempts only cover the
// portal stopping mid-step.
func (RemediateArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 5} }

type remediateWorker struct {
	river.WorkerDefaults[RemediateArgs]
	s   *store.Store
	f   *fleet.Fleet
	log *slog.Logger
}

func (w *remediateWorker) Timeout(*river.Job[RemediateArgs]) time.Duration { return 5 * time.Minute }

func (w *remediateWorker) NextRetry(job *river.Job[RemediateArgs]) time.Time {
	return backoff(job.Attempt)
}

func (w *remediateWorker) Work(ctx context.Context, job *river.Job[RemediateArgs]) error {
	for range 4 {
		r, err := w.s.Remediation(ctx, job.Args.RemediationID)
		if errors.Is(err, store.ErrNotFound) {
			return river.JobCancel(err)
		}
		if err != nil {
			return err
		}
		if r.State != store.RemediationOpen {
			return done(ctx, w.s, job)
		}
		d, err := w.s.DevserverByID(ctx, r.DevserverID)
		if err != nil {
			return err
		}
		var next bool
		switch r.Step {
		case store.RemediateRestart:
			next, err = w.restart(ctx, job, r, d)
		case store.RemediateRecreate:
			next, err = w.recreate(ctx, job, r, d)
		case store.RemediateEscalate:
			return w.escalate(ctx, job, r)
		default:
			return fmt.Errorf("remediation %d: unknown step %q", r.ID, r.Step)
		}
		if err != nil || !next {
			return err
		}
	}
	return nil
}

func (w *remediateWorker) driverOf(ctx context.Context, d store.Devserver) (fleet.Driver, error) {
	h, err := w.s.Host(ctx, d.HostID)
	if err != nil {
		return nil, err
	}
	return w.f.Driver(h.Driver)
}

// gone closes an episode whose devserver left ready (released, migrating
// for another reason): nothing to remediate any more.
func (w *remediateWorker) gone(ctx context.Context, job *river.Job[RemediateArgs], r store.Remediation) error {
	return w.s.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.ResolveRemediation(ctx, r); err != nil {
			return err
		}
		return completeTx(ctx, tx, job)
	})
}

// restart stops and starts the instance, then checks it. It returns true
// when the episode moved on to the next step.
func (w *remediateWorker) restart(ctx context.Context, job *river.Job[RemediateArgs], r store.Remediation, d store.Devserver) (bool, error) {
	if d.State != store.StateReady {
		return false, w.gone(ctx, job, r)
	}
	var a store.RemediationAttempt
	if err := w.s.InTx(ctx, func(tx *store.Tx) (err error) {
		a, _, err = tx.BeginRemediationAttempt(ctx, r, store.RemediateRestart)
		return err
	}); err != nil {
		return false, err
	}
	if a.Outcome != "running" { // an earlier pass finished it and moved on
		return true, w.s.InTx(ctx, func(tx *store.Tx) error { return tx.AdvanceRemediation(ctx, r, store.RemediateRecreate) })
	}
	drv, err := w.driverOf(ctx, d)
	if err != nil {
		return false, err
	}
	if err := w.s.InTx(ctx, func(tx *store.Tx) error {
		return tx.SetDevserverNote(ctx, d.ID, "Auto-remediation: restarting after a failed health check ("+r.Cause+")")
	}); err != nil {
		return false, err
	}
	res := store.HealthResult{DevserverID: d.ID, At: w.s.Now()}
	stopErr := drv.Stop(ctx, d.InstanceID)
	var startErr error
	if stopErr == nil {
		_, startErr = drv.Start(ctx, d.InstanceID)
	}
	switch {
	case stopErr != nil:
		res.Cause, res.Detail = store.CauseDriverError, "stop: "+stopErr.Error()
	case startErr != nil:
		res.Cause, res.Detail = store.CauseDriverError, "start: "+startErr.Error()
	default:
		res = checkOne(ctx, w.s, w.f, d.ID, mustDriverName(drv), d.InstanceID)
	}
	return !res.OK, w.s.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.AddHealthCheck(ctx, res, "remediation"); err != nil {
			return err
		}
		if res.OK {
			if err := tx.FinishRemediationAttempt(ctx, r, store.RemediateRestart, "fixed", res.Detail); err != nil {
				return err
			}
			if err := tx.ResolveRemediation(ctx, r); err != nil {
				return err
			}
			if err := clearNote(ctx, tx, d.ID); err != nil {
				return err
			}
			w.log.Info("Restart mended an unhealthy devserver", "devserver", d.Name, "cause", r.Cause)
			return completeTx(ctx, tx, job)
		}
		outcome := "not_fixed"
		if stopErr != nil || startErr != nil {
			outcome = "failed"
		}
		if err := tx.FinishRemediationAttempt(ctx, r, store.RemediateRestart, outcome, res.Detail); err != nil {
			return err
		}
		return tx.AdvanceRemediation(ctx, r, store.RemediateRecreate)
	})
}

func mustDriverName(d fleet.Driver) string { return d.Name() }

func clearNote(ctx context.Context, tx *store.Tx, id int64) error {
	return tx.SetDevserverNote(ctx, id, "")
}

// recreate moves the devserver onto a new instance restored from its latest
// backup (a migration in place), waits for it, and checks the new instance.
func (w *remediateWorker) recreate(ctx context.Context, job *river.Job[RemediateArgs], r store.Remediation, d store.Devserver) (bool, error) {
	if r.MigrationID == nil {
		if d.State != store.StateReady {
			return false, w.gone(ctx, job, r)
		}
		next := false
		err := w.s.InTx(ctx, func(tx *store.Tx) error {
			if _, _, err := tx.BeginRemediationAttempt(ctx, r, store.RemediateRecreate); err != nil {
				return err
			}
			fail := func(why string) error {
				next = true
				if err := tx.FinishRemediationAttempt(ctx, r, store.RemediateRecreate, "failed", why); err != nil {
					return err
				}
				return tx.AdvanceRemediation(ctx, r, store.RemediateEscalate)
			}
			b, err := tx.LatestDoneBackup(ctx, d.ID)
			if errors.Is(err, store.ErrNotFound) {
				return fail("no backup to recreate it from")
			} else if err != nil {
				return err
			}
			m, err := tx.StartHostMigration(ctx, store.System, d, &b,
				fmt.Sprintf("Auto-remediation: recreating from backup %d after restarting did not help", b.ID))
			var ce *store.ConflictError
			if errors.As(err, &ce) {
				return fail(ce.Message)
			} else if err != nil {
				return err
			}
			if err := tx.SetRemediationMigration(ctx, r, m.ID); err != nil {
				return err
			}
			return enqueueFromJob(ctx, tx, MigrateArgs{MigrationID: m.ID})
		})
		if err != nil || next {
			return next, err
		}
		return false, river.JobSnooze(time.Second)
	}
	m, err := w.s.Migration(ctx, *r.MigrationID)
	if err != nil {
		return false, err
	}
	switch m.State {
	case "running", "rolling_back":
		return false, river.JobSnooze(time.Second)
	case "rolled_back":
		return true, w.s.InTx(ctx, func(tx *store.Tx) error {
			if err := tx.FinishRemediationAttempt(ctx, r, store.RemediateRecreate, "failed", "the recreation failed: "+m.Error); err != nil {
				return err
			}
			return tx.AdvanceRemediation(ctx, r, store.RemediateEscalate)
		})
	}
	d, err = w.s.DevserverByID(ctx, d.ID) // on its new instance now
	if err != nil {
		return false, err
	}
	drv, err := w.driverOf(ctx, d)
	if err != nil {
		return false, err
	}
	res := checkOne(ctx, w.s, w.f, d.ID, drv.Name(), d.InstanceID)
	return !res.OK, w.s.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.AddHealthCheck(ctx, res, "remediation"); err != nil {
			return err
		}
		if res.OK {
			if err := tx.FinishRemediationAttempt(ctx, r, store.RemediateRecreate, "fixed", fmt.Sprintf("recreated on %s from backup", d.Host)); err != nil {
				return err
			}
			if err := tx.ResolveRemediation(ctx, r); err != nil {
				return err
			}
			w.log.Info("Recreating mended an unhealthy devserver", "devserver", d.Name, "cause", r.Cause)
			return completeTx(ctx, tx, job)
		}
		if err := tx.FinishRemediationAttempt(ctx, r, store.RemediateRecreate, "not_fixed", res.Detail); err != nil {
			return err
		}
		return tx.AdvanceRemediation(ctx, r, store.RemediateEscalate)
	})
}

// escalate tells the owner (a task) and the admins, once, and closes the episode.
func (w *remediateWorker) escalate(ctx context.Context, job *river.Job[RemediateArgs], r store.Remediation) error {
	as, err := w.s.RemediationAttempts(ctx, r.ID)
	if err != nil {
		return err
	}
	var why []string
	for _, a := range as {
		if a.Action != store.RemediateEscalate {
			why = append(why, a.Action+" "+strings.ReplaceAll(a.Outcome, "_", " ")+": "+a.Detail)
		}
	}
	return w.s.InTx(ctx, func(tx *store.Tx) error {
		if _, _, err := tx.BeginRemediationAttempt(ctx, r, store.RemediateEscalate); err != nil {
			return err
		}
		if err := tx.EscalateRemediation(ctx, r, strings.Join(why, "; ")); err != nil {
			return err
		}
		if err := tx.FinishRemediationAttempt(ctx, r, store.RemediateEscalate, "done", "owner tasked, admins notified"); err != nil {
			return err
		}
		w.log.Warn("Escalated an unhealthy devserver", "devserver", r.Devserver, "cause", r.Cause)
		return completeTx(ctx, tx, job)
	})
}

// CollectBundleArgs collects a diagnostic bundle a rage asked for.
type CollectBundleArgs struct {
	BundleID int64 `json:"bundle_id"`
}

// Kind names the job.
func (CollectBundleArgs) Kind() string { return "collect_diagnostics" }

type collectBundleWorker struct {
	river.WorkerDefaults[CollectBundleArgs]
	s   *store.Store
	f   *fleet.Fleet
	log *slog.Logger
}

func (w *collectBundleWorker) Timeout(*river.Job[CollectBundleArgs]) time.Duration {
	return time.Minute
}

// Bundle parts, by name in the bundle's JSON.
const (
	PartDevserver    = "devserver"
	PartHealthChecks = "health_checks"
	PartRemediations = "remediations"
	PartJobs         = "jobs"
	PartDriverState  = "driver_state"
	PartAuditEvents  = "audit_events"
)

func (w *collectBundleWorker) Work(ctx context.Context, job *river.Job[CollectBundleArgs]) error {
	b, err := w.s.Bundle(ctx, job.Args.BundleID)
	if errors.Is(err, store.ErrNotFound) {
		return river.JobCancel(err)
	}
	if err != nil || b.State != "collecting" {
		return err
	}
	parts, collectErr := w.collect(ctx, b)
	return w.s.InTx(ctx, func(tx *store.Tx) error {
		if collectErr != nil {
			if job.Attempt < job.MaxAttempts {
				return collectErr
			}
			if err := tx.FailBundle(ctx, b, collectErr); err != nil {
				return err
			}
		} else if err := tx.CompleteBundle(ctx, b, parts); err != nil {
			return err
		}
		return completeTx(ctx, tx, job)
	})
}

func (w *collectBundleWorker) collect(ctx context.Context, b store.DiagnosticBundle) (map[string]any, error) {
	if b.DevserverID == nil { // a bundle the CLI sent is never collected
		return nil, fmt.Errorf("bundle %d is about no devserver", b.ID)
	}
	d, err := w.s.DevserverByID(ctx, *b.DevserverID)
	if err != nil {
		return nil, err
	}
	checks, err := w.s.HealthHistory(ctx, d.ID, 50)
	if err != nil {
		return nil, err
	}
	rems, err := w.s.Remediations(ctx, d.ID, 10)
	if err != nil {
		return nil, err
	}
	jobRows, err := w.s.DevserverJobs(ctx, d.ID, 50)
	if err != nil {
		return nil, err
	}
	events, err := w.s.AuditEvents(ctx, "devserver", d.Name)
	if err != nil {
		return nil, err
	}
	if len(events) > 100 {
		events = events[len(events)-100:]
	}
	state := map[string]any{"instance": d.InstanceID, "host": d.Host, "state": d.State}
	h, err := w.s.Host(ctx, d.HostID)
	if err != nil {
		return nil, err
	}
	state["host_state"], state["driver"] = h.State, h.Driver
	if d.InstanceID == "" {
		state["health"] = "no instance"
	} else if drv, err := w.f.Driver(h.Driver); err != nil {
		state["error"] = err.Error()
	} else {
		cctx, cancel := context.WithTimeout(ctx, healthCallTimeout)
		hl, err := drv.Health(cctx, d.InstanceID)
		cancel()
		if err != nil {
			state["error"] = err.Error()
		} else {
			state["ok"], state["detail"], state["at"] = hl.OK, hl.Detail, hl.At
		}
	}
	return map[string]any{
		PartDevserver: d, PartHealthChecks: nonNil(checks), PartRemediations: nonNil(rems), PartJobs: nonNil(jobRows),
		PartDriverState: state, PartAuditEvents: nonNil(events),
	}, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// addHostHealthWorkers adds the workers of host operations, health checks,
// remediation and diagnostic bundles.
func addHostHealthWorkers(workers *river.Workers, opts Options, log *slog.Logger) {
	river.AddWorker(workers, &liveMoveWorker{s: opts.Store, f: opts.Fleet, log: log})
	river.AddWorker(workers, &healthCheckWorker{s: opts.Store, f: opts.Fleet, log: log})
	river.AddWorker(workers, &remediateWorker{s: opts.Store, f: opts.Fleet, log: log})
	river.AddWorker(workers, &collectBundleWorker{s: opts.Store, f: opts.Fleet, log: log})
}

// healthCheckJob is the periodic health check.
func healthCheckJob() *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(HealthCheckEvery), func() (river.JobArgs, *river.InsertOpts) {
		return HealthCheckArgs{}, nil
	}, &river.PeriodicJobOpts{RunOnStart: true})
}
