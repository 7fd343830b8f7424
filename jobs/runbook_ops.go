package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/devport/devport/jobs/runbook"
	"github.com/devport/devport/store"
)

// operation is a registered runbook operation: its typed parameters, what it
// would do (Plan: no side effect), and doing it (Run: inside the transaction
// that completes the step, so its effect and the step's completion commit
// together; keyed by run and step, so a retried step does nothing twice).
type operation struct {
	spec runbook.Operation
	plan func(ctx context.Context, s *store.Store, args map[string]any) ([]string, error)
	run  func(ctx context.Context, tx *store.Tx, e *opEnv, args map[string]any) (opResult, error)
}

// opEnv is what an operation's Run may use besides the transaction.
type opEnv struct {
	s    *store.Store
	q    enqueuer
	run  store.Run
	step string
	// attempt counts the step's retries so far (by its policy or by a
	// person): a pass after a failure sees it grow, and it never goes back.
	attempt int
	now     time.Time
}

// effect returns what this step recorded under key.
func (e *opEnv) effect(ctx context.Context, tx *store.Tx, key string) (string, bool, error) {
	return tx.StepEffect(ctx, e.run.ID, e.step, key)
}

func (e *opEnv) record(ctx context.Context, tx *store.Tx, key, value string) error {
	return tx.RecordStepEffect(ctx, e.run.ID, e.step, key, value)
}

// backUp requests a manual backup of d for the run and enqueues it. A
// devserver that cannot be backed up now (a conflict) is skipped with the
// reason in the step's logs, and ok is false.
func (e *opEnv) backUp(ctx context.Context, tx *store.Tx, d store.Devserver, res *opResult) (b store.Backup, ok bool, err error) {
	b, err = tx.RequestBackup(ctx, store.Actor{Name: "runbook run " + strconv.FormatInt(e.run.ID, 10)}, d, store.BackupManual)
	var ce *store.ConflictError
	if errors.As(err, &ce) {
		res.Logs = append(res.Logs, fmt.Sprintf("Skipped %s: %s", d.Name, ce.Message))
		return b, false, nil
	}
	if err != nil {
		return b, false, err
	}
	return b, true, e.q.Enqueue(ctx, tx, BackupArgs{BackupID: b.ID})
}

// opResult is what one Run did: log lines for the timeline, and Wait when
// the operation is not finished and wants to be looked at again later (the
// job snoozes; no worker sleeps).
type opResult struct {
	Logs []string
	Wait time.Duration
}

// errStepFailed is an operation's failure that a retry cannot mend.
var errStepFailed = errors.New("step failed")

// operations is every registered operation, by name.
func operations() map[string]operation {
	ops := []operation{opLog(), opWait(), opNotify(), opBackupDevservers(), opSetPoolTarget(), opSetContainerPool(), opDrainCordon(), opDrainSev(), opDrainNotify(), opDrainMove(), opDrainFinish()}
	ops = append(ops, hostOps()...)
	ops = append(ops, stormOperations()...)
	out := make(map[string]operation, len(ops))
	for _, op := range ops {
		out[op.spec.Name] = op
	}
	return out
}

// RunbookRegistry is what runbook definitions may use: every registered
// operation with its parameters.
func RunbookRegistry() runbook.Registry {
	r := runbook.Registry{}
	for name, op := range operations() {
		r[name] = op.spec
	}
	return r
}

func opLog() operation {
	return operation{
		spec: runbook.Operation{Name: "log", Doc: "Writes a line to the run's log.", Params: []runbook.Param{
			{Name: "message", Type: runbook.TypeString, Required: true, Doc: "the line"},
		}},
		plan: func(_ context.Context, _ *store.Store, args map[string]any) ([]string, error) {
			return []string{"Log: " + runbook.String(args, "message")}, nil
		},
		run: func(_ context.Context, _ *store.Tx, _ *opEnv, args map[string]any) (opResult, error) {
			return opResult{Logs: []string{runbook.String(args, "message")}}, nil
		},
	}
}

