package store_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// placeDevserver writes a devserver straight into the inventory on the named
// host (pooled when owner is nil), in the given state.
func placeDevserver(t *testing.T, s *store.Store, name string, owner *store.User, flavor, host, state string) int64 {
	t.Helper()
	ctx := context.Background()
	var id int64
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var ownerID *int64
		var pooled *time.Time
		if owner != nil {
			ownerID = &owner.ID
		} else {
			now := tx.Now()
			pooled = &now
		}
		return tx.GetContext(ctx, &id, tx.Rebind(`
INSERT INTO devservers (name, owner_id, flavor, region, host_id, hostname, state, created_at, updated_at, pooled_at)
SELECT ?, ?, ?, h.region, h.id, ? || '.example', ?, ?, ?, ? FROM hosts h WHERE h.name = ? RETURNING id`),
			name, ownerID, flavor, name, state, tx.Now(), tx.Now(), pooled, host)
	})
	if err != nil {
		t.Fatalf("place devserver %s: %v", name, err)
	}
	return id
}

// placeContainer writes an On Demand container straight into the inventory.
func placeContainer(t *testing.T, s *store.Store, name string, owner *store.User, host, state string) {
	t.Helper()
	ctx := context.Background()
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var ownerID *int64
		var pooled, expires *time.Time
		now := tx.Now()
		if owner != nil {
			ownerID = &owner.ID
			e := now.Add(36 * time.Hour)
			expires = &e
		} else {
			pooled = &now
		}
		_, err := tx.ExecContext(ctx, tx.Rebind(`
INSERT INTO containers (name, owner_id, type, profile, region, host_id, hostname, cpus, memory_gb, disk_gb, state, created_at, updated_at, pooled_at, expires_at)
SELECT ?, ?, 'web', 'small', h.region, h.id, ? || '.example', 2, 4, 20, ?, ?, ?, ?, ? FROM hosts h WHERE h.name = ?`),
			name, ownerID, name, state, now, now, pooled, expires, host)
		return err
	})
	if err != nil {
		t.Fatalf("place container %s: %v", name, err)
	}
}

