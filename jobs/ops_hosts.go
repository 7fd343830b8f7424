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

// Host operations: the runbooks host-maintenance and host-decommission put a
// host out of placement, move everything off it and then return it to
// service or retire it.

// hostOps are the operations of host maintenance and decommissioning.
func hostOps() []operation {
	return []operation{opCordonHost(), opEvacuateHost(), opUncordonHost(), opRetireHost()}
}

func runActor(e *opEnv) store.Actor {
	return store.Actor{Name: "runbook run " + strconv.FormatInt(e.run.ID, 10)}
}

func hostFor(ctx context.Context, s *store.Store, name string) (store.Host, error) {
	h, err := s.HostByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return store.Host{}, fmt.Errorf("%w: %q is not a host", errStepFailed, name)
	}
	return h, err
}

func opCordonHost() operation {
	return operation{
		spec: runbook.Operation{Name: "cordon_host", Doc: "Takes a host out of placement: maintenance or decommissioning (no new devservers land on it).", Params: []runbook.Param{
			{Name: "host", Type: runbook.TypeString, Required: true, Doc: "the host's name"},
			{Name: "state", Type: runbook.TypeString, Required: true, Doc: "maintenance or decommissioning"},
		}},
		plan: func(ctx context.Context, s *store.Store, args map[string]any) ([]string, error) {
			h, err := hostFor(ctx, s, runbook.String(args, "host"))
			if err != nil {
				return nil, err
			}
			op := store.HostOpMaintenance
			if runbook.String(args, "state") == store.HostDecommissioning {
				op = store.HostOpDecommission
			}
			if err := store.CheckHostOperation(h, op); err != nil {
				return nil, refused(err)
			}
			return []string{fmt.Sprintf("Put host %s (%s, %s) into %s: no new placements on it", h.Name, h.Kind, h.Region, runbook.String(args, "state"))}, nil
		},
		run: func(ctx context.Context, tx *store.Tx, e *opEnv, args map[string]any) (opResult, error) {
			name, state := runbook.String(args, "host"), runbook.String(args, "state")
			var from []string
			switch state {
			case store.HostMaintenance:
				from = []string{store.HostReady, store.HostMaintenance}
			case store.HostDecommissioning:
				from = []string{store.HostReady, store.HostMaintenance, store.HostDecommissioning}
			default:
				return opResult{}, fmt.Errorf("%w: state must be maintenance or decommissioning, not %q", errStepFailed, state)
			}
			if _, err := tx.HostByName(ctx, name); errors.Is(err, store.ErrNotFound) {
				return opResult{}, fmt.Errorf("%w: %q is not a host", errStepFailed, name)
			}
			h, err := tx.SetHostState(ctx, runActor(e), name, from, state)
			if err != nil {
				return opResult{}, refused(err)
			}
			return opResult{Logs: []string{fmt.Sprintf("Host %s is %s: no new placements on it", h.Name, h.State)}}, nil
		},
	}
}

// evacuateArgs are the evacuate_host parameters.
type evacuateArgs struct {
	host      string
	dueIn     time.Duration
	moveAtDue bool
	reason    string
}

// maxMoveTries bounds how often one devserver's move is started again after
// a failed one.
const maxMoveTries = 3

func opEvacuateHost() operation {
	return operation{
		spec: runbook.Operation{Name: "evacuate_host", Doc: "Moves every devserver off a host: VMs live-migrated (same region first, then the nearest), " +
			"container-backed ones migrated by backup and restore, pooled ones released; owners of physical ones get a task with a due date and a move-me action. " +
			"Done when nothing is left on the host.", Params: []runbook.Param{
			{Name: "host", Type: runbook.TypeString, Required: true, Doc: "the host's name"},
			{Name: "due_in", Type: runbook.TypeDuration, Default: "72h0m0s", Doc: "when physical devservers' owners are asked to have moved"},
			{Name: "move_at_due", Type: runbook.TypeBool, Default: true, Doc: "move what is left at the due date by backup and restore"},
			{Name: "reason", Type: runbook.TypeString, Default: "host maintenance", Doc: "said to owners"},
		}},
		plan: func(ctx context.Context, s *store.Store, args map[string]any) ([]string, error) {
			a := evacuateArgsOf(args)
			h, err := hostFor(ctx, s, a.host)
			if err != nil {
				return nil, err
			}
			ds, err := s.HostDevservers(ctx, h.ID)
			if err != nil {
				return nil, err
			}
			var lines []string
			for _, d := range ds {
				lines = append(lines, fmt.Sprintf("%s %s (%s, owner %s)", evacuationVerb(d), d.Name, d.Flavor, ownerOrPool(d)))
			}
			if len(lines) == 0 {
				return []string{"Host " + h.Name + " runs no devserver: nothing to move"}, nil
			}
			return append(lines, "Wait until host "+h.Name+" runs nothing"), nil
		},
		run: func(ctx context.Context, tx *store.Tx, e *opEnv, args map[string]any) (opResult, error) {
			return evacuate(ctx, tx, e, evacuateArgsOf(args))
		},
	}
}

