package jobs_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/sim"
	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

type rig struct {
	s      *store.Store
	sim    *sim.Driver
	runner *jobs.Runner
	owner  store.User
}

func newRig(t *testing.T, latency time.Duration, attempts map[string]int) *rig {
	t.Helper()
	inv := storetest.SmallRegion(2)
	s := storetest.Seeded(t, &inv)
	d := sim.New(s, sim.Options{Latency: latency, Seed: 7})
	r, err := jobs.New(context.Background(), jobs.Options{Store: s, Fleet: fleet.New(d), Log: slog.New(slog.DiscardHandler), MaxAttempts: attempts})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Stop(ctx)
	})
	return &rig{s: s, sim: d, runner: r, owner: storetest.User(t, s, "alice@example.com")}
}

func (g *rig) reserve(t *testing.T) store.Devserver {
	t.Helper()
	ctx := context.Background()
	var d store.Devserver
	err := g.s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if d, err = tx.Reserve(ctx, store.System, store.Reservation{Owner: g.owner, Flavor: "vm.small", Region: "tst"}); err != nil {
			return err
		}
		return g.runner.Enqueue(ctx, tx, jobs.ProvisionArgs{DevserverID: d.ID})
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (g *rig) release(t *testing.T, d store.Devserver) {
	t.Helper()
	ctx := context.Background()
	err := g.s.InTx(ctx, func(tx *store.Tx) error {
		d, err := tx.DevserverByID(ctx, d.ID)
		if err != nil {
			return err
		}
		_, needsFleet, err := tx.StartRelease(ctx, store.System, d)
		if err != nil || !needsFleet {
			return err
		}
		return g.runner.Enqueue(ctx, tx, jobs.ReleaseArgs{DevserverID: d.ID})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (g *rig) wait(t *testing.T, id int64, state string) store.Devserver {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		d, err := g.s.DevserverByID(context.Background(), id)
		if err == nil && d.State == state {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("devserver %d is %s (%s), want %s", id, d.State, d.StatusNote, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (g *rig) liveInstances(t *testing.T) int {
	t.Helper()
	ins, err := g.s.SimInstancesOn(context.Background(), "tst-hv01")
	if err != nil {
		t.Fatal(err)
	}
	return len(ins)
}

func TestProvisioning(t *testing.T) {
	t.Run("a reserved devserver becomes ready with an address", func(t *testing.T) {
		g := newRig(t, 0, nil)
		d := g.wait(t, g.reserve(t).ID, store.StateReady)
		if d.Address == "" || d.InstanceID == "" || d.Progress != 100 || d.ReadyAt == nil {
			t.Errorf("ready devserver = %+v", d)
		}
		if g.liveInstances(t) != 1 {
			t.Error("the fleet has no instance for it")
		}
	})

	t.Run("a failed fleet call is retried with the same idempotency key and makes one instance", func(t *testing.T) {
		g := newRig(t, 0, nil)
		g.sim.FailNext(sim.OpStart, 1)
		d := g.wait(t, g.reserve(t).ID, store.StateReady)
		if n := g.liveInstances(t); n != 1 {
			t.Errorf("%d instances after a retried provisioning, want 1", n)
		}
		if d.StatusNote != "" {
			t.Errorf("the note of a ready devserver is %q", d.StatusNote)
		}
	})

	t.Run("a devserver the fleet cannot build fails and gives its capacity back", func(t *testing.T) {
		g := newRig(t, 0, map[string]int{"provision_devserver": 1})
		g.sim.FailNext(sim.OpCreate, 1)
		d := g.wait(t, g.reserve(t).ID, store.StateFailed)
		if !strings.Contains(d.StatusNote, "simulated failure") {
			t.Errorf("note = %q, want the cause", d.StatusNote)
		}
		h, _ := g.s.HostByName(context.Background(), "tst-hv01")
		if h.UsedCPUs != 0 {
			t.Errorf("a failed devserver holds %d CPUs", h.UsedCPUs)
		}
		events, _ := g.s.AuditEvents(context.Background(), "devserver", d.Name)
		if last := events[len(events)-1]; last.Action != "devserver.fail" {
			t.Errorf("last audit event %s, want devserver.fail", last.Action)
		}
	})

	t.Run("a release destroys the instance and frees the capacity", func(t *testing.T) {
		g := newRig(t, 0, nil)
		d := g.wait(t, g.reserve(t).ID, store.StateReady)
		g.release(t, d)
		g.wait(t, d.ID, store.StateReleased)
		if n := g.liveInstances(t); n != 0 {
			t.Errorf("%d instances left after release", n)
		}
		h, _ := g.s.HostByName(context.Background(), "tst-hv01")
		if h.UsedCPUs != 0 {
			t.Errorf("%d CPUs still used", h.UsedCPUs)
		}
	})

	t.Run("a devserver released while it provisions leaves no instance behind", func(t *testing.T) {
		g := newRig(t, 300*time.Millisecond, nil)
		d := g.reserve(t)
		deadline := time.Now().Add(10 * time.Second)
		for {
			cur, _ := g.s.DevserverByID(context.Background(), d.ID)
			if cur.Progress >= 10 || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		g.release(t, d)
		g.wait(t, d.ID, store.StateReleased)
		deadline = time.Now().Add(10 * time.Second)
		for g.liveInstances(t) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d instances left behind", g.liveInstances(t))
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
