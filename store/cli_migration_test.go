package store_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// Migration 14 rebuilds diagnostic_bundles: a rage's bundle survives going
// down and up again (as a bundle from a devserver); one the CLI sent about no
// devserver cannot go down into the old table.
func TestMigrationCLIBundles(t *testing.T) {
	ctx := context.Background()
	inv := storetest.SmallRegion(2)
	s := storetest.Seeded(t, &inv)
	u := storetest.User(t, s, "ann@example.com")
	who := store.UserActor(u, "test", "")
	d, err := reserve(t, s, store.Reservation{Owner: u, Flavor: "vm.small", Region: "tst"})
	if err != nil {
		t.Fatal(err)
	}
	err = s.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.RequestBundle(ctx, who, d, "rage"); err != nil {
			return err
		}
		_, err := tx.AddClientBundle(ctx, who, store.ClientBundle{Parts: map[string]json.RawMessage{"doctor": json.RawMessage(`{}`)}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Migrator()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, 13); err != nil {
		t.Fatalf("down to 13: %v", err)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	bs, err := s.Bundles(ctx, 10)
	if err != nil || len(bs) != 1 || bs[0].Source != store.BundleFromDevserver || bs[0].DevserverID == nil || *bs[0].DevserverID != d.ID || bs[0].Note != "rage" {
		t.Errorf("after down and up: %+v %v", bs, err)
	}
}
