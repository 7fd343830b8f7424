package jobs

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/devport/devport/jobs/runbook"
	"github.com/devport/devport/store"
)

// builtinRunbooks are the runbooks devport ships, loaded into the store at
// start when their version is new.
//
//go:embed runbooks/*.yaml
var builtinRunbooks embed.FS

// RunbookStepArgs runs one step of a run: one step is one job.
type RunbookStepArgs struct {
	RunID int64  `json:"run_id"`
	Step  string `json:"step"`
	// Timeout is the step's timeout, for the job's (0: the default).
	Timeout time.Duration `json:"timeout,omitempty"`
}

// Kind names the job.
func (RunbookStepArgs) Kind() string { return "runbook_step" }

// RunbookDeadlineArgs ends a run that passes its deadline.
type RunbookDeadlineArgs struct {
	RunID int64 `json:"run_id"`
}

// Kind names the job.
func (RunbookDeadlineArgs) Kind() string { return "runbook_deadline" }

// stepJobTimeout bounds one pass of a step; a step that waits longer
// (a wait, backups) snoozes between passes.
const stepJobTimeout = 2 * time.Minute

// definition loads a runbook version (0: the newest) and parses it.
func definition(ctx context.Context, q interface {
	RunbookVersion(context.Context, string, int) (store.RunbookVersion, error)
}, name string, version int) (*runbook.Definition, error) {
	v, err := q.RunbookVersion(ctx, name, version)
	if err != nil {
		return nil, err
	}
	return parseVersion(v)
}

// parseVersion parses a stored version (stored versions were valid when
// they were added; parsing is cheap next to a step's transaction).
func parseVersion(v store.RunbookVersion) (*runbook.Definition, error) {
	d, ps := runbook.Parse([]byte(v.YAML))
	if len(ps) > 0 {
		return nil, fmt.Errorf("runbook %s version %d: %w", v.Name, v.Version, ps.Err())
	}
	return d, nil
}

// catalog is every stored runbook version, for validating nested runs.
type catalog map[string]map[int]*runbook.Definition

func (c catalog) Definition(name string, version int) (*runbook.Definition, bool) {
	vs := c[name]
	if version > 0 {
		d, ok := vs[version]
		return d, ok
	}
	var best *runbook.Definition
	for _, d := range vs {
		if best == nil || d.Version > best.Version {
			best = d
		}
	}
	return best, best != nil
}

func (c catalog) add(d *runbook.Definition) {
	if c[d.Name] == nil {
		c[d.Name] = map[int]*runbook.Definition{}
	}
	c[d.Name][d.Version] = d
}

func loadCatalog(ctx context.Context, s *store.Store) (catalog, error) {
	vs, err := s.AllRunbookVersions(ctx)
	if err != nil {
		return nil, err
	}
	c := catalog{}
	for _, v := range vs {
		d, err := parseVersion(v)
		if err != nil {
			return nil, err
		}
		c.add(d)
	}
	return c, nil
}

// CheckRunbook parses and validates a definition against the registered
// operations and the stored runbooks.
func CheckRunbook(ctx context.Context, s *store.Store, src []byte) (*runbook.Definition, runbook.Problems, error) {
	c, err := loadCatalog(ctx, s)
	if err != nil {
		return nil, nil, err
	}
	d, ps := runbook.Check(src, runbook.Env{Ops: RunbookRegistry(), Catalog: c})
	return d, ps, nil
}

// InvalidRunbookError is a definition that failed validation; nothing was saved.
type InvalidRunbookError struct {
	Problems runbook.Problems
}

func (e *InvalidRunbookError) Error() string { return "invalid runbook:\n" + e.Problems.Error() }

// Validation is the problems as the store's validation error, one field per
// place in the text ("line 5, column 9"), for the API's error envelope.
func (e *InvalidRunbookError) Validation() *store.ValidationError {
	fields := map[string]string{}
	for _, p := range e.Problems {
		key := fmt.Sprintf("line %d", p.Line)
		if p.Column > 0 {
			key += fmt.Sprintf(", column %d", p.Column)
		}
		k := key
		for i := 2; fields[k] != ""; i++ {
			k = fmt.Sprintf("%s (%d)", key, i)
		}
		msg := p.Message
		if p.Path != "" {
			msg = p.Path + ": " + msg
		}
		fields[k] = msg
	}
	return &store.ValidationError{Fields: fields}
}

// AddRunbookVersion validates a definition and stores it as a new version.
// An invalid definition is an *InvalidRunbookError and saves nothing.
func AddRunbookVersion(ctx context.Context, s *store.Store, who store.Actor, src []byte, wantName string) (store.RunbookVersion, error) {
	d, ps, err := CheckRunbook(ctx, s, src)
	if err != nil {
		return store.RunbookVersion{}, err
	}
	if len(ps) > 0 {
		return store.RunbookVersion{}, &InvalidRunbookError{Problems: ps}
	}
	if wantName != "" && d.Name != wantName {
		return store.RunbookVersion{}, &InvalidRunbookError{Problems: runbook.Problems{{Line: 1, Path: "name", Message: fmt.Sprintf("the definition is named %q, but it is being added to %q", d.Name, wantName)}}}
	}
	v := store.RunbookVersion{Name: d.Name, Version: d.Version, Description: d.Description, YAML: string(src)}
	err = s.InTx(ctx, func(tx *store.Tx) error { return tx.AddRunbookVersion(ctx, who, v) })
	if err != nil {
		return store.RunbookVersion{}, err
	}
	return s.RunbookVersion(ctx, d.Name, d.Version)
}

