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
	"github.com/devport/devport/jobs/runbook"
	"github.com/devport/devport/store"
)

// Storms and dark storms: the store holds what each did (store/storms.go);
// the built-in runbooks storm and dark-storm carry them out step by step, and
// two job kinds do what needs the fleet: filling a replacement from a
// backup, and wiping a devserver.

// Built-in runbooks of storms.
const (
	StormRunbook     = "storm"
	DarkStormRunbook = "dark-storm"
)

// stormTaskDue is when an owner's replacement task is due.
const stormTaskDue = 24 * time.Hour

func stormOperations() []operation {
	return []operation{opStormIsolate(), opStormNotify(), opStormContainers(), opDarkStormWipe()}
}

func stormActor(e *opEnv) store.Actor {
	return store.Actor{Name: "runbook run " + strconv.FormatInt(e.run.ID, 10)}
}

// stormOf reads the storm an operation works on.
func stormOf(ctx context.Context, s interface {
	Storm(context.Context, int64) (store.Storm, error)
}, args map[string]any) (store.Storm, error) {
	id := runbook.Int(args, "storm")
	st, err := s.Storm(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return st, fmt.Errorf("%w: there is no storm %d", errStepFailed, id)
	}
	return st, err
}

var stormParam = runbook.Param{Name: "storm", Type: runbook.TypeInt, Required: true, Doc: "the storm's number"}

func opStormIsolate() operation {
	return operation{
		spec: runbook.Operation{Name: "storm_isolate", Doc: "Makes a storm's region unreachable: its hosts and devservers.", Params: []runbook.Param{stormParam}},
		plan: func(ctx context.Context, s *store.Store, args map[string]any) ([]string, error) {
			st, err := stormOf(ctx, s, args)
			if err != nil {
				return nil, err
			}
			return []string{"Mark the hosts and ready devservers of " + st.Region + " unreachable"}, nil
		},
		run: func(ctx context.Context, tx *store.Tx, e *opEnv, args map[string]any) (opResult, error) {
			n, err := tx.IsolateStorm(ctx, stormActor(e), runbook.Int(args, "storm"))
			if errors.Is(err, store.ErrNotFound) {
				return opResult{}, fmt.Errorf("%w: %v", errStepFailed, err)
			}
			if err != nil {
				return opResult{}, err
			}
			return opResult{Logs: []string{fmt.Sprintf("Marked %d devservers unreachable", n)}}, nil
		},
	}
}

func opStormNotify() operation {
	return operation{
		spec: runbook.Operation{Name: "storm_notify", Doc: "Tells each owner of a devserver the storm touched, once, with a task to replace or restore it from its latest backup.",
			Params: []runbook.Param{stormParam}},
		plan: func(ctx context.Context, s *store.Store, args map[string]any) ([]string, error) {
			return []string{"Notify the owner of every devserver the storm touched, with a one-click replacement from the latest backup"}, nil
		},
		run: func(ctx context.Context, tx *store.Tx, e *opEnv, args map[string]any) (opResult, error) {
			n, err := tx.NotifyStormOwners(ctx, stormActor(e), runbook.Int(args, "storm"), e.now.Add(stormTaskDue))
			if err != nil {
				return opResult{}, refused(err)
			}
			return opResult{Logs: []string{fmt.Sprintf("Notified the owners of %d devservers", n)}}, nil
		},
	}
}

func opStormContainers() operation {
	return operation{
		spec: runbook.Operation{Name: "storm_containers", Doc: "Ends the containers of a storm's region and makes each owner a fresh one in the nearest active region.",
			Params: []runbook.Param{stormParam}},
		plan: func(ctx context.Context, s *store.Store, args map[string]any) ([]string, error) {
			return []string{"Recreate the region's On Demand containers in the nearest active region"}, nil
		},
		run: func(ctx context.Context, tx *store.Tx, e *opEnv, args map[string]any) (opResult, error) {
			if _, done, err := e.effect(ctx, tx, "moved"); err != nil || done {
				return opResult{}, err
			}
			moves, err := tx.MoveStormContainers(ctx, stormActor(e), runbook.Int(args, "storm"))
			if err != nil {
				return opResult{}, refused(err)
			}
			var res opResult
			for _, m := range moves {
				if err := e.q.Enqueue(ctx, tx, EndContainerArgs{ContainerID: m.Old.ID}); err != nil {
					return res, err
				}
				switch {
				case m.Fresh.ID == 0:
					res.Logs = append(res.Logs, fmt.Sprintf("Ended container %s; %s", m.Old.Name, m.Problem))
					continue
				case m.Fresh.State == store.ContainerProvisioning:
					if err := e.q.Enqueue(ctx, tx, ProvisionContainerArgs{ContainerID: m.Fresh.ID}); err != nil {
						return res, err
					}
				}
				res.Logs = append(res.Logs, fmt.Sprintf("Replaced container %s by %s in %s", m.Old.Name, m.Fresh.Name, m.Fresh.Region))
			}
			return res, e.record(ctx, tx, "moved", strconv.Itoa(len(moves)))
		},
	}
}