func opWait() operation {
	return operation{
		spec: runbook.Operation{Name: "wait", Doc: "Waits for a while (the step holds no worker meanwhile).", Params: []runbook.Param{
			{Name: "duration", Type: runbook.TypeDuration, Required: true, Doc: "how long, such as 10m"},
		}},
		plan: func(_ context.Context, _ *store.Store, args map[string]any) ([]string, error) {
			return []string{"Wait " + runbook.Duration(args, "duration").String()}, nil
		},
		run: func(ctx context.Context, tx *store.Tx, e *opEnv, args map[string]any) (opResult, error) {
			v, ok, err := e.effect(ctx, tx, "until")
			if err != nil {
				return opResult{}, err
			}
			if !ok {
				d := runbook.Duration(args, "duration")
				until := e.now.Add(d)
				if err := e.record(ctx, tx, "until", until.Format(time.RFC3339Nano)); err != nil {
					return opResult{}, err
				}
				if d <= 0 {
					return opResult{}, nil
				}
				return opResult{Logs: []string{"Waiting " + d.String() + ", until " + until.Format(time.RFC3339)}, Wait: d}, nil
			}
			until, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return opResult{}, fmt.Errorf("wait: %w", err)
			}
			if left := until.Sub(e.now); left > 0 {
				return opResult{Wait: left}, nil
			}
			return opResult{Logs: []string{"Waited until " + until.Format(time.RFC3339)}}, nil
		},
	}
}

// regionDevservers lists the owned, ready devservers of a region, in order.
func regionDevservers(ctx context.Context, s *store.Store, region string) ([]store.Devserver, error) {
	var out []store.Devserver
	var after int64
	for {
		page, err := s.Devservers(ctx, store.DevserverFilter{Region: region, State: store.StateReady, AfterID: after, Limit: 500})
		if err != nil {
			return nil, err
		}
		for _, d := range page {
			if d.OwnerID != 0 {
				out = append(out, d)
			}
		}
		if len(page) < 500 {
			break
		}
		after = page[len(page)-1].ID
	}
	// Oldest first reads better in a plan.
	for l, r := 0, len(out)-1; l < r; l, r = l+1, r-1 {
		out[l], out[r] = out[r], out[l]
	}
	return out, nil
}

func knownRegion(ctx context.Context, s *store.Store, code string) error {
	if _, err := s.Region(ctx, code); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %q is not a region", errStepFailed, code)
	} else if err != nil {
		return err
	}
	return nil
}