func evacuateArgsOf(args map[string]any) evacuateArgs {
	return evacuateArgs{host: runbook.String(args, "host"), dueIn: runbook.Duration(args, "due_in"), moveAtDue: runbook.Bool(args, "move_at_due"), reason: runbook.String(args, "reason")}
}

func ownerOrPool(d store.Devserver) string {
	if d.Pooled() {
		return "pool"
	}
	return d.Owner
}

func evacuationVerb(d store.Devserver) string {
	switch {
	case d.Kind == "vm":
		return "Live-migrate"
	case d.Pooled():
		return "Release pooled"
	case d.Kind == "physical":
		return "Ask the owner to move (task with a due date), then migrate"
	}
	return "Migrate by backup and restore"
}

// MoveOffHostURL is the page where an owner moves a devserver off a host
// that is going away.
func MoveOffHostURL(name string) string { return "/devservers/" + name + "/move-off-host" }

// evacuate is one pass over the host: it starts what has not started, and
// waits while anything is left.
func evacuate(ctx context.Context, tx *store.Tx, e *opEnv, a evacuateArgs) (opResult, error) {
	var res opResult
	h, err := tx.HostByName(ctx, a.host)
	if errors.Is(err, store.ErrNotFound) {
		return res, fmt.Errorf("%w: %q is not a host", errStepFailed, a.host)
	} else if err != nil {
		return res, err
	}
	if h.State == store.HostReady {
		return res, fmt.Errorf("%w: host %s is ready again (the operation was ended); nothing to evacuate", errStepFailed, h.Name)
	}
	ds, err := tx.HostDevservers(ctx, h.ID)
	if err != nil {
		return res, err
	}
	who := runActor(e)
	left := 0
	once := func(key, line string) error {
		if _, said, err := e.effect(ctx, tx, key); err != nil || said {
			return err
		}
		res.Logs = append(res.Logs, line)
		return e.record(ctx, tx, key, "1")
	}
	for _, d := range ds {
		id := strconv.FormatInt(d.ID, 10)
		if d.State == store.StateUnreachable || d.State == store.StateLost {
			// Nothing can move what does not answer; a storm's recovery or
			// its owner's replacement deals with it.
			if err := once("skipped:"+id, fmt.Sprintf("Not moving %s: it is %s", d.Name, d.State)); err != nil {
				return res, err
			}
			continue
		}
		left++
		if d.State != store.StateReady {
			continue // on its way (migrating, provisioning, releasing): looked at again next pass
		}
		if d.Kind == "physical" && !d.Pooled() {
			due, asked, err := askOwner(ctx, tx, e, a, h, d)
			if err != nil {
				return res, err
			}
			if asked {
				res.Logs = append(res.Logs, fmt.Sprintf("Asked %s to move %s off %s by %s", d.Owner, d.Name, h.Name, due.Format(time.RFC3339)))
			}
			if !a.moveAtDue || e.now.Before(due) {
				continue
			}
		}
		tries := 0
		if v, ok, err := e.effect(ctx, tx, "tries:"+id); err != nil {
			return res, err
		} else if ok {
			tries, _ = strconv.Atoi(v)
		}
		if tries >= maxMoveTries {
			if err := once("gave_up:"+id, fmt.Sprintf("Gave up moving %s after %d failed tries; move it by hand (or cancel the run)", d.Name, tries)); err != nil {
				return res, err
			}
			continue
		}
		line, err := startMove(ctx, tx, e, who, d, a.reason)
		var ce *store.ConflictError
		if errors.As(err, &ce) {
			// No room anywhere, or the devserver changed: said once, tried again later.
			if err := once("stuck:"+id, fmt.Sprintf("Could not move %s yet: %s", d.Name, ce.Message)); err != nil {
				return res, err
			}
			continue
		} else if err != nil {
			return res, err
		}
		if tries == 0 {
			err = e.record(ctx, tx, "tries:"+id, "1")
		} else {
			err = tx.ReplaceStepEffect(ctx, e.run.ID, e.step, "tries:"+id, strconv.Itoa(tries+1))
		}
		if err != nil {
			return res, err
		}
		res.Logs = append(res.Logs, line)
	}
	if left == 0 {
		res.Logs = append(res.Logs, "Host "+h.Name+" runs no devserver any more")
		return res, nil
	}
	res.Wait = time.Second
	return res, nil
}

