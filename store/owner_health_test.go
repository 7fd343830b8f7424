package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

func TestRequestRestart(t *testing.T) {
	inv := storetest.SmallRegion(2)
	s := storetest.Seeded(t, &inv)
	ctx := context.Background()
	u := storetest.User(t, s, "ann@example.com")
	who := store.UserActor(u, "test", "")
	var d store.Devserver
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if d, err = tx.Reserve(ctx, store.System, store.Reservation{Owner: u, Flavor: "vm.small", Region: "tst"}); err != nil {
			return err
		}
		_, err = tx.MarkReady(ctx, d.ID, "sim-1", "2001:db8::1")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	restart := func(d store.Devserver) (store.Remediation, bool, error) {
		var r store.Remediation
		var opened bool
		err := s.InTx(ctx, func(tx *store.Tx) (err error) {
			r, opened, err = tx.RequestRestart(ctx, who, d)
			return err
		})
		return r, opened, err
	}

	h, err := s.DevserverHealthOf(ctx, d)
	if err != nil || h.Health != store.HealthUnknown || h.Remediation != nil {
		t.Fatalf("before any check: %+v %v", h, err)
	}

	ready, _ := s.DevserverByID(ctx, d.ID)
	r1, opened, err := restart(ready)
	if err != nil || !opened || r1.Step != store.RemediateRestart || r1.State != store.RemediationOpen || r1.Detail != "restart requested by ann@example.com" {
		t.Fatalf("first restart: %+v %v %v", r1, opened, err)
	}
	r2, opened, err := restart(ready)
	if err != nil || opened || r2.ID != r1.ID {
		t.Errorf("a second restart: %+v %v %v, want the open episode", r2, opened, err)
	}
	var n int
	if err := s.WriteDB().QueryRow(`SELECT COUNT(*) FROM audit_events WHERE action = 'devserver.restart'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d restart audit events (%v)", n, err)
	}
	h, err = s.DevserverHealthOf(ctx, ready)
	if err != nil || h.Remediation == nil || h.Remediation.ID != r1.ID || h.Remediation.Reason != r1.Detail {
		t.Errorf("health: %+v %v", h, err)
	}

	notReady := ready
	notReady.State = store.StateReleasing
	var ce *store.ConflictError
	if _, _, err := restart(notReady); !errors.As(err, &ce) || ce.Code != "not_restartable" {
		t.Errorf("a devserver not ready: %v", err)
	}
}
