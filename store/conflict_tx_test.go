package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// A conflict that a unique index reports leaves the transaction usable:
// callers record why and go on in the same transaction (the storm's restore
// step, the host evacuation's moves). On PostgreSQL a failed statement would
// abort the whole transaction unless it runs under a savepoint.
func TestConflictLeavesTheTransactionUsable(t *testing.T) {
	ctx := context.Background()
	inv := capacityInventory()
	s := storetest.Seeded(t, &inv)
	u := storetest.User(t, s, "a@example.com", store.RoleAdmin)
	var d store.Devserver
	var b store.Backup
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if d, err = tx.Reserve(ctx, store.System, store.Reservation{Owner: u, Flavor: "vm.small", Region: "tst"}); err != nil {
			return err
		}
		if _, err := tx.MarkReady(ctx, d.ID, "sim-1", "2001:db8::1"); err != nil {
			return err
		}
		if d, err = tx.DevserverByID(ctx, d.ID); err != nil {
			return err
		}
		if b, err = tx.RequestBackup(ctx, store.System, d, store.BackupManual); err != nil {
			return err
		}
		if _, err := tx.FinishBackup(ctx, b.ID, 2, "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "x.backup"); err != nil {
			return err
		}
		b, err = tx.BackupByID(ctx, b.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	err = s.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.RequestRestore(ctx, store.System, b, d); err != nil {
			return err
		}
		_, err := tx.RequestRestore(ctx, store.System, b, d)
		var ce *store.ConflictError
		if !errors.As(err, &ce) || ce.Code != "restore_in_progress" {
			t.Errorf("a second restore: %v, want a restore_in_progress conflict", err)
		}
		// What a caller does next, in the same transaction.
		return tx.Audit(ctx, store.System, "test.after_conflict", "devserver", d.Name, nil)
	})
	if err != nil {
		t.Fatalf("the transaction after a conflict: %v", err)
	}
	if rs, err := s.Restores(ctx, d.ID, 10); err != nil || len(rs) != 1 {
		t.Errorf("restores %+v %v, want the first one", rs, err)
	}
	events, err := s.AuditEvents(ctx, "devserver", d.Name)
	if err != nil {
		t.Fatal(err)
	}
	var restored, after int
	for _, e := range events {
		switch e.Action {
		case "devserver.restore":
			restored++
		case "test.after_conflict":
			after++
		}
	}
	if restored != 1 || after != 1 {
		t.Errorf("audit: %d restore and %d later events, want 1 and 1", restored, after)
	}
}
