package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

func setTargets(t *testing.T, s *store.Store, targets ...store.PoolTarget) error {
	t.Helper()
	return s.InTx(context.Background(), func(tx *store.Tx) error {
		return tx.SetPoolTargets(context.Background(), store.System, targets)
	})
}

func fill(t *testing.T, s *store.Store, region, flavor string) []store.Devserver {
	t.Helper()
	var made []store.Devserver
	err := s.InTx(context.Background(), func(tx *store.Tx) error {
		var err error
		made, err = tx.FillPool(context.Background(), region, flavor)
		return err
	})
	if err != nil {
		t.Fatalf("fill %s/%s: %v", region, flavor, err)
	}
	return made
}

func pool(t *testing.T, s *store.Store, region, flavor string) store.Pool {
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

// markReady finishes the provisioning of devservers the way the job does.
func markReady(t *testing.T, s *store.Store, ds ...store.Devserver) {
	t.Helper()
	err := s.InTx(context.Background(), func(tx *store.Tx) error {
		for i, d := range ds {
			if _, err := tx.MarkReady(context.Background(), d.ID, fmt.Sprintf("sim-%d", d.ID), fmt.Sprintf("10.0.0.%d", i+1)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestFillPool(t *testing.T) {
	inv := storetest.SmallRegion(3)
	s := storetest.Seeded(t, &inv)

	t.Run("a pool without a target is left alone", func(t *testing.T) {
		if made := fill(t, s, "tst", "vm.small"); len(made) != 0 {
			t.Errorf("made %d", len(made))
		}
	})
	if err := setTargets(t, s, store.PoolTarget{Region: "tst", Flavor: "vm.small", Target: 5}, store.PoolTarget{Region: "drn", Flavor: "vm.small", Target: 2}); err != nil {
		t.Fatal(err)
	}
	t.Run("fills up to free capacity, never beyond it", func(t *testing.T) {
		made := fill(t, s, "tst", "vm.small")
		if len(made) != 3 {
			t.Fatalf("made %d pooled devservers, want 3 (the host's room)", len(made))
		}
		for _, d := range made {
			if !d.Pooled() || !d.FromPool() || d.State != store.StateProvisioning || !strings.HasPrefix(d.Name, "pool-") || d.Lease.ID != 0 {
				t.Errorf("pooled devserver = %+v", d)
			}
		}
		if h := host(t, s, "tst-hv01"); h.UsedCPUs != h.CPUs {
			t.Errorf("host uses %d of %d CPUs", h.UsedCPUs, h.CPUs)
		}
		if more := fill(t, s, "tst", "vm.small"); len(more) != 0 {
			t.Errorf("a full region got %d more", len(more))
		}
		if p := pool(t, s, "tst", "vm.small"); p.Target != 5 || p.Building != 3 || p.Ready != 0 {
			t.Errorf("pool = %+v", p)
		}
	})
	t.Run("a region that is not active gets no pooled devservers", func(t *testing.T) {
		if made := fill(t, s, "drn", "vm.small"); len(made) != 0 {
			t.Errorf("made %d in a draining region", len(made))
		}
	})
	t.Run("bad targets are refused and change nothing", func(t *testing.T) {
		for _, c := range []struct {
			target store.PoolTarget
			want   string
		}{
			{store.PoolTarget{Region: "tst", Flavor: "vm.small", Target: -1}, "from 0 to 500"},
			{store.PoolTarget{Region: "tst", Flavor: "vm.small", Target: 501}, "from 0 to 500"},
			{store.PoolTarget{Region: "mars", Flavor: "vm.small", Target: 1}, "not a region"},
			{store.PoolTarget{Region: "tst", Flavor: "vm.huge", Target: 1}, "not a flavour"},
		} {
			err := setTargets(t, s, store.PoolTarget{Region: "alt", Flavor: "vm.small", Target: 1}, c.target)
			var ve *store.ValidationError
			if !errors.As(err, &ve) || !strings.Contains(ve.Fields[store.PoolKey(c.target.Region, c.target.Flavor)], c.want) {
				t.Errorf("%+v: err = %v, want %q", c.target, err, c.want)
			}
		}
		if p := pool(t, s, "alt", "vm.small"); p.Target != 0 {
			t.Errorf("a refused save set alt to %d", p.Target)
		}
	})
}

func TestConcurrentPoolFillsNeverOverFill(t *testing.T) {
	inv := storetest.SmallRegion(20)
	s := storetest.Seeded(t, &inv)
	if err := setTargets(t, s, store.PoolTarget{Region: "tst", Flavor: "vm.small", Target: 4}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	total := make([]int, 8)
	for i := range total {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			err := s.InTx(context.Background(), func(tx *store.Tx) error {
				made, err := tx.FillPool(context.Background(), "tst", "vm.small")
				total[i] = len(made)
				return err
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	sum := 0
	for _, n := range total {
		sum += n
	}
	p := pool(t, s, "tst", "vm.small")
	if sum != 4 || p.Building != 4 {
		t.Errorf("8 concurrent fills made %d (pool building %d), want exactly the target 4", sum, p.Building)
	}
	if h := host(t, s, "tst-hv01"); h.UsedCPUs != 4*2 {
		t.Errorf("host uses %d CPUs, want 8", h.UsedCPUs)
	}
}

func TestReservationServedFromPool(t *testing.T) {
	ctx := context.Background()
	inv := storetest.SmallRegion(3)
	s := storetest.Seeded(t, &inv)
	alice := storetest.User(t, s, "alice@example.com")
	if err := setTargets(t, s, store.PoolTarget{Region: "tst", Flavor: "vm.small", Target: 1}); err != nil {
		t.Fatal(err)
	}
	made := fill(t, s, "tst", "vm.small")

	t.Run("a pooled devserver still building does not serve a reservation", func(t *testing.T) {
		d, err := reserve(t, s, store.Reservation{Owner: alice, Flavor: "vm.small", Region: "tst"})
		if err != nil {
			t.Fatal(err)
		}
		if d.FromPool() || d.State != store.StateProvisioning {
			t.Errorf("reservation = %s %s from pool %v", d.Name, d.State, d.FromPool())
		}
	})
	markReady(t, s, made...)
	before := host(t, s, "tst-hv01")

	d, err := reserve(t, s, store.Reservation{Owner: alice, Flavor: "vm.small", Region: "tst"})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("a ready pooled devserver is assigned: renamed, leased and ready at once", func(t *testing.T) {
		if d.ID != made[0].ID || !d.FromPool() || d.State != store.StateReady || d.AssignedAt == nil || d.OwnerID != alice.ID {
			t.Fatalf("reservation = %+v", d)
		}
		if !strings.HasPrefix(d.Name, "alice-") || d.Hostname != d.Name+".tst.devport.internal" || d.Address == "" {
			t.Errorf("name %q hostname %q address %q", d.Name, d.Hostname, d.Address)
		}
		if d.Lease.ID == 0 || d.Lease.Kind != store.LeaseShort {
			t.Errorf("lease = %+v", d.Lease)
		}
		if after := host(t, s, "tst-hv01"); after.UsedCPUs != before.UsedCPUs {
			t.Errorf("taking from the pool took capacity again: %d → %d CPUs", before.UsedCPUs, after.UsedCPUs)
		}
		if p := pool(t, s, "tst", "vm.small"); p.Ready != 0 {
			t.Errorf("the pool still shows %d ready", p.Ready)
		}
		events, _ := s.AuditEvents(ctx, "devserver", d.Name)
		if len(events) != 1 || events[0].Action != "devserver.reserve" || !strings.Contains(events[0].Detail, `"from_pool":true`) {
			t.Errorf("events = %+v", events)
		}
	})
	t.Run("an assigned devserver cannot get a second open lease", func(t *testing.T) {
		_, err := s.DB().ExecContext(ctx, s.DB().Rebind(`INSERT INTO leases (devserver_id, user_id, kind, starts_at, ends_at) VALUES (?, ?, 'short', ?, ?)`),
			d.ID, alice.ID, s.Now(), s.Now().Add(24*3600e9))
		if !isUniqueViolation(err) {
			t.Errorf("a second open lease: %v", err)
		}
	})
}

func TestConcurrentReservationsNeverShareAPooledDevserver(t *testing.T) {
	inv := storetest.SmallRegion(30)
	s := storetest.Seeded(t, &inv)
	if err := setTargets(t, s, store.PoolTarget{Region: "tst", Flavor: "vm.small", Target: 3}); err != nil {
		t.Fatal(err)
	}
	markReady(t, s, fill(t, s, "tst", "vm.small")...)
	const n = 12
	users := make([]store.User, n)
	for i := range users {
		users[i] = storetest.User(t, s, fmt.Sprintf("eng%02d@example.com", i))
	}
	got := make([]store.Devserver, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			d, err := reserve(t, s, store.Reservation{Owner: users[i], Flavor: "vm.small", Region: "tst"})
			if err != nil {
				t.Error(err)
			}
			got[i] = d
		}()
	}
	close(start)
	wg.Wait()
	owners := map[int64]int64{}
	pooled := 0
	for i, d := range got {
		if prev, ok := owners[d.ID]; ok {
			t.Errorf("devserver %d went to users %d and %d", d.ID, prev, users[i].ID)
		}
		owners[d.ID] = users[i].ID
		if d.FromPool() {
			pooled++
		}
	}
	if pooled != 3 {
		t.Errorf("%d reservations were served from a pool of 3", pooled)
	}
}