// askOwner gives a physical devserver's owner a task to move it, once, and
// returns its due date (and whether it was asked in this pass).
func askOwner(ctx context.Context, tx *store.Tx, e *opEnv, a evacuateArgs, h store.Host, d store.Devserver) (time.Time, bool, error) {
	key := "asked:" + strconv.FormatInt(d.ID, 10)
	if v, ok, err := e.effect(ctx, tx, key); err != nil {
		return time.Time{}, false, err
	} else if ok {
		due, err := time.Parse(time.RFC3339Nano, v)
		return due, false, err
	}
	due := e.now.Add(a.dueIn)
	then := "it stays where it is"
	if a.moveAtDue {
		then = "the platform team moves it for you by backup and restore (a short interruption)"
	}
	_, err := tx.NotifyAudience(ctx, runActor(e), store.Audience{Kind: store.AudienceUsers, Emails: []string{d.Owner}}, store.Message{
		Kind: "host", Key: fmt.Sprintf("runbook:%d:%s:%s", e.run.ID, e.step, key), Link: MoveOffHostURL(d.Name),
		Title: fmt.Sprintf("Please move devserver %s off host %s", d.Name, h.Name),
		Body: fmt.Sprintf("Host %s in %s is going out of service (%s). Your physical devserver %s runs on it. "+
			"Move it with one click (a backup, then a restore onto another host) before %s; after that %s.",
			h.Name, h.Region, a.reason, d.Name, due.Format("Mon 2 Jan 15:04 MST"), then),
		Task: &store.TaskSpec{Title: fmt.Sprintf("Move devserver %s off host %s", d.Name, h.Name), Due: due},
	})
	if err != nil {
		return time.Time{}, false, err
	}
	return due, true, e.record(ctx, tx, key, due.Format(time.RFC3339Nano))
}

// startMove starts moving one ready devserver off its host, by its kind.
func startMove(ctx context.Context, tx *store.Tx, e *opEnv, who store.Actor, d store.Devserver, reason string) (string, error) {
	switch {
	case d.Kind == "vm":
		runID := e.run.ID
		m, err := tx.StartLiveMove(ctx, who, d, &runID)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("Live-migrating %s to %s (%s)", d.Name, m.ToHost, m.ToRegion), e.q.Enqueue(ctx, tx, LiveMoveArgs{MoveID: m.ID})
	case d.Pooled():
		d, needsFleet, err := tx.StartRelease(ctx, who, d)
		if err != nil {
			return "", err
		}
		if needsFleet {
			if err := e.q.Enqueue(ctx, tx, ReleaseArgs{DevserverID: d.ID}); err != nil {
				return "", err
			}
		}
		return "Releasing pooled " + d.Name, nil
	}
	m, err := tx.StartHostMigration(ctx, who, d, nil, "Moving off host "+d.Host+" ("+reason+"): step 1 of 5, backing up")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("Migrating %s to %s (%s) by backup and restore", d.Name, m.ToHost, m.ToRegion), e.q.Enqueue(ctx, tx, MigrateArgs{MigrationID: m.ID})
}

func opUncordonHost() operation {
	return operation{
		spec: runbook.Operation{Name: "uncordon_host", Doc: "Returns a host in maintenance to service (ready: it takes placements again).", Params: []runbook.Param{
			{Name: "host", Type: runbook.TypeString, Required: true},
		}},
		plan: func(ctx context.Context, s *store.Store, args map[string]any) ([]string, error) {
			h, err := hostFor(ctx, s, runbook.String(args, "host"))
			if err != nil {
				return nil, err
			}
			return []string{"Return host " + h.Name + " to ready"}, nil
		},
		run: func(ctx context.Context, tx *store.Tx, e *opEnv, args map[string]any) (opResult, error) {
			h, err := tx.SetHostState(ctx, runActor(e), runbook.String(args, "host"), []string{store.HostMaintenance, store.HostReady}, store.HostReady)
			if err != nil {
				return opResult{}, refused(err)
			}
			return opResult{Logs: []string{"Host " + h.Name + " is ready again"}}, nil
		},
	}
}

func opRetireHost() operation {
	return operation{
		spec: runbook.Operation{Name: "retire_host", Doc: "Retires a decommissioned host that runs nothing: out of circulation for good.", Params: []runbook.Param{
			{Name: "host", Type: runbook.TypeString, Required: true},
		}},
		plan: func(ctx context.Context, s *store.Store, args map[string]any) ([]string, error) {
			h, err := hostFor(ctx, s, runbook.String(args, "host"))
			if err != nil {
				return nil, err
			}
			return []string{"Retire host " + h.Name + " once it runs nothing"}, nil
		},
		run: func(ctx context.Context, tx *store.Tx, e *opEnv, args map[string]any) (opResult, error) {
			h, err := tx.RetireHost(ctx, runActor(e), runbook.String(args, "host"))
			if err != nil {
				return opResult{}, refused(err)
			}
			return opResult{Logs: []string{"Host " + h.Name + " is retired: out of circulation"}}, nil
		},
	}
}