func opDarkStormWipe() operation {
	return operation{
		spec: runbook.Operation{Name: "dark_storm_wipe", Doc: "Wipes a dark storm's random devservers: their data is destroyed and they are lost.",
			Params: []runbook.Param{stormParam}},
		plan: func(ctx context.Context, s *store.Store, args map[string]any) ([]string, error) {
			st, err := stormOf(ctx, s, args)
			if err != nil {
				return nil, err
			}
			return []string{fmt.Sprintf("Wipe %d random ready devservers of %s and record each data-loss window", st.WipeCount, st.Region)}, nil
		},
		run: func(ctx context.Context, tx *store.Tx, e *opEnv, args map[string]any) (opResult, error) {
			if _, done, err := e.effect(ctx, tx, "wiped"); err != nil || done {
				return opResult{}, err
			}
			ds, err := tx.WipeStorm(ctx, stormActor(e), runbook.Int(args, "storm"))
			if err != nil {
				return opResult{}, refused(err)
			}
			var res opResult
			for _, d := range ds {
				if err := e.q.Enqueue(ctx, tx, WipeDevserverArgs{DevserverID: d.ID}); err != nil {
					return res, err
				}
				res.Logs = append(res.Logs, fmt.Sprintf("Wiped %s (%s)", d.Name, d.Owner))
			}
			if len(ds) == 0 {
				res.Logs = append(res.Logs, "No ready devserver to wipe")
			}
			return res, e.record(ctx, tx, "wiped", strconv.Itoa(len(ds)))
		},
	}
}

// StartStorm starts a storm or a dark storm of a region: the region goes
// down at once (a storm), its SEV opens and its run starts, all in one
// transaction.
func StartStorm(ctx context.Context, s *store.Store, q enqueuer, who store.Actor, in store.StormInput) (store.Storm, error) {
	name := StormRunbook
	if in.Kind == store.DarkStormKind {
		name = DarkStormRunbook
	}
	var st store.Storm
	err := s.InTx(ctx, func(tx *store.Tx) error {
		d, err := definition(ctx, tx, name, 0)
		if err != nil {
			return fmt.Errorf("storm: runbook %s: %w", name, err)
		}
		if st, err = tx.BeginStorm(ctx, who, in); err != nil {
			return err
		}
		values, problems := runbook.Bind(d.Params, map[string]any{"region": st.Region, "storm": st.ID, "sev": strconv.FormatInt(*st.SevID, 10)})
		if len(problems) > 0 {
			return fmt.Errorf("storm: runbook %s: %s", name, runbook.ProblemText(problems))
		}
		run, err := createRun(ctx, tx, q, who, d, values, nil, "")
		if err != nil {
			return err
		}
		st, err = tx.SetStormRun(ctx, who, st.ID, run.ID)
		return err
	})
	return st, err
}

// RecoverStorm ends a region's storm and enqueues the releases it decided.
func RecoverStorm(ctx context.Context, s *store.Store, q enqueuer, who store.Actor, region, replacements string) (store.Recovery, error) {
	var rec store.Recovery
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if rec, err = tx.RecoverStorm(ctx, who, region, replacements); err != nil {
			return err
		}
		for _, id := range rec.ToRelease {
			if err := q.Enqueue(ctx, tx, ReleaseArgs{DevserverID: id}); err != nil {
				return err
			}
		}
		return nil
	})
	return rec, err
}

// ReplaceFromBackup gives the owner of a devserver a storm touched a new one
// in the nearest active region, restored from the latest backup: it is
// reserved and provisioned by the usual jobs, then a replacement job
// restores the backup onto it.
func ReplaceFromBackup(ctx context.Context, s *store.Store, q enqueuer, who store.Actor, owner store.User, devserverID int64) (store.StormDevserver, store.Devserver, error) {
	var e store.StormDevserver
	var d store.Devserver
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if e, d, err = tx.StartStormReplacement(ctx, who, owner, devserverID); err != nil {
			return err
		}
		if !d.FromPool() {
			if err := q.Enqueue(ctx, tx, ProvisionArgs{DevserverID: d.ID}); err != nil {
				return err
			}
		}
		return q.Enqueue(ctx, tx, StormReplaceArgs{EntryID: e.ID})
	})
	return e, d, err
}