// prepareRunbooks runs at start, before the workers: it loads the built-in
// runbooks and makes the jobs a killed process left running available again
// at once. On SQLite one process owns the database (serve locks its data
// directory), so a job still "running" before the workers start was
// orphaned; River would rescue it only after the longest job timeout, and a
// drain or a migration would wait that long. Every job re-reads its state
// and does its effect once, so running one again is safe. (Several replicas
// on PostgreSQL share the database: there each runner requeues the jobs of
// replicas that stopped, see replicas.go.)
func prepareRunbooks(ctx context.Context, s *store.Store, log *slog.Logger) error {
	if err := LoadBuiltinRunbooks(ctx, s, log); err != nil {
		return err
	}
	n, err := s.RequeueOrphanedJobs(ctx)
	if err != nil {
		return err
	}
	if n > 0 {
		log.Info("Requeued jobs left running by a stopped process", "jobs", n)
	}
	return nil
}

// LoadBuiltinRunbooks stores the embedded runbooks whose version is newer
// than what the store holds. A built-in that fails validation stops start-up.
func LoadBuiltinRunbooks(ctx context.Context, s *store.Store, log *slog.Logger) error {
	files, err := fs.Glob(builtinRunbooks, "runbooks/*.yaml")
	if err != nil {
		return err
	}
	// Load in an order where nested runbooks come first.
	pending := map[string][]byte{}
	for _, f := range files {
		b, err := builtinRunbooks.ReadFile(f)
		if err != nil {
			return err
		}
		pending[path.Base(f)] = b
	}
	for len(pending) > 0 {
		progressed := false
		var last runbook.Problems
		names := make([]string, 0, len(pending))
		for f := range pending {
			names = append(names, f)
		}
		sort.Strings(names)
		for _, f := range names {
			src := pending[f]
			d, ps, err := CheckRunbook(ctx, s, src)
			if err != nil {
				return err
			}
			if len(ps) > 0 {
				last = ps
				continue
			}
			delete(pending, f)
			progressed = true
			err = s.InTx(ctx, func(tx *store.Tx) error {
				top, err := tx.NewestRunbookVersion(ctx, d.Name)
				if err != nil || top >= d.Version {
					return err
				}
				log.Info("Loaded built-in runbook", "runbook", d.Name, "version", d.Version)
				return tx.AddRunbookVersion(ctx, store.System, store.RunbookVersion{Name: d.Name, Version: d.Version, Description: d.Description, YAML: string(src), Builtin: true})
			})
			if err != nil {
				return fmt.Errorf("built-in runbook %s: %w", f, err)
			}
		}
		if !progressed {
			return fmt.Errorf("built-in runbooks %v are invalid: %w", names, last.Err())
		}
	}
	return nil
}

// checkInventory refuses run parameters that name a region or flavour the
// inventory does not have.
func checkInventory(ctx context.Context, s *store.Store, params []runbook.Param, values map[string]any) map[string]string {
	problems := map[string]string{}
	for _, p := range params {
		v := runbook.String(values, p.Name)
		if v == "" {
			continue
		}
		switch p.Type {
		case runbook.TypeRegion:
			if _, err := s.Region(ctx, v); err != nil {
				problems[p.Name] = fmt.Sprintf("%q is not a region", v)
			}
		case runbook.TypeFlavor:
			if _, err := s.Flavor(ctx, v); err != nil {
				problems[p.Name] = fmt.Sprintf("%q is not a flavour", v)
			}
		}
	}
	return problems
}

// bindRunParams checks parameters given for a run (from JSON or a form).
func bindRunParams(ctx context.Context, s *store.Store, d *runbook.Definition, given map[string]any) (map[string]any, error) {
	values, problems := runbook.Bind(d.Params, given)
	if len(problems) == 0 {
		problems = checkInventory(ctx, s, d.Params, values)
	}
	if len(problems) > 0 {
		p := store.Problems{}
		for k, v := range problems {
			p.Add("params."+k, v)
		}
		return nil, p.Err()
	}
	return values, nil
}

// PlanRunbook is a dry run: what every step would do against the current
// inventory, in order. It changes nothing.
func PlanRunbook(ctx context.Context, s *store.Store, name string, version int, given map[string]any) (runbook.Plan, error) {
	d, err := definition(ctx, s, name, version)
	if err != nil {
		return runbook.Plan{}, err
	}
	values, err := bindRunParams(ctx, s, d, given)
	if err != nil {
		return runbook.Plan{}, err
	}
	return plan(ctx, s, d, values, 0), nil
}

