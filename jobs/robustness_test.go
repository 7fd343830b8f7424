package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/sim"
	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// chaosInventory is two active regions whose hosts fit a few devservers of
// two flavours, so reservations and migrations run out of room.
func chaosInventory() store.DemoInventory {
	demo := store.Demo("sim")
	inv := store.DemoInventory{Features: demo.Features}
	inv.Regions = []store.Region{
		{Code: "tst", Name: "Test", Status: "active", Position: 1},
		{Code: "alt", Name: "Alternative", Status: "active", Position: 2},
	}
	for _, f := range demo.Flavors {
		if f.Name == "vm.small" || f.Name == "vm.medium" {
			inv.Flavors = append(inv.Flavors, f)
		}
	}
	inv.Hosts = []store.Host{
		{Name: "tst-hv01", Region: "tst", Kind: "hypervisor", Driver: "sim", State: "ready", CPUs: 8, MemoryGB: 32, DiskGB: 400},
		{Name: "tst-hv02", Region: "tst", Kind: "hypervisor", Driver: "sim", State: "ready", CPUs: 6, MemoryGB: 24, DiskGB: 300},
		{Name: "alt-hv01", Region: "alt", Kind: "hypervisor", Driver: "sim", State: "ready", CPUs: 8, MemoryGB: 32, DiskGB: 400},
	}
	return inv
}

type chaosRig struct {
	s      *store.Store
	sim    *sim.Driver
	runner *jobs.Runner
	users  []store.User
}

func newChaosRig(t *testing.T, seed uint64, failures map[string]float64) *chaosRig {
	t.Helper()
	inv := chaosInventory()
	s := storetest.Seeded(t, &inv)
	d := sim.New(s, sim.Options{Latency: 20 * time.Millisecond, Seed: seed, Failures: failures})
	r, err := jobs.New(context.Background(), jobs.Options{
		Store: s, Fleet: fleet.New(d), Log: slog.New(slog.DiscardHandler), NoSchedules: true,
		BackupDir: filepath.Join(t.TempDir(), "backups"),
		// Few attempts, so that injected failures exhaust them and the
		// paths that give up are taken too.
		MaxAttempts: map[string]int{"provision_devserver": 2, "release_devserver": 3, "migrate_devserver": 2, "sync_ssh_keys": 1},
	})
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
	return &chaosRig{s: s, sim: d, runner: r, users: []store.User{
		storetest.User(t, s, "a@example.com", store.RoleAdmin),
		storetest.User(t, s, "b@example.com", store.RoleAdmin),
	}}
}

// tolerated is what a person meets when the world moved on (no room, a
// state that changed, a quota).
func tolerated(err error) error {
	var ce *store.ConflictError
	var qe *store.QuotaError
	var ve *store.ValidationError
	if errors.As(err, &ce) || errors.As(err, &qe) || errors.As(err, &ve) {
		return nil
	}
	return err
}

