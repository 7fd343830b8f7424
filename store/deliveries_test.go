package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

func setPrefs(t *testing.T, s *store.Store, u store.User, p store.Preferences, offer store.Offered) (store.Preferences, error) {
	t.Helper()
	var out store.Preferences
	err := s.InTx(context.Background(), func(tx *store.Tx) error {
		var err error
		out, err = tx.SetPreferences(context.Background(), store.UserActor(u, "test", ""), u.ID, p, offer)
		return err
	})
	return out, err
}

func TestPreferences(t *testing.T) {
	s := storetest.Seeded(t, nil)
	ctx := context.Background()
	u := storetest.User(t, s, "ann@example.com")
	both := store.Offered{Email: true, Chat: true}

	t.Run("the inbox alone until chosen", func(t *testing.T) {
		p, err := s.Preferences(ctx, u.ID)
		if err != nil || !p.Inbox || p.Email || p.Chat {
			t.Errorf("%+v %v", p, err)
		}
	})
	t.Run("choices are kept", func(t *testing.T) {
		if _, err := setPrefs(t, s, u, store.Preferences{Inbox: true, Email: true}, both); err != nil {
			t.Fatal(err)
		}
		p, _ := s.Preferences(ctx, u.ID)
		if !p.Inbox || !p.Email || p.Chat || p.UpdatedAt == nil {
			t.Errorf("%+v", p)
		}
	})
	t.Run("bad choices change nothing", func(t *testing.T) {
		audits := countRows(t, s, "audit_events")
		for _, c := range []struct {
			p     store.Preferences
			offer store.Offered
			field string
		}{
			{store.Preferences{Inbox: false, Email: true}, both, "inbox"},
			{store.Preferences{Inbox: true, Email: true, Chat: true}, store.Offered{Email: true}, "chat"},
			{store.Preferences{Inbox: true, Email: true}, store.Offered{Chat: true}, "email"},
		} {
			_, err := setPrefs(t, s, u, c.p, c.offer)
			var ve *store.ValidationError
			if !errors.As(err, &ve) || ve.Fields[c.field] == "" {
				t.Errorf("%+v: got %v, want a problem with %s", c.p, err, c.field)
			}
		}
		p, _ := s.Preferences(ctx, u.ID)
		if !p.Email || p.Chat {
			t.Errorf("changed: %+v", p)
		}
		if n := countRows(t, s, "audit_events"); n != audits {
			t.Errorf("audit events went from %d to %d", audits, n)
		}
	})
}

func TestDeliveriesFollowPreferences(t *testing.T) {
	s := storetest.Seeded(t, nil)
	ctx := context.Background()
	both := store.Offered{Email: true, Chat: true}
	inboxOnly := storetest.User(t, s, "a@example.com")
	emailer := storetest.User(t, s, "b@example.com")
	everything := storetest.User(t, s, "c@example.com")
	setPrefs(t, s, emailer, store.Preferences{Inbox: true, Email: true}, both)
	setPrefs(t, s, everything, store.Preferences{Inbox: true, Email: true, Chat: true}, both)
	n, err := notifyAudience(t, s, store.Audience{Kind: "everyone"}, store.Message{Kind: "news", Title: "Hello", Key: "hello"})
	if err != nil || n != 3 {
		t.Fatalf("%d %v", n, err)
	}
	want := map[string]string{"a@example.com": "inbox", "b@example.com": "inbox,email", "c@example.com": "inbox,email,chat"}
	got := map[string]string{}
	ds, err := s.Deliveries(ctx, store.DeliveryFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for i := len(ds) - 1; i >= 0; i-- {
		d := ds[i]
		if got[d.Email] != "" {
			got[d.Email] += ","
		}
		got[d.Email] += d.Channel
		wantState := store.DeliveryPending
		if d.Channel == store.ChannelInbox {
			wantState = store.DeliverySent
		}
		if d.State != wantState {
			t.Errorf("%s %s is %s", d.Email, d.Channel, d.State)
		}
	}
	for email, w := range want {
		if got[email] != w {
			t.Errorf("%s: %q, want %q", email, got[email], w)
		}
	}
	_ = inboxOnly
	due, _ := s.DueDeliveries(ctx, s.Now(), 100)
	if len(due) != 3 {
		t.Errorf("%d due, want 3 (b's email, c's email and chat)", len(due))
	}
}

func TestClaimDelivery(t *testing.T) {
	s := storetest.Seeded(t, nil)
	clock := &commsClock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
	s.Now = clock.Now
	ctx := context.Background()
	u := storetest.User(t, s, "ann@example.com")
	setPrefs(t, s, u, store.Preferences{Inbox: true, Email: true}, store.Offered{Email: true})
	notifyAudience(t, s, store.Audience{Kind: "everyone"}, store.Message{Title: "Hi", Key: "hi"})
	due, _ := s.DueDeliveries(ctx, s.Now(), 10)
	if len(due) != 1 {
		t.Fatalf("%d due", len(due))
	}
	claim := func() (store.Delivery, bool) {
		var d store.Delivery
		var ok bool
		err := s.InTx(ctx, func(tx *store.Tx) error {
			var err error
			d, ok, err = tx.ClaimDelivery(ctx, due[0].ID, tx.Now().Add(time.Minute))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return d, ok
	}

	t.Run("of many claims at once exactly one wins", func(t *testing.T) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, ok := claim(); ok {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Errorf("%d claims won", wins)
		}
		if due, _ := s.DueDeliveries(ctx, s.Now(), 10); len(due) != 0 {
			t.Errorf("a claimed delivery is still due: %+v", due)
		}
	})
	t.Run("a claim that ran out can be taken again, and the old claim cannot finish", func(t *testing.T) {
		clock.Add(2 * time.Minute)
		d, ok := claim()
		if !ok || d.Attempts != 2 {
			t.Fatalf("reclaim: %v, %d attempts", ok, d.Attempts)
		}
		stale := d
		stale.ClaimedUntil = new(time.Time)
		*stale.ClaimedUntil = d.ClaimedUntil.Add(-2 * time.Minute)
		var sent bool
		s.InTx(ctx, func(tx *store.Tx) error {
			var err error
			sent, err = tx.DeliverySent(ctx, stale)
			return err
		})
		if sent {
			t.Error("a stale claim recorded the send")
		}
		s.InTx(ctx, func(tx *store.Tx) error {
			var err error
			sent, err = tx.DeliverySent(ctx, d)
			return err
		})
		if !sent {
			t.Error("the current claim could not record the send")
		}
		if _, ok := claim(); ok {
			t.Error("a sent delivery was claimed")
		}
	})
	t.Run("only a failed delivery can be retried", func(t *testing.T) {
		err := s.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.RetryDelivery(ctx, store.System, due[0].ID)
			return err
		})
		var ce *store.ConflictError
		if !errors.As(err, &ce) || ce.Code != "delivery_not_failed" {
			t.Errorf("got %v", err)
		}
	})
}

func TestDeliveryBackoff(t *testing.T) {
	want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute}
	for i, w := range want {
		if got := store.DeliveryBackoff(i + 1); got != w {
			t.Errorf("after attempt %d: %s, want %s", i+1, got, w)
		}
	}
	if got := store.DeliveryBackoff(40); got != time.Hour {
		t.Errorf("capped at %s", got)
	}
}
