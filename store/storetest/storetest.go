// Package storetest opens real, migrated SQLite stores for tests.
package storetest

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/devport/devport/store"
)

// New returns an empty, migrated store in a fresh temporary directory.
func New(t testing.TB) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), store.Options{
		Path: filepath.Join(t.TempDir(), "devport.db"),
		Log:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Seeded returns a store holding inv, or the demo inventory when inv is nil.
func Seeded(t testing.TB, inv *store.DemoInventory) *store.Store {
	t.Helper()
	s := New(t)
	if inv == nil {
		demo := store.Demo("sim")
		inv = &demo
	}
	if _, err := s.SeedInventory(context.Background(), *inv); err != nil {
		t.Fatalf("seed: %v", err)
	}
	codes := make([]string, len(inv.Regions))
	for i, r := range inv.Regions {
		codes[i] = r.Code
	}
	if _, err := s.SeedContainerCatalogue(context.Background(), store.DemoContainers(codes)); err != nil {
		t.Fatalf("seed containers: %v", err)
	}
	return s
}

// User creates (or updates) a user with roles.
func User(t testing.TB, s *store.Store, email string, roles ...string) store.User {
	t.Helper()
	ctx := context.Background()
	var u store.User
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if u, err = tx.UpsertUser(ctx, email, "", false); err != nil {
			return err
		}
		if err := tx.SetRoles(ctx, u.ID, roles); err != nil {
			return err
		}
		u, err = tx.User(ctx, u.ID)
		return err
	})
	if err != nil {
		t.Fatalf("user %s: %v", email, err)
	}
	return u
}

// SmallRegion is an inventory of one active region "tst" whose single
// hypervisor holds exactly slots devservers of flavour vm.small, plus an
// empty active region "alt" and a draining region "drn".
func SmallRegion(slots int) store.DemoInventory {
	demo := store.Demo("sim")
	inv := store.DemoInventory{Features: demo.Features}
	inv.Regions = []store.Region{
		{Code: "tst", Name: "Test", Status: "active", Position: 1},
		{Code: "alt", Name: "Alternative", Status: "active", Position: 2},
		{Code: "drn", Name: "Draining", Status: "draining", Position: 3},
	}
	for _, f := range demo.Flavors {
		if f.Name == "vm.small" {
			inv.Flavors = append(inv.Flavors, f)
			inv.Hosts = append(inv.Hosts,
				store.Host{Name: "tst-hv01", Region: "tst", Kind: "hypervisor", Driver: "sim", State: "ready", CPUs: f.CPUs * slots, MemoryGB: f.MemoryGB * slots * 2, DiskGB: f.DiskGB * slots * 2},
				store.Host{Name: "alt-hv01", Region: "alt", Kind: "hypervisor", Driver: "sim", State: "ready", CPUs: f.CPUs * 3, MemoryGB: f.MemoryGB * 3, DiskGB: f.DiskGB * 3},
				store.Host{Name: "drn-hv01", Region: "drn", Kind: "hypervisor", Driver: "sim", State: "ready", CPUs: 64, MemoryGB: 256, DiskGB: 4000},
			)
		}
	}
	return inv
}
