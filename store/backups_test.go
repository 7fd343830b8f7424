package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

func TestRetentionDrops(t *testing.T) {
	now := time.Date(2026, 5, 10, 12, 0, 0, 0, time.UTC)
	at := func(daysAgo, hour int) time.Time {
		return time.Date(2026, 5, 10-daysAgo, hour, 0, 0, 0, time.UTC)
	}
	var id int64
	backup := func(when time.Time) store.Backup {
		id++
		return store.Backup{ID: id, State: store.BackupDone, CreatedAt: when}
	}
	ids := func(bs []store.Backup) []int64 {
		var out []int64
		for _, b := range bs {
			out = append(out, b.ID)
		}
		slices.Sort(out)
		return out
	}
	for _, c := range []struct {
		name               string
		backups            []store.Backup
		keepLast, keepDays int
		want               []int64
	}{
		{"nothing to drop", []store.Backup{backup(at(0, 1)), backup(at(1, 1))}, 7, 30, nil},
		{"keeps the last N when there are no dailies", func() []store.Backup {
			id = 0
			return []store.Backup{backup(at(5, 1)), backup(at(4, 1)), backup(at(3, 1)), backup(at(2, 1))}
		}(), 2, 0, []int64{1, 2}},
		{"keeps one per day (the newest) within M days", func() []store.Backup {
			id = 0
			return []store.Backup{backup(at(2, 1)), backup(at(2, 9)), backup(at(1, 1)), backup(at(1, 5)), backup(at(0, 3)), backup(at(0, 4))}
		}(), 1, 3, []int64{1, 3, 5}},
		{"days beyond M keep only what the last N hold", func() []store.Backup {
			id = 0
			return []store.Backup{backup(at(40, 1)), backup(at(35, 1)), backup(at(1, 1)), backup(at(0, 1))}
		}(), 3, 30, []int64{1}},
		{"failed and deleted backups are not retention's business", func() []store.Backup {
			id = 0
			bs := []store.Backup{backup(at(9, 1)), backup(at(8, 1)), backup(at(0, 1))}
			bs[0].State = store.BackupFailed
			bs[1].State = store.BackupDeleted
			return bs
		}(), 1, 0, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := ids(store.RetentionDrops(c.backups, now, c.keepLast, c.keepDays)); !slices.Equal(got, c.want) {
				t.Errorf("drops %v, want %v", got, c.want)
			}
		})
	}
}

func TestNotifications(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	alice := storetest.User(t, s, "alice@example.com")
	bob := storetest.User(t, s, "bob@example.com")
	notify := func(key string, to store.User) bool {
		t.Helper()
		var sent bool
		err := s.InTx(ctx, func(tx *store.Tx) error {
			var err error
			sent, err = tx.Notify(ctx, store.Notification{UserID: to.ID, Kind: "test", Title: "Hello " + key, IdempotencyKey: key})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return sent
	}
	t.Run("an idempotency key sends once", func(t *testing.T) {
		if !notify("k1", alice) || notify("k1", alice) {
			t.Error("want sent, then not sent")
		}
		notify("k2", alice)
		if n, _ := s.UnreadNotifications(ctx, alice.ID); n != 2 {
			t.Errorf("unread %d, want 2", n)
		}
	})
	t.Run("newest first, a page at a time", func(t *testing.T) {
		ns, err := s.Notifications(ctx, alice.ID, 0, 1)
		if err != nil || len(ns) != 1 || ns[0].IdempotencyKey != "k2" {
			t.Fatalf("first page %+v (%v)", ns, err)
		}
		ns, err = s.Notifications(ctx, alice.ID, ns[0].ID, 1)
		if err != nil || len(ns) != 1 || ns[0].IdempotencyKey != "k1" {
			t.Fatalf("second page %+v (%v)", ns, err)
		}
	})
	t.Run("someone else's notification is not found and stays unread", func(t *testing.T) {
		ns, _ := s.Notifications(ctx, alice.ID, 0, 10)
		err := s.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.MarkNotificationRead(ctx, store.System, bob.ID, ns[0].ID)
			return err
		})
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("err = %v, want not found", err)
		}
		if n, _ := s.UnreadNotifications(ctx, alice.ID); n != 2 {
			t.Errorf("unread %d, want 2", n)
		}
	})
	t.Run("mark all read", func(t *testing.T) {
		var n int64
		err := s.InTx(ctx, func(tx *store.Tx) error {
			var err error
			n, err = tx.MarkAllNotificationsRead(ctx, store.System, alice.ID)
			return err
		})
		if err != nil || n != 2 {
			t.Fatalf("marked %d (%v)", n, err)
		}
		if u, _ := s.UnreadNotifications(ctx, alice.ID); u != 0 {
			t.Errorf("unread %d", u)
		}
	})
}
