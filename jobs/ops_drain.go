package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/jobs/runbook"
	"github.com/devport/devport/store"
)

// DrainRunbook is the built-in runbook that drains a region.
const DrainRunbook = "drain-region"

// Drain limits and defaults.
const (
	DefaultDrainParallel  = 20
	MaxDrainParallel      = 1000
	DefaultDrainDeadline  = 72 * time.Hour
	maxDrainReason        = 500
	drainPollEvery        = time.Second
	drainListedAtDeadline = 50
)

// DrainRequest is what an admin asks of a drain.
type DrainRequest struct {
	Region      string     `json:"-"`
	Reason      string     `json:"reason"`
	Kind        string     `json:"kind"`
	Deadline    *time.Time `json:"deadline"`
	MaxParallel *int       `json:"max_parallel"`
	Sev         *int64     `json:"sev"`
	DryRun      bool       `json:"dry_run"`
}

// drainKind is the SEV kind of a drain: the one asked, or incident when the
// reason says so, or exercise.
func drainKind(kind, reason string) string {
	if kind != "" {
		return kind
	}
	if strings.Contains(strings.ToLower(reason), "incident") {
		return store.SevIncident
	}
	return store.SevExercise
}

// validate checks the request field by field and fills the defaults.
func (r *DrainRequest) validate(now time.Time) error {
	p := store.Problems{}
	r.Reason = strings.TrimSpace(r.Reason)
	switch {
	case r.Reason == "":
		p.Add("reason", "is required: say why the region is drained")
	case len(r.Reason) > maxDrainReason:
		p.Add("reason", fmt.Sprintf("is longer than %d characters", maxDrainReason))
	}
	if r.Kind != "" && r.Kind != store.SevExercise && r.Kind != store.SevIncident {
		p.Add("kind", "must be exercise or incident")
	}
	if r.Deadline == nil {
		d := now.Add(DefaultDrainDeadline)
		r.Deadline = &d
	} else if !r.Deadline.After(now) {
		p.Add("deadline", "is in the past: give a time to come")
	} else if r.Deadline.Sub(now) > runbook.MaxDeadline {
		p.Add("deadline", "is more than 30 days away")
	}
	if r.MaxParallel == nil {
		n := DefaultDrainParallel
		r.MaxParallel = &n
	} else if *r.MaxParallel < 1 || *r.MaxParallel > MaxDrainParallel {
		p.Add("max_parallel", fmt.Sprintf("must be between 1 and %d", MaxDrainParallel))
	}
	if r.Sev != nil && *r.Sev <= 0 {
		p.Add("sev", "must be the number of a SEV")
	}
	return p.Err()
}

// DrainPlanLine is one devserver of a dry run.
type DrainPlanLine = store.DrainMove

// PlanDrain is a dry run of a drain: what would move where, by which means.
// It changes nothing; bad input is refused as a real drain would be.
func PlanDrain(ctx context.Context, s *store.Store, req DrainRequest) ([]store.DrainMove, error) {
	r, err := s.Region(ctx, req.Region)
	if err != nil {
		return nil, err
	}
	if err := req.validate(s.Now()); err != nil {
		return nil, err
	}
	if r.Status == "draining" {
		return nil, store.Conflict("already_draining", fmt.Sprintf("Region %s is being drained already.", r.Code))
	}
	if !r.Active() {
		return nil, store.Conflict("region_not_active", fmt.Sprintf("Region %s is %s.", r.Code, r.Status))
	}
	return s.DrainPlan(ctx, req.Region)
}

