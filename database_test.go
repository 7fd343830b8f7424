package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// The database commands (serve, migrate, token create) on a PostgreSQL URL
// that does not lead to a usable database: a clear message, without the
// password, and nothing changed.
func TestPostgresURLThatDoesNotWork(t *testing.T) {
	ctx := context.Background()
	commands := [][]string{{"devport", "migrate"}, {"devport", "token", "create", "--user", "ann@example.com"}, {"devport", "serve"}}
	try := func(t *testing.T, dbURL string, want ...string) {
		t.Helper()
		dir := t.TempDir()
		for _, args := range commands {
			getenv := env(map[string]string{"DEVPORT_DATA_DIR": dir, "DEVPORT_DATABASE_URL": dbURL, "DEVPORT_ADDR": "127.0.0.1:0", "DEVPORT_SSH_ADDR": ""})
			err := run(ctx, args, getenv, io.Discard)
			if err == nil {
				t.Fatalf("%v on %s: no error", args[1:], dbURL)
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v: %q does not say %q", args[1:], err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("%v: the message shows the password: %q", args[1:], err)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "devport.db")); err == nil {
			t.Errorf("a SQLite database was created in the data directory")
		}
	}

	t.Run("an unreachable server", func(t *testing.T) {
		try(t, "postgres://devport:s3cret@127.0.0.1:1/devport?sslmode=disable",
			"cannot connect to PostgreSQL at 127.0.0.1:1/devport", "connection refused")
	})
	t.Run("a URL that is not one", func(t *testing.T) {
		err := run(ctx, []string{"devport", "migrate"}, env(map[string]string{"DEVPORT_DATA_DIR": t.TempDir(), "DEVPORT_DATABASE_URL": "postgres://devport:s3cret@db:port/devport"}), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "DEVPORT_DATABASE_URL") || !strings.Contains(err.Error(), "not a PostgreSQL URL") || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("err = %v", err)
		}
	})

	// The rest needs a PostgreSQL server.
	fresh := storetest.PostgresURL(t)
	u, err := url.Parse(fresh)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	t.Run("wrong credentials", func(t *testing.T) {
		wrong := *u
		wrong.User = url.UserPassword(u.User.Username(), "s3cret")
		try(t, wrong.String(), "cannot connect to PostgreSQL at", "password authentication failed")
	})
	t.Run("a database that does not exist", func(t *testing.T) {
		missing := *u
		missing.Path = "/devport_no_such_database"
		try(t, missing.String(), "cannot connect to PostgreSQL at", `database "devport_no_such_database" does not exist`)
	})

	t.Run("migrate and token create work, a newer schema is refused", func(t *testing.T) {
		dir := t.TempDir()
		getenv := env(map[string]string{"DEVPORT_DATA_DIR": dir, "DEVPORT_DATABASE_URL": fresh})
		var out bytes.Buffer
		if err := run(ctx, []string{"devport", "migrate"}, getenv, &out); err != nil {
			t.Fatal(err)
		}
		latest := latestSchema(t)
		if want := fmt.Sprintf("is at schema version %d of %d", latest, latest); !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "xxxxx@") || strings.Contains(out.String(), ":"+pw+"@") {
			t.Errorf("migrate said %q, want %q and no password", out.String(), want)
		}
		out.Reset()
		if err := run(ctx, []string{"devport", "token", "create", "--user", "ann@example.com"}, getenv, &out); err != nil || !strings.HasPrefix(out.String(), store.TokenPrefix) {
			t.Fatalf("token create: %q %v", out.String(), err)
		}
		if _, err := os.Stat(filepath.Join(dir, "devport.db")); err == nil {
			t.Errorf("a SQLite database was created in the data directory")
		}

		db, err := pgx.Connect(ctx, fresh)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close(ctx)
		count := func(q string) (n int) {
			t.Helper()
			if err := db.QueryRow(ctx, q).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		if n := count(`SELECT COUNT(*) FROM tokens`); n != 1 {
			t.Errorf("%d tokens, want 1", n)
		}
		if _, err := db.Exec(ctx, `INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, true)`, latest+1); err != nil {
			t.Fatal(err)
		}
		versions, tokens := count(`SELECT COUNT(*) FROM goose_db_version`), count(`SELECT COUNT(*) FROM tokens`)
		for _, args := range [][]string{{"devport", "migrate"}, {"devport", "token", "create", "--user", "bob@example.com"}} {
			err := run(ctx, args, getenv, io.Discard)
			if want := fmt.Sprintf("schema version %d, newer than this devport knows (%d)", latest+1, latest); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%v: %v, want %q", args[1:], err, want)
			}
		}
		if v, n := count(`SELECT COUNT(*) FROM goose_db_version`), count(`SELECT COUNT(*) FROM tokens`); v != versions || n != tokens {
			t.Errorf("after the refusals: %d versions (was %d), %d tokens (was %d)", v, versions, n, tokens)
		}
	})
}
