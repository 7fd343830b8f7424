package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

func stormReady(t *testing.T, s *store.Store, email string) store.Devserver {
	t.Helper()
	u := storetest.User(t, s, email)
	d, err := reserve(t, s, store.Reservation{Owner: u, Flavor: "vm.small", Region: "prn"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.InTx(context.Background(), func(tx *store.Tx) error {
		_, err := tx.MarkReady(context.Background(), d.ID, "sim-"+d.Name, "2001:db8::1")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return d
}

func beginStorm(s *store.Store, in store.StormInput) (store.Storm, error) {
	var st store.Storm
	err := s.InTx(context.Background(), func(tx *store.Tx) error {
		var err error
		st, err = tx.BeginStorm(context.Background(), store.System, in)
		return err
	})
	return st, err
}

func TestStormBadInputChangesNothing(t *testing.T) {
	s := storetest.Seeded(t, nil)
	ctx := context.Background()
	cases := []struct {
		name string
		in   store.StormInput
		want string // "invalid", "not_found" or a conflict code
	}{
		{"a storm without a reason", store.StormInput{Region: "prn", Kind: store.StormKind}, "invalid"},
		{"a dark storm of no devservers", store.StormInput{Region: "prn", Kind: store.DarkStormKind}, "invalid"},
		{"a dark storm of too many", store.StormInput{Region: "prn", Kind: store.DarkStormKind, Count: store.MaxDarkStormCount + 1}, "invalid"},
		{"a storm of an unknown region", store.StormInput{Region: "nowhere", Kind: store.StormKind, Reason: "x"}, "not_found"},
	}
	for _, c := range cases {
		t.Run("refuses "+c.name, func(t *testing.T) {
			_, err := beginStorm(s, c.in)
			var ve *store.ValidationError
			switch {
			case c.want == "invalid" && !errors.As(err, &ve):
				t.Errorf("got %v, want a validation error", err)
			case c.want == "not_found" && !errors.Is(err, store.ErrNotFound):
				t.Errorf("got %v, want not found", err)
			}
			if st, _ := s.Storms(ctx, ""); len(st) != 0 {
				t.Errorf("storms %+v", st)
			}
			if r, _ := s.Region(ctx, "prn"); r.Status != "active" {
				t.Errorf("prn is %s", r.Status)
			}
		})
	}
	t.Run("refuses a recovery of a region that is not in a storm", func(t *testing.T) {
		err := s.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.RecoverStorm(ctx, store.System, "prn", "")
			return err
		})
		var ce *store.ConflictError
		if !errors.As(err, &ce) || ce.Code != "not_in_storm" {
			t.Errorf("got %v", err)
		}
	})
}

func TestStormIsolateAndRecover(t *testing.T) {
	s := storetest.Seeded(t, nil)
	ctx := context.Background()
	d := stormReady(t, s, "ann@example.com")
	st, err := beginStorm(s, store.StormInput{Region: "prn", Kind: store.StormKind, Reason: "flood"})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("refuses a second storm of the region", func(t *testing.T) {
		_, err := beginStorm(s, store.StormInput{Region: "prn", Kind: store.StormKind, Reason: "again"})
		var ce *store.ConflictError
		if !errors.As(err, &ce) || ce.Code != "region_down" {
			t.Errorf("got %v", err)
		}
	})
	t.Run("isolates the region once", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			if err := s.InTx(ctx, func(tx *store.Tx) error {
				_, err := tx.IsolateStorm(ctx, store.System, st.ID)
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
		es, err := s.StormDevservers(ctx, st.ID)
		if err != nil || len(es) != 1 || es[0].Devserver != d.Name || es[0].BackupID != nil || es[0].Replaceable() {
			t.Fatalf("entries %+v %v", es, err)
		}
		if got, _ := s.Devserver(ctx, d.Name); got.State != store.StateUnreachable {
			t.Errorf("devserver %s", got.State)
		}
	})
	t.Run("recovery brings the devserver and hosts back", func(t *testing.T) {
		var rec store.Recovery
		if err := s.InTx(ctx, func(tx *store.Tx) error {
			var err error
			rec, err = tx.RecoverStorm(ctx, store.System, "prn", store.ChoiceRelease)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if rec.Back != 1 || rec.Hosts == 0 || rec.Storm.RecoveredAt == nil {
			t.Errorf("recovery %+v", rec)
		}
		if got, _ := s.Devserver(ctx, d.Name); got.State != store.StateReady {
			t.Errorf("devserver %s", got.State)
		}
		hs, _ := s.Hosts(ctx, "prn")
		for _, h := range hs {
			if h.State == "unreachable" {
				t.Errorf("host %s still unreachable", h.Name)
			}
		}
	})
}

func TestStormLossText(t *testing.T) {
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	id := int64(7)
	backup := at.Add(-90 * time.Minute)
	cases := []struct {
		e    store.StormDevserver
		want string
	}{
		{store.StormDevserver{CreatedAt: at}, "no backup: everything lost"},
		{store.StormDevserver{CreatedAt: at, BackupID: &id, BackupAt: &backup}, "1h 30m of work lost (since backup 7 of 2026-11-24T08:30:00Z)"},
	}
	for _, c := range cases {
		if got := c.e.LossText(); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
}