// StartDrain cordons the region, records the drain, opens (or reuses) its
// SEV and starts the drain-region run carrying the SEV, all in one
// transaction: a second drain of the region is already_draining.
func StartDrain(ctx context.Context, s *store.Store, q enqueuer, who store.Actor, req DrainRequest) (store.Drain, store.Run, error) {
	if _, err := s.Region(ctx, req.Region); err != nil {
		return store.Drain{}, store.Run{}, err
	}
	if err := req.validate(s.Now()); err != nil {
		return store.Drain{}, store.Run{}, err
	}
	d, err := definition(ctx, s, DrainRunbook, 0)
	if err != nil {
		return store.Drain{}, store.Run{}, err
	}
	kind := drainKind(req.Kind, req.Reason)
	var drain store.Drain
	var run store.Run
	err = s.InTx(ctx, func(tx *store.Tx) error {
		drain, err = tx.OpenDrain(ctx, who, store.Drain{Region: req.Region, Reason: req.Reason, Kind: kind, MaxParallel: *req.MaxParallel, DeadlineAt: req.Deadline.UTC()})
		if err != nil {
			return err
		}
		var sev store.Sev
		if req.Sev != nil {
			if sev, err = tx.SevByID(ctx, *req.Sev); errors.Is(err, store.ErrNotFound) {
				return &store.ValidationError{Fields: map[string]string{"sev": fmt.Sprintf("SEV-%d does not exist", *req.Sev)}}
			} else if err != nil {
				return err
			}
		} else {
			if sev, err = createDrainSev(ctx, tx, who, drain); err != nil {
				return err
			}
		}
		if err := tx.SetDrainSev(ctx, drain.ID, sev.ID); err != nil {
			return err
		}
		values, err := bindRunParams(ctx, s, d, map[string]any{
			"region": req.Region, "reason": req.Reason, "deadline": req.Deadline.UTC().Format(time.RFC3339),
			"max_parallel": int64(*req.MaxParallel), "kind": kind, "sev": strconv.FormatInt(sev.ID, 10),
		})
		if err != nil {
			return err
		}
		if run, err = createRun(ctx, tx, q, who, d, values, nil, ""); err != nil {
			return err
		}
		if err := tx.SetDrainRun(ctx, drain.ID, run.ID); err != nil {
			return err
		}
		drain, err = tx.Drain(ctx, drain.ID)
		return err
	})
	return drain, run, err
}

func createDrainSev(ctx context.Context, tx *store.Tx, who store.Actor, drain store.Drain) (store.Sev, error) {
	title := clipText(fmt.Sprintf("Drain of region %s: %s", drain.Region, drain.Reason), 200)
	sev, kind, regions := 3, drain.Kind, []string{drain.Region}
	if kind == store.SevExercise {
		sev = 4
	}
	return tx.CreateSev(ctx, who, store.SevInput{Title: &title, Severity: &sev, Kind: &kind, Regions: &regions})
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Undrain cancels a region's drain (its run and the runs nested in it) and
// makes the region active again. Devservers already moving finish their move.
func Undrain(ctx context.Context, s *store.Store, q enqueuer, who store.Actor, region string) (store.Region, error) {
	var out store.Region
	err := s.InTx(ctx, func(tx *store.Tx) error {
		drain, err := tx.OpenDrainOf(ctx, region)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		default:
			if drain.RunID != nil {
				run, err := tx.Run(ctx, *drain.RunID)
				if err != nil {
					return err
				}
				if run.State == store.RunRunning {
					if err := endRun(ctx, tx, q, who, run, store.RunCancelled, "the region was undrained by "+who.Name, false); err != nil {
						return err
					}
				}
			}
			if _, err := tx.FinishDrain(ctx, who, drain.ID, store.DrainCancelled); err != nil {
				return err
			}
		}
		if err := tx.SetRegionStatus(ctx, who, region, []string{"draining", "drained"}, "active"); err != nil {
			var ce *store.ConflictError
			if errors.As(err, &ce) {
				return store.Conflict("not_draining", fmt.Sprintf("Region %s is not draining or drained: nothing to undrain.", region))
			}
			return err
		}
		out, err = tx.RegionByCode(ctx, region)
		return err
	})
	return out, err
}

// drainOf is the drain the run carries out.
func drainOf(ctx context.Context, tx *store.Tx, e *opEnv) (store.Drain, error) {
	d, err := tx.DrainByRun(ctx, e.run.ID)
	if errors.Is(err, store.ErrNotFound) {
		return d, fmt.Errorf("%w: run %d carries out no drain (the cordon step records it)", errStepFailed, e.run.ID)
	}
	return d, err
}

func drainActor(id int64) store.Actor { return store.Actor{Name: "drain " + strconv.FormatInt(id, 10)} }

func regionParam() runbook.Param {
	return runbook.Param{Name: "region", Type: runbook.TypeRegion, Required: true}
}