func plan(ctx context.Context, s *store.Store, d *runbook.Definition, values map[string]any, depth int) runbook.Plan {
	ops := operations()
	p := runbook.Plan{Runbook: d.Name, Version: d.Version, Params: values}
	for _, st := range d.Order() {
		ps := runbook.PlanStep{Step: st.Name, Kind: st.Kind, Needs: st.Needs}
		switch st.Kind {
		case runbook.KindOperation:
			op := ops[st.Op]
			args, problems := op.spec.Args(runbook.Expand(st.Params, values))
			if len(problems) > 0 {
				ps.Error = st.Op + ": " + runbook.ProblemText(problems)
				break
			}
			lines, err := op.plan(ctx, s, args)
			if err != nil {
				ps.Error = strings.TrimPrefix(err.Error(), errStepFailed.Error()+": ")
			}
			ps.Lines = lines
		case runbook.KindManual:
			ps.Lines = []string{"A person does this and marks it done: " + st.Instructions}
		case runbook.KindBarrier:
			ps.Lines = []string{"Wait until " + strings.Join(st.WaitFor, ", ") + " are done"}
		case runbook.KindRunbook:
			nd, err := definition(ctx, s, st.Runbook, st.RunbookVersion)
			if err != nil {
				ps.Error = fmt.Sprintf("runbook %s: %v", st.Runbook, err)
				break
			}
			nv, err := bindRunParams(ctx, s, nd, runbook.Expand(st.Params, values))
			if err != nil {
				ps.Error = fmt.Sprintf("runbook %s: %v", st.Runbook, err)
				break
			}
			ps.Lines = []string{fmt.Sprintf("Run %s version %d", nd.Name, nd.Version)}
			if depth < runbook.MaxNesting {
				sub := plan(ctx, s, nd, nv, depth+1)
				ps.Run = &sub
			}
		}
		p.Steps = append(p.Steps, ps)
	}
	return p
}

// StartRunbook starts a run of a runbook version (0: the newest) with its
// parameters; its first steps are enqueued in the same transaction.
func StartRunbook(ctx context.Context, s *store.Store, q enqueuer, who store.Actor, name string, version int, given map[string]any) (store.Run, error) {
	d, err := definition(ctx, s, name, version)
	if err != nil {
		return store.Run{}, err
	}
	values, err := bindRunParams(ctx, s, d, given)
	if err != nil {
		return store.Run{}, err
	}
	var run store.Run
	err = s.InTx(ctx, func(tx *store.Tx) error {
		run, err = createRun(ctx, tx, q, who, d, values, nil, "")
		return err
	})
	return run, err
}

// createRun records a run with its steps and dispatches the first ones.
func createRun(ctx context.Context, tx *store.Tx, q enqueuer, who store.Actor, d *runbook.Definition, values map[string]any, parent *int64, parentStep string) (store.Run, error) {
	r := store.Run{Runbook: d.Name, Version: d.Version, ParamsJSON: jsonText(values), Concurrency: d.Concurrency, ParentRunID: parent, ParentStep: parentStep}
	if d.Deadline > 0 {
		at := tx.Now().Add(d.Deadline)
		r.DeadlineAt = &at
	}
	steps := make([]store.RunStep, len(d.Steps))
	for i, st := range d.Steps {
		steps[i] = store.RunStep{Name: st.Name, Kind: st.Kind, NeedsJSON: jsonText(st.Needs), NeedsLeft: len(st.Needs)}
	}
	run, err := tx.CreateRun(ctx, who, r, steps)
	if err != nil {
		return store.Run{}, err
	}
	if err := tx.AddSevTimelineFromRun(ctx, store.RunEvent{RunID: run.ID, Kind: store.EventRunStarted, Message: "by " + who.Name}); err != nil {
		return store.Run{}, err
	}
	if d.Deadline > 0 {
		if err := q.Enqueue(ctx, tx, RunbookDeadlineArgs{RunID: run.ID}); err != nil {
			return store.Run{}, err
		}
	}
	return run, advance(ctx, tx, q, run.ID)
}

// advance moves a run on after a change, inside the change's transaction:
// it starts the ready steps the concurrency cap allows, and ends the run when
// every step succeeded, or when nothing can progress past a failed step.
func advance(ctx context.Context, tx *store.Tx, q enqueuer, runID int64) error {
	run, err := tx.Run(ctx, runID)
	if err != nil || run.State != store.RunRunning {
		return err
	}
	d, err := definition(ctx, tx, run.Runbook, run.Version)
	if err != nil {
		return err
	}
	steps, err := tx.RunSteps(ctx, runID)
	if err != nil {
		return err
	}
	running, succeeded, active := 0, 0, 0
	var failed []string
	for _, st := range steps {
		switch st.State {
		case store.StepRunning:
			running++
		case store.StepSucceeded:
			succeeded++
		case store.StepFailed:
			failed = append(failed, st.Name)
		}
		if st.State == store.StepRunning || st.State == store.StepWaiting || st.State == store.StepReady {
			active++
		}
	}
	if succeeded == len(steps) {
		return endRun(ctx, tx, q, store.System, run, store.RunSucceeded, "", false)
	}
	for _, st := range steps {
		if st.State != store.StepReady {
			continue
		}
		if run.Concurrency > 0 && running >= run.Concurrency {
			break
		}
		ok, err := tx.SetStepState(ctx, runID, st.Name, []string{store.StepReady}, store.StepRunning, "", "")
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		running++
		def, _ := d.Step(st.Name)
		if err := tx.AddRunEvent(ctx, store.RunEvent{RunID: runID, Step: st.Name, Kind: store.EventStarted, Message: "Started (" + st.Kind + ")"}); err != nil {
			return err
		}
		if err := q.Enqueue(ctx, tx, RunbookStepArgs{RunID: runID, Step: st.Name, Timeout: def.Timeout}); err != nil {
			return err
		}
	}
	if active == 0 && len(failed) > 0 {
		return endRun(ctx, tx, q, store.System, run, store.RunFailed, "step "+strings.Join(failed, ", ")+" failed", true)
	}
	return nil
}

