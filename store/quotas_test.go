package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

func TestQuotaOf(t *testing.T) {
	byRole := map[string]store.Quota{
		store.RoleEngineer: {Role: store.RoleEngineer, Devservers: 5, GPUDevservers: 1},
		store.RoleReviewer: {Role: store.RoleReviewer, Devservers: 3, GPUDevservers: 2},
	}
	for _, c := range []struct {
		name       string
		roles      []string
		byRole     map[string]store.Quota
		devs, gpus int
	}{
		{"an engineer gets the engineer quota", []string{"engineer"}, byRole, 5, 1},
		{"a person gets the most generous count of each kind across their roles", []string{"engineer", "reviewer"}, byRole, 5, 2},
		{"an admin without a row gets the admin default", []string{"engineer", "admin"}, byRole, 20, 4},
		{"nobody has fewer than the engineer quota, whatever roles they list", []string{"reviewer"}, byRole, 5, 2},
		{"no rows at all: the defaults", []string{"engineer"}, nil, 5, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := store.QuotaOf(store.User{Roles: c.roles}, c.byRole)
			if q.Devservers != c.devs || q.GPUDevservers != c.gpus {
				t.Errorf("quota = %+v, want %d devservers and %d GPU", q, c.devs, c.gpus)
			}
		})
	}
}

// holdings is what a refused reservation must leave unchanged.
func holdings(t *testing.T, s *store.Store) string {
	t.Helper()
	ds, err := s.Devservers(context.Background(), store.DevserverFilter{Released: true, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := s.Hosts(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	cpus, gpus := 0, 0
	for _, h := range hosts {
		cpus += h.UsedCPUs
		gpus += h.UsedGPUs
	}
	return fmt.Sprintf("%d devservers, %d CPUs, %d GPUs", len(ds), cpus, gpus)
}

func TestQuotaIsEnforcedInsideTheReservation(t *testing.T) {
	ctx := context.Background()
	s := storetest.Seeded(t, nil)
	bob := storetest.User(t, s, "bob@example.com")
	err := s.InTx(ctx, func(tx *store.Tx) error {
		return tx.SetQuota(ctx, store.System, store.Quota{Role: store.RoleEngineer, Devservers: 2, GPUDevservers: 1})
	})
	if err != nil {
		t.Fatal(err)
	}

	gpu, err := reserve(t, s, store.Reservation{Owner: bob, Flavor: "gpu.a100", Region: "prn"})
	if err != nil {
		t.Fatalf("first GPU devserver: %v", err)
	}
	t.Run("a second GPU devserver is over the GPU quota though the total has room", func(t *testing.T) {
		before := holdings(t, s)
		_, err := reserve(t, s, store.Reservation{Owner: bob, Flavor: "gpu.a100", Region: "prn"})
		var qe *store.QuotaError
		if !errors.As(err, &qe) || qe.Message != "You hold 1 of your 1 GPU devservers; release one before reserving another." {
			t.Fatalf("err = %v, want the GPU quota named", err)
		}
		if after := holdings(t, s); after != before {
			t.Errorf("refusal changed %s to %s", before, after)
		}
	})
	if _, err := reserve(t, s, store.Reservation{Owner: bob, Flavor: "vm.small", Region: "prn"}); err != nil {
		t.Fatalf("second devserver: %v", err)
	}
	use, err := s.QuotaUse(ctx, bob)
	if err != nil {
		t.Fatal(err)
	}
	if use.Text() != "2 of 2 devservers, 1 of 1 GPU devservers" {
		t.Errorf("use = %q", use.Text())
	}
	t.Run("a third devserver is over the quota and changes nothing", func(t *testing.T) {
		before := holdings(t, s)
		_, err := reserve(t, s, store.Reservation{Owner: bob, Flavor: "vm.small", Region: "prn"})
		var qe *store.QuotaError
		if !errors.As(err, &qe) || qe.Message != "You hold 2 of your 2 devservers; release one before reserving another." {
			t.Fatalf("err = %v, want the quota named", err)
		}
		if after := holdings(t, s); after != before {
			t.Errorf("refusal changed %s to %s", before, after)
		}
	})
	t.Run("a released devserver no longer counts", func(t *testing.T) {
		err := s.InTx(ctx, func(tx *store.Tx) error {
			if _, _, err := tx.StartRelease(ctx, store.System, gpu); err != nil {
				return err
			}
			return tx.MarkReleased(ctx, gpu.ID)
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reserve(t, s, store.Reservation{Owner: bob, Flavor: "gpu.a100", Region: "ftw"}); err != nil {
			t.Errorf("after a release: %v", err)
		}
	})
	t.Run("an admin's own quota is the admin one", func(t *testing.T) {
		root := storetest.User(t, s, "root@example.com", store.RoleAdmin)
		for i := 0; i < 3; i++ {
			if _, err := reserve(t, s, store.Reservation{Owner: root, Flavor: "vm.small", Region: "prn"}); err != nil {
				t.Fatalf("admin reservation %d: %v", i+1, err)
			}
		}
	})
	t.Run("a quota out of range is refused", func(t *testing.T) {
		err := s.InTx(ctx, func(tx *store.Tx) error {
			return tx.SetQuota(ctx, store.System, store.Quota{Role: "god", Devservers: -1})
		})
		var ve *store.ValidationError
		if !errors.As(err, &ve) || ve.Fields["role"] == "" || ve.Fields["devservers"] == "" {
			t.Errorf("err = %v", err)
		}
	})
}