func opBackupDevservers() operation {
	return operation{
		spec: runbook.Operation{Name: "backup_devservers", Doc: "Backs up every ready devserver of a region and waits for the backups.", Params: []runbook.Param{
			{Name: "region", Type: runbook.TypeRegion, Required: true},
		}},
		plan: func(ctx context.Context, s *store.Store, args map[string]any) ([]string, error) {
			region := runbook.String(args, "region")
			if err := knownRegion(ctx, s, region); err != nil {
				return nil, err
			}
			ds, err := regionDevservers(ctx, s, region)
			if err != nil {
				return nil, err
			}
			if len(ds) == 0 {
				return []string{"No ready devserver in " + region + ": nothing to back up"}, nil
			}
			lines := make([]string, 0, len(ds)+1)
			for _, d := range ds {
				lines = append(lines, fmt.Sprintf("Back up devserver %s (owner %s)", d.Name, d.Owner))
			}
			return append(lines, fmt.Sprintf("Wait for the %d backups to finish", len(ds))), nil
		},
		run: func(ctx context.Context, tx *store.Tx, e *opEnv, args map[string]any) (opResult, error) {
			region := runbook.String(args, "region")
			var res opResult
			// The first pass requests every backup and records them, all in
			// one transaction: a retry finds them and only waits.
			if _, ok, err := e.effect(ctx, tx, "requested"); err != nil {
				return res, err
			} else if !ok {
				if err := knownRegion(ctx, e.s, region); err != nil {
					return res, err
				}
				ds, err := regionDevservers(ctx, e.s, region)
				if err != nil {
					return res, err
				}
				requested := 0
				for _, d := range ds {
					fresh, err := tx.DevserverByID(ctx, d.ID)
					if err != nil {
						return res, err
					}
					b, ok, err := e.backUp(ctx, tx, fresh, &res)
					if err != nil {
						return res, err
					}
					if !ok {
						continue
					}
					if err := e.record(ctx, tx, "backup:"+d.Name, strconv.FormatInt(b.ID, 10)); err != nil {
						return res, err
					}
					res.Logs = append(res.Logs, fmt.Sprintf("Backing up %s (backup %d)", d.Name, b.ID))
					requested++
				}
				if err := e.record(ctx, tx, "requested", strconv.Itoa(requested)); err != nil {
					return res, err
				}
				if requested == 0 {
					res.Logs = append(res.Logs, "No devserver of "+region+" to back up")
					return res, nil
				}
			}
			// A retry after a failed attempt backs up again the devservers
			// whose backup failed (once per attempt); the others are done.
			if e.attempt > 0 {
				key := "rerequested:" + strconv.Itoa(e.attempt)
				if _, ok, err := e.effect(ctx, tx, key); err != nil {
					return res, err
				} else if !ok {
					again, err := tx.FailedStepBackups(ctx, e.run.ID, e.step)
					if err != nil {
						return res, err
					}
					for _, d := range again {
						b, ok, err := e.backUp(ctx, tx, d, &res)
						if err != nil {
							return res, err
						}
						if !ok {
							continue
						}
						if err := tx.ReplaceStepEffect(ctx, e.run.ID, e.step, "backup:"+d.Name, strconv.FormatInt(b.ID, 10)); err != nil {
							return res, err
						}
						res.Logs = append(res.Logs, fmt.Sprintf("Backing up %s again (backup %d)", d.Name, b.ID))
					}
					if err := e.record(ctx, tx, key, strconv.Itoa(len(again))); err != nil {
						return res, err
					}
				}
			}
			counts, failed, err := tx.StepBackups(ctx, e.run.ID, e.step)
			if err != nil {
				return res, err
			}
			pending, done := counts[store.BackupPending], counts[store.BackupDone]
			switch {
			case pending > 0:
				res.Wait = time.Second
			case len(failed) > 0:
				return res, fmt.Errorf("%w: backups failed: %s", errStepFailed, strings.Join(failed, ", "))
			default:
				res.Logs = append(res.Logs, fmt.Sprintf("Backed up %d devservers of %s", done, region))
			}
			return res, nil
		},
	}
}

func opSetPoolTarget() operation {
	return operation{
		spec: runbook.Operation{Name: "set_pool_target", Doc: "Sets how many ready devservers a region keeps pooled for a flavour.", Params: []runbook.Param{
			{Name: "region", Type: runbook.TypeRegion, Required: true},
			{Name: "flavor", Type: runbook.TypeFlavor, Required: true},
			{Name: "target", Type: runbook.TypeInt, Required: true},
		}},
		plan: func(ctx context.Context, s *store.Store, args map[string]any) ([]string, error) {
			region, flavor, target := runbook.String(args, "region"), runbook.String(args, "flavor"), runbook.Int(args, "target")
			pools, err := s.Pools(ctx)
			if err != nil {
				return nil, err
			}
			for _, p := range pools {
				if p.Region == region && p.Flavor == flavor {
					if int64(p.Target) == target {
						return []string{fmt.Sprintf("Pool %s already has the target %d: no change", store.PoolKey(region, flavor), target)}, nil
					}
					return []string{fmt.Sprintf("Set the target of pool %s from %d to %d (%d ready now)", store.PoolKey(region, flavor), p.Target, target, p.Ready)}, nil
				}
			}
			return nil, fmt.Errorf("%w: there is no pool %s (unknown region or flavour)", errStepFailed, store.PoolKey(region, flavor))
		},
		run: func(ctx context.Context, tx *store.Tx, e *opEnv, args map[string]any) (opResult, error) {
			t := store.PoolTarget{Region: runbook.String(args, "region"), Flavor: runbook.String(args, "flavor"), Target: int(runbook.Int(args, "target"))}
			if err := tx.SetPoolTargets(ctx, store.Actor{Name: "runbook run " + strconv.FormatInt(e.run.ID, 10)}, []store.PoolTarget{t}); err != nil {
				return opResult{}, refused(err)
			}
			if err := e.q.Enqueue(ctx, tx, PoolRefillArgs{}); err != nil {
				return opResult{}, err
			}
			return opResult{Logs: []string{fmt.Sprintf("Set the target of pool %s to %d", store.PoolKey(t.Region, t.Flavor), t.Target)}}, nil
		},
	}
}