// endRun ends a run: its unfinished steps are cancelled, its nested runs
// cancelled, and the step of the run it is nested in finishes with it.
//
// A run that failed because a step failed keeps its pending steps, so a
// retry of the step carries on where it stopped.
func endRun(ctx context.Context, tx *store.Tx, q enqueuer, who store.Actor, run store.Run, state, reason string, keepPending bool) error {
	ok, err := tx.FinishRun(ctx, who, run.ID, state, reason)
	if err != nil || !ok {
		return err
	}
	if err := tx.AddSevTimelineFromRun(ctx, store.RunEvent{RunID: run.ID, Kind: store.EventRunFinished, Message: strings.TrimSpace(state + " " + reason)}); err != nil {
		return err
	}
	if state != store.RunSucceeded {
		steps, err := tx.RunSteps(ctx, run.ID)
		if err != nil {
			return err
		}
		for _, st := range steps {
			if st.Terminal() || keepPending && st.State == store.StepPending {
				continue
			}
			if ok, err := tx.SetStepState(ctx, run.ID, st.Name, []string{st.State}, store.StepCancelled, reason, who.Name); err != nil {
				return err
			} else if ok {
				if err := tx.AddRunEvent(ctx, store.RunEvent{RunID: run.ID, Step: st.Name, Kind: store.EventCancelled, Message: "Cancelled: " + reason, Actor: who.Name}); err != nil {
					return err
				}
			}
		}
		children, err := tx.ChildRuns(ctx, run.ID)
		if err != nil {
			return err
		}
		for _, c := range children {
			if c.State == store.RunRunning {
				if err := endRun(ctx, tx, q, who, c, store.RunCancelled, fmt.Sprintf("run %d, which it is part of, %s", run.ID, state), false); err != nil {
					return err
				}
			}
		}
	}
	if run.ParentRunID == nil {
		return nil
	}
	// The parent's step waits for this run.
	if state == store.RunSucceeded {
		return finishParentStep(ctx, tx, q, run, store.StepSucceeded, fmt.Sprintf("Nested run %d succeeded", run.ID))
	}
	return finishParentStep(ctx, tx, q, run, store.StepFailed, fmt.Sprintf("nested run %d %s: %s", run.ID, state, reason))
}

// finishParentStep ends the parent's step that waits for the nested run
// child, unless that step now waits for another nested run (a retry of the
// step started a new one): an old run ending must not finish it.
func finishParentStep(ctx context.Context, tx *store.Tx, q enqueuer, child store.Run, state, message string) error {
	ps, err := tx.RunStep(ctx, *child.ParentRunID, child.ParentStep)
	if err != nil {
		return err
	}
	if ps.ChildRunID == nil || *ps.ChildRunID != child.ID {
		return nil
	}
	return finishStep(ctx, tx, q, *child.ParentRunID, child.ParentStep, []string{store.StepWaiting}, state, message, "")
}

// finishStep ends a step (succeeded or failed), counts it off its dependents
// and moves the run on, all in the caller's transaction.
func finishStep(ctx context.Context, tx *store.Tx, q enqueuer, runID int64, name string, from []string, state, message, doneBy string) error {
	reason := ""
	if state == store.StepFailed {
		reason = message
	}
	before, err := tx.RunStep(ctx, runID, name)
	if err != nil {
		return err
	}
	ok, err := tx.SetStepState(ctx, runID, name, from, state, reason, doneBy)
	if err != nil || !ok {
		return err
	}
	if before.StartedAt != nil {
		message += fmt.Sprintf(" (after %s)", tx.Now().Sub(*before.StartedAt).Round(time.Millisecond))
	}
	kind := store.EventFinished
	switch {
	case state == store.StepFailed:
		kind = store.EventFailed
	case doneBy != "":
		kind = store.EventManualDone
	}
	if err := tx.AddRunEvent(ctx, store.RunEvent{RunID: runID, Step: name, Kind: kind, Message: message, Actor: doneBy}); err != nil {
		return err
	}
	if err := tx.AddSevTimelineFromRun(ctx, store.RunEvent{RunID: runID, Step: name, Kind: kind, Message: message}); err != nil {
		return err
	}
	if state == store.StepSucceeded {
		steps, err := tx.RunSteps(ctx, runID)
		if err != nil {
			return err
		}
		var dependents []string
		for _, st := range steps {
			for _, n := range st.Needs() {
				if n == name {
					dependents = append(dependents, st.Name)
				}
			}
		}
		if err := tx.StepDone(ctx, runID, dependents); err != nil {
			return err
		}
	}
	return advance(ctx, tx, q, runID)
}