func (g *chaosRig) pick(t *testing.T, rng *rand.Rand, states ...string) (store.Devserver, bool) {
	t.Helper()
	var c []store.Devserver
	for _, st := range states {
		ds, err := g.s.Devservers(context.Background(), store.DevserverFilter{State: st, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		c = append(c, ds...)
	}
	if len(c) == 0 {
		return store.Devserver{}, false
	}
	return c[rng.IntN(len(c))], true
}

// holdsCapacity checks that every host's used capacity is the sum of the
// flavours of what holds capacity on it: the devservers that are not
// released or failed, and each running migration's other side (its target
// before the switch, its source after it).
func holdsCapacity(t *testing.T, s *store.Store, when string) {
	t.Helper()
	var rows []struct {
		Name string `db:"name"`
		Used string `db:"used"`
		Want string `db:"want"`
	}
	err := s.DB().SelectContext(context.Background(), &rows, `
WITH held AS (
    SELECT d.host_id AS host_id, d.flavor AS flavor FROM devservers d WHERE d.state NOT IN ('released', 'failed')
    UNION ALL
    SELECT CASE WHEN m.step = 'release_source' THEN m.from_host_id ELSE m.to_host_id END,
           CASE WHEN m.step = 'release_source' THEN m.from_flavor ELSE m.to_flavor END
    FROM devserver_migrations m WHERE m.state = 'running'
)
SELECT h.name AS name,
       h.used_cpus || '/' || h.used_memory_gb || '/' || h.used_disk_gb || '/' || h.used_gpus AS used,
       COALESCE(SUM(f.cpus), 0) || '/' || COALESCE(SUM(f.memory_gb), 0) || '/' || COALESCE(SUM(f.disk_gb), 0) || '/' || COALESCE(SUM(f.gpus), 0) AS want
FROM hosts h LEFT JOIN held ON held.host_id = h.id LEFT JOIN flavors f ON f.name = held.flavor
GROUP BY h.id ORDER BY h.name`)
	if err != nil {
		t.Fatalf("%s: capacity: %v", when, err)
	}
	for _, r := range rows {
		if r.Used != r.Want {
			t.Errorf("%s: host %s uses %s (cpus/memory/disk/gpus), but what holds capacity on it adds up to %s", when, r.Name, r.Used, r.Want)
		}
	}
}

// settled waits until no devserver is on its way somewhere.
func (g *chaosRig) settled(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var busy []string
		for _, st := range []string{store.StateProvisioning, store.StateReleasing, store.StateMigrating} {
			ds, err := g.s.Devservers(context.Background(), store.DevserverFilter{State: st, Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range ds {
				busy = append(busy, fmt.Sprintf("%s is %s (%q)", d.Name, d.State, d.StatusNote))
			}
		}
		if len(busy) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var jobs []string
			_ = g.s.DB().Select(&jobs, `SELECT kind || ' ' || state || ' ' || attempt || '/' || max_attempts || ' ' || CAST(args AS TEXT) || ' ' || COALESCE(CAST(errors AS TEXT), '') FROM river_job WHERE state NOT IN ('completed')`)
			t.Fatalf("still on their way after %s: %v; jobs: %v", within, busy, jobs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCapacityUnderChaos runs random reservations, releases and migrations
// against a simulated fleet that fails some of every kind of call, and checks
// that the hosts' used capacity is always exactly what the devservers hold,
// and that once everything settled the fleet runs exactly the instances of
// the devservers that hold capacity: none twice, none left behind.
func TestCapacityUnderChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for a while")
	}
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			failures := map[string]float64{sim.OpCreate: 0.2, sim.OpStart: 0.2, sim.OpDestroy: 0.2, sim.OpBackup: 0.15, sim.OpRestore: 0.15, sim.OpHealth: 0.1}
			g := newChaosRig(t, seed, failures)
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(seed, 7))
			for step := range 60 {
				var err error
				switch rng.IntN(4) {
				case 0, 1:
					err = g.s.InTx(ctx, func(tx *store.Tx) error {
						d, err := tx.Reserve(ctx, store.System, store.Reservation{Owner: g.users[rng.IntN(2)],
							Flavor: []string{"vm.small", "vm.medium"}[rng.IntN(2)], Region: []string{"tst", "alt"}[rng.IntN(2)]})
						if err != nil {
							return tolerated(err)
						}
						return g.runner.Enqueue(ctx, tx, jobs.ProvisionArgs{DevserverID: d.ID})
					})
				case 2:
					d, ok := g.pick(t, rng, store.StateProvisioning, store.StateReady, store.StateFailed)
					if !ok {
						continue
					}
					err = g.s.InTx(ctx, func(tx *store.Tx) error {
						_, needsFleet, err := tx.StartRelease(ctx, store.System, d)
						if err != nil || !needsFleet {
							return tolerated(err)
						}
						return g.runner.Enqueue(ctx, tx, jobs.ReleaseArgs{DevserverID: d.ID})
					})
				case 3:
					d, ok := g.pick(t, rng, store.StateReady)
					if !ok {
						continue
					}
					err = g.s.InTx(ctx, func(tx *store.Tx) error {
						m, err := tx.StartMigration(ctx, store.System, d, []string{"tst", "alt"}[rng.IntN(2)], []string{"vm.small", "vm.medium"}[rng.IntN(2)])
						if err != nil {
							return tolerated(err)
						}
						return g.runner.Enqueue(ctx, tx, jobs.MigrateArgs{MigrationID: m.ID})
					})
				}
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				holdsCapacity(t, g.s, fmt.Sprintf("after step %d", step))
				time.Sleep(time.Duration(rng.IntN(60)) * time.Millisecond)
			}
			g.settled(t, 90*time.Second)
			holdsCapacity(t, g.s, "settled")
			g.instancesMatch(t)
		})
	}
}