func opSetContainerPool() operation {
	return operation{
		spec: runbook.Operation{Name: "set_container_pool", Doc: "Sets a container pool's target, minimum and maximum.", Params: []runbook.Param{
			{Name: "region", Type: runbook.TypeRegion, Required: true},
			{Name: "type", Type: runbook.TypeString, Required: true},
			{Name: "profile", Type: runbook.TypeString, Required: true},
			{Name: "target", Type: runbook.TypeInt, Required: true},
			{Name: "min", Type: runbook.TypeInt, Default: int64(0)},
			{Name: "max", Type: runbook.TypeInt, Required: true},
		}},
		plan: func(ctx context.Context, s *store.Store, args map[string]any) ([]string, error) {
			t := containerPoolTarget(args)
			key := store.ContainerPoolKey(t.Region, t.Type, t.Profile)
			if err := knownRegion(ctx, s, t.Region); err != nil {
				return nil, err
			}
			pools, err := s.ContainerPools(ctx, time.Now().Add(-store.DefaultContainerFreshness))
			if err != nil {
				return nil, err
			}
			for _, p := range pools {
				if store.ContainerPoolKey(p.Region, p.Type, p.Profile) == key {
					return []string{fmt.Sprintf("Set container pool %s from min/target/max %d/%d/%d to %d/%d/%d (%d ready now)", key, p.Min, p.Target, p.Max, t.Min, t.Target, t.Max, p.Ready)}, nil
				}
			}
			return []string{fmt.Sprintf("Create container pool %s with min/target/max %d/%d/%d", key, t.Min, t.Target, t.Max)}, nil
		},
		run: func(ctx context.Context, tx *store.Tx, e *opEnv, args map[string]any) (opResult, error) {
			t := containerPoolTarget(args)
			if err := tx.SetContainerPool(ctx, store.Actor{Name: "runbook run " + strconv.FormatInt(e.run.ID, 10)}, t); err != nil {
				return opResult{}, refused(err)
			}
			if err := e.q.Enqueue(ctx, tx, RefillContainerPoolArgs{Region: t.Region, Type: t.Type, Profile: t.Profile}); err != nil {
				return opResult{}, err
			}
			return opResult{Logs: []string{fmt.Sprintf("Set container pool %s to min/target/max %d/%d/%d", store.ContainerPoolKey(t.Region, t.Type, t.Profile), t.Min, t.Target, t.Max)}}, nil
		},
	}
}

func containerPoolTarget(args map[string]any) store.ContainerPoolTarget {
	return store.ContainerPoolTarget{Region: runbook.String(args, "region"), Type: runbook.String(args, "type"), Profile: runbook.String(args, "profile"),
		Target: int(runbook.Int(args, "target")), Min: int(runbook.Int(args, "min")), Max: int(runbook.Int(args, "max"))}
}