// CancelRun cancels a running run and every run nested in it; their running
// steps stop at their next check.
func CancelRun(ctx context.Context, s *store.Store, q enqueuer, who store.Actor, id int64) error {
	return s.InTx(ctx, func(tx *store.Tx) error {
		run, err := tx.Run(ctx, id)
		if err != nil {
			return err
		}
		if run.State != store.RunRunning {
			return store.Conflict("run_finished", fmt.Sprintf("Run %d has already %s.", id, run.State))
		}
		return endRun(ctx, tx, q, who, run, store.RunCancelled, "cancelled by "+who.Name, false)
	})
}

// RetryRunStep sets a failed step ready again, reopening its run (and the
// runs it is nested in) when the failure had ended them.
func RetryRunStep(ctx context.Context, s *store.Store, q enqueuer, who store.Actor, id int64, name string) error {
	return s.InTx(ctx, func(tx *store.Tx) error {
		run, err := tx.Run(ctx, id)
		if err != nil {
			return err
		}
		st, err := tx.RunStep(ctx, id, name)
		if err != nil {
			return err
		}
		if run.State != store.RunRunning && run.State != store.RunFailed {
			return store.Conflict("run_finished", fmt.Sprintf("Run %d has %s; only a running or failed run's steps can be retried.", id, run.State))
		}
		if st.State != store.StepFailed {
			return store.Conflict("step_not_failed", fmt.Sprintf("Step %q is %s; only a failed step can be retried.", name, st.State))
		}
		if run.ParentRunID != nil {
			ps, err := tx.RunStep(ctx, *run.ParentRunID, run.ParentStep)
			if err != nil {
				return err
			}
			if ps.ChildRunID == nil || *ps.ChildRunID != id {
				return store.Conflict("run_superseded", fmt.Sprintf("Run %d is no longer the one step %q of run %d waits for; retry there instead.", id, run.ParentStep, *run.ParentRunID))
			}
		}
		if err := reopen(ctx, tx, run); err != nil {
			return err
		}
		if _, err := tx.SetStepState(ctx, id, name, []string{store.StepFailed}, store.StepReady, "", ""); err != nil {
			return err
		}
		if err := tx.ResetStep(ctx, id, name); err != nil {
			return err
		}
		if err := tx.AddRunEvent(ctx, store.RunEvent{RunID: id, Step: name, Kind: store.EventRetried, Message: "Retried by " + who.Name, Actor: who.Name}); err != nil {
			return err
		}
		if err := tx.Audit(ctx, who, "runbook.retry_step", "run", strconv.FormatInt(id, 10), map[string]any{"step": name}); err != nil {
			return err
		}
		return advance(ctx, tx, q, id)
	})
}

// reopen sets a failed run running again, and the step of the run it is
// nested in back to waiting for it.
func reopen(ctx context.Context, tx *store.Tx, run store.Run) error {
	if run.State != store.RunFailed {
		return nil
	}
	if err := tx.ReopenRun(ctx, run.ID); err != nil {
		return err
	}
	if err := tx.AddRunEvent(ctx, store.RunEvent{RunID: run.ID, Kind: store.EventRunStarted, Message: "The run resumes"}); err != nil {
		return err
	}
	if run.ParentRunID == nil {
		return nil
	}
	parent, err := tx.Run(ctx, *run.ParentRunID)
	if err != nil {
		return err
	}
	if parent.State == store.RunCancelled || parent.State == store.RunSucceeded {
		return store.Conflict("run_finished", fmt.Sprintf("Run %d, which this run is part of, has %s.", parent.ID, parent.State))
	}
	if err := reopen(ctx, tx, parent); err != nil {
		return err
	}
	_, err = tx.SetStepState(ctx, parent.ID, run.ParentStep, []string{store.StepFailed}, store.StepWaiting, "", "")
	return err
}

// CompleteRunStep marks a manual step done by who, and moves the run on.
func CompleteRunStep(ctx context.Context, s *store.Store, q enqueuer, who store.Actor, id int64, name string) error {
	return s.InTx(ctx, func(tx *store.Tx) error {
		run, err := tx.Run(ctx, id)
		if err != nil {
			return err
		}
		st, err := tx.RunStep(ctx, id, name)
		if err != nil {
			return err
		}
		if st.Kind != runbook.KindManual {
			return store.Conflict("not_manual", fmt.Sprintf("Step %q is not a manual step; it finishes by itself.", name))
		}
		if run.State != store.RunRunning || st.State != store.StepWaiting {
			return store.Conflict("step_not_waiting", fmt.Sprintf("Step %q is %s, not waiting for a person.", name, st.State))
		}
		if err := tx.Audit(ctx, who, "runbook.complete_step", "run", strconv.FormatInt(id, 10), map[string]any{"step": name}); err != nil {
			return err
		}
		return finishStep(ctx, tx, q, id, name, []string{store.StepWaiting}, store.StepSucceeded, "Marked done by "+who.Name, who.Name)
	})
}

