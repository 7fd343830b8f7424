package jobs

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/devport/devport/fleet/sim"
	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

func (g *backupRig) checkHealth(t *testing.T) (checked, unhealthy, opened int) {
	t.Helper()
	checked, unhealthy, opened, err := CheckHealth(context.Background(), g.s, g.opts.Fleet, func(ctx context.Context, tx *store.Tx, a river.JobArgs) error {
		return g.runner.Enqueue(ctx, tx, a)
	})
	if err != nil {
		t.Fatal(err)
	}
	return checked, unhealthy, opened
}

// episode waits for the devserver's only remediation episode to close and
// returns it with its attempts.
func (g *backupRig) episode(t *testing.T, d store.Devserver) (store.Remediation, []store.RemediationAttempt) {
	t.Helper()
	ctx := context.Background()
	var r store.Remediation
	eventually(t, "the remediation of "+d.Name+" to close", func() bool {
		rs, err := g.s.Remediations(ctx, d.ID, 10)
		if err != nil || len(rs) != 1 {
			return false
		}
		r = rs[0]
		return r.State != store.RemediationOpen
	})
	as, err := g.s.RemediationAttempts(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	return r, as
}

func actions(as []store.RemediationAttempt) string {
	var out []string
	for _, a := range as {
		out = append(out, a.Action+":"+a.Outcome)
	}
	return strings.Join(out, ",")
}

func countTitled(t *testing.T, s *store.Store, u store.User, part string) int {
	t.Helper()
	ns, err := s.Notifications(context.Background(), u.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, x := range ns {
		if strings.Contains(x.Title, part) {
			n++
		}
	}
	return n
}

func TestHealthRemediation(t *testing.T) {
	g := newHostRig(t)
	ctx := context.Background()
	admin := storetest.User(t, g.s, "root@example.com", store.RoleAdmin)

	t.Run("a healthy fleet opens nothing", func(t *testing.T) {
		d := g.reserveOn(t, g.owner, "vm.small", "tst-hv01")
		checked, unhealthy, opened := g.checkHealth(t)
		if checked != 1 || unhealthy != 0 || opened != 0 {
			t.Fatalf("checked %d, unhealthy %d, opened %d", checked, unhealthy, opened)
		}
		h, err := g.s.LatestHealth(ctx, d.ID)
		if err != nil || !h.OK {
			t.Fatalf("latest health %+v, %v", h, err)
		}
		g.release(t, d)
	})

	t.Run("a restart mends a stopped devserver", func(t *testing.T) {
		d := g.reserveOn(t, g.owner, "vm.small", "tst-hv01")
		if err := g.sim.Stop(ctx, d.InstanceID); err != nil {
			t.Fatal(err)
		}
		if _, unhealthy, opened := g.checkHealth(t); unhealthy != 1 || opened != 1 {
			t.Fatalf("unhealthy %d, opened %d", unhealthy, opened)
		}
		// A second check while the episode is open opens no other.
		g.checkHealth(t)
		r, as := g.episode(t, d)
		if r.State != store.RemediationResolved || r.Cause != store.CauseInstanceStopped || actions(as) != "restart:fixed" {
			t.Fatalf("episode %s (%s): %s", r.State, r.Cause, actions(as))
		}
		if h, _ := g.sim.Health(ctx, d.InstanceID); !h.OK {
			t.Errorf("after the restart: %s", h.Detail)
		}
		g.release(t, d)
	})

	t.Run("recreating from the latest backup mends what a restart does not", func(t *testing.T) {
		d := g.reserveOn(t, g.owner, "vm.small", "tst-hv01")
		g.exec(t, d, "write", "thesis.tex", "chapter one")
		g.backUp(t, d, store.BackupManual)
		g.sim.FailNext(sim.OpHealth, 2) // the periodic check and the one after the restart
		g.checkHealth(t)
		r, as := g.episode(t, d)
		if r.State != store.RemediationResolved || actions(as) != "restart:not_fixed,recreate:fixed" {
			t.Fatalf("episode %s: %s", r.State, actions(as))
		}
		now, _ := g.s.DevserverByID(ctx, d.ID)
		if now.InstanceID == d.InstanceID || now.State != store.StateReady {
			t.Errorf("devserver %s on instance %s (was %s)", now.State, now.InstanceID, d.InstanceID)
		}
		if got := g.exec(t, now, "cat", "thesis.tex"); got != "chapter one" {
			t.Errorf("restored home: %q", got)
		}
		g.release(t, now)
	})

	t.Run("escalates to the owner and the admins, once, when recreating does not help", func(t *testing.T) {
		d := g.reserveOn(t, g.owner, "vm.small", "tst-hv01")
		g.backUp(t, d, store.BackupManual)
		g.sim.FailNext(sim.OpHealth, 3) // the check, after the restart, and the recreated instance
		g.checkHealth(t)
		r, as := g.episode(t, d)
		if r.State != store.RemediationEscalated || actions(as) != "restart:not_fixed,recreate:failed,escalate:done" {
			t.Fatalf("episode %s: %s", r.State, actions(as))
		}
		time.Sleep(300 * time.Millisecond)
		if n := countTitled(t, g.s, g.owner, "could not be repaired"); n != 1 {
			t.Errorf("owner told %d times", n)
		}
		tasks := 0
		for _, task := range tasksOf(t, g.s, g.owner) {
			if strings.Contains(task.Title, d.Name) {
				tasks++
			}
		}
		if tasks != 1 {
			t.Errorf("owner has %d tasks about %s", tasks, d.Name)
		}
		if n := countTitled(t, g.s, admin, "gave up on devserver "+d.Name); n != 1 {
			t.Errorf("admin told %d times", n)
		}
		now, _ := g.s.DevserverByID(ctx, d.ID)
		if now.InstanceID != d.InstanceID || now.State != store.StateReady {
			t.Errorf("after a failed recreation the devserver is %s on %s (was %s)", now.State, now.InstanceID, d.InstanceID)
		}
		// The rage bundle of this devserver holds every part.
		t.Run("a rage collects a bundle with its health checks, jobs, driver state and audit events", func(t *testing.T) {
			var b store.DiagnosticBundle
			err := g.s.InTx(ctx, func(tx *store.Tx) error {
				var err error
				if b, err = tx.RequestBundle(ctx, store.Actor{Name: g.owner.Email}, now, "it keeps dying"); err != nil {
					return err
				}
				return g.runner.Enqueue(ctx, tx, CollectBundleArgs{BundleID: b.ID})
			})
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, "the bundle", func() bool { b, _ = g.s.Bundle(ctx, b.ID); return b.State != "collecting" })
			if b.State != "ready" {
				t.Fatalf("bundle %s: %s", b.State, b.Error)
			}
			parts := b.Parts()
			for _, p := range []string{PartDevserver, PartHealthChecks, PartRemediations, PartJobs, PartDriverState, PartAuditEvents} {
				var v any
				if err := json.Unmarshal(parts[p], &v); err != nil || v == nil {
					t.Errorf("part %s: %s", p, parts[p])
				}
			}
			var checks []store.HealthCheck
			_ = json.Unmarshal(parts[PartHealthChecks], &checks)
			if len(checks) < 2 {
				t.Errorf("%d health checks in the bundle", len(checks))
			}
			var jobRows []store.JobRecord
			_ = json.Unmarshal(parts[PartJobs], &jobRows)
			kinds := map[string]bool{}
			for _, j := range jobRows {
				kinds[j.Kind] = true
			}
			for _, k := range []string{"provision_devserver", "remediate_devserver", "migrate_devserver", "backup_devserver"} {
				if !kinds[k] {
					t.Errorf("no %s job in the bundle: %v", k, kinds)
				}
			}
			var state map[string]any
			_ = json.Unmarshal(parts[PartDriverState], &state)
			if state["ok"] != true || state["host"] != now.Host {
				t.Errorf("driver state %v", state)
			}
			if !strings.Contains(string(parts[PartAuditEvents]), "devserver.remediation_escalated") {
				t.Errorf("audit events lack the escalation: %s", parts[PartAuditEvents])
			}
			found := 0
			for _, task := range tasksOf(t, g.s, admin) {
				if strings.Contains(task.Title, now.Name) && strings.HasSuffix(task.Link, "/admin/support/"+itoa(b.ID)) {
					found++
				}
			}
			if found != 1 {
				t.Errorf("admin has %d support tasks for the bundle", found)
			}
		})
	})

	t.Run("counts recurring failures by cause", func(t *testing.T) {
		cs, err := g.s.FailureCauses(ctx, time.Now().Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][3]int{}
		for _, c := range cs {
			got[c.Cause] = [3]int{c.Total, c.Resolved, c.Escalated}
			if c.LastAt == nil || time.Since(*c.LastAt) > time.Hour {
				t.Errorf("cause %s last seen %v", c.Cause, c.LastAt)
			}
		}
		if got[store.CauseDriverError] != [3]int{2, 1, 1} || got[store.CauseInstanceStopped] != [3]int{1, 1, 0} || len(got) != 2 {
			t.Errorf("causes (total, resolved, escalated): %v", got)
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func (g *backupRig) release(t *testing.T, d store.Devserver) {
	t.Helper()
	ctx := context.Background()
	err := g.s.InTx(ctx, func(tx *store.Tx) error {
		d, needsFleet, err := tx.StartRelease(ctx, store.System, d)
		if err != nil || !needsFleet {
			return err
		}
		return g.runner.Enqueue(ctx, tx, ReleaseArgs{DevserverID: d.ID})
	})
	if err != nil {
		t.Fatal(err)
	}
	g.waitState(t, d.ID, store.StateReleased)
}

func TestHealthCause(t *testing.T) {
	cases := map[string]string{
		"instance is stopped":                       store.CauseInstanceStopped,
		"instance is created":                       store.CauseInstanceStopped,
		"instance is destroyed":                     store.CauseInstanceMissing,
		"sim health on h1: host unreachable":        store.CauseHostUnreachable,
		"sim health: simulated failure":             store.CauseDriverError,
		"container exited with code 137":            store.CauseInstanceStopped,
		"disk is 100% full":                         store.CauseUnhealthy,
		"Error response from daemon: No such thing": store.CauseInstanceMissing,
	}
	for detail, want := range cases {
		if got := HealthCause(detail); got != want {
			t.Errorf("HealthCause(%q) = %s, want %s", detail, got, want)
		}
	}
}
