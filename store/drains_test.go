package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

var drainer = store.Actor{Name: "admin@example.com"}

// SetRegionStatus only moves a region from the statuses it names, and says
// what the region is when it does not.
func TestSetRegionStatus(t *testing.T) {
	inv := storetest.SmallRegion(2)
	s := storetest.Seeded(t, &inv)
	ctx := context.Background()
	set := func(code string, from []string, to string) error {
		return s.InTx(ctx, func(tx *store.Tx) error { return tx.SetRegionStatus(ctx, drainer, code, from, to) })
	}
	if err := set("tst", []string{"active"}, "draining"); err != nil {
		t.Fatal(err)
	}
	var ce *store.ConflictError
	if err := set("tst", []string{"active"}, "down"); !errors.As(err, &ce) || ce.Code != "region_status" {
		t.Fatalf("from active while draining: %v", err)
	}
	if err := set("nowhere", []string{"active"}, "down"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown region: %v", err)
	}
	if err := set("tst", []string{"draining"}, "sideways"); err == nil {
		t.Fatal("an unknown status was accepted")
	}
	if r, _ := s.Region(ctx, "tst"); r.Status != "draining" {
		t.Fatalf("region is %s", r.Status)
	}
	ev, err := s.AuditEvents(ctx, "region", "tst")
	if err != nil || len(ev) != 1 || ev[0].Action != "region.status" {
		t.Fatalf("audit %v %v", ev, err)
	}
}

// One open drain per region, held by the database; a finished drain lets
// the region be drained again; a down region cannot be drained.
func TestOpenDrainOnePerRegion(t *testing.T) {
	inv := storetest.SmallRegion(2)
	s := storetest.Seeded(t, &inv)
	ctx := context.Background()
	open := func(region string) (store.Drain, error) {
		var d store.Drain
		err := s.InTx(ctx, func(tx *store.Tx) error {
			var err error
			d, err = tx.OpenDrain(ctx, drainer, store.Drain{Region: region, Reason: "test", Kind: "exercise", MaxParallel: 2, DeadlineAt: time.Now().Add(time.Hour)})
			return err
		})
		return d, err
	}
	d, err := open("tst")
	if err != nil {
		t.Fatal(err)
	}
	var ce *store.ConflictError
	if _, err := open("tst"); !errors.As(err, &ce) || ce.Code != "already_draining" {
		t.Fatalf("second drain: %v", err)
	}
	if err := s.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.FinishDrain(ctx, drainer, d.ID, store.DrainCancelled); err != nil {
			return err
		}
		return tx.SetRegionStatus(ctx, drainer, "tst", []string{"draining"}, "down")
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := open("tst"); !errors.As(err, &ce) || ce.Code != "region_not_active" {
		t.Fatalf("drain of a down region: %v", err)
	}
	var n int
	if err := s.WriteDB().QueryRow(`SELECT COUNT(*) FROM drains`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d drains recorded (%v)", n, err)
	}
}

// ClaimDrainItems never puts more than the limit in flight.
func TestClaimDrainItemsCap(t *testing.T) {
	inv := storetest.SmallRegion(10)
	s := storetest.Seeded(t, &inv)
	ctx := context.Background()
	owner := storetest.User(t, s, "owner@example.com")
	var moves []store.DrainMove
	for i := range 7 {
		var id, host int64
		if err := s.DB().QueryRow(s.DB().Rebind(`
INSERT INTO devservers (name, owner_id, flavor, region, host_id, hostname, state, created_at, updated_at)
SELECT ?, ?, 'vm.small', 'tst', h.id, 'x', 'ready', ?, ? FROM hosts h WHERE h.name = 'tst-hv01' RETURNING id, host_id`),
			fmt.Sprintf("d%d", i), owner.ID, time.Now(), time.Now()).Scan(&id, &host); err != nil {
			t.Fatal(err)
		}
		moves = append(moves, store.DrainMove{DevserverID: id, Devserver: fmt.Sprintf("d%d", i), OwnerID: owner.ID, HostID: host, Method: store.MoveLive})
	}
	var drain store.Drain
	claimed := 0
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if drain, err = tx.OpenDrain(ctx, drainer, store.Drain{Region: "tst", Reason: "cap", Kind: "exercise", MaxParallel: 3, DeadlineAt: time.Now().Add(time.Hour)}); err != nil {
			return err
		}
		if err := tx.AddDrainItems(ctx, drain.ID, moves); err != nil {
			return err
		}
		if err := tx.AddDrainItems(ctx, drain.ID, moves); err != nil { // once each
			return err
		}
		for range 3 {
			items, err := tx.ClaimDrainItems(ctx, drain.ID, drain.MaxParallel)
			if err != nil {
				return err
			}
			claimed += len(items)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.DrainProgress(ctx, drain.ID)
	if err != nil {
		t.Fatal(err)
	}
	if claimed != 3 || p.Total != 7 || p.Remaining != 7 || p.Percent() != 0 {
		t.Fatalf("claimed %d, progress %+v", claimed, p)
	}
}