func shareWith(t *testing.T, s *store.Store, devserverID int64, u store.User) {
	t.Helper()
	ctx := context.Background()
	err := s.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO devserver_shares (devserver_id, user_id, created_at, created_by) VALUES (?, ?, ?, 'test')`), devserverID, u.ID, tx.Now())
		return err
	})
	if err != nil {
		t.Fatalf("share: %v", err)
	}
}

// targetingInventory is the demo fleet with people placed so that every
// audience kind has members, non-members, and look-alikes that must not count
// (pooled, released and failed devservers; ended and pooled containers).
func targetingInventory(t *testing.T) *store.Store {
	t.Helper()
	s := storetest.Seeded(t, nil)
	u := map[string]store.User{}
	for _, name := range []string{"ann", "bob", "cat", "dan", "eve", "fay", "gus", "hal", "ivy"} {
		u[name] = storetest.User(t, s, name+"@example.com")
	}
	p := func(name string) *store.User { v := u[name]; return &v }
	// prn: ann (ready) and bob (provisioning) on prn-hv01; cat on prn-hv02 (migrating, vm.medium).
	ann := placeDevserver(t, s, "ann-1", p("ann"), "vm.small", "prn-hv01", "ready")
	placeDevserver(t, s, "bob-1", p("bob"), "vm.small", "prn-hv01", "provisioning")
	placeDevserver(t, s, "cat-1", p("cat"), "vm.medium", "prn-hv02", "migrating")
	// Released and failed devservers hold no capacity: their owners are not reached.
	placeDevserver(t, s, "dan-1", p("dan"), "vm.small", "prn-hv01", "released")
	placeDevserver(t, s, "eve-1", p("eve"), "vm.small", "prn-hv01", "failed")
	// Pooled devservers have no owner.
	placeDevserver(t, s, "pool-1", nil, "vm.small", "prn-hv01", "ready")
	// ftw: fay on an unreachable devserver (still holds capacity), vm.small.
	fay := placeDevserver(t, s, "fay-1", p("fay"), "vm.small", "ftw-hv01", "unreachable")
	// Shares: gus on ann's (prn), hal on fay's (ftw), ivy on dan's released one.
	shareWith(t, s, ann, u["gus"])
	shareWith(t, s, fay, u["hal"])
	dan, err := s.Devserver(context.Background(), "dan-1")
	if err != nil {
		t.Fatal(err)
	}
	shareWith(t, s, dan.ID, u["ivy"])
	// Containers: ivy live in lla, dan ended in lla, one pooled in lla, gus live (provisioning) in prn.
	placeContainer(t, s, "odivy", p("ivy"), "lla-ct01", "ready")
	placeContainer(t, s, "oddan", p("dan"), "lla-ct01", "ended")
	placeContainer(t, s, "odpool", nil, "lla-ct01", "ready")
	placeContainer(t, s, "odgus", p("gus"), "prn-ct01", "provisioning")
	return s
}

func emails(us []store.User) string {
	var out []string
	for _, u := range us {
		out = append(out, strings.TrimSuffix(u.Email, "@example.com"))
	}
	return strings.Join(out, ",")
}

func TestAudienceUsers(t *testing.T) {
	s := targetingInventory(t)
	ctx := context.Background()
	cases := []struct {
		name string
		a    store.Audience
		want string
	}{
		{"everyone reaches every person", store.Audience{Kind: "everyone"}, "ann,bob,cat,dan,eve,fay,gus,hal,ivy"},
		{"a region's devservers reach owners of live devservers there", store.Audience{Kind: "region_devservers", Region: "prn"}, "ann,bob,cat"},
		{"with sharees, their sharees too", store.Audience{Kind: "region_devservers", Region: "prn", Sharees: true}, "ann,bob,cat,gus"},
		{"an unreachable devserver still counts", store.Audience{Kind: "region_devservers", Region: "ftw", Sharees: true}, "fay,hal"},
		{"a region without devservers reaches nobody", store.Audience{Kind: "region_devservers", Region: "lla"}, ""},
		{"a host's devservers", store.Audience{Kind: "host_devservers", Host: "prn-hv01"}, "ann,bob"},
		{"another host's devservers", store.Audience{Kind: "host_devservers", Host: "prn-hv02"}, "cat"},
		{"a host's devservers with sharees", store.Audience{Kind: "host_devservers", Host: "prn-hv01", Sharees: true}, "ann,bob,gus"},
		{"a flavour's devservers across regions", store.Audience{Kind: "flavor_devservers", Flavor: "vm.small"}, "ann,bob,fay"},
		{"a flavour's devservers with sharees", store.Audience{Kind: "flavor_devservers", Flavor: "vm.small", Sharees: true}, "ann,bob,fay,gus,hal"},
		{"a flavour nobody has", store.Audience{Kind: "flavor_devservers", Flavor: "gpu.a100"}, ""},
		{"a region's containers reach owners of live containers", store.Audience{Kind: "region_containers", Region: "lla"}, "ivy"},
		{"a provisioning container is live", store.Audience{Kind: "region_containers", Region: "prn"}, "gus"},
		{"named users, existing ones only, any case", store.Audience{Kind: "users", Emails: []string{"Hal@Example.com", "ann@example.com", "nobody@example.com"}}, "ann,hal"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := s.AudienceUsers(ctx, c.a)
			if err != nil {
				t.Fatal(err)
			}
			if emails(got) != c.want {
				t.Errorf("got %q, want %q", emails(got), c.want)
			}
			for _, u := range got {
				if !slices.Contains(u.Roles, store.RoleEngineer) {
					t.Errorf("%s comes without roles: %v", u.Email, u.Roles)
				}
			}
			// The transaction's answer is the same.
			err = s.InTx(ctx, func(tx *store.Tx) error {
				in, err := tx.AudienceUsers(ctx, c.a)
				if err == nil && emails(in) != c.want {
					t.Errorf("in a transaction: got %q, want %q", emails(in), c.want)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestAudienceValidation(t *testing.T) {
	s := targetingInventory(t)
	cases := []struct {
		name  string
		a     store.Audience
		field string
	}{
		{"an unknown kind", store.Audience{Kind: "owners"}, "kind"},
		{"no kind", store.Audience{}, "kind"},
		{"a region audience without a region", store.Audience{Kind: "region_devservers"}, "region"},
		{"a container audience without a region", store.Audience{Kind: "region_containers"}, "region"},
		{"a host audience without a host", store.Audience{Kind: "host_devservers"}, "host"},
		{"a flavour audience without a flavour", store.Audience{Kind: "flavor_devservers"}, "flavor"},
		{"a region on a host audience", store.Audience{Kind: "host_devservers", Host: "prn-hv01", Region: "prn"}, "region"},
		{"sharees of containers", store.Audience{Kind: "region_containers", Region: "prn", Sharees: true}, "sharees"},
		{"users without emails", store.Audience{Kind: "users"}, "emails"},
		{"a malformed email", store.Audience{Kind: "users", Emails: []string{"not an address"}}, "emails"},
		{"emails on everyone", store.Audience{Kind: "everyone", Emails: []string{"ann@example.com"}}, "emails"},
		{"an unknown region", store.Audience{Kind: "region_devservers", Region: "xyz"}, "region"},
		{"an unknown host", store.Audience{Kind: "host_devservers", Host: "xyz-hv01"}, "host"},
		{"an unknown flavour", store.Audience{Kind: "flavor_devservers", Flavor: "vm.huge"}, "flavor"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.AudienceUsers(context.Background(), c.a)
			var ve *store.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, want a validation error", err)
			}
			if ve.Fields[c.field] == "" {
				t.Errorf("fields %v do not name %q", ve.Fields, c.field)
			}
		})
	}
}

func notifyAudience(t *testing.T, s *store.Store, a store.Audience, m store.Message) (int, error) {
	t.Helper()
	var n int
	err := s.InTx(context.Background(), func(tx *store.Tx) error {
		var err error
		n, err = tx.NotifyAudience(context.Background(), store.System, a, m)
		return err
	})
	return n, err
}

func TestNotifyAudience(t *testing.T) {
	s := targetingInventory(t)
	ctx := context.Background()
	a := store.Audience{Kind: "region_devservers", Region: "prn", Sharees: true}
	due := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	m := store.Message{Kind: "drain", Title: "prn drains on Dec 1", Body: "Move your devserver.", Link: "/devservers", Key: "drain:prn:1",
		Task: &store.TaskSpec{Title: "Move your devserver out of prn", Due: due}}

	t.Run("notifies every person of the audience once, with a task each", func(t *testing.T) {
		n, err := notifyAudience(t, s, a, m)
		if err != nil || n != 4 {
			t.Fatalf("notified %d (%v), want 4", n, err)
		}
		for _, name := range []string{"ann", "bob", "cat", "gus"} {
			u, _ := s.UserByEmail(ctx, name+"@example.com")
			ns, _ := s.Notifications(ctx, u.ID, 0, 10)
			if len(ns) != 1 || ns[0].Title != m.Title {
				t.Errorf("%s has %v", name, ns)
			}
			ts, _ := s.Tasks(ctx, u.ID, 0, 10)
			if len(ts) != 1 || ts[0].Title != m.Task.Title || !ts[0].DueAt.Equal(due) || ts[0].NotificationID == nil || *ts[0].NotificationID != ns[0].ID {
				t.Errorf("%s has tasks %+v", name, ts)
			}
		}
		u, _ := s.UserByEmail(ctx, "fay@example.com")
		if ns, _ := s.Notifications(ctx, u.ID, 0, 10); len(ns) != 0 {
			t.Errorf("fay (ftw) was notified: %v", ns)
		}
	})
	t.Run("sending the same key again notifies nobody twice", func(t *testing.T) {
		n, err := notifyAudience(t, s, a, m)
		if err != nil || n != 0 {
			t.Fatalf("notified %d (%v), want 0", n, err)
		}
		u, _ := s.UserByEmail(ctx, "ann@example.com")
		if ts, _ := s.Tasks(ctx, u.ID, 0, 10); len(ts) != 1 {
			t.Errorf("ann has %d tasks", len(ts))
		}
	})
	t.Run("a bigger audience under the same key reaches only the new people", func(t *testing.T) {
		n, err := notifyAudience(t, s, store.Audience{Kind: "flavor_devservers", Flavor: "vm.small"}, m)
		if err != nil || n != 1 { // fay; ann and bob had it
			t.Fatalf("notified %d (%v), want 1", n, err)
		}
	})
	t.Run("a bad message changes nothing", func(t *testing.T) {
		before := countRows(t, s, "notifications") + countRows(t, s, "tasks") + countRows(t, s, "deliveries")
		for _, bad := range []store.Message{
			{Title: "", Key: "k"},
			{Title: "t", Key: ""},
			{Title: "t", Key: "k2", Task: &store.TaskSpec{Title: "x"}},
			{Title: strings.Repeat("x", 201), Key: "k3"},
		} {
			if _, err := notifyAudience(t, s, store.Audience{Kind: "everyone"}, bad); err == nil {
				t.Errorf("%+v was accepted", bad)
			}
		}
		if _, err := notifyAudience(t, s, store.Audience{Kind: "region_devservers", Region: "nope"}, store.Message{Title: "t", Key: "k4"}); err == nil {
			t.Error("an unknown region was accepted")
		}
		if after := countRows(t, s, "notifications") + countRows(t, s, "tasks") + countRows(t, s, "deliveries"); after != before {
			t.Errorf("rows went from %d to %d", before, after)
		}
	})
}

func countRows(t *testing.T, s *store.Store, table string) int {
	t.Helper()
	var n int
	err := s.InTx(context.Background(), func(tx *store.Tx) error {
		return tx.GetContext(context.Background(), &n, `SELECT COUNT(*) FROM `+table)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
