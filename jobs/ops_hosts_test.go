package jobs

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/sim"
	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// hostInventory is two regions: tst with two hypervisors and two physical
// hosts, alt with one hypervisor.
func hostInventory() store.DemoInventory {
	demo := store.Demo("sim")
	inv := store.DemoInventory{Features: demo.Features}
	inv.Regions = []store.Region{{Code: "tst", Name: "Test", Status: "active", Position: 1}, {Code: "alt", Name: "Alternative", Status: "active", Position: 2}}
	inv.Latencies = []store.RegionLatency{{From: "tst", To: "alt", MS: 20}}
	for _, f := range demo.Flavors {
		switch f.Name {
		case "vm.small":
			inv.Flavors = append(inv.Flavors, f)
			inv.Hosts = append(inv.Hosts,
				store.Host{Name: "tst-hv01", Region: "tst", Kind: "hypervisor", Driver: "sim", State: "ready", CPUs: f.CPUs * 4, MemoryGB: f.MemoryGB * 4, DiskGB: f.DiskGB * 4},
				store.Host{Name: "tst-hv02", Region: "tst", Kind: "hypervisor", Driver: "sim", State: "ready", CPUs: f.CPUs * 2, MemoryGB: f.MemoryGB * 2, DiskGB: f.DiskGB * 2},
				store.Host{Name: "alt-hv01", Region: "alt", Kind: "hypervisor", Driver: "sim", State: "ready", CPUs: f.CPUs * 4, MemoryGB: f.MemoryGB * 4, DiskGB: f.DiskGB * 4},
			)
		case "physical.standard":
			inv.Flavors = append(inv.Flavors, f)
			inv.Hosts = append(inv.Hosts,
				store.Host{Name: "tst-ph01", Region: "tst", Kind: "physical", Driver: "sim", State: "ready", CPUs: f.CPUs, MemoryGB: f.MemoryGB, DiskGB: f.DiskGB},
				store.Host{Name: "tst-ph02", Region: "tst", Kind: "physical", Driver: "sim", State: "ready", CPUs: f.CPUs, MemoryGB: f.MemoryGB, DiskGB: f.DiskGB},
			)
		}
	}
	return inv
}