func opDrainCordon() operation {
	return operation{
		spec: runbook.Operation{Name: "drain_cordon", Doc: "Cordons a region (draining: new devservers go elsewhere) and records its drain; one open drain per region.", Params: []runbook.Param{
			regionParam(),
			{Name: "reason", Type: runbook.TypeString, Required: true},
			{Name: "deadline", Type: runbook.TypeString, Required: true, Doc: "RFC 3339"},
			{Name: "max_parallel", Type: runbook.TypeInt, Default: int64(DefaultDrainParallel)},
			{Name: "kind", Type: runbook.TypeString},
		}},
		plan: func(ctx context.Context, s *store.Store, args map[string]any) ([]string, error) {
			region := runbook.String(args, "region")
			r, err := s.Region(ctx, region)
			if err != nil {
				return nil, fmt.Errorf("%w: %q is not a region", errStepFailed, region)
			}
			return []string{fmt.Sprintf("Cordon region %s (now %s): new devservers and containers go to other regions", region, r.Status)}, nil
		},
		run: func(ctx context.Context, tx *store.Tx, e *opEnv, args map[string]any) (opResult, error) {
			region := runbook.String(args, "region")
			drain, err := tx.DrainByRun(ctx, e.run.ID)
			if errors.Is(err, store.ErrNotFound) {
				// Started as a plain runbook run: record the drain now.
				deadline, perr := time.Parse(time.RFC3339, runbook.String(args, "deadline"))
				if perr != nil {
					return opResult{}, fmt.Errorf("%w: deadline %q is not an RFC 3339 time", errStepFailed, runbook.String(args, "deadline"))
				}
				n := int(runbook.Int(args, "max_parallel"))
				req := DrainRequest{Region: region, Reason: runbook.String(args, "reason"), Kind: runbook.String(args, "kind"), Deadline: &deadline, MaxParallel: &n}
				if err := req.validate(e.now); err != nil {
					return opResult{}, refused(err)
				}
				runID := e.run.ID
				drain, err = tx.OpenDrain(ctx, drainActor(0), store.Drain{Region: region, RunID: &runID, Reason: req.Reason, Kind: drainKind(req.Kind, req.Reason),
					MaxParallel: n, DeadlineAt: deadline.UTC()})
				if err != nil {
					return opResult{}, refused(err)
				}
			} else if err != nil {
				return opResult{}, err
			}
			r, err := tx.RegionByCode(ctx, drain.Region)
			if err != nil {
				return opResult{}, err
			}
			if r.Status == "active" {
				if err := tx.SetRegionStatus(ctx, drainActor(drain.ID), drain.Region, []string{"active"}, "draining"); err != nil {
					return opResult{}, refused(err)
				}
			}
			return opResult{Logs: []string{fmt.Sprintf("Region %s is cordoned (draining): new devservers and containers go to other regions. Drain %d, deadline %s, at most %d moves at once.",
				drain.Region, drain.ID, drain.DeadlineAt.Format(time.RFC3339), drain.MaxParallel)}}, nil
		},
	}
}

func opDrainSev() operation {
	return operation{
		spec: runbook.Operation{Name: "drain_sev", Doc: "Opens the drain's SEV (exercise, or incident when the reason says so), or reuses the one given.", Params: []runbook.Param{
			regionParam(),
			{Name: "reason", Type: runbook.TypeString, Required: true},
			{Name: "kind", Type: runbook.TypeString},
			{Name: "sev", Type: runbook.TypeString},
		}},
		plan: func(_ context.Context, _ *store.Store, args map[string]any) ([]string, error) {
			if sev := runbook.String(args, "sev"); sev != "" {
				return []string{"Track the drain on SEV " + sev}, nil
			}
			return []string{fmt.Sprintf("Open a SEV (%s) for the drain of %s", drainKind(runbook.String(args, "kind"), runbook.String(args, "reason")), runbook.String(args, "region"))}, nil
		},
		run: func(ctx context.Context, tx *store.Tx, e *opEnv, args map[string]any) (opResult, error) {
			drain, err := drainOf(ctx, tx, e)
			if err != nil {
				return opResult{}, err
			}
			if drain.SevID != nil {
				return opResult{Logs: []string{fmt.Sprintf("SEV-%d tracks the drain", *drain.SevID)}}, nil
			}
			var sev store.Sev
			if n := store.RunSevNumber(e.run); n > 0 {
				if sev, err = tx.SevByID(ctx, n); err != nil {
					return opResult{}, fmt.Errorf("%w: SEV-%d: %v", errStepFailed, n, err)
				}
			} else if sev, err = createDrainSev(ctx, tx, drainActor(drain.ID), drain); err != nil {
				return opResult{}, refused(err)
			}
			if err := tx.SetDrainSev(ctx, drain.ID, sev.ID); err != nil {
				return opResult{}, err
			}
			return opResult{Logs: []string{fmt.Sprintf("SEV-%d (%s) tracks the drain", sev.ID, sev.Kind)}}, nil
		},
	}
}

