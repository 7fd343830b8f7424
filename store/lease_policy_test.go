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

func TestLeasePolicyRules(t *testing.T) {
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	vm := store.DefaultLeasePolicy(store.Flavor{Name: "vm.small"})
	gpu := store.DefaultLeasePolicy(store.Flavor{Name: "gpu.a100", GPUs: 8})
	if vm.MaxLeaseDays != 30 || gpu.MaxLeaseDays != 14 {
		t.Errorf("defaults: vm %d days, GPU %d days", vm.MaxLeaseDays, gpu.MaxLeaseDays)
	}
	if got := vm.MaxUntil(now); !got.Equal(time.Date(2026, 12, 24, 23, 59, 59, 0, time.UTC)) {
		t.Errorf("vm max until = %s", got)
	}
	if got := gpu.DefaultUntil(now); !got.Equal(now.Add(14 * 24 * time.Hour)) {
		t.Errorf("GPU default until = %s", got)
	}
	short := store.LeasePolicy{Flavor: "x", MaxLeaseDays: 3}
	if got := short.DefaultUntil(now); !got.Equal(now.Add(3 * 24 * time.Hour)) {
		t.Errorf("a policy shorter than the default lease: default until %s", got)
	}
	for _, c := range []struct {
		name  string
		until time.Time
		want  string
	}{
		{"in the past", now.Add(-time.Hour), "is in the past"},
		{"now", now, "is in the past"},
		{"in ten minutes", now.Add(10 * time.Minute), "at least an hour"},
		{"beyond the maximum", time.Date(2026, 12, 25, 0, 0, 0, 0, time.UTC), "no later than 2026-12-24: the longest lease of vm.small is 30 days"},
		{"on the last allowed day", time.Date(2026, 12, 24, 23, 59, 59, 0, time.UTC), ""},
		{"in a week", now.Add(7 * 24 * time.Hour), ""},
	} {
		t.Run("a lease ending "+c.name, func(t *testing.T) {
			p := store.Problems{}
			vm.CheckUntil(p, "until", now, c.until)
			if !strings.Contains(p["until"], c.want) || (c.want == "") != (len(p) == 0) {
				t.Errorf("problems = %v, want %q", p, c.want)
			}
		})
	}
	engineer := store.User{Roles: []string{"engineer"}}
	admin := store.User{Roles: []string{"engineer", "admin"}}
	for _, c := range []struct {
		roles           string
		engineer, admin bool
		text            string
	}{
		{"", false, false, "nobody"},
		{"admin", false, true, "admins"},
		{"engineer", true, true, "everyone"},
		{"reviewer,admin", false, true, "reviewers and admins"},
	} {
		p := store.LeasePolicy{PermanentRoles: c.roles}
		if p.AllowsPermanent(engineer) != c.engineer || p.AllowsPermanent(admin) != c.admin || p.PermanentText() != c.text {
			t.Errorf("permanent roles %q: engineer %v admin %v text %q", c.roles, p.AllowsPermanent(engineer), p.AllowsPermanent(admin), p.PermanentText())
		}
	}
}