// refused turns the store's refusal of bad input into a failure no retry mends.
func refused(err error) error {
	var ve *store.ValidationError
	var ce *store.ConflictError
	switch {
	case errors.As(err, &ve):
		return fmt.Errorf("%w: %s", errStepFailed, strings.TrimPrefix(ve.Error(), "invalid input: "))
	case errors.As(err, &ce):
		return fmt.Errorf("%w: %s", errStepFailed, ce.Message)
	}
	return err
}

// jsonText is v as compact JSON, for effects and events.
func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func notifyAudience(args map[string]any) store.Audience {
	a := store.Audience{Kind: runbook.String(args, "audience"), Region: runbook.String(args, "region"), Host: runbook.String(args, "host"),
		Flavor: runbook.String(args, "flavor"), Sharees: runbook.Bool(args, "sharees")}
	for _, e := range strings.Split(runbook.String(args, "emails"), ",") {
		if e = strings.TrimSpace(e); e != "" {
			a.Emails = append(a.Emails, e)
		}
	}
	return a
}

func opNotify() operation {
	return operation{
		spec: runbook.Operation{Name: "notify", Doc: "Notifies an audience chosen from the live inventory at send time, once per person, optionally with a task.", Params: []runbook.Param{
			{Name: "audience", Type: runbook.TypeString, Required: true, Doc: strings.Join(store.AudienceKinds, ", ")},
			{Name: "region", Type: runbook.TypeString},
			{Name: "host", Type: runbook.TypeString},
			{Name: "flavor", Type: runbook.TypeString},
			{Name: "sharees", Type: runbook.TypeBool},
			{Name: "emails", Type: runbook.TypeString, Doc: "comma-separated, for the users audience"},
			{Name: "title", Type: runbook.TypeString, Required: true},
			{Name: "body", Type: runbook.TypeString},
			{Name: "link", Type: runbook.TypeString},
			{Name: "task_title", Type: runbook.TypeString},
			{Name: "task_due_in", Type: runbook.TypeDuration},
		}},
		plan: func(ctx context.Context, s *store.Store, args map[string]any) ([]string, error) {
			a := notifyAudience(args)
			if err := a.Validate(); err != nil {
				return nil, refused(err)
			}
			us, err := s.AudienceUsers(ctx, a)
			if err != nil {
				return nil, refused(err)
			}
			lines := []string{fmt.Sprintf("Notify %s (%s): %q", people(len(us)), a.String(), runbook.String(args, "title"))}
			for i, u := range us {
				if i == 20 {
					lines = append(lines, fmt.Sprintf("… and %d more", len(us)-20))
					break
				}
				lines = append(lines, "Notify "+u.Email)
			}
			if t := runbook.String(args, "task_title"); t != "" {
				lines = append(lines, fmt.Sprintf("Each gets the task %q, due in %s", t, runbook.Duration(args, "task_due_in")))
			}
			return lines, nil
		},
		run: func(ctx context.Context, tx *store.Tx, e *opEnv, args map[string]any) (opResult, error) {
			a := notifyAudience(args)
			m := store.Message{Kind: "runbook", Title: runbook.String(args, "title"), Body: runbook.String(args, "body"), Link: runbook.String(args, "link"),
				Key: fmt.Sprintf("runbook:%d:%s", e.run.ID, e.step)}
			if t := runbook.String(args, "task_title"); t != "" {
				due := runbook.Duration(args, "task_due_in")
				if due <= 0 {
					due = 7 * 24 * time.Hour
				}
				m.Task = &store.TaskSpec{Title: t, Due: e.now.Add(due)}
			}
			n, err := tx.NotifyAudience(ctx, store.Actor{Name: "runbook run " + strconv.FormatInt(e.run.ID, 10)}, a, m)
			if err != nil {
				return opResult{}, refused(err)
			}
			return opResult{Logs: []string{fmt.Sprintf("Notified %s (%s): %s", people(n), a.String(), m.Title)}}, nil
		},
	}
}

func people(n int) string {
	if n == 1 {
		return "1 person"
	}
	return strconv.Itoa(n) + " people"
}
