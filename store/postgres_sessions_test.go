package store_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// A replica whose machine dies closes no socket. PostgreSQL must find the
// dead session within seconds, not after the operating system's two-hour
// keepalive: until then it holds the write lock of the transaction it was in
// (every replica's writes wait) and its liveness lock (its jobs are not
// taken over).
func TestPostgresFindsDeadReplicasWithinSeconds(t *testing.T) {
	if storetest.Engine() != store.Postgres {
		t.Skip("PostgreSQL only (DEVPORT_TEST_ENGINE=postgres)")
	}
	ctx := context.Background()
	show := func(t *testing.T, s *store.Store, name string) string {
		t.Helper()
		var v string
		err := s.InTx(ctx, func(tx *store.Tx) error { return tx.GetContext(ctx, &v, `SHOW `+name) })
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	t.Run("write sessions are probed when idle", func(t *testing.T) {
		s := storetest.New(t)
		for name, want := range map[string]string{"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3"} {
			if got := show(t, s, name); got != want {
				t.Errorf("%s = %s, want %s", name, got, want)
			}
		}
		var holder string
		if err := s.Pool().QueryRow(ctx, `SHOW tcp_keepalives_idle`).Scan(&holder); err != nil || holder != "10" {
			t.Errorf("the pool River and the liveness lock use: tcp_keepalives_idle = %q %v, want 10", holder, err)
		}
	})
	t.Run("a setting in the URL wins", func(t *testing.T) {
		u := storetest.PostgresURL(t)
		if strings.Contains(u, "?") {
			u += "&tcp_keepalives_idle=42"
		} else {
			u += "?tcp_keepalives_idle=42"
		}
		s, err := store.OpenWithoutMigrating(ctx, store.Options{URL: u, Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if got := show(t, s, "tcp_keepalives_idle"); got != "42" {
			t.Errorf("tcp_keepalives_idle = %s, want 42 from the URL", got)
		}
	})
}

// A pool too small for devport's long-held connections would hang at start
// with no message (the migration lock and goose each need one); it is
// refused at once instead.
func TestPostgresPoolTooSmallIsRefused(t *testing.T) {
	if storetest.Engine() != store.Postgres {
		t.Skip("PostgreSQL only (DEVPORT_TEST_ENGINE=postgres)")
	}
	u := storetest.PostgresURL(t)
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := store.Open(ctx, store.Options{URL: u + sep + "pool_max_conns=1", Log: slog.New(slog.DiscardHandler)})
	if err == nil {
		s.Close()
		t.Fatal("a pool of one connection was accepted")
	}
	if !strings.Contains(err.Error(), "pool_max_conns=1") || !strings.Contains(err.Error(), "at least 4") || ctx.Err() != nil {
		t.Errorf("error %q (after the deadline: %v), want a refusal naming pool_max_conns and the minimum", err, ctx.Err())
	}
	s, err = store.Open(context.Background(), store.Options{URL: u + sep + "pool_max_conns=4", Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("pool_max_conns=4: %v", err)
	}
	s.Close()
}