func drainMessage(drain store.Drain) store.Message {
	return store.Message{Kind: "drain", Key: "drain:" + strconv.FormatInt(drain.ID, 10),
		Title: fmt.Sprintf("Region %s is being drained", drain.Region),
		Body: fmt.Sprintf("The platform team is draining region %s (%s). VM devservers move by live migration without a restart; container-backed devservers move "+
			"by backup and restore; owners of physical devservers get a task to move theirs by %s.", drain.Region, drain.Reason, drain.DeadlineAt.Format(time.RFC1123)),
		Link: "/devservers"}
}

func opDrainNotify() operation {
	return operation{
		spec: runbook.Operation{Name: "drain_notify", Doc: "Tells the owners of the region's devservers and containers about the drain, once each.", Params: []runbook.Param{
			regionParam(), {Name: "reason", Type: runbook.TypeString},
		}},
		plan: func(ctx context.Context, s *store.Store, args map[string]any) ([]string, error) {
			region := runbook.String(args, "region")
			seen := map[int64]bool{}
			for _, kind := range []string{store.AudienceRegionDevservers, store.AudienceRegionContainers} {
				us, err := s.AudienceUsers(ctx, store.Audience{Kind: kind, Region: region})
				if err != nil {
					return nil, err
				}
				for _, u := range us {
					seen[u.ID] = true
				}
			}
			return []string{fmt.Sprintf("Notify %s who own devservers or containers in %s", people(len(seen)), region)}, nil
		},
		run: func(ctx context.Context, tx *store.Tx, e *opEnv, _ map[string]any) (opResult, error) {
			drain, err := drainOf(ctx, tx, e)
			if err != nil {
				return opResult{}, err
			}
			m := drainMessage(drain)
			total := 0
			for _, kind := range []string{store.AudienceRegionDevservers, store.AudienceRegionContainers} {
				n, err := tx.NotifyAudience(ctx, drainActor(drain.ID), store.Audience{Kind: kind, Region: drain.Region}, m)
				if err != nil {
					return opResult{}, refused(err)
				}
				total += n
			}
			return opResult{Logs: []string{fmt.Sprintf("Notified %s about the drain of %s", people(total), drain.Region)}}, nil
		},
	}
}

// planLine is one move of a plan, as text.
func planLine(m store.DrainMove) string {
	to := m.ToRegion
	if to == "" {
		to = "no region with room"
	}
	switch m.Method {
	case store.MoveLive:
		return fmt.Sprintf("Live-migrate VM %s (%s, owner %s) to %s", m.Devserver, m.Flavor, m.Owner, to)
	case store.MoveMigrate:
		return fmt.Sprintf("Move %s (%s, owner %s) by backup and restore to %s", m.Devserver, m.Flavor, m.Owner, to)
	case store.MoveOwner:
		return fmt.Sprintf("Back up physical %s (%s) and ask its owner %s to move it (room in %s)", m.Devserver, m.Flavor, m.Owner, to)
	}
	return fmt.Sprintf("Release pooled %s (%s): nobody owns it", m.Devserver, m.Flavor)
}

// DrainPlanText is a plan as lines, for the dry run.
func DrainPlanText(moves []store.DrainMove) []string {
	out := make([]string, len(moves))
	for i, m := range moves {
		out[i] = planLine(m)
	}
	return out
}

