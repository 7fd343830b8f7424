package jobs_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/sim"
	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

func poolOf(t *testing.T, s *store.Store, region, flavor string) store.Pool {
	t.Helper()
	ps, err := s.Pools(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Region == region && p.Flavor == flavor {
			return p
		}
	}
	t.Fatalf("no pool %s/%s", region, flavor)
	return store.Pool{}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPoolRefill(t *testing.T) {
	ctx := context.Background()
	inv := storetest.SmallRegion(6)
	s := storetest.Seeded(t, &inv)
	err := s.InTx(ctx, func(tx *store.Tx) error {
		return tx.SetPoolTargets(ctx, store.System, []store.PoolTarget{{Region: "tst", Flavor: "vm.small", Target: 3}})
	})
	if err != nil {
		t.Fatal(err)
	}
	runner, err := jobs.New(ctx, jobs.Options{Store: s, Fleet: fleet.New(sim.New(s, sim.Options{Seed: 3})), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("two refills at once never over-fill a pool", func(t *testing.T) {
		var wg sync.WaitGroup
		started := make([]int, 2)
		for i := range started {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := jobs.RefillPools(ctx, s, runner, slog.New(slog.DiscardHandler))
				if err != nil {
					t.Error(err)
				}
				started[i] = n
			}()
		}
		wg.Wait()
		p := poolOf(t, s, "tst", "vm.small")
		if started[0]+started[1] != 3 || p.Building != 3 {
			t.Errorf("refills started %v, pool building %d, want 3 in all", started, p.Building)
		}
	})

	if err := runner.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = runner.Stop(stop)
	})
	t.Run("the provisioning enqueued with each pooled devserver makes it ready", func(t *testing.T) {
		waitFor(t, "3 ready in the pool", func() bool { return poolOf(t, s, "tst", "vm.small").Ready == 3 })
	})
	t.Run("a refill after a reservation took one tops the pool up again", func(t *testing.T) {
		alice := storetest.User(t, s, "alice@example.com")
		var d store.Devserver
		err := s.InTx(ctx, func(tx *store.Tx) error {
			var err error
			d, err = tx.Reserve(ctx, store.System, store.Reservation{Owner: alice, Flavor: "vm.small", Region: "tst"})
			return err
		})
		if err != nil || !d.FromPool() || d.State != store.StateReady {
			t.Fatalf("reservation = %+v, %v", d, err)
		}
		n, err := jobs.RefillPools(ctx, s, runner, slog.New(slog.DiscardHandler))
		if err != nil || n != 1 {
			t.Fatalf("refill started %d, %v; want 1", n, err)
		}
		waitFor(t, "the pool to be full again", func() bool { return poolOf(t, s, "tst", "vm.small").Ready == 3 })
		events, _ := s.AuditEvents(ctx, "pool", "tst/vm.small")
		if len(events) < 2 || events[len(events)-1].Action != "pool.refill" {
			t.Errorf("pool events = %+v", events)
		}
	})
}

func TestPeriodicPoolRefill(t *testing.T) {
	ctx := context.Background()
	inv := storetest.SmallRegion(6)
	s := storetest.Seeded(t, &inv)
	err := s.InTx(ctx, func(tx *store.Tx) error {
		return tx.SetPoolTargets(ctx, store.System, []store.PoolTarget{{Region: "tst", Flavor: "vm.small", Target: 2}})
	})
	if err != nil {
		t.Fatal(err)
	}
	runner, err := jobs.New(ctx, jobs.Options{Store: s, Fleet: fleet.New(sim.New(s, sim.Options{Seed: 3})), Log: slog.New(slog.DiscardHandler), PoolInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := runner.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = runner.Stop(stop)
	})
	waitFor(t, "the periodic refill to fill the pool", func() bool { return poolOf(t, s, "tst", "vm.small").Ready == 2 })
	// A few more ticks change nothing: the pool is at its target.
	time.Sleep(2500 * time.Millisecond)
	if p := poolOf(t, s, "tst", "vm.small"); p.Ready != 2 || p.Building != 0 {
		t.Errorf("after more ticks the pool = %+v", p)
	}
}
