package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/sim"
	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// drainInventory: region src to drain, near (10 ms away, room for 300 VMs,
// 40 containers, 2 physical) and far (60 ms, room for 400 VMs).
func drainInventory() store.DemoInventory {
	demo := store.Demo("sim")
	inv := store.DemoInventory{Features: demo.Features}
	inv.Regions = []store.Region{
		{Code: "src", Name: "Source", Status: "active", Position: 1},
		{Code: "near", Name: "Near", Status: "active", Position: 2},
		{Code: "far", Name: "Far", Status: "active", Position: 3},
	}
	inv.Latencies = []store.RegionLatency{{From: "src", To: "near", MS: 10}, {From: "src", To: "far", MS: 60}, {From: "near", To: "far", MS: 50}}
	for _, f := range demo.Flavors {
		switch f.Name {
		case "vm.small", "container.medium", "physical.standard":
			inv.Flavors = append(inv.Flavors, f)
		}
	}
	vm := func(name, region string, n int) store.Host {
		return store.Host{Name: name, Region: region, Kind: "hypervisor", Driver: "sim", State: "ready", CPUs: 2 * n, MemoryGB: 8 * n, DiskGB: 50 * n}
	}
	ct := func(name, region string, n int) store.Host {
		return store.Host{Name: name, Region: region, Kind: "container", Driver: "sim", State: "ready", CPUs: 4 * n, MemoryGB: 8 * n, DiskGB: 50 * n}
	}
	ph := func(name, region string) store.Host {
		return store.Host{Name: name, Region: region, Kind: "physical", Driver: "sim", State: "ready", CPUs: 32, MemoryGB: 128, DiskGB: 2000}
	}
	inv.Hosts = []store.Host{vm("src-hv01", "src", 600), ct("src-ct01", "src", 40), vm("near-hv01", "near", 300), ct("near-ct01", "near", 40),
		ph("near-ph01", "near"), ph("near-ph02", "near"), vm("far-hv01", "far", 400)}
	for i := 1; i <= 5; i++ {
		inv.Hosts = append(inv.Hosts, ph(fmt.Sprintf("src-ph%02d", i), "src"))
	}
	return inv
}

type drainRig struct {
	s      *store.Store
	runner *Runner
	admin  store.Actor
}

func newDrainRig(t testing.TB, latency ...time.Duration) *drainRig {
	t.Helper()
	var lat time.Duration
	if len(latency) > 0 {
		lat = latency[0]
	}
	return newDrainRigOf(t, drainInventory(), lat)
}

// newDrainRigOf is a drain rig on the inventory inv.
func newDrainRigOf(t testing.TB, inv store.DemoInventory, lat time.Duration) *drainRig {
	t.Helper()
	s := storetest.Seeded(t, &inv)
	s.Now = func() time.Time { return time.Now().UTC() }
	d := sim.New(s, sim.Options{Seed: 3, Latency: lat})
	r, err := New(context.Background(), Options{Store: s, Fleet: fleet.New(d), Log: slog.New(slog.DiscardHandler), NoSchedules: true,
		BackupDir: filepath.Join(t.TempDir(), "backups"), Workers: 40})
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
	return &drainRig{s: s, runner: r, admin: store.Actor{Name: "admin@example.com"}}
}