func opDrainMove() operation {
	return operation{
		spec: runbook.Operation{Name: "drain_move", Doc: "Moves the region's devservers out, at most max_parallel at a time, and asks owners of physical devservers to move theirs.", Params: []runbook.Param{
			regionParam(),
		}},
		plan: func(ctx context.Context, s *store.Store, args map[string]any) ([]string, error) {
			moves, err := s.DrainPlan(ctx, runbook.String(args, "region"))
			if err != nil {
				return nil, err
			}
			if len(moves) == 0 {
				return []string{"No devserver to move"}, nil
			}
			return DrainPlanText(moves), nil
		},
		run: func(ctx context.Context, tx *store.Tx, e *opEnv, _ map[string]any) (opResult, error) {
			drain, err := drainOf(ctx, tx, e)
			if err != nil {
				return opResult{}, err
			}
			who := drainActor(drain.ID)
			var res opResult
			if drain.State != store.DrainOpen {
				return opResult{Logs: []string{"The drain is " + drain.State + ": nothing more to move"}}, nil
			}
			if _, ok, err := e.effect(ctx, tx, "planned"); err != nil {
				return res, err
			} else if !ok {
				moves, err := tx.DrainPlan(ctx, drain.Region)
				if err != nil {
					return res, err
				}
				if err := tx.AddDrainItems(ctx, drain.ID, moves); err != nil {
					return res, err
				}
				count := map[string]int{}
				for _, m := range moves {
					count[m.Method]++
				}
				owners, err := askOwners(ctx, tx, e.q, who, drain)
				if err != nil {
					return res, err
				}
				if err := e.record(ctx, tx, "planned", strconv.Itoa(len(moves))); err != nil {
					return res, err
				}
				res.Logs = append(res.Logs, fmt.Sprintf("%d devservers to move: %d by live migration, %d by backup and restore, %d physical (owners asked: %d), %d pooled to release",
					len(moves), count[store.MoveLive], count[store.MoveMigrate], count[store.MoveOwner], owners, count[store.MoveRelease]))
			}
			if _, err := tx.SettleDrainMigrations(ctx, drain.ID); err != nil {
				return res, err
			}
			if !e.now.Before(drain.DeadlineAt) {
				if _, ok, err := e.effect(ctx, tx, "deadline"); err != nil {
					return res, err
				} else if !ok {
					lines, err := drainDeadline(ctx, tx, who, drain)
					if err != nil {
						return res, err
					}
					res.Logs = append(res.Logs, lines...)
					if err := e.record(ctx, tx, "deadline", e.now.Format(time.RFC3339)); err != nil {
						return res, err
					}
				}
			}
			if err := dispatchDrainMoves(ctx, tx, e.q, drain); err != nil {
				return res, err
			}
			p, err := tx.DrainProgress(ctx, drain.ID)
			if err != nil {
				return res, err
			}
			if p.Remaining > 0 {
				res.Wait = drainPollEvery
				return res, nil
			}
			res.Logs = append(res.Logs, fmt.Sprintf("Moved %d of %d devservers; %d physical waiting on their owners; %d failed; %d past the deadline",
				p.Done, p.Total, p.Owner, p.Failed, p.Overdue))
			return res, nil
		},
	}
}

