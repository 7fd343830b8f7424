// Package storetest opens real, migrated stores for tests: SQLite files by
// default; fresh PostgreSQL databases when DEVPORT_TEST_ENGINE=postgres
// (cloned per test from a migrated template database on the server that
// DEVPORT_TEST_POSTGRES_URL names, and dropped when the test ends).
package storetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/devport/devport/migrations"
	"github.com/devport/devport/store"
)

// Engine is the engine the tests run on: DEVPORT_TEST_ENGINE, sqlite by default.
func Engine() store.Engine {
	if os.Getenv("DEVPORT_TEST_ENGINE") == "postgres" {
		return store.Postgres
	}
	return store.SQLite
}

// New returns an empty, migrated store: a SQLite file in a fresh temporary
// directory, or a fresh PostgreSQL database.
func New(t testing.TB) *store.Store {
	t.Helper()
	opts := store.Options{
		Path: filepath.Join(t.TempDir(), "devport.db"),
		Log:  slog.New(slog.DiscardHandler),
	}
	if Engine() == store.Postgres {
		opts.URL = cloneTemplate(t)
		opts.MaxConns = 8
		opts.ReadConns = 4
	}
	s, err := store.Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// PostgresURL is the URL of a fresh, empty PostgreSQL database (no schema),
// dropped when the test ends; for tests of several replicas, of migrations
// and of moving data. It skips the test without DEVPORT_TEST_POSTGRES_URL
// (and fails it under DEVPORT_REQUIRE_ALL=1).
func PostgresURL(t testing.TB) string {
	t.Helper()
	admin := adminURL(t)
	name := "devport_t_" + randomHex(t)
	createDatabase(t, admin, name, "")
	return databaseURL(t, admin, name)
}

// adminURL is DEVPORT_TEST_POSTGRES_URL, a role that may create databases.
func adminURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("DEVPORT_TEST_POSTGRES_URL")
	if u == "" {
		if os.Getenv("DEVPORT_REQUIRE_ALL") == "1" {
			t.Fatal("DEVPORT_TEST_POSTGRES_URL is not set and DEVPORT_REQUIRE_ALL=1: this test needs PostgreSQL (.ci/postgres-up starts one)")
		}
		t.Skip("SKIPPED: needs PostgreSQL: set DEVPORT_TEST_POSTGRES_URL (.ci/postgres-up DIR PORT prints one)")
	}
	return u
}

func databaseURL(t testing.TB, admin, name string) string {
	t.Helper()
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("DEVPORT_TEST_POSTGRES_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

func randomHex(t testing.TB) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d_%s", os.Getpid(), hex.EncodeToString(b))
}

// createDatabase creates name (from template when not empty) and drops it
// when the test ends.
func createDatabase(t testing.TB, admin, name, template string) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connect to DEVPORT_TEST_POSTGRES_URL (%s): %v", store.RedactURL(admin), err)
	}
	defer c.Close(ctx)
	q := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		q += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	if _, err := c.Exec(ctx, q); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("drop test database %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		drop := "DROP DATABASE IF EXISTS " + pgx.Identifier{name}.Sanitize()
		if _, err := c.Exec(ctx, drop+" WITH (FORCE)"); err != nil {
			// FORCE refuses to end a backend of another role, such as an
			// autovacuum worker that started on the new database; a plain
			// DROP stops autovacuum itself (and the store is closed by now).
			if _, err2 := c.Exec(ctx, drop); err2 != nil {
				t.Errorf("drop test database %s: %v; without FORCE: %v", name, err, err2)
			}
		}
	})
}

var template struct {
	once sync.Once
	name string
	err  error
}

// cloneTemplate is the URL of a new database cloned from the migrated
// template (made once per schema, shared by the test processes).
func cloneTemplate(t testing.TB) string {
	t.Helper()
	admin := adminURL(t)
	template.once.Do(func() { template.name, template.err = makeTemplate(admin) })
	if template.err != nil {
		t.Fatalf("PostgreSQL template database: %v", template.err)
	}
	name := "devport_t_" + randomHex(t)
	createDatabase(t, admin, name, template.name)
	return databaseURL(t, admin, name)
}

// makeTemplate creates devport_tmpl_<hash of the PostgreSQL migrations>,
// migrated, unless a finished one exists. Test binaries of several packages
// run at once: an advisory lock makes one of them build it.
func makeTemplate(admin string) (string, error) {
	ctx := context.Background()
	h := sha256.New()
	files, err := fs.Glob(migrations.Postgres, "postgres/*.sql")
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := fs.ReadFile(migrations.Postgres, f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(b))
		h.Write(b)
	}
	name := "devport_tmpl_" + hex.EncodeToString(h.Sum(nil))[:12]
	c, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", fmt.Errorf("connect to DEVPORT_TEST_POSTGRES_URL (%s): %w", store.RedactURL(admin), err)
	}
	defer c.Close(ctx)
	const lockKey = 0x6465767074706c74 // "devptplt"
	if _, err := c.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(lockKey)); err != nil {
		return "", err
	}
	defer c.Exec(ctx, `SELECT pg_advisory_unlock($1)`, int64(lockKey))
	var done bool
	err = c.QueryRow(ctx, `SELECT datistemplate FROM pg_database WHERE datname = $1`, name).Scan(&done)
	if err == nil && done {
		return name, nil
	}
	// Absent, or left half-made by a process that died.
	id := pgx.Identifier{name}.Sanitize()
	if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+id+" WITH (FORCE)"); err != nil {
		return "", err
	}
	if _, err := c.Exec(ctx, "CREATE DATABASE "+id); err != nil {
		return "", err
	}
	u, err := url.Parse(admin)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	s, err := store.Open(ctx, store.Options{URL: u.String(), MaxConns: 2, ReadConns: 1})
	if err != nil {
		return "", fmt.Errorf("migrate the template: %w", err)
	}
	if err := s.Close(); err != nil {
		return "", err
	}
	if _, err := c.Exec(ctx, "ALTER DATABASE "+id+" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"); err != nil {
		return "", err
	}
	return name, nil
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
