package store_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// A step that backs up a region records "backup:NAME" effects holding the
// backups' IDs beside effects that hold counts or text; the step reads its
// backups back on both engines without casting those.
func TestStepBackups(t *testing.T) {
	ctx := context.Background()
	inv := capacityInventory()
	s := storetest.Seeded(t, &inv)
	u := storetest.User(t, s, "a@example.com", store.RoleAdmin)
	who := store.Actor{Name: "admin@example.com"}
	var done, failed store.Devserver
	var run store.Run
	err := s.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.AddRunbookVersion(ctx, who, store.RunbookVersion{Name: "backup-drill", Version: 1, YAML: "name: backup-drill", Description: "v"}); err != nil {
			return err
		}
		var err error
		if run, err = tx.CreateRun(ctx, who, store.Run{Runbook: "backup-drill", Version: 1, ParamsJSON: `{}`}, []store.RunStep{{Name: "backup", Kind: "operation", NeedsJSON: `[]`}}); err != nil {
			return err
		}
		for i, d := range []*store.Devserver{&done, &failed} {
			if *d, err = tx.Reserve(ctx, store.System, store.Reservation{Owner: u, Flavor: "vm.small", Region: "tst"}); err != nil {
				return err
			}
			if _, err := tx.MarkReady(ctx, d.ID, "sim-"+strconv.Itoa(i), "2001:db8::1"); err != nil {
				return err
			}
			if *d, err = tx.DevserverByID(ctx, d.ID); err != nil {
				return err
			}
			b, err := tx.RequestBackup(ctx, store.System, *d, store.BackupManual)
			if err != nil {
				return err
			}
			if d == &done {
				_, err = tx.FinishBackup(ctx, b.ID, 2, "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "x.backup")
			} else {
				err = tx.FailBackup(ctx, b.ID, "disk full")
			}
			if err != nil {
				return err
			}
			if err := tx.RecordStepEffect(ctx, run.ID, "backup", "backup:"+d.Name, strconv.FormatInt(b.ID, 10)); err != nil {
				return err
			}
		}
		if err := tx.RecordStepEffect(ctx, run.ID, "backup", "requested", "2"); err != nil {
			return err
		}
		return tx.RecordStepEffect(ctx, run.ID, "backup", "note", "not a number")
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.InTx(ctx, func(tx *store.Tx) error {
		counts, names, err := tx.StepBackups(ctx, run.ID, "backup")
		if err != nil {
			t.Fatalf("step backups: %v", err)
		}
		if counts[store.BackupDone] != 1 || counts[store.BackupFailed] != 1 || len(counts) != 2 {
			t.Errorf("counts %v, want one done and one failed", counts)
		}
		if len(names) != 1 || names[0] != failed.Name+" (disk full)" {
			t.Errorf("failed %q, want %s (disk full)", names, failed.Name)
		}
		again, err := tx.FailedStepBackups(ctx, run.ID, "backup")
		if err != nil {
			t.Fatalf("failed step backups: %v", err)
		}
		if len(again) != 1 || again[0].ID != failed.ID {
			t.Errorf("to back up again %+v, want %s", again, failed.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
