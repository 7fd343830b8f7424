package store_test

import (
	"context"
	"testing"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// TestMigrationsGoDownAndUpAgain holds every migration's Down against its Up,
// on a database with data in it.
func TestMigrationsGoDownAndUpAgain(t *testing.T) {
	ctx := context.Background()
	inv := storetest.SmallRegion(2)
	s := storetest.Seeded(t, &inv)
	alice := storetest.User(t, s, "alice@example.com")
	if _, err := reserve(t, s, store.Reservation{Owner: alice, Flavor: "vm.small", Region: "tst"}); err != nil {
		t.Fatal(err)
	}
	p, err := s.Migrator()
	if err != nil {
		t.Fatal(err)
	}
	latest, err := p.GetDBVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, 1); err != nil {
		t.Fatalf("down to 1: %v", err)
	}
	var n int
	if err := s.InTx(ctx, func(tx *store.Tx) error { return tx.GetContext(ctx, &n, `SELECT COUNT(*) FROM devservers`) }); err != nil || n != 1 {
		t.Errorf("after going down %d devservers (%v), want 1", n, err)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if v, _ := p.GetDBVersion(ctx); v != latest {
		t.Errorf("version %d after up, want %d", v, latest)
	}
	if ds, err := s.Devservers(ctx, store.DevserverFilter{Limit: 10}); err != nil || len(ds) != 1 {
		t.Errorf("after going up again: %v %v", ds, err)
	}
	if s.Engine() != store.SQLite {
		return // PostgreSQL checks foreign keys on every statement, DDL included
	}
	var problems int
	if err := s.InTx(ctx, func(tx *store.Tx) error {
		return tx.GetContext(ctx, &problems, `SELECT COUNT(*) FROM pragma_foreign_key_check`)
	}); err != nil || problems != 0 {
		t.Errorf("foreign key problems after down and up: %d %v", problems, err)
	}
}