func TestLeasePolicyAtReservationAndExtend(t *testing.T) {
	ctx := context.Background()
	s := storetest.Seeded(t, nil)
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	s.Now = func() time.Time { return now }
	alice := storetest.User(t, s, "alice@example.com")
	root := storetest.User(t, s, "root@example.com", store.RoleAdmin)
	at := func(days int) *time.Time { u := now.Add(time.Duration(days) * 24 * time.Hour); return &u }

	refused := func(t *testing.T, r store.Reservation, field, want string) {
		t.Helper()
		before := holdings(t, s)
		_, err := reserve(t, s, r)
		var ve *store.ValidationError
		if !errors.As(err, &ve) || !strings.Contains(ve.Fields[field], want) {
			t.Fatalf("err = %v, want %s: %s", err, field, want)
		}
		if after := holdings(t, s); after != before {
			t.Errorf("refusal changed %s to %s", before, after)
		}
	}
	t.Run("a lease end in the past is refused", func(t *testing.T) {
		refused(t, store.Reservation{Owner: alice, Flavor: "vm.small", Region: "prn", LeaseUntil: at(-1)}, "lease.until", "in the past")
	})
	t.Run("a lease beyond the flavour's maximum is refused, naming it", func(t *testing.T) {
		refused(t, store.Reservation{Owner: alice, Flavor: "vm.small", Region: "prn", LeaseUntil: at(31)}, "lease.until", "the longest lease of vm.small is 30 days")
	})
	t.Run("GPU flavours have shorter leases", func(t *testing.T) {
		refused(t, store.Reservation{Owner: alice, Flavor: "gpu.a100", Region: "prn", LeaseUntil: at(20)}, "lease.until", "14 days")
	})
	t.Run("a permanent lease is refused where the policy does not allow it", func(t *testing.T) {
		refused(t, store.Reservation{Owner: alice, Flavor: "vm.small", Region: "prn", LeaseKind: store.LeasePermanent}, "lease.kind", "for admins")
		refused(t, store.Reservation{Owner: root, Flavor: "gpu.a100", Region: "prn", LeaseKind: store.LeasePermanent}, "lease.kind", "for nobody")
	})
	t.Run("the demo lets everyone keep a container permanently", func(t *testing.T) {
		d, err := reserve(t, s, store.Reservation{Owner: alice, Flavor: "container.medium", Region: "prn", LeaseKind: store.LeasePermanent})
		if err != nil || d.Lease.Kind != store.LeasePermanent {
			t.Fatalf("reserve = %+v, %v", d.Lease, err)
		}
		_, err = extendLease(s, alice, d, *at(5))
		var ce *store.ConflictError
		if !errors.As(err, &ce) || ce.Code != "permanent_lease" || !strings.Contains(ce.Message, "permanent leases do not expire") {
			t.Errorf("extending a permanent lease: %v", err)
		}
	})

	d, err := reserve(t, s, store.Reservation{Owner: alice, Flavor: "vm.small", Region: "prn"})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Lease.EndsAt.Equal(*at(14)) {
		t.Errorf("default lease ends %s, want 14 days ahead", d.Lease.EndsAt)
	}
	s.Now = func() time.Time { return now.Add(10 * 24 * time.Hour) } // ten days later
	t.Run("extend refuses an end beyond the policy counted from now", func(t *testing.T) {
		_, err := extendLease(s, alice, d, *at(41))
		var ve *store.ValidationError
		if !errors.As(err, &ve) || !strings.Contains(ve.Fields["until"], "no later than 2027-01-03") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("extend refuses an end in the past", func(t *testing.T) {
		_, err := extendLease(s, alice, d, *at(9))
		var ve *store.ValidationError
		if !errors.As(err, &ve) || ve.Fields["until"] != "is in the past" {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("extend refuses an end before the current one", func(t *testing.T) {
		_, err := extendLease(s, alice, d, *at(12))
		var ve *store.ValidationError
		if !errors.As(err, &ve) || !strings.Contains(ve.Fields["until"], "later than the lease's current end") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("extend moves the end within policy and records it", func(t *testing.T) {
		got, err := extendLease(s, alice, d, *at(40))
		if err != nil {
			t.Fatal(err)
		}
		if !got.Lease.EndsAt.Equal(*at(40)) {
			t.Errorf("lease ends %s, want %s", got.Lease.EndsAt, at(40))
		}
		events, _ := s.AuditEvents(ctx, "devserver", d.Name)
		last := events[len(events)-1]
		if last.Action != "devserver.extend" || last.Actor != "alice@example.com" || !strings.Contains(last.Detail, "2027-01-03") {
			t.Errorf("last event = %+v", last)
		}
	})
}

func extendLease(s *store.Store, u store.User, d store.Devserver, until time.Time) (store.Devserver, error) {
	ctx := context.Background()
	var out store.Devserver
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		out, err = tx.ExtendLease(ctx, store.UserActor(u, "test", ""), d, until)
		return err
	})
	return out, err
}

func TestRegionsByNearness(t *testing.T) {
	regions := []store.Region{{Code: "prn", Position: 1}, {Code: "ftw", Position: 2}, {Code: "lla", Position: 3}, {Code: "new", Position: 4}}
	ms := map[string]int{"prn": 155, "ftw": 125}
	var got []string
	for _, r := range store.ByNearness(regions, "lla", ms) {
		got = append(got, r.Code)
	}
	if strings.Join(got, " ") != "lla ftw prn new" {
		t.Errorf("from lla: %v, want home first, then nearest, unknown last", got)
	}

	s := storetest.Seeded(t, nil)
	rs, err := s.RegionsByNearness(context.Background(), "ftw")
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for _, r := range rs {
		got = append(got, r.Code)
	}
	if strings.Join(got, " ") != "ftw prn lla" {
		t.Errorf("demo from ftw: %v", got)
	}
}