// instancesMatch checks that the fleet runs one instance for each devserver
// that holds capacity, and nothing else.
func (g *chaosRig) instancesMatch(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	var live, liveIDs []string
	for _, h := range []string{"tst-hv01", "tst-hv02", "alt-hv01"} {
		ins, err := g.s.SimInstancesOn(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range ins {
			live = append(live, in.ID+" ("+in.Name+", key "+in.IdempotencyKey+")")
			liveIDs = append(liveIDs, in.ID)
		}
	}
	ds, err := g.s.Devservers(ctx, store.DevserverFilter{Released: true, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var want, wantIDs []string
	for _, d := range ds {
		switch d.State {
		case store.StateReady, store.StateReleasing, store.StateUnreachable:
			want = append(want, d.InstanceID+" ("+d.Name+")")
			wantIDs = append(wantIDs, d.InstanceID)
		default:
			want = append(want, d.Name+" is "+d.State)
		}
	}
	slices.Sort(liveIDs)
	slices.Sort(wantIDs)
	if !slices.Equal(liveIDs, wantIDs) {
		t.Errorf("the fleet runs %v, but the devservers are %v", live, want)
	}
}

// TestReleaseKeepsTryingAfterItsLastAttempt: a release whose destroy fails
// on its last attempt used to be discarded, leaving the devserver releasing
// for ever (nothing can release it again) with its capacity taken and a note
// that promised a retry. It keeps trying, a snooze at a time, and says so.
func TestReleaseKeepsTryingAfterItsLastAttempt(t *testing.T) {
	g := newRig(t, 0, map[string]int{"release_devserver": 1})
	d := g.wait(t, g.reserve(t).ID, store.StateReady)
	g.sim.FailNext(sim.OpDestroy, 2)
	g.release(t, d)
	deadline := time.Now().Add(20 * time.Second)
	for {
		cur, err := g.s.DevserverByID(context.Background(), d.ID)
		if err != nil {
			t.Fatal(err)
		}
		if cur.State == store.StateReleasing && strings.Contains(cur.StatusNote, "trying again every") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("devserver %s (%q), want a note that the destroy is tried again", cur.State, cur.StatusNote)
		}
		time.Sleep(10 * time.Millisecond)
	}
	g.wait(t, d.ID, store.StateReleased)
	if n := g.liveInstances(t); n != 0 {
		t.Errorf("%d instances left after release", n)
	}
	if h, _ := g.s.HostByName(context.Background(), "tst-hv01"); h.UsedCPUs != 0 {
		t.Errorf("%d CPUs still used after release", h.UsedCPUs)
	}
}

// TestProvisioningLeavesNoInstanceBehind: the instance a provisioning made
// is removed when the devserver ends, even when the first destroy fails.
func TestProvisioningLeavesNoInstanceBehind(t *testing.T) {
	t.Run("released while it was being created, and the destroy fails once", func(t *testing.T) {
		// A retried job used to find the devserver released and do nothing,
		// leaving the instance it made running on the host.
		g := newRig(t, 300*time.Millisecond, nil)
		d := g.reserve(t)
		deadline := time.Now().Add(10 * time.Second)
		for {
			cur, _ := g.s.DevserverByID(context.Background(), d.ID)
			if cur.Progress >= 10 || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		g.sim.FailNext(sim.OpDestroy, 1)
		g.release(t, d)
		g.wait(t, d.ID, store.StateReleased)
		waitFor(t, "the instance made while it was released is destroyed", func() bool {
			in, err := g.s.SimInstanceByKey(context.Background(), "devserver:"+fmt.Sprint(d.ID))
			return err == nil && in.State == "destroyed"
		})
	})

	t.Run("provisioning fails, and so does the first destroy", func(t *testing.T) {
		// fail() used to give the capacity back after a failed destroy,
		// leaving an instance the portal counts nowhere.
		g := newRig(t, 0, map[string]int{"provision_devserver": 1})
		g.sim.FailNext(sim.OpStart, 1)
		g.sim.FailNext(sim.OpDestroy, 1)
		d := g.reserve(t)
		waitFor(t, "the devserver settles", func() bool {
			cur, _ := g.s.DevserverByID(context.Background(), d.ID)
			return cur.State == store.StateReady || cur.State == store.StateFailed
		})
		cur, _ := g.s.DevserverByID(context.Background(), d.ID)
		want := 0
		if cur.State == store.StateReady {
			want = 1
		}
		if n := g.liveInstances(t); n != want {
			t.Errorf("devserver %s (%q) and %d instances on its host, want %d", cur.State, cur.StatusNote, n, want)
		}
		holdsCapacity(t, g.s, "settled")
	})
}

// TestMigrationKeepsReleasingItsSource: a migration whose source could not
// be destroyed on its last attempt used to be discarded, leaving the
// devserver migrating for ever (it can then be neither released nor
// migrated) with both hosts' capacity taken. It keeps trying, and says so.
func TestMigrationKeepsReleasingItsSource(t *testing.T) {
	g := newChaosRig(t, 1, nil) // two attempts per migration
	ctx := context.Background()
	var d store.Devserver
	err := g.s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if d, err = tx.Reserve(ctx, store.System, store.Reservation{Owner: g.users[0], Flavor: "vm.small", Region: "tst"}); err != nil {
			return err
		}
		return g.runner.Enqueue(ctx, tx, jobs.ProvisionArgs{DevserverID: d.ID})
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the devserver is ready", func() bool {
		cur, _ := g.s.DevserverByID(ctx, d.ID)
		d = cur
		return cur.State == store.StateReady
	})
	g.sim.FailNext(sim.OpDestroy, 2)
	err = g.s.InTx(ctx, func(tx *store.Tx) error {
		m, err := tx.StartMigration(ctx, store.System, d, "alt", "")
		if err != nil {
			return err
		}
		return g.runner.Enqueue(ctx, tx, jobs.MigrateArgs{MigrationID: m.ID})
	})
	if err != nil {
		t.Fatal(err)
	}
	sawNote := false
	waitFor(t, "the devserver is ready in alt", func() bool {
		cur, _ := g.s.DevserverByID(ctx, d.ID)
		sawNote = sawNote || strings.Contains(cur.StatusNote, "trying again every")
		return cur.State == store.StateReady && cur.Region == "alt"
	})
	if !sawNote {
		t.Error("the devserver never said that releasing its source is tried again")
	}
	holdsCapacity(t, g.s, "migrated")
	g.instancesMatch(t)
}

// TestFeatureOnAnUnreachableDevserverSaysWhy: a feature job on an
// unreachable devserver used to run out of attempts and be discarded,
// leaving the feature pending for ever with nothing said. Its last
// attempt records the feature as failed, with the reason.
func TestFeatureOnAnUnreachableDevserverSaysWhy(t *testing.T) {
	g := newRig(t, 0, map[string]int{"devserver_feature": 1})
	ctx := context.Background()
	d := g.wait(t, g.reserve(t).ID, store.StateReady)
	var feature string
	err := g.s.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.GetContext(ctx, &feature, `SELECT name FROM features ORDER BY name LIMIT 1`); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, tx.Rebind(`UPDATE devservers SET state = 'unreachable' WHERE id = ?`), d.ID); err != nil {
			return err
		}
		if _, err := tx.RequestFeatures(ctx, store.System, d, []string{feature}); err != nil {
			return err
		}
		return g.runner.Enqueue(ctx, tx, jobs.FeatureArgs{DevserverID: d.ID, Feature: feature})
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the feature to fail with the reason", func() bool {
		f, err := g.s.DevserverFeature(ctx, d.ID, feature)
		return err == nil && f.State == store.FeatureFailed && strings.Contains(f.Error, "unreachable")
	})
}

// TestOneoffsOnAnUnreachableDevserverSayWhy: as for features, the last
// attempt on an unreachable devserver records the one-offs as failed with
// the reason instead of leaving them pending for ever.
func TestOneoffsOnAnUnreachableDevserverSayWhy(t *testing.T) {
	g := newRig(t, 0, map[string]int{"devserver_oneoffs": 1})
	ctx := context.Background()
	d := g.wait(t, g.reserve(t).ID, store.StateReady)
	err := g.s.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.ExecContext(ctx, tx.Rebind(`UPDATE devservers SET state = 'unreachable', oneoffs_state = 'pending' WHERE id = ?`), d.ID); err != nil {
			return err
		}
		return g.runner.Enqueue(ctx, tx, jobs.OneoffsArgs{DevserverID: d.ID})
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the one-offs to fail with the reason", func() bool {
		cur, err := g.s.DevserverByID(ctx, d.ID)
		return err == nil && cur.OneoffsState == "failed" && strings.Contains(cur.OneoffsError, "unreachable")
	})
}
