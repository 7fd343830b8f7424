package handlertest

import (
	"context"
	"log/slog"
	"testing"

	"github.com/devport/devport/store"
)

// openAt opens (and migrates) the store at url, seeded with inv (the demo
// inventory when nil) unless seed is false, and closes it when the test ends.
func openAt(t testing.TB, url string, inv *store.DemoInventory, seed bool) *store.Store {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, store.Options{URL: url, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("open store at %s: %v", store.RedactURL(url), err)
	}
	t.Cleanup(func() { s.Close() })
	if !seed {
		return s
	}
	if inv == nil {
		demo := store.Demo("sim")
		inv = &demo
	}
	if _, err := s.SeedInventory(ctx, *inv); err != nil {
		t.Fatalf("seed: %v", err)
	}
	codes := make([]string, len(inv.Regions))
	for i, r := range inv.Regions {
		codes[i] = r.Code
	}
	if _, err := s.SeedContainerCatalogue(ctx, store.DemoContainers(codes)); err != nil {
		t.Fatalf("seed containers: %v", err)
	}
	return s
}
