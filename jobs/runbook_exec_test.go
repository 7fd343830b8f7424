package jobs

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// newRunbookRig is a started runner on a small inventory with the real
// clock: runs snooze and time out in real time.
func newRunbookRig(t *testing.T) *backupRig {
	t.Helper()
	g := newBackupRig(t, Options{NoSchedules: true})
	g.s.Now = func() time.Time { return time.Now().UTC() }
	return g
}

var admin = store.Actor{Name: "admin@example.com"}

func addRunbook(t *testing.T, s *store.Store, src string) {
	t.Helper()
	if _, err := AddRunbookVersion(context.Background(), s, admin, []byte(src), ""); err != nil {
		t.Fatalf("add runbook: %v", err)
	}
}

func startRun(t *testing.T, g *backupRig, name string, params map[string]any) store.Run {
	t.Helper()
	run, err := StartRunbook(context.Background(), g.s, g.runner, admin, name, 0, params)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	return run
}

func waitRun(t *testing.T, s *store.Store, id int64, state string) store.Run {
	t.Helper()
	var r store.Run
	eventually(t, fmt.Sprintf("run %d to be %s", id, state), func() bool {
		var err error
		r, err = s.Run(context.Background(), id)
		return err == nil && r.State == state
	})
	return r
}

func stepOf(t *testing.T, s *store.Store, run int64, name string) store.RunStep {
	t.Helper()
	steps, err := s.RunSteps(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range steps {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("run %d has no step %q", run, name)
	return store.RunStep{}
}

func waitStep(t *testing.T, s *store.Store, run int64, name, state string) store.RunStep {
	t.Helper()
	var st store.RunStep
	eventually(t, fmt.Sprintf("step %q of run %d to be %s", name, run, state), func() bool {
		st = stepOf(t, s, run, name)
		return st.State == state
	})
	return st
}

func countRows(t *testing.T, s *store.Store, query string, args ...any) int {
	t.Helper()
	var n int
	if err := s.DB().QueryRow(s.DB().Rebind(query), args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func events(t *testing.T, s *store.Store, run int64) []store.RunEvent {
	t.Helper()
	es, err := s.RunEvents(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func TestRunbookBackupRegion(t *testing.T) {
	g := newRunbookRig(t)
	bob := storetest.User(t, g.s, "bob@example.com")
	d1 := g.reserve(t, g.owner, nil)
	d2 := g.reserve(t, bob, nil)

	run := startRun(t, g, "backup-region", map[string]any{"region": "tst"})
	if run.Version != 1 || run.Runbook != "backup-region" {
		t.Fatalf("run %+v", run)
	}
	waitRun(t, g.s, run.ID, store.RunSucceeded)

	t.Run("each ready devserver is backed up once", func(t *testing.T) {
		for _, d := range []store.Devserver{d1, d2} {
			if n := countRows(t, g.s, `SELECT COUNT(*) FROM backups WHERE devserver_id = ? AND state = 'done'`, d.ID); n != 1 {
				t.Errorf("%s has %d backups, want 1", d.Name, n)
			}
		}
	})
	t.Run("each owner is notified once", func(t *testing.T) {
		n := countRows(t, g.s, `SELECT COUNT(*) FROM notifications WHERE idempotency_key LIKE ?`, fmt.Sprintf("runbook:%d:tell the owners:%%", run.ID))
		if n != 2 {
			t.Errorf("%d notifications, want 2", n)
		}
	})
	t.Run("the timeline has the steps and their log lines", func(t *testing.T) {
		var lines []string
		for _, e := range events(t, g.s, run.ID) {
			lines = append(lines, e.Kind+"|"+e.Step+"|"+e.Message)
		}
		all := strings.Join(lines, "\n")
		for _, want := range []string{"log|announce|Backing up the devservers of tst", "log|back up|Backing up " + d1.Name, "log|back up|Backed up 2 devservers of tst",
			"log|tell the owners|Notified 2 people", "finished|tell the owners|Done", "run_finished||The run succeeded"} {
			if !strings.Contains(all, want) {
				t.Errorf("timeline lacks %q:\n%s", want, all)
			}
		}
	})
}

func TestRunbookBarrierAndNestedRun(t *testing.T) {
	g := newRunbookRig(t)
	ctx := context.Background()
	d := g.reserve(t, g.owner, nil)
	run := startRun(t, g, "exercise-checklist", map[string]any{"region": "tst"})

	// The two checks run in parallel after "open"; the barrier waits for both.
	waitStep(t, g.s, run.ID, "check dashboards", store.StepWaiting)
	waitStep(t, g.s, run.ID, "check pagers", store.StepWaiting)
	if b := stepOf(t, g.s, run.ID, "both checks done"); b.State != store.StepPending || b.NeedsLeft != 2 {
		t.Fatalf("barrier %s with %d left, want pending with 2", b.State, b.NeedsLeft)
	}
	t.Run("a step that is not manual cannot be completed by hand", func(t *testing.T) {
		var ce *store.ConflictError
		if err := CompleteRunStep(ctx, g.s, g.runner, admin, run.ID, "both checks done"); !errors.As(err, &ce) {
			t.Errorf("completing a barrier: %v", err)
		}
	})
	alice := store.Actor{Name: "alice@example.com"}
	if err := CompleteRunStep(ctx, g.s, g.runner, alice, run.ID, "check dashboards"); err != nil {
		t.Fatal(err)
	}
	t.Run("the barrier holds until every step it joins is done", func(t *testing.T) {
		time.Sleep(300 * time.Millisecond)
		if b := stepOf(t, g.s, run.ID, "both checks done"); b.State != store.StepPending || b.NeedsLeft != 1 {
			t.Errorf("barrier %s with %d left, want pending with 1", b.State, b.NeedsLeft)
		}
		if st := stepOf(t, g.s, run.ID, "back up the region"); st.State != store.StepPending {
			t.Errorf("the nested run's step is %s before the barrier", st.State)
		}
	})
	if err := CompleteRunStep(ctx, g.s, g.runner, admin, run.ID, "check pagers"); err != nil {
		t.Fatal(err)
	}
	waitStep(t, g.s, run.ID, "both checks done", store.StepSucceeded)
	nested := waitStep(t, g.s, run.ID, "back up the region", store.StepSucceeded)
	t.Run("the nested run ran backup-region with the parameters given", func(t *testing.T) {
		if nested.ChildRunID == nil {
			t.Fatal("no nested run recorded")
		}
		child, err := g.s.Run(ctx, *nested.ChildRunID)
		if err != nil {
			t.Fatal(err)
		}
		if child.Runbook != "backup-region" || child.State != store.RunSucceeded || child.Params()["region"] != "tst" || child.ParentRunID == nil || *child.ParentRunID != run.ID {
			t.Errorf("child %+v params %v", child, child.Params())
		}
		if n := countRows(t, g.s, `SELECT COUNT(*) FROM backups WHERE devserver_id = ? AND state = 'done'`, d.ID); n != 1 {
			t.Errorf("%d backups, want 1", n)
		}
	})
	waitStep(t, g.s, run.ID, "sign off", store.StepWaiting)
	if err := CompleteRunStep(ctx, g.s, g.runner, admin, run.ID, "sign off"); err != nil {
		t.Fatal(err)
	}
	waitRun(t, g.s, run.ID, store.RunSucceeded)
	t.Run("manual steps record who completed them and when", func(t *testing.T) {
		st := stepOf(t, g.s, run.ID, "check dashboards")
		if st.DoneBy != "alice@example.com" || st.FinishedAt == nil {
			t.Errorf("done by %q at %v", st.DoneBy, st.FinishedAt)
		}
		found := false
		for _, e := range events(t, g.s, run.ID) {
			found = found || e.Kind == store.EventManualDone && e.Step == "check dashboards" && e.Actor == "alice@example.com"
		}
		if !found {
			t.Error("no manual_done event by alice")
		}
	})
	t.Run("completing it again is refused", func(t *testing.T) {
		var ce *store.ConflictError
		if err := CompleteRunStep(ctx, g.s, g.runner, admin, run.ID, "sign off"); !errors.As(err, &ce) {
			t.Errorf("second completion: %v", err)
		}
	})
}

func TestRunbookConcurrencyCap(t *testing.T) {
	g := newRunbookRig(t)
	addRunbook(t, g.s, `
name: three-waits
version: 1
concurrency: 1
steps:
  - {name: a, needs: [], op: wait, params: {duration: 300ms}}
  - {name: b, needs: [], op: wait, params: {duration: 300ms}}
  - {name: c, needs: [], op: wait, params: {duration: 300ms}}
`)
	run := startRun(t, g, "three-waits", nil)
	waitRun(t, g.s, run.ID, store.RunSucceeded)
	steps, err := g.s.RunSteps(context.Background(), run.ID)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(steps, func(i, j int) bool { return steps[i].StartedAt.Before(*steps[j].StartedAt) })
	for i := 1; i < len(steps); i++ {
		if steps[i].StartedAt.Before(*steps[i-1].FinishedAt) {
			t.Errorf("step %s started at %v, before %s finished at %v: more than one ran at once", steps[i].Name, steps[i].StartedAt, steps[i-1].Name, steps[i-1].FinishedAt)
		}
	}
}

func TestRunbookDeadline(t *testing.T) {
	g := newRunbookRig(t)
	addRunbook(t, g.s, `
name: slow
version: 1
deadline: 1s
steps:
  - {name: wait for a person, instructions: Nobody will come.}
`)
	run := startRun(t, g, "slow", nil)
	r := waitRun(t, g.s, run.ID, store.RunFailed)
	if !strings.Contains(r.Error, "deadline") {
		t.Errorf("error %q", r.Error)
	}
	if st := stepOf(t, g.s, run.ID, "wait for a person"); st.State != store.StepCancelled {
		t.Errorf("step %s, want cancelled", st.State)
	}
}

func TestRunbookCancelReachesNestedRun(t *testing.T) {
	g := newRunbookRig(t)
	addRunbook(t, g.s, `
name: inner
version: 1
steps:
  - {name: long wait, op: wait, params: {duration: 1h}}
  - {name: after, op: log, params: {message: never}}
`)
	addRunbook(t, g.s, `
name: outer
version: 1
steps:
  - {name: nest, runbook: inner}
  - {name: later, op: log, params: {message: never}}
`)
	run := startRun(t, g, "outer", nil)
	nest := waitStep(t, g.s, run.ID, "nest", store.StepWaiting)
	child := *nest.ChildRunID
	waitStep(t, g.s, child, "long wait", store.StepRunning)
	eventually(t, "the wait to start", func() bool {
		for _, e := range events(t, g.s, child) {
			if e.Kind == store.EventLog && strings.HasPrefix(e.Message, "Waiting 1h0m0s") {
				return true
			}
		}
		return false
	})
	if err := CancelRun(context.Background(), g.s, g.runner, admin, run.ID); err != nil {
		t.Fatal(err)
	}
	waitRun(t, g.s, run.ID, store.RunCancelled)
	c := waitRun(t, g.s, child, store.RunCancelled)
	if !strings.Contains(c.Error, fmt.Sprintf("run %d", run.ID)) {
		t.Errorf("child error %q", c.Error)
	}
	for _, name := range []string{"long wait", "after"} {
		if st := stepOf(t, g.s, child, name); st.State != store.StepCancelled {
			t.Errorf("nested step %q is %s, want cancelled", name, st.State)
		}
	}
	if n := countRows(t, g.s, `SELECT COUNT(*) FROM runbook_run_events WHERE run_id = ? AND kind = 'log' AND message = 'never'`, run.ID); n != 0 {
		t.Errorf("a step after the cancel ran")
	}
	t.Run("cancelling again is refused", func(t *testing.T) {
		var ce *store.ConflictError
		if err := CancelRun(context.Background(), g.s, g.runner, admin, run.ID); !errors.As(err, &ce) {
			t.Errorf("second cancel: %v", err)
		}
	})
}

func TestRunbookRetryFailedStep(t *testing.T) {
	g := newRunbookRig(t)
	ctx := context.Background()
	addRunbook(t, g.s, `
name: tell-a-host
version: 1
steps:
  - name: tell
    op: notify
    params: {audience: host_devservers, host: late-hv01, title: Maintenance}
    retry: {attempts: 2, backoff: 100ms}
  - {name: after, op: log, params: {message: told}}
`)
	run := startRun(t, g, "tell-a-host", nil)
	r := waitRun(t, g.s, run.ID, store.RunFailed)
	st := stepOf(t, g.s, run.ID, "tell")
	if st.State != store.StepFailed || st.Attempts != 2 || !strings.Contains(st.Error, "late-hv01") {
		t.Fatalf("step %+v (run error %q)", st, r.Error)
	}
	if after := stepOf(t, g.s, run.ID, "after"); after.State != store.StepPending {
		t.Errorf("the step after a failed one is %s, want pending", after.State)
	}
	retried := 0
	for _, e := range events(t, g.s, run.ID) {
		if e.Kind == store.EventRetried {
			retried++
		}
	}
	if retried != 1 {
		t.Errorf("%d retried events, want 1 (two attempts)", retried)
	}
	t.Run("only a failed step can be retried", func(t *testing.T) {
		var ce *store.ConflictError
		if err := RetryRunStep(ctx, g.s, g.runner, admin, run.ID, "after"); !errors.As(err, &ce) {
			t.Errorf("retrying a pending step: %v", err)
		}
	})
	// The host appears; a person retries the step.
	if _, err := g.s.DB().Exec(g.s.DB().Rebind(`INSERT INTO hosts (name, region, kind, driver, state, cpus, memory_gb, disk_gb, created_at) VALUES ('late-hv01', 'tst', 'hypervisor', 'sim', 'retired', 0, 0, 0, ?)`), time.Now().UTC()); err != nil {
		t.Fatal(err)
	}
	if err := RetryRunStep(ctx, g.s, g.runner, admin, run.ID, "tell"); err != nil {
		t.Fatal(err)
	}
	waitRun(t, g.s, run.ID, store.RunSucceeded)
	if n := countRows(t, g.s, `SELECT COUNT(*) FROM runbook_run_events WHERE run_id = ? AND step = 'after' AND kind = 'log' AND message = 'told'`, run.ID); n != 1 {
		t.Errorf("the step after ran %d times, want 1", n)
	}
}

func TestRunbookBadParameters(t *testing.T) {
	g := newRunbookRig(t)
	ctx := context.Background()
	cases := []struct {
		name   string
		params map[string]any
		field  string
		want   string
	}{
		{"a missing required parameter", nil, "params.region", "is required"},
		{"a parameter of the wrong type", map[string]any{"region": float64(5)}, "params.region", "must be text"},
		{"a region that does not exist", map[string]any{"region": "nowhere"}, "params.region", `"nowhere" is not a region`},
		{"an unknown parameter", map[string]any{"region": "tst", "colour": "red"}, "params.colour", "is not a parameter"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := StartRunbook(ctx, g.s, g.runner, admin, "backup-region", 0, c.params)
			var ve *store.ValidationError
			if !errors.As(err, &ve) || !strings.Contains(ve.Fields[c.field], c.want) {
				t.Fatalf("error %v, want %s %s", err, c.field, c.want)
			}
		})
	}
	if n := countRows(t, g.s, `SELECT COUNT(*) FROM runbook_runs`); n != 0 {
		t.Errorf("%d runs saved, want none", n)
	}
	t.Run("an invalid definition saves nothing", func(t *testing.T) {
		_, err := AddRunbookVersion(ctx, g.s, admin, []byte("name: broken\nversion: 1\nsteps:\n  - {name: a, op: nope}\n"), "")
		var ie *InvalidRunbookError
		if !errors.As(err, &ie) || ie.Validation().Fields["line 4, column 19"] == "" {
			t.Fatalf("error %v", err)
		}
		if n := countRows(t, g.s, `SELECT COUNT(*) FROM runbook_versions WHERE name = 'broken'`); n != 0 {
			t.Errorf("saved %d versions", n)
		}
	})
	t.Run("a version that is not newer is refused", func(t *testing.T) {
		src, err := builtinRunbooks.ReadFile("runbooks/backup-region.yaml")
		if err != nil {
			t.Fatal(err)
		}
		var ce *store.ConflictError
		if _, err := AddRunbookVersion(ctx, g.s, admin, src, ""); !errors.As(err, &ce) || ce.Code != "version_not_newer" {
			t.Errorf("error %v", err)
		}
	})
}

func TestRunbookDryRunChangesNothing(t *testing.T) {
	g := newRunbookRig(t)
	ctx := context.Background()
	d := g.reserve(t, g.owner, nil)
	// River's own bookkeeping runs on its own; what a runbook could enqueue
	// is counted instead.
	counts := func() map[string]int {
		list := `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'river_%' AND name NOT LIKE 'sqlite_%'`
		if g.s.Engine() == store.Postgres {
			list = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name NOT LIKE 'river_%'`
		}
		rows, err := g.s.DB().Query(list)
		if err != nil {
			t.Fatal(err)
		}
		var tables []string
		for rows.Next() {
			var n string
			_ = rows.Scan(&n)
			tables = append(tables, n)
		}
		rows.Close()
		out := map[string]int{}
		for _, tb := range tables {
			out[tb] = countRows(t, g.s, `SELECT COUNT(*) FROM "`+tb+`"`)
		}
		out["river_job runbook and backup jobs"] = countRows(t, g.s, `SELECT COUNT(*) FROM river_job WHERE kind IN ('runbook_step', 'runbook_deadline', 'backup_devserver')`)
		return out
	}
	before := counts()
	p, err := PlanRunbook(ctx, g.s, "exercise-checklist", 0, map[string]any{"region": "tst"})
	if err != nil {
		t.Fatal(err)
	}
	after := counts()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("table %s went from %d to %d rows", k, v, after[k])
		}
	}
	var steps []string
	for _, s := range p.Steps {
		steps = append(steps, s.Step)
	}
	if got := strings.Join(steps, ","); got != "open,check dashboards,check pagers,both checks done,back up the region,sign off" {
		t.Errorf("plan order %s", got)
	}
	nested := p.Steps[4].Run
	if nested == nil || len(nested.Steps) != 3 || !strings.Contains(strings.Join(nested.Steps[1].Lines, "\n"), "Back up devserver "+d.Name) {
		t.Fatalf("nested plan %+v", nested)
	}
	if !strings.Contains(strings.Join(nested.Steps[2].Lines, "\n"), "Notify 1 person") {
		t.Errorf("notify plan %v", nested.Steps[2].Lines)
	}
}