// LiveMoveArgs live-migrates a devserver off its host (Driver.Migrate).
type LiveMoveArgs struct {
	MoveID int64 `json:"move_id"`
}

// Kind names the job.
func (LiveMoveArgs) Kind() string { return "live_migrate_devserver" }

// InsertOpts: a driver that cannot live-migrate, or a last failed attempt,
// ends the move and leaves the devserver where it was.
func (LiveMoveArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 5} }

type liveMoveWorker struct {
	river.WorkerDefaults[LiveMoveArgs]
	s   *store.Store
	f   *fleet.Fleet
	log *slog.Logger
}

func (w *liveMoveWorker) Timeout(*river.Job[LiveMoveArgs]) time.Duration { return 5 * time.Minute }

func (w *liveMoveWorker) NextRetry(job *river.Job[LiveMoveArgs]) time.Time {
	return backoff(job.Attempt)
}

func (w *liveMoveWorker) Work(ctx context.Context, job *river.Job[LiveMoveArgs]) error {
	m, err := w.s.HostMove(ctx, job.Args.MoveID)
	if errors.Is(err, store.ErrNotFound) {
		return river.JobCancel(err)
	}
	if err != nil {
		return err
	}
	if m.State != "running" {
		return done(ctx, w.s, job)
	}
	d, err := w.s.DevserverByID(ctx, m.DevserverID)
	if err != nil {
		return err
	}
	src, err := w.s.Host(ctx, m.FromHostID)
	if err != nil {
		return err
	}
	drv, err := w.f.Driver(src.Driver)
	if err == nil {
		var inst fleet.Instance
		if inst, err = drv.Migrate(ctx, d.InstanceID, m.ToHost); err == nil {
			return w.s.InTx(ctx, func(tx *store.Tx) error {
				if err := tx.FinishLiveMove(ctx, m, inst.Address); err != nil {
					return err
				}
				w.log.Info("Live-migrated devserver", "devserver", d.Name, "from", src.Name, "to", m.ToHost)
				return completeTx(ctx, tx, job)
			})
		}
	}
	if !errors.Is(err, fleet.ErrNotSupported) && job.Attempt < job.MaxAttempts {
		return fmt.Errorf("live-migrate %s to %s: %w", d.Name, m.ToHost, err)
	}
	w.log.Warn("Live migration failed; devserver stays", "devserver", d.Name, "to", m.ToHost, "error", err)
	return w.s.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.FailLiveMove(ctx, m, err); err != nil {
			return err
		}
		return completeTx(ctx, tx, job)
	})
}

// HostOpRunbooks are the runbooks of the host operations, by operation.
var HostOpRunbooks = map[string]string{store.HostOpMaintenance: "host-maintenance", store.HostOpDecommission: "host-decommission"}

// StartHostOperation cordons a host at once and starts the run of its
// operation (maintenance or decommissioning) in the same transaction: from
// then on no placement lands on it, and a second operation on it is refused
// (a ConflictError) instead of racing the first.
func StartHostOperation(ctx context.Context, s *store.Store, q enqueuer, who store.Actor, hostName, op string, params map[string]any) (store.Run, error) {
	name, ok := HostOpRunbooks[op]
	if !ok {
		return store.Run{}, fmt.Errorf("unknown host operation %q", op)
	}
	d, err := definition(ctx, s, name, 0)
	if err != nil {
		return store.Run{}, err
	}
	values, err := bindRunParams(ctx, s, d, params)
	if err != nil {
		return store.Run{}, err
	}
	to, from := store.HostMaintenance, []string{store.HostReady}
	if op == store.HostOpDecommission {
		to, from = store.HostDecommissioning, []string{store.HostReady, store.HostMaintenance}
	}
	var run store.Run
	err = s.InTx(ctx, func(tx *store.Tx) error {
		h, err := tx.HostByName(ctx, hostName)
		if err != nil {
			return err
		}
		if err := store.CheckHostOperation(h, op); err != nil {
			return err
		}
		if _, err := tx.SetHostState(ctx, who, h.Name, from, to); err != nil {
			return err
		}
		run, err = createRun(ctx, tx, q, who, d, values, nil, "")
		return err
	})
	return run, err
}