// askOwners backs up each physical devserver of the drain and gives its
// owner a task to move it by the deadline (the devserver page has the
// one-click "move me"). It returns how many owners were asked.
func askOwners(ctx context.Context, tx *store.Tx, q enqueuer, who store.Actor, drain store.Drain) (int, error) {
	items, err := tx.DrainItems(ctx, drain.ID, store.ItemPending)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, it := range items {
		if it.Method != store.MoveOwner || it.OwnerID == nil {
			continue
		}
		d, err := tx.DevserverByID(ctx, it.DevserverID)
		if err != nil {
			return n, err
		}
		b, err := tx.RequestBackup(ctx, who, d, store.BackupManual)
		var ce *store.ConflictError
		switch {
		case errors.As(err, &ce):
			it.Error = "no backup: " + ce.Message
		case err != nil:
			return n, err
		default:
			if err := q.Enqueue(ctx, tx, BackupArgs{BackupID: b.ID}); err != nil {
				return n, err
			}
			it.BackupID = &b.ID
		}
		task, err := tx.CreateDrainTask(ctx, *it.OwnerID, clipText(fmt.Sprintf("Move devserver %s out of region %s (drain)", d.Name, drain.Region), 200),
			"/devservers/"+d.Name, drain.DeadlineAt)
		if err != nil {
			return n, err
		}
		it.TaskID = &task
		if _, err := tx.SetDrainItem(ctx, it, []string{store.ItemPending}, store.ItemOwner); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// drainDeadline lists what is still in the region at the deadline, marks
// the devservers not yet started overdue and gives their owners a task.
func drainDeadline(ctx context.Context, tx *store.Tx, who store.Actor, drain store.Drain) ([]string, error) {
	items, err := tx.DrainItems(ctx, drain.ID, store.ItemPending, store.ItemMoving, store.ItemMigrating, store.ItemOwner)
	if err != nil {
		return nil, err
	}
	lines := []string{fmt.Sprintf("Deadline reached: %d devservers are still in %s", len(items), drain.Region)}
	for i, it := range items {
		if i == drainListedAtDeadline {
			lines = append(lines, fmt.Sprintf("… and %d more", len(items)-i))
			break
		}
		lines = append(lines, fmt.Sprintf("Still in %s: %s (owner %s, %s)", drain.Region, it.Name, it.Owner, it.State))
	}
	for _, it := range items {
		if it.State != store.ItemPending && it.State != store.ItemOwner {
			continue // moving now: it finishes on its own
		}
		if it.OwnerID != nil {
			task, err := tx.CreateDrainTask(ctx, *it.OwnerID, clipText(fmt.Sprintf("Devserver %s is still in region %s after the drain's deadline: move it now", it.Name, drain.Region), 200),
				"/devservers/"+it.Name, tx.Now().Add(24*time.Hour))
			if err != nil {
				return nil, err
			}
			it.TaskID = &task
		}
		if _, err := tx.SetDrainItem(ctx, it, []string{store.ItemPending, store.ItemOwner}, store.ItemOverdue); err != nil {
			return nil, err
		}
	}
	return lines, tx.Audit(ctx, who, "drain.deadline", "region", drain.Region, map[string]any{"drain": drain.ID, "remaining": len(items)})
}

// dispatchDrainMoves starts moves up to the drain's max_parallel.
func dispatchDrainMoves(ctx context.Context, tx *store.Tx, q enqueuer, drain store.Drain) error {
	if drain.State != store.DrainOpen {
		return nil
	}
	items, err := tx.ClaimDrainItems(ctx, drain.ID, drain.MaxParallel)
	if err != nil {
		return err
	}
	for _, it := range items {
		if err := q.Enqueue(ctx, tx, DrainMoveArgs{DrainID: drain.ID, DevserverID: it.DevserverID}); err != nil {
			return err
		}
	}
	return nil
}

func opDrainFinish() operation {
	return operation{
		spec: runbook.Operation{Name: "drain_finish", Doc: "Ends the drain: the region is drained.", Params: []runbook.Param{regionParam()}},
		plan: func(_ context.Context, _ *store.Store, args map[string]any) ([]string, error) {
			return []string{"Mark region " + runbook.String(args, "region") + " drained"}, nil
		},
		run: func(ctx context.Context, tx *store.Tx, e *opEnv, _ map[string]any) (opResult, error) {
			drain, err := drainOf(ctx, tx, e)
			if err != nil {
				return opResult{}, err
			}
			who := drainActor(drain.ID)
			if ok, err := tx.FinishDrain(ctx, who, drain.ID, store.DrainDone); err != nil || !ok {
				return opResult{Logs: []string{"The drain had already ended"}}, err
			}
			if err := tx.SetRegionStatus(ctx, who, drain.Region, []string{"draining"}, "drained"); err != nil {
				return opResult{}, refused(err)
			}
			p, err := tx.DrainProgress(ctx, drain.ID)
			if err != nil {
				return opResult{}, err
			}
			return opResult{Logs: []string{fmt.Sprintf("Region %s is drained: %d moved, %d physical waiting on their owners, %d failed", drain.Region, p.Done, p.Owner, p.Failed)}}, nil
		},
	}
}

// DrainMoveArgs moves one devserver out of a drained region.
type DrainMoveArgs struct {
	DrainID     int64 `json:"drain_id"`
	DevserverID int64 `json:"devserver_id"`
}

// Kind names the job.
func (DrainMoveArgs) Kind() string { return "drain_move" }

// InsertOpts: a failed live migration is retried a few times before the
// devserver is counted failed.
func (DrainMoveArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 5} }

const drainMoveAttempts = 3

type drainMoveWorker struct {
	river.WorkerDefaults[DrainMoveArgs]
	s   *store.Store
	f   *fleet.Fleet
	q   enqueuer
	log *slog.Logger
}

func (w *drainMoveWorker) Timeout(*river.Job[DrainMoveArgs]) time.Duration { return 5 * time.Minute }

func (w *drainMoveWorker) NextRetry(job *river.Job[DrainMoveArgs]) time.Time {
	return backoff(job.Attempt)
}

func (w *drainMoveWorker) Work(ctx context.Context, job *river.Job[DrainMoveArgs]) error {
	a := job.Args
	var it store.DrainItem
	var drain store.Drain
	var d store.Devserver
	err := w.s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if drain, err = tx.Drain(ctx, a.DrainID); err != nil {
			return err
		}
		if it, err = tx.DrainItem(ctx, a.DrainID, a.DevserverID); err != nil {
			return err
		}
		d, err = tx.DevserverByID(ctx, a.DevserverID)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return river.JobCancel(err)
	} else if err != nil {
		return err
	}
	if it.State != store.ItemMoving {
		return done(ctx, w.s, job)
	}
	who := drainActor(drain.ID)
	if drain.State != store.DrainOpen && it.ToHostID == nil {
		return w.finish(ctx, job, drain, func(tx *store.Tx) error {
			it.Error = "the drain was " + drain.State
			_, err := tx.SetDrainItem(ctx, it, []string{store.ItemMoving}, store.ItemCancelled)
			return err
		})
	}
	switch it.Method {
	case store.MoveRelease:
		return w.finish(ctx, job, drain, func(tx *store.Tx) error {
			cur, err := tx.DevserverByID(ctx, d.ID)
			if err != nil {
				return err
			}
			if _, _, err := tx.StartRelease(ctx, who, cur); err != nil {
				var ce *store.ConflictError
				if !errors.As(err, &ce) {
					return err
				}
				it.Error = ce.Message
				_, err = tx.SetDrainItem(ctx, it, []string{store.ItemMoving}, store.ItemFailed)
				return err
			}
			if err := w.q.Enqueue(ctx, tx, ReleaseArgs{DevserverID: d.ID}); err != nil {
				return err
			}
			_, err = tx.SetDrainItem(ctx, it, []string{store.ItemMoving}, store.ItemDone)
			return err
		})
	case store.MoveMigrate:
		return w.migrate(ctx, job, drain, it, d)
	}
	return w.live(ctx, job, drain, it, d)
}