// runbookStepWorker runs one step. Whatever it finds already done it leaves;
// a step's effect, its completion, the next steps and the job's completion
// commit in one transaction.
type runbookStepWorker struct {
	river.WorkerDefaults[RunbookStepArgs]
	s   *store.Store
	q   enqueuer
	log *slog.Logger
}

func (w *runbookStepWorker) Timeout(job *river.Job[RunbookStepArgs]) time.Duration {
	if job == nil {
		return stepJobTimeout
	}
	if t := job.Args.Timeout; t > 0 && t < stepJobTimeout {
		return t
	}
	return stepJobTimeout
}

// NextRetry: a job error is the database's, not the step's (the step's own
// retry policy is kept by the worker); try again soon.
func (w *runbookStepWorker) NextRetry(job *river.Job[RunbookStepArgs]) time.Time {
	return backoff(job.Attempt)
}

// done completes the job with nothing else to record.
func done[T river.JobArgs](ctx context.Context, s *store.Store, job *river.Job[T]) error {
	return s.InTx(ctx, func(tx *store.Tx) error { return completeTx(ctx, tx, job) })
}

func (w *runbookStepWorker) Work(ctx context.Context, job *river.Job[RunbookStepArgs]) error {
	a := job.Args
	run, err := w.s.Run(ctx, a.RunID)
	if errors.Is(err, store.ErrNotFound) {
		return done(ctx, w.s, job)
	} else if err != nil {
		return err
	}
	if run.State != store.RunRunning {
		return done(ctx, w.s, job) // cancelled or ended: this step stops here
	}
	now := w.s.Now()
	if run.DeadlineAt != nil && now.After(*run.DeadlineAt) {
		return w.s.InTx(ctx, func(tx *store.Tx) error {
			if err := endRun(ctx, tx, w.q, store.System, run, store.RunFailed, "the run passed its deadline", false); err != nil {
				return err
			}
			return completeTx(ctx, tx, job)
		})
	}
	d, err := definition(ctx, w.s, run.Runbook, run.Version)
	if err != nil {
		return err
	}
	def, ok := d.Step(a.Step)
	if !ok {
		return done(ctx, w.s, job)
	}
	steps, err := w.s.RunSteps(ctx, run.ID)
	if err != nil {
		return err
	}
	var st store.RunStep
	for _, x := range steps {
		if x.Name == a.Step {
			st = x
		}
	}
	if st.State != store.StepRunning {
		return done(ctx, w.s, job) // finished by an earlier attempt, or cancelled
	}
	if def.Timeout > 0 && st.StartedAt != nil && now.Sub(w.attemptStart(ctx, run.ID, def, st)) > def.Timeout {
		return w.fail(ctx, job, run, def, fmt.Errorf("%w: timed out after %s", errStepFailed, def.Timeout))
	}

	switch def.Kind {
	case runbook.KindBarrier:
		return w.s.InTx(ctx, func(tx *store.Tx) error {
			if err := finishStep(ctx, tx, w.q, run.ID, def.Name, []string{store.StepRunning}, store.StepSucceeded, "Joined "+strings.Join(def.WaitFor, ", "), ""); err != nil {
				return err
			}
			return completeTx(ctx, tx, job)
		})
	case runbook.KindManual:
		return w.s.InTx(ctx, func(tx *store.Tx) error {
			if ok, err := tx.SetStepState(ctx, run.ID, def.Name, []string{store.StepRunning}, store.StepWaiting, "", ""); err != nil {
				return err
			} else if ok {
				if err := tx.AddRunEvent(ctx, store.RunEvent{RunID: run.ID, Step: def.Name, Kind: store.EventWaiting, Message: "Waiting for a person: " + def.Instructions}); err != nil {
					return err
				}
				// A step waiting for a person holds no slot of the run's
				// concurrency: the next ready steps may start.
				if err := advance(ctx, tx, w.q, run.ID); err != nil {
					return err
				}
			}
			return completeTx(ctx, tx, job)
		})
	case runbook.KindRunbook:
		return w.nested(ctx, job, run, def)
	}
	return w.operation(ctx, job, run, def, now)
}

