package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

func TestPermanentChoice(t *testing.T) {
	for _, c := range []struct{ roles, choice string }{
		{"", store.PermanentNobody},
		{"admin", store.PermanentAdmins},
		{"engineer", store.PermanentEveryone},
		{"admin, engineer", store.PermanentEveryone},
		{"reviewer", store.PermanentNobody},
	} {
		if got := (store.LeasePolicy{PermanentRoles: c.roles}).PermanentChoice(); got != c.choice {
			t.Errorf("%q: %s, want %s", c.roles, got, c.choice)
		}
	}
	for _, choice := range store.PermanentChoices {
		roles, ok := store.PermanentRolesOf(choice)
		if !ok || (store.LeasePolicy{PermanentRoles: roles}).PermanentChoice() != choice {
			t.Errorf("%s does not round-trip (%q)", choice, roles)
		}
	}
	if _, ok := store.PermanentRolesOf("admin"); ok {
		t.Error("a role is taken as a choice")
	}
}

func auditCount(t *testing.T, s *store.Store, objectType, id string) int {
	t.Helper()
	evs, err := s.AuditEvents(context.Background(), objectType, id)
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

func TestSetPolicies(t *testing.T) {
	s := storetest.Seeded(t, nil)
	ctx := context.Background()
	u := storetest.User(t, s, "ann@example.com")
	who := store.UserActor(u, "", "")
	inTx := func(f func(tx *store.Tx) error) error { return s.InTx(ctx, f) }
	fields := func(err error) map[string]string {
		var ve *store.ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("error %v is not a validation error", err)
		}
		return ve.Fields
	}

	t.Run("a latency is set both ways, audited once, and not again when unchanged", func(t *testing.T) {
		before := auditCount(t, s, "region", "ftw")
		for range 2 {
			if err := inTx(func(tx *store.Tx) error { return tx.SetRegionLatency(ctx, who, "ftw", "lla", 77) }); err != nil {
				t.Fatal(err)
			}
		}
		there, _ := s.Latencies(ctx, "ftw")
		back, _ := s.Latencies(ctx, "lla")
		if there["lla"] != 77 || back["ftw"] != 77 {
			t.Errorf("ftw→lla %d, lla→ftw %d", there["lla"], back["ftw"])
		}
		if n := auditCount(t, s, "region", "ftw") - before; n != 1 {
			t.Errorf("%d audit events, want 1", n)
		}
	})
	t.Run("a latency is refused on the diagonal, to an unknown region and out of range", func(t *testing.T) {
		for _, c := range []struct {
			from, to string
			ms       int
			field    string
		}{
			{"prn", "prn", 1, "to"}, {"prn", "mars", 1, "to"}, {"mars", "prn", 1, "from"},
			{"prn", "ftw", -1, "ms"}, {"prn", "ftw", store.MaxLatencyMS + 1, "ms"},
		} {
			err := inTx(func(tx *store.Tx) error { return tx.SetRegionLatency(ctx, who, c.from, c.to, c.ms) })
			if fields(err)[c.field] == "" {
				t.Errorf("%s-%s %d: %v, want a problem with %s", c.from, c.to, c.ms, err, c.field)
			}
		}
		if ms, _ := s.Latencies(ctx, "prn"); ms["ftw"] != 38 || len(ms) != 2 {
			t.Errorf("latencies from prn changed: %v", ms)
		}
	})
	t.Run("a lease policy takes nobody, admins or everyone, from 1 to 365 days", func(t *testing.T) {
		err := inTx(func(tx *store.Tx) error {
			_, err := tx.SetFlavorLeasePolicy(ctx, who, "vm.large", 90, store.PermanentEveryone)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		p, _ := s.LeasePolicy(ctx, store.Flavor{Name: "vm.large"})
		if p.MaxLeaseDays != 90 || !p.AllowsPermanent(u) {
			t.Errorf("policy %+v", p)
		}
		for _, c := range []struct {
			flavor, permanent string
			days              int
			field             string
		}{
			{"vm.large", "admins", 0, "max_days"}, {"vm.large", "admins", 366, "max_days"},
			{"vm.large", "engineers", 30, "permanent"}, {"vm.huge", "admins", 30, "flavor"},
		} {
			err := inTx(func(tx *store.Tx) error {
				_, err := tx.SetFlavorLeasePolicy(ctx, who, c.flavor, c.days, c.permanent)
				return err
			})
			if fields(err)[c.field] == "" {
				t.Errorf("%+v: %v", c, err)
			}
		}
	})
	t.Run("a quota goes from 0 to 1000 devservers and 0 to 100 GPU devservers", func(t *testing.T) {
		for _, q := range []store.Quota{
			{Role: "engineer", Devservers: 1001}, {Role: "engineer", GPUDevservers: 101},
			{Role: "engineer", Devservers: -1}, {Role: "boss", Devservers: 1},
		} {
			if err := inTx(func(tx *store.Tx) error { return tx.SetRoleQuota(ctx, who, q) }); err == nil {
				t.Errorf("%+v accepted", q)
			}
		}
		if err := inTx(func(tx *store.Tx) error {
			return tx.SetRoleQuota(ctx, who, store.Quota{Role: "engineer", Devservers: 1000, GPUDevservers: 100})
		}); err != nil {
			t.Fatal(err)
		}
		if use, _ := s.QuotaUse(ctx, u); use.Limit.Devservers != 1000 || use.Limit.GPUDevservers != 100 {
			t.Errorf("limit %+v", use.Limit)
		}
	})
	t.Run("a home region must be a region; a change is audited", func(t *testing.T) {
		err := inTx(func(tx *store.Tx) error { _, err := tx.SetHomeRegion(ctx, who, u, "mars"); return err })
		if fields(err)["home_region"] == "" {
			t.Errorf("mars: %v", err)
		}
		var got store.User
		if err := inTx(func(tx *store.Tx) error { var err error; got, err = tx.SetHomeRegion(ctx, who, u, "lla"); return err }); err != nil {
			t.Fatal(err)
		}
		if got.HomeRegion != "lla" || auditCount(t, s, "user", u.Email) != 1 {
			t.Errorf("home %q, %d audit events", got.HomeRegion, auditCount(t, s, "user", u.Email))
		}
		rs, _ := s.RegionsByNearness(ctx, got.HomeRegion)
		if rs[0].Code != "lla" {
			t.Errorf("nearest first: %v", rs[0].Code)
		}
	})
}