// finish records an item's outcome, starts the next moves and completes the
// job, in one transaction.
func (w *drainMoveWorker) finish(ctx context.Context, job *river.Job[DrainMoveArgs], drain store.Drain, fn func(tx *store.Tx) error) error {
	return w.s.InTx(ctx, func(tx *store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		cur, err := tx.Drain(ctx, drain.ID)
		if err != nil {
			return err
		}
		if err := dispatchDrainMoves(ctx, tx, w.q, cur); err != nil {
			return err
		}
		return completeTx(ctx, tx, job)
	})
}

// migrate moves a container-backed devserver by the devserver migration
// (backup, provision, restore, switch) to the nearest active region with
// room. The item holds its slot until the migration ends (the drain step
// settles it).
func (w *drainMoveWorker) migrate(ctx context.Context, job *river.Job[DrainMoveArgs], drain store.Drain, it store.DrainItem, d store.Devserver) error {
	who := drainActor(drain.ID)
	return w.finish(ctx, job, drain, func(tx *store.Tx) error {
		cur, err := tx.DevserverByID(ctx, d.ID)
		if err != nil {
			return err
		}
		regions, err := tx.RegionsByNearness(ctx, cur.Region)
		if err != nil {
			return err
		}
		reason := "no active region has room for " + cur.Flavor
		for _, r := range regions {
			if r.Code == cur.Region || !r.Active() {
				continue
			}
			m, err := tx.StartMigration(ctx, who, cur, r.Code, "")
			var ce *store.ConflictError
			if errors.As(err, &ce) && (ce.Code == "no_capacity" || ce.Code == "region_not_active") {
				continue
			}
			if errors.As(err, &ce) {
				reason = ce.Message
				break
			}
			if err != nil {
				return err
			}
			if err := w.q.Enqueue(ctx, tx, MigrateArgs{MigrationID: m.ID}); err != nil {
				return err
			}
			it.ToRegion, it.MigrationID = r.Code, &m.ID
			_, err = tx.SetDrainItem(ctx, it, []string{store.ItemMoving}, store.ItemMigrating)
			return err
		}
		it.Error = reason
		_, err = tx.SetDrainItem(ctx, it, []string{store.ItemMoving}, store.ItemFailed)
		return err
	})
}