// StormReplaceArgs fills a storm replacement from the backup once it is ready.
type StormReplaceArgs struct {
	EntryID int64 `json:"entry_id"`
}

// Kind names the job.
func (StormReplaceArgs) Kind() string { return "storm_replace" }

type stormReplaceWorker struct {
	river.WorkerDefaults[StormReplaceArgs]
	s   *store.Store
	q   enqueuer
	log *slog.Logger
}

// Work looks at the replacement: waiting for it to be ready, then for the
// restore it requests, and records the outcome. It snoozes while waiting.
func (w *stormReplaceWorker) Work(ctx context.Context, job *river.Job[StormReplaceArgs]) error {
	var wait bool
	err := w.s.InTx(ctx, func(tx *store.Tx) error {
		e, err := tx.StormDevserverByID(ctx, job.Args.EntryID)
		if err != nil {
			return err
		}
		if e.State != store.StormReplacing || e.ReplacementID == nil {
			return completeTx(ctx, tx, job)
		}
		d, err := tx.DevserverByID(ctx, *e.ReplacementID)
		if err != nil {
			return err
		}
		fail := func(note string) error {
			if err := tx.FinishStormReplacement(ctx, e.ID, store.StormReplaceFailed, note); err != nil {
				return err
			}
			return completeTx(ctx, tx, job)
		}
		if e.RestoreID == nil {
			switch d.State {
			case store.StateProvisioning:
				wait = true
				return nil
			case store.StateReady:
			default:
				return fail(fmt.Sprintf("The new devserver %s is %s.", d.Name, d.State))
			}
			b, err := tx.BackupByID(ctx, *e.BackupID)
			if err != nil {
				return err
			}
			r, err := tx.RequestRestore(ctx, store.Actor{Name: "storm " + strconv.FormatInt(e.StormID, 10)}, b, d)
			var ce *store.ConflictError
			if errors.As(err, &ce) {
				return fail(ce.Message)
			} else if err != nil {
				return err
			}
			if err := tx.SetStormReplacementRestore(ctx, e.ID, r.ID); err != nil {
				return err
			}
			if err := w.q.Enqueue(ctx, tx, RestoreArgs{RestoreID: r.ID}); err != nil {
				return err
			}
			wait = true
			return nil
		}
		r, err := tx.RestoreByID(ctx, *e.RestoreID)
		if err != nil {
			return err
		}
		switch {
		case r.InFlight():
			wait = true
			return nil
		case r.State == store.RestoreDone:
			if err := tx.FinishStormReplacement(ctx, e.ID, store.StormReplaced, ""); err != nil {
				return err
			}
			return completeTx(ctx, tx, job)
		default:
			return fail("The restore of the backup failed: " + r.Error)
		}
	})
	if err != nil {
		return err
	}
	if wait {
		return river.JobSnooze(500 * time.Millisecond)
	}
	return nil
}

// WipeDevserverArgs destroys a devserver's instance and data (a dark storm).
type WipeDevserverArgs struct {
	DevserverID int64 `json:"devserver_id"`
}

// Kind names the job.
func (WipeDevserverArgs) Kind() string { return "wipe_devserver" }

type wipeDevserverWorker struct {
	river.WorkerDefaults[WipeDevserverArgs]
	s   *store.Store
	f   *fleet.Fleet
	log *slog.Logger
}

func (w *wipeDevserverWorker) NextRetry(job *river.Job[WipeDevserverArgs]) time.Time {
	return backoff(job.Attempt)
}

// Work destroys the instance of a lost devserver (sim: its home is cleared;
// docker: its container and volume go). What is gone already stays gone.
func (w *wipeDevserverWorker) Work(ctx context.Context, job *river.Job[WipeDevserverArgs]) error {
	d, err := w.s.DevserverByID(ctx, job.Args.DevserverID)
	if errors.Is(err, store.ErrNotFound) {
		return river.JobCancel(err)
	}
	if err != nil {
		return err
	}
	if d.State != store.StateLost || d.InstanceID == "" {
		return nil
	}
	h, err := w.s.HostByName(ctx, d.Host)
	if err != nil {
		return err
	}
	drv, err := w.f.Driver(h.Driver)
	if err != nil {
		return river.JobCancel(err)
	}
	if err := drv.Destroy(ctx, d.InstanceID); err != nil {
		return fmt.Errorf("wipe %s: %w", d.Name, err)
	}
	w.log.Info("Wiped devserver", "devserver", d.Name, "instance", d.InstanceID)
	return nil
}