// newHostRig is a started runner (without schedules: tests run the health
// check by hand) on hostInventory, with the real clock.
func newHostRig(t *testing.T) *backupRig {
	t.Helper()
	inv := hostInventory()
	s := storetest.Seeded(t, &inv)
	s.Now = func() time.Time { return time.Now().UTC() }
	d := sim.New(s, sim.Options{Seed: 7})
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("DEVPORT_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	o := Options{Store: s, Fleet: fleet.New(d), Log: log, NoSchedules: true, BackupDir: filepath.Join(t.TempDir(), "backups")}
	r, err := New(context.Background(), o)
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
	return &backupRig{s: s, sim: d, runner: r, dir: o.BackupDir, owner: storetest.User(t, s, "alice@example.com"), opts: o}
}

// reserveOn makes a ready devserver of flavour on host (the other hosts of
// its kind briefly out of placement).
func (g *backupRig) reserveOn(t *testing.T, owner store.User, flavor, host string) store.Devserver {
	t.Helper()
	ctx := context.Background()
	var d store.Devserver
	err := g.s.InTx(ctx, func(tx *store.Tx) error {
		hosts, err := g.s.Hosts(ctx, "")
		if err != nil {
			return err
		}
		var parked []string
		for _, h := range hosts {
			if h.Name != host && h.State == "ready" {
				if _, err := tx.SetHostState(ctx, store.System, h.Name, []string{"ready"}, "maintenance"); err != nil {
					return err
				}
				parked = append(parked, h.Name)
			}
		}
		h, _ := g.s.HostByName(ctx, host)
		if d, err = tx.Reserve(ctx, store.System, store.Reservation{Owner: owner, Flavor: flavor, Region: h.Region}); err != nil {
			return err
		}
		for _, p := range parked {
			if _, err := tx.SetHostState(ctx, store.System, p, []string{"maintenance"}, "ready"); err != nil {
				return err
			}
		}
		return g.runner.Enqueue(ctx, tx, ProvisionArgs{DevserverID: d.ID})
	})
	if err != nil {
		t.Fatal(err)
	}
	d = g.waitState(t, d.ID, store.StateReady)
	if d.Host != host {
		t.Fatalf("%s landed on %s, not %s", d.Name, d.Host, host)
	}
	return d
}

func hostState(t *testing.T, s *store.Store, name string) store.Host {
	t.Helper()
	h, err := s.HostByName(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func usedCPUs(t *testing.T, s *store.Store) map[string]int {
	t.Helper()
	hs, err := s.Hosts(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, h := range hs {
		out[h.Name] = h.UsedCPUs
	}
	return out
}

func tasksOf(t *testing.T, s *store.Store, u store.User) []store.Task {
	t.Helper()
	ts, err := s.Tasks(context.Background(), u.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func TestHostMaintenance(t *testing.T) {
	g := newHostRig(t)
	ctx := context.Background()
	bob := storetest.User(t, g.s, "bob@example.com")
	carol := storetest.User(t, g.s, "carol@example.com")
	vms := []store.Devserver{
		g.reserveOn(t, g.owner, "vm.small", "tst-hv01"),
		g.reserveOn(t, bob, "vm.small", "tst-hv01"),
		g.reserveOn(t, bob, "vm.small", "tst-hv01"),
	}
	g.exec(t, vms[0], "write", "notes.txt", "still here")
	phys := g.reserveOn(t, carol, "physical.standard", "tst-ph01")

	t.Run("moves every VM off the host, the same region first and then the nearest, without a restart", func(t *testing.T) {
		run := startRun(t, g, "host-maintenance", map[string]any{"host": "tst-hv01"})
		t.Cleanup(func() {
			if t.Failed() {
				dumpRun(t, g.s, run.ID)
			}
		})
		eventually(t, "host in maintenance", func() bool { return hostState(t, g.s, "tst-hv01").State == "maintenance" })
		eventually(t, "VMs moved", func() bool {
			for _, v := range vms {
				d, _ := g.s.DevserverByID(ctx, v.ID)
				if d.State != store.StateReady || d.Host == "tst-hv01" {
					return false
				}
			}
			return true
		})
		var regions []string
		onHV02 := 0
		for _, v := range vms {
			d, _ := g.s.DevserverByID(ctx, v.ID)
			if d.InstanceID != v.InstanceID {
				t.Errorf("%s has a new instance %s: a live migration keeps it", d.Name, d.InstanceID)
			}
			if d.Host == "tst-hv02" {
				onHV02++
			}
			regions = append(regions, d.Region)
		}
		if onHV02 != 2 {
			t.Errorf("%d VMs on tst-hv02 (room for 2), regions %v", onHV02, regions)
		}
		if !strings.Contains(strings.Join(regions, ","), "alt") {
			t.Errorf("the third VM should fall back to the nearest region alt: %v", regions)
		}
		if got := g.exec(t, vms[0], "cat", "notes.txt"); got != "still here" {
			t.Errorf("data after the live migration: %q", got)
		}
		used := usedCPUs(t, g.s)
		if used["tst-hv01"] != 0 || used["tst-hv02"] != 4 || used["alt-hv01"] != 2 {
			t.Errorf("capacity did not move with the VMs: %v", used)
		}
		waitRun(t, g.s, run.ID, store.RunSucceeded)
		if h := hostState(t, g.s, "tst-hv01"); h.State != "ready" {
			t.Errorf("host after maintenance: %s, want ready", h.State)
		}
	})

	t.Run("asks the owner of a physical devserver to move it, and returns the host to ready once moved", func(t *testing.T) {
		run := startRun(t, g, "host-maintenance", map[string]any{"host": "tst-ph01"})
		eventually(t, "a task for carol", func() bool { return len(tasksOf(t, g.s, carol)) == 1 })
		task := tasksOf(t, g.s, carol)[0]
		if !strings.Contains(task.Title, phys.Name) || task.Link != MoveOffHostURL(phys.Name) {
			t.Errorf("task %q links %q", task.Title, task.Link)
		}
		if due := task.DueAt.Sub(time.Now()); due < 71*time.Hour || due > 73*time.Hour {
			t.Errorf("task due in %s, want 72h", due)
		}
		time.Sleep(1500 * time.Millisecond) // the evacuation passes again: still one task
		if n := len(tasksOf(t, g.s, carol)); n != 1 {
			t.Errorf("carol has %d tasks, want 1", n)
		}
		if r, _ := g.s.Run(ctx, run.ID); r.State != store.RunRunning {
			t.Fatalf("run is %s while a physical devserver is on the host", r.State)
		}
		// Carol clicks "move me".
		var m store.DevserverMigration
		err := g.s.InTx(ctx, func(tx *store.Tx) error {
			d, err := tx.DevserverByID(ctx, phys.ID)
			if err != nil {
				return err
			}
			h, _ := g.s.Host(ctx, d.HostID)
			if err := store.CheckMoveOffHost(h, d); err != nil {
				return err
			}
			if m, err = tx.StartHostMigration(ctx, store.Actor{Name: carol.Email}, d, nil, "moving off"); err != nil {
				return err
			}
			return g.runner.Enqueue(ctx, tx, MigrateArgs{MigrationID: m.ID})
		})
		if err != nil {
			t.Fatal(err)
		}
		if m.ToHost != "tst-ph02" {
			t.Errorf("moved to %s, want the other physical host of the region", m.ToHost)
		}
		waitRun(t, g.s, run.ID, store.RunSucceeded)
		d, _ := g.s.DevserverByID(ctx, phys.ID)
		if d.Host != "tst-ph02" || d.State != store.StateReady {
			t.Errorf("physical devserver on %s, %s", d.Host, d.State)
		}
		if h := hostState(t, g.s, "tst-ph01"); h.State != "ready" || h.UsedCPUs != 0 {
			t.Errorf("host after maintenance: %s with %d CPUs used", h.State, h.UsedCPUs)
		}
	})
}

func TestHostDecommission(t *testing.T) {
	g := newHostRig(t)
	ctx := context.Background()
	bob := storetest.User(t, g.s, "bob@example.com")
	vm := g.reserveOn(t, g.owner, "vm.small", "tst-hv02")
	phys := g.reserveOn(t, bob, "physical.standard", "tst-ph01")
	g.exec(t, phys, "write", "work.txt", "precious")

	// A deadline of zero: the physical devserver is moved for its owner at once.
	run := startRun(t, g, "host-decommission", map[string]any{"host": "tst-hv02", "deadline_in": "1h"})
	run2 := startRun(t, g, "host-decommission", map[string]any{"host": "tst-ph01", "deadline_in": "0s"})
	waitRun(t, g.s, run.ID, store.RunSucceeded)
	waitRun(t, g.s, run2.ID, store.RunSucceeded)

	for _, name := range []string{"tst-hv02", "tst-ph01"} {
		h := hostState(t, g.s, name)
		if h.State != "retired" || h.UsedCPUs != 0 {
			t.Errorf("host %s: %s with %d CPUs used, want retired and empty", name, h.State, h.UsedCPUs)
		}
	}
	d, _ := g.s.DevserverByID(ctx, vm.ID)
	if d.Host != "tst-hv01" || d.State != store.StateReady || d.InstanceID != vm.InstanceID {
		t.Errorf("VM on %s (%s), instance %s", d.Host, d.State, d.InstanceID)
	}
	p, _ := g.s.DevserverByID(ctx, phys.ID)
	if p.Host != "tst-ph02" || p.State != store.StateReady {
		t.Errorf("physical devserver on %s (%s)", p.Host, p.State)
	}
	if got := g.exec(t, p, "cat", "work.txt"); got != "precious" {
		t.Errorf("data after the migration: %q", got)
	}
	// Owners were told, once each.
	for _, u := range []store.User{g.owner, bob} {
		ns, err := g.s.Notifications(ctx, u.ID, 0, 50)
		if err != nil {
			t.Fatal(err)
		}
		told := 0
		for _, n := range ns {
			if strings.Contains(n.Title, "decommissioned") {
				told++
			}
		}
		if told != 1 {
			t.Errorf("%s was told %d times", u.Email, told)
		}
	}
	// A retired host takes nothing.
	err := g.s.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.SetHostState(ctx, store.System, "tst-ph01", []string{"ready"}, "maintenance")
		return err
	})
	if err == nil {
		t.Error("a retired host went into maintenance")
	}
	if err := store.CheckHostOperation(hostState(t, g.s, "tst-ph01"), store.HostOpMaintenance); err == nil || !strings.Contains(err.Error(), "retired") {
		t.Errorf("maintenance on a retired host: %v", err)
	}
}

// dumpRun logs a run's timeline, for a failing test.
func dumpRun(t *testing.T, s *store.Store, id int64) {
	t.Helper()
	es, _ := s.RunEvents(context.Background(), id)
	for _, e := range es {
		t.Logf("run %d %s %s: %s", id, e.Step, e.Kind, e.Message)
	}
}