// nested starts the step's nested run, once, and leaves the step waiting for it.
func (w *runbookStepWorker) nested(ctx context.Context, job *river.Job[RunbookStepArgs], run store.Run, def runbook.Step) error {
	nd, err := definition(ctx, w.s, def.Runbook, def.RunbookVersion)
	if errors.Is(err, store.ErrNotFound) {
		return w.fail(ctx, job, run, def, fmt.Errorf("%w: runbook %s does not exist", errStepFailed, def.Runbook))
	} else if err != nil {
		return err
	}
	values, err := bindRunParams(ctx, w.s, nd, runbook.Expand(def.Params, run.Params()))
	if err != nil {
		return w.fail(ctx, job, run, def, fmt.Errorf("%w: %v", errStepFailed, err))
	}
	return w.s.InTx(ctx, func(tx *store.Tx) error {
		st, err := tx.RunStep(ctx, run.ID, def.Name)
		if err != nil {
			return err
		}
		if st.State == store.StepRunning && st.ChildRunID == nil {
			child, err := createRun(ctx, tx, w.q, store.System, nd, values, &run.ID, def.Name)
			if err != nil {
				return err
			}
			if err := tx.SetStepChild(ctx, run.ID, def.Name, child.ID); err != nil {
				return err
			}
			// The nested run may have finished at once (it could have no
			// step to wait for); then its end already finished this step.
			if ok, err := tx.SetStepState(ctx, run.ID, def.Name, []string{store.StepRunning}, store.StepWaiting, "", ""); err != nil {
				return err
			} else if ok {
				if err := tx.AddRunEvent(ctx, store.RunEvent{RunID: run.ID, Step: def.Name, Kind: store.EventWaiting, Message: fmt.Sprintf("Waiting for nested run %d of %s version %d", child.ID, nd.Name, nd.Version)}); err != nil {
					return err
				}
				if err := advance(ctx, tx, w.q, run.ID); err != nil {
					return err
				}
			}
			c, err := tx.Run(ctx, child.ID)
			if err != nil {
				return err
			}
			if c.State != store.RunRunning {
				if err := endRunParentStep(ctx, tx, w.q, c); err != nil {
					return err
				}
			}
		}
		return completeTx(ctx, tx, job)
	})
}

// endRunParentStep finishes the parent's step of a nested run that ended
// before its parent step was waiting for it.
func endRunParentStep(ctx context.Context, tx *store.Tx, q enqueuer, c store.Run) error {
	state := store.StepSucceeded
	msg := fmt.Sprintf("Nested run %d succeeded", c.ID)
	if c.State != store.RunSucceeded {
		state, msg = store.StepFailed, fmt.Sprintf("nested run %d %s: %s", c.ID, c.State, c.Error)
	}
	return finishParentStep(ctx, tx, q, c, state, msg)
}

// operation runs a registered operation: its effect, its log lines and, when
// it is finished, the step's completion commit together.
func (w *runbookStepWorker) operation(ctx context.Context, job *river.Job[RunbookStepArgs], run store.Run, def runbook.Step, now time.Time) error {
	op, ok := operations()[def.Op]
	if !ok {
		return w.fail(ctx, job, run, def, fmt.Errorf("%w: unknown operation %q", errStepFailed, def.Op))
	}
	args, problems := op.spec.Args(runbook.Expand(def.Params, run.Params()))
	if len(problems) > 0 {
		return w.fail(ctx, job, run, def, fmt.Errorf("%w: %s", errStepFailed, runbook.ProblemText(problems)))
	}
	var res opResult
	var opErr error
	err := w.s.InTx(ctx, func(tx *store.Tx) error {
		// Re-read under the write lock: a cancel may have come meanwhile.
		cur, err := tx.RunStep(ctx, run.ID, def.Name)
		if err != nil {
			return err
		}
		r, err := tx.Run(ctx, run.ID)
		if err != nil {
			return err
		}
		if cur.State != store.StepRunning || r.State != store.RunRunning {
			return completeTx(ctx, tx, job)
		}
		retries, err := tx.StepRetries(ctx, run.ID, def.Name)
		if err != nil {
			return err
		}
		res, opErr = op.run(ctx, tx, &opEnv{s: w.s, q: w.q, run: run, step: def.Name, attempt: retries, now: now}, args)
		if opErr != nil {
			return opErr // nothing of this pass is kept
		}
		for _, line := range res.Logs {
			if err := tx.AddRunEvent(ctx, store.RunEvent{RunID: run.ID, Step: def.Name, Kind: store.EventLog, Message: line}); err != nil {
				return err
			}
		}
		if res.Wait > 0 {
			return nil
		}
		if err := finishStep(ctx, tx, w.q, run.ID, def.Name, []string{store.StepRunning}, store.StepSucceeded, "Done", ""); err != nil {
			return err
		}
		return completeTx(ctx, tx, job)
	})
	if opErr != nil {
		return w.fail(ctx, job, run, def, opErr)
	}
	if err != nil {
		return err
	}
	if res.Wait > 0 {
		return river.JobSnooze(res.Wait)
	}
	return nil
}

