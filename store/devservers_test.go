package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

func reserve(t *testing.T, s *store.Store, r store.Reservation) (store.Devserver, error) {
	t.Helper()
	var d store.Devserver
	err := s.InTx(context.Background(), func(tx *store.Tx) error {
		var err error
		d, err = tx.Reserve(context.Background(), store.UserActor(r.Owner, "test", ""), r)
		return err
	})
	return d, err
}

func host(t *testing.T, s *store.Store, name string) store.Host {
	t.Helper()
	h, err := s.HostByName(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestReserve(t *testing.T) {
	ctx := context.Background()
	inv := storetest.SmallRegion(2)
	s := storetest.Seeded(t, &inv)
	alice := storetest.User(t, s, "alice@example.com")

	t.Run("takes capacity on a host and opens a short lease of 14 days", func(t *testing.T) {
		d, err := reserve(t, s, store.Reservation{Owner: alice, Flavor: "vm.small", Region: "tst"})
		if err != nil {
			t.Fatal(err)
		}
		if d.State != store.StateProvisioning || d.Host != "tst-hv01" || d.Owner != "alice@example.com" {
			t.Errorf("devserver = %+v", d)
		}
		if !strings.HasPrefix(d.Name, "alice-") || d.Hostname != d.Name+".tst.devport.internal" {
			t.Errorf("name %q hostname %q", d.Name, d.Hostname)
		}
		if d.Lease.Kind != "short" || d.Lease.EndsAt == nil || d.Lease.EndsAt.Sub(s.Now()) < 13*24*time.Hour {
			t.Errorf("lease = %+v", d.Lease)
		}
		if h := host(t, s, "tst-hv01"); h.UsedCPUs != 2 || h.UsedMemoryGB != 8 || h.UsedDiskGB != 50 {
			t.Errorf("host use = %d cpu %d mem %d disk", h.UsedCPUs, h.UsedMemoryGB, h.UsedDiskGB)
		}
		events, _ := s.AuditEvents(ctx, "devserver", d.Name)
		if len(events) != 1 || events[0].Action != "devserver.reserve" || events[0].Actor != "alice@example.com" {
			t.Errorf("audit = %+v", events)
		}
	})

	t.Run("refuses a full region, naming the regions with room", func(t *testing.T) {
		if _, err := reserve(t, s, store.Reservation{Owner: alice, Flavor: "vm.small", Region: "tst"}); err != nil {
			t.Fatal(err)
		}
		_, err := reserve(t, s, store.Reservation{Owner: alice, Flavor: "vm.small", Region: "tst"})
		var ce *store.ConflictError
		if !errors.As(err, &ce) || ce.Code != "no_capacity" {
			t.Fatalf("err = %v, want no_capacity", err)
		}
		if !strings.Contains(ce.Message, "alt (3 free)") || strings.Contains(ce.Message, "drn") {
			t.Errorf("message %q should name alt with its room and not the draining region", ce.Message)
		}
	})

	t.Run("refuses a region that is not active", func(t *testing.T) {
		_, err := reserve(t, s, store.Reservation{Owner: alice, Flavor: "vm.small", Region: "drn"})
		var ce *store.ConflictError
		if !errors.As(err, &ce) || ce.Code != "region_not_active" || !strings.Contains(ce.Message, "draining") {
			t.Fatalf("err = %v, want region_not_active", err)
		}
	})

	t.Run("validates every field", func(t *testing.T) {
		past := s.Now().Add(-time.Hour)
		far := s.Now().Add(200 * 24 * time.Hour)
		cases := []struct {
			name  string
			r     store.Reservation
			field string
		}{
			{"unknown flavour", store.Reservation{Owner: alice, Flavor: "vm.huge", Region: "tst"}, "flavor"},
			{"missing flavour", store.Reservation{Owner: alice, Region: "tst"}, "flavor"},
			{"unknown region", store.Reservation{Owner: alice, Flavor: "vm.small", Region: "mars"}, "region"},
			{"lease in the past", store.Reservation{Owner: alice, Flavor: "vm.small", Region: "alt", LeaseUntil: &past}, "lease.until"},
			{"lease beyond the maximum", store.Reservation{Owner: alice, Flavor: "vm.small", Region: "alt", LeaseUntil: &far}, "lease.until"},
			{"unknown lease kind", store.Reservation{Owner: alice, Flavor: "vm.small", Region: "alt", LeaseKind: "forever"}, "lease.kind"},
			{"permanent lease for an engineer", store.Reservation{Owner: alice, Flavor: "vm.small", Region: "alt", LeaseKind: "permanent"}, "lease.kind"},
		}
		for _, c := range cases {
			_, err := reserve(t, s, c.r)
			var ve *store.ValidationError
			if !errors.As(err, &ve) || ve.Fields[c.field] == "" {
				t.Errorf("%s: err = %v, want a problem with %s", c.name, err, c.field)
			}
		}
		if h := host(t, s, "alt-hv01"); h.UsedCPUs != 0 {
			t.Errorf("a refused reservation took capacity: %d CPUs used", h.UsedCPUs)
		}
	})

	t.Run("admins may hold permanent leases", func(t *testing.T) {
		admin := storetest.User(t, s, "root@example.com", store.RoleAdmin)
		d, err := reserve(t, s, store.Reservation{Owner: admin, Flavor: "vm.small", Region: "alt", LeaseKind: "permanent"})
		if err != nil {
			t.Fatal(err)
		}
		if d.Lease.Kind != "permanent" || d.Lease.EndsAt != nil {
			t.Errorf("lease = %+v", d.Lease)
		}
	})
}

func TestCapacityIsHeldByTheDatabase(t *testing.T) {
	inv := storetest.SmallRegion(1)
	s := storetest.Seeded(t, &inv)
	h := host(t, s, "tst-hv01")
	err := s.InTx(context.Background(), func(tx *store.Tx) error {
		_, err := tx.ExecContext(context.Background(), tx.Rebind(`UPDATE hosts SET used_cpus = cpus + 1 WHERE id = ?`), h.ID)
		return err
	})
	if !isCheckViolation(err) {
		t.Fatalf("over-allocating a host directly: err = %v, want a CHECK constraint failure", err)
	}
}

func TestReleaseGivesCapacityBack(t *testing.T) {
	ctx := context.Background()
	inv := storetest.SmallRegion(1)
	s := storetest.Seeded(t, &inv)
	alice := storetest.User(t, s, "alice@example.com")
	d, err := reserve(t, s, store.Reservation{Owner: alice, Flavor: "vm.small", Region: "tst"})
	if err != nil {
		t.Fatal(err)
	}
	who := store.UserActor(alice, "test", "")
	err = s.InTx(ctx, func(tx *store.Tx) error {
		d2, needsFleet, err := tx.StartRelease(ctx, who, d)
		if err != nil {
			return err
		}
		if !needsFleet || d2.State != store.StateReleasing {
			t.Errorf("release of a provisioning devserver: state %s, needs fleet %v", d2.State, needsFleet)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if host(t, s, "tst-hv01").UsedCPUs != 2 {
		t.Error("capacity was freed before the fleet destroyed the devserver")
	}
	t.Run("a second release is refused", func(t *testing.T) {
		d, _ := s.Devserver(ctx, d.Name)
		err := s.InTx(ctx, func(tx *store.Tx) error { _, _, err := tx.StartRelease(ctx, who, d); return err })
		var ce *store.ConflictError
		if !errors.As(err, &ce) || ce.Code != "invalid_state" {
			t.Errorf("err = %v, want invalid_state", err)
		}
	})
	if err := s.InTx(ctx, func(tx *store.Tx) error { return tx.MarkReleased(ctx, d.ID) }); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Devserver(ctx, d.Name)
	if got.State != store.StateReleased || got.ReleasedAt == nil || got.Lease.Kind != "" {
		t.Errorf("after release: state %s released_at %v lease %+v", got.State, got.ReleasedAt, got.Lease)
	}
	if h := host(t, s, "tst-hv01"); h.UsedCPUs != 0 || h.UsedMemoryGB != 0 || h.UsedDiskGB != 0 {
		t.Errorf("capacity not given back: %+v", h)
	}
	t.Run("marking released twice frees nothing twice", func(t *testing.T) {
		if err := s.InTx(ctx, func(tx *store.Tx) error { return tx.MarkReleased(ctx, d.ID) }); err != nil {
			t.Fatal(err)
		}
		if h := host(t, s, "tst-hv01"); h.UsedCPUs != 0 {
			t.Errorf("used CPUs = %d", h.UsedCPUs)
		}
	})
	t.Run("the freed slot can be reserved again", func(t *testing.T) {
		if _, err := reserve(t, s, store.Reservation{Owner: alice, Flavor: "vm.small", Region: "tst"}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestFailedProvisioningFreesCapacity(t *testing.T) {
	ctx := context.Background()
	inv := storetest.SmallRegion(1)
	s := storetest.Seeded(t, &inv)
	alice := storetest.User(t, s, "alice@example.com")
	d, err := reserve(t, s, store.Reservation{Owner: alice, Flavor: "vm.small", Region: "tst"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.InTx(ctx, func(tx *store.Tx) error { return tx.MarkFailed(ctx, d.ID, "boom") }); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Devserver(ctx, d.Name)
	if got.State != store.StateFailed || got.StatusNote != "boom" {
		t.Errorf("state %s note %q", got.State, got.StatusNote)
	}
	if host(t, s, "tst-hv01").UsedCPUs != 0 {
		t.Error("a failed devserver still holds capacity")
	}
	err = s.InTx(ctx, func(tx *store.Tx) error {
		d2, needsFleet, err := tx.StartRelease(ctx, store.UserActor(alice, "", ""), got)
		if err == nil && (needsFleet || d2.State != store.StateReleased) {
			t.Errorf("releasing a failed devserver: state %s needs fleet %v", d2.State, needsFleet)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if host(t, s, "tst-hv01").UsedCPUs != 0 {
		t.Error("releasing a failed devserver freed its capacity twice")
	}
}
