package jobs

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

func TestLeaseRemindersAndExpiry(t *testing.T) {
	g := newBackupRig(t, Options{})
	ctx := context.Background()
	until := g.clock.Now().Add(100 * time.Hour)
	d := g.reserve(t, g.owner, &until)
	g.exec(t, d, "write", "work.txt", "unsaved thoughts")
	w := newLeaseWorker(g.s, slog.New(slog.DiscardHandler), []time.Duration{72 * time.Hour, 24 * time.Hour})
	w.r = g.runner
	check := func(t *testing.T) {
		t.Helper()
		if err := w.Work(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	inbox := func(t *testing.T) []store.Notification {
		t.Helper()
		ns, err := g.s.Notifications(ctx, g.owner.ID, 0, 50)
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}

	t.Run("no reminder while the end is further than 3 days", func(t *testing.T) {
		check(t)
		if ns := inbox(t); len(ns) != 0 {
			t.Errorf("inbox %+v", ns)
		}
	})
	t.Run("a reminder 3 days before, once", func(t *testing.T) {
		g.clock.Add(30 * time.Hour) // 70 h left
		check(t)
		check(t)
		ns := inbox(t)
		if len(ns) != 1 || ns[0].Kind != "lease_reminder" || !strings.Contains(ns[0].Title, "3 days") || ns[0].Link != "/devservers/"+d.Name {
			t.Fatalf("inbox %+v", ns)
		}
	})
	t.Run("a reminder 1 day before, once", func(t *testing.T) {
		g.clock.Add(47 * time.Hour) // 23 h left
		check(t)
		check(t)
		ns := inbox(t)
		if len(ns) != 2 || !strings.Contains(ns[0].Title, "1 day") {
			t.Fatalf("inbox %+v", ns)
		}
	})
	t.Run("at expiry a final backup, then release", func(t *testing.T) {
		g.clock.Add(24 * time.Hour) // 1 h past the end
		check(t)
		check(t)
		g.waitState(t, d.ID, store.StateReleased)
		bs, err := g.s.Backups(ctx, store.BackupFilter{DevserverID: d.ID})
		if err != nil || len(bs) != 1 || bs[0].Kind != store.BackupFinal || bs[0].State != store.BackupDone {
			t.Fatalf("backups %+v (%v)", bs, err)
		}
		ns := inbox(t)
		if len(ns) != 3 || ns[0].Kind != "lease_expired" {
			t.Errorf("inbox %+v", ns)
		}
		check(t)
		if ns := inbox(t); len(ns) != 3 {
			t.Errorf("a rerun after expiry sent more: %+v", ns)
		}
	})
	t.Run("the final backup holds the data", func(t *testing.T) {
		other := g.reserve(t, g.owner, nil)
		bs, _ := g.s.Backups(ctx, store.BackupFilter{DevserverID: d.ID})
		r := g.restore(t, bs[0], other)
		if r.State != store.RestoreDone {
			t.Fatalf("restore %+v", r)
		}
		if got := g.exec(t, other, "cat", "work.txt"); got != "unsaved thoughts" {
			t.Errorf("work.txt = %q", got)
		}
	})
}

func TestLeaseReminderAfterAnExtension(t *testing.T) {
	g := newBackupRig(t, Options{})
	ctx := context.Background()
	until := g.clock.Now().Add(20 * time.Hour)
	d := g.reserve(t, g.owner, &until)
	w := newLeaseWorker(g.s, slog.New(slog.DiscardHandler), nil)
	w.r = g.runner
	if err := w.Work(ctx, nil); err != nil {
		t.Fatal(err)
	}
	ns, _ := g.s.Notifications(ctx, g.owner.ID, 0, 50)
	if len(ns) != 1 || !strings.Contains(ns[0].Title, "1 day") {
		t.Fatalf("a lease with 20 h left gets only the nearest reminder: %+v", ns)
	}
	// Extend by moving the lease's end (the store's extend does the same).
	if err := g.s.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, tx.Rebind(`UPDATE leases SET ends_at = ? WHERE id = ?`), until.Add(48*time.Hour), d.Lease.ID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	g.clock.Add(50 * time.Hour) // 18 h before the new end
	if err := w.Work(ctx, nil); err != nil {
		t.Fatal(err)
	}
	ns, _ = g.s.Notifications(ctx, g.owner.ID, 0, 50)
	if len(ns) != 2 {
		t.Errorf("an extended lease is reminded again before its new end: %+v", ns)
	}
}

func TestPermanentLeasesNeverExpire(t *testing.T) {
	g := newBackupRig(t, Options{})
	ctx := context.Background()
	admin := storetest.User(t, g.s, "root@example.com", store.RoleAdmin)
	var d store.Devserver
	err := g.s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if d, err = tx.Reserve(ctx, store.System, store.Reservation{Owner: admin, Flavor: "vm.small", Region: "tst", LeaseKind: store.LeasePermanent}); err != nil {
			return err
		}
		return g.runner.Enqueue(ctx, tx, ProvisionArgs{DevserverID: d.ID})
	})
	if err != nil {
		t.Fatal(err)
	}
	g.waitState(t, d.ID, store.StateReady)
	w := newLeaseWorker(g.s, slog.New(slog.DiscardHandler), nil)
	w.r = g.runner
	g.clock.Add(3 * 365 * 24 * time.Hour)
	if err := w.Work(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if d, _ := g.s.DevserverByID(ctx, d.ID); d.State != store.StateReady {
		t.Errorf("a permanent devserver is %s after three years", d.State)
	}
	if ns, _ := g.s.Notifications(ctx, admin.ID, 0, 50); len(ns) != 0 {
		t.Errorf("inbox %+v", ns)
	}
}