// fail applies the step's retry policy: another attempt after the backoff
// (the job snoozes), or the step fails and the run moves on without it.
func (w *runbookStepWorker) fail(ctx context.Context, job *river.Job[RunbookStepArgs], run store.Run, def runbook.Step, cause error) error {
	var ve *store.ValidationError
	final := errors.Is(cause, errStepFailed) && strings.Contains(cause.Error(), "timed out") || errors.As(cause, &ve)
	msg := strings.TrimPrefix(cause.Error(), errStepFailed.Error()+": ")
	if !errors.Is(cause, errStepFailed) {
		// Not the step's own failure: the detail goes to the log, not the timeline.
		w.log.Warn("Runbook step failed", "run", run.ID, "step", def.Name, "error", cause)
		msg = "an internal error (the portal's log has the detail)"
		if ctx.Err() != nil {
			msg = "the step was interrupted"
		}
	}
	var wait time.Duration
	err := w.s.InTx(ctx, func(tx *store.Tx) error {
		n, err := tx.CountStepAttempt(ctx, run.ID, def.Name)
		if err != nil {
			return err
		}
		attempts := max(def.Retry.Attempts, 1)
		if n < attempts && !final {
			wait = retryWait(def, n)
			return tx.AddRunEvent(ctx, store.RunEvent{RunID: run.ID, Step: def.Name, Kind: store.EventRetried,
				Message: fmt.Sprintf("Attempt %d of %d failed (%s); trying again in %s", n, attempts, msg, wait)})
		}
		if err := finishStep(ctx, tx, w.q, run.ID, def.Name, []string{store.StepRunning}, store.StepFailed, msg, ""); err != nil {
			return err
		}
		return completeTx(ctx, tx, job)
	})
	if err != nil {
		return err
	}
	if wait > 0 {
		return river.JobSnooze(wait)
	}
	return nil
}

// retryWait is the pause before a step's next attempt after n failed ones:
// its backoff, doubling, at least a second.
func retryWait(def runbook.Step, n int) time.Duration {
	wait := def.Retry.Backoff << min(max(n-1, 0), 10)
	if wait <= 0 {
		wait = time.Second
	}
	return wait
}

// attemptStart is when the step's current attempt began: a step's timeout
// is for one attempt, and the pause before a retry is not part of it.
func (w *runbookStepWorker) attemptStart(ctx context.Context, runID int64, def runbook.Step, st store.RunStep) time.Time {
	start := *st.StartedAt
	if st.Attempts == 0 {
		return start
	}
	at, err := w.s.LastStepRetry(ctx, runID, def.Name)
	if err != nil || at.IsZero() || at.Before(start) {
		return start
	}
	return at.Add(retryWait(def, st.Attempts))
}

// runbookDeadlineWorker fails a run that is still going at its deadline; it
// snoozes until then.
type runbookDeadlineWorker struct {
	river.WorkerDefaults[RunbookDeadlineArgs]
	s *store.Store
	q enqueuer
}

func (w *runbookDeadlineWorker) Work(ctx context.Context, job *river.Job[RunbookDeadlineArgs]) error {
	run, err := w.s.Run(ctx, job.Args.RunID)
	if errors.Is(err, store.ErrNotFound) {
		return done(ctx, w.s, job)
	} else if err != nil {
		return err
	}
	if run.State != store.RunRunning || run.DeadlineAt == nil {
		return done(ctx, w.s, job)
	}
	if left := run.DeadlineAt.Sub(w.s.Now()); left > 0 {
		return river.JobSnooze(left)
	}
	return w.s.InTx(ctx, func(tx *store.Tx) error {
		if err := endRun(ctx, tx, w.q, store.System, run, store.RunFailed, "the run passed its deadline", false); err != nil {
			return err
		}
		return completeTx(ctx, tx, job)
	})
}

// RunView is a run with its steps and timeline, as the run page and the API
// show it.
type RunView struct {
	Run        store.Run        `json:"run"`
	Params     map[string]any   `json:"params"`
	Definition string           `json:"-"`
	Steps      []store.RunStep  `json:"steps"`
	Events     []store.RunEvent `json:"events"`
	Children   []store.Run      `json:"nested_runs,omitempty"`
	Parent     *store.Run       `json:"parent,omitempty"`
}

// LoadRun reads a run with its steps, events and nested runs.
func LoadRun(ctx context.Context, s *store.Store, id int64) (RunView, error) {
	run, err := s.Run(ctx, id)
	if err != nil {
		return RunView{}, err
	}
	v := RunView{Run: run, Params: run.Params()}
	if v.Steps, err = s.RunSteps(ctx, id); err != nil {
		return RunView{}, err
	}
	if v.Events, err = s.RunEvents(ctx, id); err != nil {
		return RunView{}, err
	}
	for _, st := range v.Steps {
		if st.ChildRunID != nil {
			c, err := s.Run(ctx, *st.ChildRunID)
			if err != nil {
				return RunView{}, err
			}
			v.Children = append(v.Children, c)
		}
	}
	if run.ParentRunID != nil {
		p, err := s.Run(ctx, *run.ParentRunID)
		if err != nil {
			return RunView{}, err
		}
		v.Parent = &p
	}
	return v, nil
}

// RunbookParamsFromJSON decodes a run's parameters from a JSON object, so
// numbers keep their exact value.
func RunbookParamsFromJSON(raw json.RawMessage) (map[string]any, error) {
	out := map[string]any{}
	if len(raw) == 0 || string(raw) == "null" {
		return out, nil
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, err
	}
	return out, nil
}