// live moves a VM devserver by live migration through its driver: capacity
// on the target is taken in the transaction that records the move, the
// source's is given back after.
func (w *drainMoveWorker) live(ctx context.Context, job *river.Job[DrainMoveArgs], drain store.Drain, it store.DrainItem, d store.Devserver) error {
	who := drainActor(drain.ID)
	var target store.Host
	if it.ToHostID == nil {
		var conflict *store.ConflictError
		err := w.s.InTx(ctx, func(tx *store.Tx) error {
			cur, err := tx.DevserverByID(ctx, d.ID)
			if err != nil {
				return err
			}
			target, err = tx.DrainLiveMoveTarget(ctx, who, it, cur)
			return err
		})
		if errors.As(err, &conflict) {
			return w.finish(ctx, job, drain, func(tx *store.Tx) error { return tx.FailDrainLiveMove(ctx, who, it, d, conflict.Message) })
		}
		if err != nil {
			return err
		}
		it.ToRegion, it.ToHostID = target.Region, &target.ID
	} else {
		h, err := w.s.Host(ctx, *it.ToHostID)
		if err != nil {
			return err
		}
		target = h
	}
	src, err := w.s.Host(ctx, it.FromHostID)
	if err != nil {
		return err
	}
	drv, err := w.f.Driver(src.Driver)
	if err == nil {
		_, err = drv.Migrate(ctx, d.InstanceID, target.Name)
	}
	if err != nil {
		if !errors.Is(err, fleet.ErrNotSupported) && job.Attempt < drainMoveAttempts && ctx.Err() == nil {
			return err // retried: the target's capacity stays taken
		}
		w.log.Warn("Live migration failed", "devserver", d.Name, "to", target.Name, "error", err)
		return w.finish(ctx, job, drain, func(tx *store.Tx) error {
			return tx.FailDrainLiveMove(ctx, who, it, d, "live migration to "+target.Name+" failed: "+err.Error())
		})
	}
	return w.finish(ctx, job, drain, func(tx *store.Tx) error {
		cur, err := tx.DevserverByID(ctx, d.ID)
		if err != nil {
			return err
		}
		return tx.FinishDrainLiveMove(ctx, who, it, cur)
	})
}

// MoveMe starts a migration of the caller's physical devserver, asked to
// move by a drain, to the nearest active region with room.
func MoveMe(ctx context.Context, s *store.Store, q enqueuer, who store.Actor, d store.Devserver) (store.DevserverMigration, error) {
	var out store.DevserverMigration
	err := s.InTx(ctx, func(tx *store.Tx) error {
		cur, err := tx.DevserverByID(ctx, d.ID)
		if err != nil {
			return err
		}
		regions, err := tx.RegionsByNearness(ctx, cur.Region)
		if err != nil {
			return err
		}
		for _, r := range regions {
			if r.Code == cur.Region || !r.Active() {
				continue
			}
			m, err := tx.StartMigration(ctx, who, cur, r.Code, "")
			var ce *store.ConflictError
			if errors.As(err, &ce) && (ce.Code == "no_capacity" || ce.Code == "region_not_active") {
				continue
			}
			if err != nil {
				return err
			}
			if err := q.Enqueue(ctx, tx, MigrateArgs{MigrationID: m.ID}); err != nil {
				return err
			}
			out = m
			return tx.MarkOwnerMoving(ctx, cur.ID, m.ID, r.Code)
		}
		return store.Conflict("no_capacity", fmt.Sprintf("No active region has room for %s (%s) now; try again later.", cur.Name, cur.Flavor))
	})
	return out, err
}