// populate writes ready devservers with running sim instances straight into
// the inventory, round-robin over owners, taking their hosts' capacity.
func (g *drainRig) populate(t testing.TB, owners []store.User, vms, containers, physical int) {
	t.Helper()
	ctx := context.Background()
	db := g.s.DB()
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	now := time.Now().UTC()
	n := 0
	add := func(flavor, host string, cpus, mem, disk int) {
		name := fmt.Sprintf("dev%04d", n)
		inst := "sim-drain-" + name
		owner := owners[n%len(owners)]
		n++
		if _, err := tx.Exec(tx.Rebind(`INSERT INTO sim_instances (id, idempotency_key, host, name, state, address, cpus, memory_gb, home, created_at, updated_at)
VALUES (?, ?, ?, ?, 'running', ?, ?, ?, '{}', ?, ?)`), inst, "test:"+name, host, name, "2001:db8::"+fmt.Sprint(n), cpus, mem, now, now); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(tx.Rebind(`INSERT INTO devservers (name, owner_id, flavor, region, host_id, hostname, address, instance_id, state, created_at, updated_at, ready_at)
SELECT ?, ?, ?, h.region, h.id, CAST(? AS TEXT) || '.' || h.region || '.devport.internal', ?, ?, 'ready', ?, ?, ? FROM hosts h WHERE h.name = ?`),
			name, owner.ID, flavor, name, "2001:db8::"+fmt.Sprint(n), inst, now, now, now, host); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(tx.Rebind(`UPDATE hosts SET used_cpus = used_cpus + ?, used_memory_gb = used_memory_gb + ?, used_disk_gb = used_disk_gb + ? WHERE name = ?`),
			cpus, mem, disk, host); err != nil {
			t.Fatal(err)
		}
	}
	for range vms {
		add("vm.small", "src-hv01", 2, 8, 50)
	}
	for range containers {
		add("container.medium", "src-ct01", 4, 8, 50)
	}
	for i := range physical {
		add("physical.standard", fmt.Sprintf("src-ph%02d", i+1), 32, 128, 2000)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func (g *drainRig) owners(t testing.TB, n int) []store.User {
	t.Helper()
	out := make([]store.User, n)
	for i := range out {
		out[i] = storetest.User(t, g.s, fmt.Sprintf("owner%03d@example.com", i))
	}
	return out
}

func waitDrainRun(t testing.TB, s *store.Store, id int64, timeout time.Duration) store.Run {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r, err := s.Run(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != store.RunRunning {
			return r
		}
		if time.Now().After(deadline) {
			steps, _ := s.RunSteps(context.Background(), id)
			t.Fatalf("drain run %d still running after %s: steps %+v", id, timeout, steps)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func intp(n int) *int { return &n }

// A drain of a region with 500 sim devservers completes: every owner is
// notified once, nothing is left but physical devservers whose owners have
// tasks, capacity follows the devservers, and a reservation made during the
// drain lands in another region.
func TestDrain500(t *testing.T) {
	g := newDrainRig(t)
	ctx := context.Background()
	owners := g.owners(t, 120)
	g.populate(t, owners, 480, 15, 5)
	late := storetest.User(t, g.s, "late@example.com")
	if _, err := g.s.DB().Exec(g.s.DB().Rebind(`UPDATE users SET home_region = 'src' WHERE id = ?`), late.ID); err != nil {
		t.Fatal(err)
	}
	late.HomeRegion = "src"

	start := time.Now()
	drain, run, err := StartDrain(ctx, g.s, g.runner, g.admin, DrainRequest{Region: "src", Reason: "power maintenance", MaxParallel: intp(50)})
	if err != nil {
		t.Fatal(err)
	}
	// Cordoned at once, in the transaction that recorded the drain.
	if r, _ := g.s.Region(ctx, "src"); r.Status != "draining" {
		t.Fatalf("region is %s right after the drain started", r.Status)
	}
	var placed store.Devserver
	if err := g.s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		placed, err = tx.Reserve(ctx, store.System, store.Reservation{Owner: late, Flavor: "vm.small"})
		return err
	}); err != nil {
		t.Fatalf("reserve during the drain: %v", err)
	}
	if placed.Region == "src" {
		t.Fatalf("a reservation during the drain landed in the drained region")
	}
	done := waitDrainRun(t, g.s, run.ID, 120*time.Second)
	wall := time.Since(start)
	t.Logf("drain of 500 sim devservers (480 VM, 15 container, 5 physical): %s", wall)
	if done.State != store.RunSucceeded {
		t.Fatalf("drain run %s: %s", done.State, done.Error)
	}
	p, err := g.s.DrainProgress(ctx, drain.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p.Total != 500 || p.Done != 495 || p.Owner != 5 || p.Failed != 0 || p.Remaining != 0 || p.Percent() != 100 {
		t.Fatalf("progress %+v", p)
	}
	left := countRows(t, g.s, `SELECT COUNT(*) FROM devservers d JOIN flavors f ON f.name = d.flavor WHERE d.region = 'src' AND d.state NOT IN ('released')`)
	physLeft := countRows(t, g.s, `SELECT COUNT(*) FROM devservers d JOIN flavors f ON f.name = d.flavor WHERE d.region = 'src' AND f.kind = 'physical'`)
	if left != 5 || physLeft != 5 {
		t.Fatalf("left in src: %d devservers, %d physical", left, physLeft)
	}
	tasked := countRows(t, g.s, `SELECT COUNT(*) FROM devservers d JOIN tasks k ON k.user_id = d.owner_id AND k.link = '/devservers/' || d.name AND k.done_at IS NULL WHERE d.region = 'src'`)
	if tasked != 5 {
		t.Fatalf("%d of the 5 physical devservers' owners have a task", tasked)
	}
	// Notified once each: 120 owners, one notification each.
	key := fmt.Sprintf("drain:%d:%%", drain.ID)
	if n := countRows(t, g.s, `SELECT COUNT(*) FROM notifications WHERE idempotency_key LIKE ?`, key); n != 120 {
		t.Fatalf("%d drain notifications for 120 owners", n)
	}
	if n := countRows(t, g.s, `SELECT COUNT(DISTINCT user_id) FROM notifications WHERE idempotency_key LIKE ?`, key); n != 120 {
		t.Fatalf("%d owners notified", n)
	}
	// VMs went to the nearest region first, then the far one.
	// The reservation made during the drain took one of near's 300 slots.
	if n := countRows(t, g.s, `SELECT COUNT(*) FROM devservers WHERE region = 'near' AND flavor = 'vm.small' AND name LIKE 'dev%' AND state = 'ready'`); n != 299 {
		t.Fatalf("%d drained VMs in near (room for 300, one taken by the reservation)", n)
	}
	if n := countRows(t, g.s, `SELECT COUNT(*) FROM devservers WHERE region = 'far' AND flavor = 'vm.small' AND state = 'ready'`); n < 180 {
		t.Fatalf("%d VMs in far", n)
	}
	// Capacity follows: the source hypervisor holds nothing, the sim
	// instances sit on the hosts the devservers say.
	if n := countRows(t, g.s, `SELECT used_cpus FROM hosts WHERE name = 'src-hv01'`); n != 0 {
		t.Fatalf("src-hv01 still has %d CPUs used", n)
	}
	if n := countRows(t, g.s, `SELECT COUNT(*) FROM devservers d JOIN hosts h ON h.id = d.host_id JOIN sim_instances i ON i.id = d.instance_id
WHERE d.flavor = 'vm.small' AND d.name LIKE 'dev%' AND i.host <> h.name`); n != 0 {
		t.Fatalf("%d VMs whose sim instance is on another host than the devserver says", n)
	}
	if r, _ := g.s.Region(ctx, "src"); r.Status != "drained" {
		t.Fatalf("region is %s after the drain", r.Status)
	}
	sevs := countRows(t, g.s, `SELECT COUNT(*) FROM sev_timeline WHERE sev_id = ? AND event_key LIKE 'run:%'`, *drain.SevID)
	if sevs < 2 {
		t.Fatalf("the SEV timeline has %d run entries", sevs)
	}
}

// Concurrent drains of one region: exactly one wins, the others are
// already_draining.
func TestDrainConcurrentAlreadyDraining(t *testing.T) {
	g := newDrainRig(t)
	ctx := context.Background()
	g.populate(t, g.owners(t, 2), 4, 0, 0)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = StartDrain(ctx, g.s, g.runner, g.admin, DrainRequest{Region: "src", Reason: "exercise"})
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		var ce *store.ConflictError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &ce) && ce.Code == "already_draining":
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d drains started", ok)
	}
	if n := countRows(t, g.s, `SELECT COUNT(*) FROM drains WHERE region = 'src'`); n != 1 {
		t.Fatalf("%d drains recorded", n)
	}
	if n := countRows(t, g.s, `SELECT COUNT(*) FROM runbook_runs WHERE runbook = 'drain-region'`); n != 1 {
		t.Fatalf("%d drain runs", n)
	}
}

// A dry run changes nothing; bad input is refused and changes nothing.
func TestDrainDryRunAndBadInput(t *testing.T) {
	g := newDrainRig(t)
	ctx := context.Background()
	g.populate(t, g.owners(t, 3), 6, 2, 1)
	tables := []string{"drains", "drain_items", "runbook_runs", "sevs", "notifications", "tasks", "audit_events", "backups"}
	count := func() map[string]int {
		out := map[string]int{}
		for _, tb := range tables {
			out[tb] = countRows(t, g.s, `SELECT COUNT(*) FROM `+tb)
		}
		out["draining"] = countRows(t, g.s, `SELECT COUNT(*) FROM regions WHERE status <> 'active'`)
		return out
	}
	before := count()
	plan, err := PlanDrain(ctx, g.s, DrainRequest{Region: "src", Reason: "exercise", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	methods := map[string]int{}
	for _, m := range plan {
		methods[m.Method]++
		if m.Method != store.MoveOwner && m.ToRegion != "near" {
			t.Fatalf("plan sends %s to %q, not the nearest region", m.Devserver, m.ToRegion)
		}
	}
	if methods[store.MoveLive] != 6 || methods[store.MoveMigrate] != 2 || methods[store.MoveOwner] != 1 {
		t.Fatalf("plan methods %v", methods)
	}
	past := time.Now().Add(-time.Hour)
	for _, req := range []DrainRequest{
		{Region: "src", Reason: ""},
		{Region: "src", Reason: "x", Deadline: &past},
		{Region: "src", Reason: "x", MaxParallel: intp(0)},
		{Region: "src", Reason: "x", Kind: "drill"},
	} {
		var ve *store.ValidationError
		if _, _, err := StartDrain(ctx, g.s, g.runner, g.admin, req); !errors.As(err, &ve) {
			t.Fatalf("%+v: %v, want a validation error", req, err)
		}
	}
	if _, _, err := StartDrain(ctx, g.s, g.runner, g.admin, DrainRequest{Region: "nowhere", Reason: "x"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown region: %v", err)
	}
	after := count()
	for k, v := range before {
		if after[k] != v {
			t.Fatalf("%s: %d rows before, %d after", k, v, after[k])
		}
	}
}

// Undrain cancels the drain's run and makes the region active again; the
// region can then be drained again.
func TestUndrain(t *testing.T) {
	g := newDrainRig(t)
	ctx := context.Background()
	g.populate(t, g.owners(t, 2), 4, 0, 1)
	past := time.Now().Add(time.Hour)
	drain, run, err := StartDrain(ctx, g.s, g.runner, g.admin, DrainRequest{Region: "src", Reason: "exercise", Deadline: &past})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Undrain(ctx, g.s, g.runner, g.admin, "src"); err != nil {
		t.Fatal(err)
	}
	r, _ := g.s.Run(ctx, run.ID)
	if r.State != store.RunCancelled && r.State != store.RunSucceeded {
		t.Fatalf("run is %s after undrain", r.State)
	}
	if rg, _ := g.s.Region(ctx, "src"); rg.Status != "active" {
		t.Fatalf("region is %s after undrain", rg.Status)
	}
	if d, _ := g.s.Drain(ctx, drain.ID); d.State == store.DrainOpen {
		t.Fatalf("drain still open")
	}
	var ce *store.ConflictError
	if _, err := Undrain(ctx, g.s, g.runner, g.admin, "src"); !errors.As(err, &ce) || ce.Code != "not_draining" {
		t.Fatalf("second undrain: %v", err)
	}
	if _, _, err := StartDrain(ctx, g.s, g.runner, g.admin, DrainRequest{Region: "src", Reason: "again"}); err != nil {
		t.Fatalf("drain after undrain: %v", err)
	}
}

// At the deadline the devservers still waiting are listed on the run's log,
// counted past the deadline and their owners tasked; the ones moving finish.
func TestDrainDeadline(t *testing.T) {
	// Each move takes a second, one at a time: eight take eight seconds,
	// far past a deadline three seconds away even on a loaded machine.
	g := newDrainRig(t, time.Second)
	ctx := context.Background()
	g.populate(t, g.owners(t, 8), 8, 0, 0)
	deadline := time.Now().Add(3 * time.Second)
	drain, run, err := StartDrain(ctx, g.s, g.runner, g.admin, DrainRequest{Region: "src", Reason: "short window", MaxParallel: intp(1), Deadline: &deadline})
	if err != nil {
		t.Fatal(err)
	}
	done := waitDrainRun(t, g.s, run.ID, 30*time.Second)
	if done.State != store.RunSucceeded {
		t.Fatalf("run %s: %s", done.State, done.Error)
	}
	p, err := g.s.DrainProgress(ctx, drain.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p.Overdue == 0 || p.Done == 0 || p.Done+p.Overdue != 8 || p.Remaining != 0 {
		t.Fatalf("progress %+v: want some moved and the rest past the deadline", p)
	}
	tasked := countRows(t, g.s, `SELECT COUNT(*) FROM tasks k JOIN drain_items i ON i.task_id = k.id AND i.owner_id = k.user_id
WHERE i.drain_id = ? AND i.state = 'overdue' AND k.title LIKE '%after the drain''s deadline%'`, drain.ID)
	if tasked != p.Overdue {
		t.Fatalf("%d of %d overdue devservers' owners tasked", tasked, p.Overdue)
	}
	if n := countRows(t, g.s, `SELECT COUNT(*) FROM runbook_run_events WHERE run_id = ? AND message LIKE 'Deadline reached: %'`, run.ID); n != 1 {
		t.Fatalf("%d deadline lines in the run's log", n)
	}
	if n := countRows(t, g.s, `SELECT COUNT(*) FROM devservers WHERE region = 'src' AND state = 'ready'`); n != p.Overdue {
		t.Fatalf("%d devservers left in src, %d overdue", n, p.Overdue)
	}
}
