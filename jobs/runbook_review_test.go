package jobs

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/fleet/sim"
	"github.com/devport/devport/store"
)

// Regression tests for what a review of the runbook engine found.
func TestRunbookRetries(t *testing.T) {
	t.Run("a backup step retried after a failed backup backs that devserver up again", func(t *testing.T) {
		g := newBackupRig(t, Options{NoSchedules: true, MaxAttempts: map[string]int{BackupArgs{}.Kind(): 1}})
		g.s.Now = func() time.Time { return time.Now().UTC() }
		d := g.reserve(t, g.owner, nil)
		addRunbook(t, g.s, `
name: bk
version: 1
params:
  region: {type: region, required: true}
steps:
  - name: back up
    op: backup_devservers
    params: {region: "${region}"}
    retry: {attempts: 3, backoff: 100ms}
`)
		g.sim.FailNext(sim.OpBackup, 1)
		run := startRun(t, g, "bk", map[string]any{"region": "tst"})
		waitRun(t, g.s, run.ID, store.RunSucceeded)
		done := countRows(t, g.s, `SELECT COUNT(*) FROM backups WHERE devserver_id = ? AND state = 'done'`, d.ID)
		failed := countRows(t, g.s, `SELECT COUNT(*) FROM backups WHERE devserver_id = ? AND state = 'failed'`, d.ID)
		if done != 1 || failed != 1 {
			t.Errorf("backups: %d done, %d failed; want the failed one taken again once", done, failed)
		}
	})

	t.Run("a step waiting for a person holds no slot of the run's concurrency", func(t *testing.T) {
		g := newRunbookRig(t)
		addRunbook(t, g.s, `
name: cap-manual
version: 1
concurrency: 1
steps:
  - {name: m, needs: [], instructions: a person}
  - {name: x, needs: [], op: log, params: {message: hi}}
`)
		run := startRun(t, g, "cap-manual", nil)
		waitStep(t, g.s, run.ID, "m", store.StepWaiting)
		waitStep(t, g.s, run.ID, "x", store.StepSucceeded)
	})

	t.Run("a step's timeout is for one attempt, not for the pauses between retries", func(t *testing.T) {
		g := newRunbookRig(t)
		addRunbook(t, g.s, `
name: to-retry
version: 1
steps:
  - name: tell
    op: notify
    params: {audience: host_devservers, host: late-hv01, title: Maintenance}
    retry: {attempts: 3, backoff: 1500ms}
    timeout: 1s
`)
		run := startRun(t, g, "to-retry", nil)
		waitRun(t, g.s, run.ID, store.RunFailed)
		st := stepOf(t, g.s, run.ID, "tell")
		if st.Attempts != 3 || strings.Contains(st.Error, "timed out") {
			t.Errorf("step after %d attempts: %q; want 3 attempts, each failing on its own", st.Attempts, st.Error)
		}
	})

	t.Run("an old nested run retried and finished does not finish the step that waits for a newer one", func(t *testing.T) {
		g := newRunbookRig(t)
		ctx := context.Background()
		addRunbook(t, g.s, `
name: inner
version: 1
steps:
  - name: a
    op: notify
    params: {audience: host_devservers, host: late-hv01, title: Maintenance}
  - {name: b, needs: [a], instructions: a person}
`)
		addRunbook(t, g.s, `
name: outer
version: 1
steps:
  - {name: nest, runbook: inner}
`)
		run := startRun(t, g, "outer", nil)
		waitRun(t, g.s, run.ID, store.RunFailed)
		child1 := *stepOf(t, g.s, run.ID, "nest").ChildRunID
		if _, err := g.s.DB().Exec(g.s.DB().Rebind(`INSERT INTO hosts (name, region, kind, driver, state, cpus, memory_gb, disk_gb, created_at) VALUES ('late-hv01', 'tst', 'hypervisor', 'sim', 'retired', 0, 0, 0, ?)`), time.Now().UTC()); err != nil {
			t.Fatal(err)
		}
		if err := RetryRunStep(ctx, g.s, g.runner, admin, run.ID, "nest"); err != nil {
			t.Fatal(err)
		}
		nest := waitStep(t, g.s, run.ID, "nest", store.StepWaiting)
		child2 := *nest.ChildRunID
		waitStep(t, g.s, child2, "b", store.StepWaiting)
		err := RetryRunStep(ctx, g.s, g.runner, admin, child1, "a")
		var ce *store.ConflictError
		if !errors.As(err, &ce) || ce.Code != "run_superseded" {
			t.Fatalf("retrying the superseded nested run: %v", err)
		}
		if o, _ := g.s.Run(ctx, run.ID); o.State != store.RunRunning {
			t.Errorf("outer run is %s", o.State)
		}
	})
}

func TestChatSenderFollowsNoRedirect(t *testing.T) {
	elsewhere := 0
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere++ }))
	defer other.Close()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/steal", http.StatusTemporaryRedirect)
	}))
	defer hook.Close()
	c, err := NewChatSender(hook.URL, "http://127.0.0.1:8080", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Send(context.Background(), store.Delivery{ID: 1, Title: "t", Email: "ann@example.com", IdempotencyKey: "k"})
	if err == nil || !strings.Contains(err.Error(), "307") || elsewhere != 0 {
		t.Errorf("a redirect: err %v, the other host got %d requests", err, elsewhere)
	}
}

func TestSafeLink(t *testing.T) {
	for link, want := range map[string]bool{
		"": true, "/containers/od1": true, "https://wiki.example.com/x": true, "http://a.example/": true,
		"javascript:alert(1)": false, "//evil.example/": false, `/\evil.example`: false, "data:text/html,x": false, "https://": false,
	} {
		if got := store.SafeLink(link); got != want {
			t.Errorf("SafeLink(%q) = %v", link, got)
		}
	}
}
