package store_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// Write transactions run one at a time on both engines: the code reads,
// decides and writes in one transaction (quotas, names, capacity) and relies
// on no other writer coming in between.
func TestWriteTransactionsRunOneAtATime(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	var inside, most atomic.Int32
	done := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() {
			done <- s.InTx(ctx, func(tx *store.Tx) error {
				n := inside.Add(1)
				defer inside.Add(-1)
				for {
					m := most.Load()
					if n <= m || most.CompareAndSwap(m, n) {
						break
					}
				}
				var one int
				if err := tx.GetContext(ctx, &one, `SELECT 1`); err != nil {
					return err
				}
				time.Sleep(50 * time.Millisecond)
				return nil
			})
		}()
	}
	for i := 0; i < 4; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if most.Load() != 1 {
		t.Errorf("%d write transactions ran at once, want 1", most.Load())
	}
}

func regionCount(t *testing.T, s *store.Store, code string) int {
	t.Helper()
	var n int
	if err := s.DB().Get(&n, s.DB().Rebind(`SELECT COUNT(*) FROM regions WHERE code = ?`), code); err != nil {
		t.Fatal(err)
	}
	return n
}

// On PostgreSQL the transaction lends its connection to River as a pgx.Tx:
// what River writes through it commits and rolls back with the transaction.
func TestTxLendsItsConnectionToRiver(t *testing.T) {
	if storetest.Engine() != store.Postgres {
		s := storetest.New(t)
		err := s.InTx(context.Background(), func(tx *store.Tx) error {
			return tx.River(func(pgx.Tx) error { return nil })
		})
		if err == nil || !strings.Contains(err.Error(), "PostgreSQL") {
			t.Errorf("Tx.River on SQLite: %v", err)
		}
		return
	}
	ctx := context.Background()
	s := storetest.New(t)
	insert := func(tx *store.Tx, code string) error {
		return tx.River(func(ptx pgx.Tx) error {
			_, err := ptx.Exec(ctx, `INSERT INTO regions (code, name, status, position, created_at) VALUES ($1, $1, 'active', 9, now())`, code)
			return err
		})
	}
	boom := errors.New("boom")
	if err := s.InTx(ctx, func(tx *store.Tx) error {
		if err := insert(tx, "rbk"); err != nil {
			return err
		}
		// The transaction sees what River wrote.
		var n int
		if err := tx.GetContext(ctx, &n, `SELECT COUNT(*) FROM regions WHERE code = 'rbk'`); err != nil || n != 1 {
			t.Errorf("the transaction sees %d rows (%v)", n, err)
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if n := regionCount(t, s, "rbk"); n != 0 {
		t.Errorf("a rolled-back transaction left %d rows River wrote", n)
	}
	if err := s.InTx(ctx, func(tx *store.Tx) error {
		if err := insert(tx, "cmt"); err != nil {
			return err
		}
		// A nested transaction is a savepoint: its rollback undoes its part only.
		return tx.River(func(ptx pgx.Tx) error {
			sub, err := ptx.Begin(ctx)
			if err != nil {
				return err
			}
			if _, err := sub.Exec(ctx, `INSERT INTO regions (code, name, status, position, created_at) VALUES ('sub', 'sub', 'active', 9, now())`); err != nil {
				return err
			}
			return sub.Rollback(ctx)
		})
	}); err != nil {
		t.Fatal(err)
	}
	if n, m := regionCount(t, s, "cmt"), regionCount(t, s, "sub"); n != 1 || m != 0 {
		t.Errorf("after commit: %d committed rows (want 1), %d rolled back to the savepoint (want 0)", n, m)
	}
}

// Times read back in UTC, at the microseconds the store's clock keeps.
func TestTimesReadBackAsWritten(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	now := s.Now()
	if now.Location() != time.UTC || now.Nanosecond()%1000 != 0 {
		t.Errorf("the clock says %v", now)
	}
	if err := s.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO regions (code, name, status, position, created_at) VALUES ('utc', 'UTC', 'active', 9, ?)`), now)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var got time.Time
	if err := s.DB().Get(&got, `SELECT created_at FROM regions WHERE code = 'utc'`); err != nil {
		t.Fatal(err)
	}
	if !got.Equal(now) || got.Location() != time.UTC {
		t.Errorf("wrote %v, read %v (%v)", now, got, got.Location())
	}
}

// A database whose schema is newer than this binary's is refused, and left
// as it was.
func TestNewerSchemaIsRefused(t *testing.T) {
	ctx := context.Background()
	opts := store.Options{Path: t.TempDir() + "/devport.db"}
	if storetest.Engine() == store.Postgres {
		opts = store.Options{URL: storetest.PostgresURL(t), MaxConns: 2, ReadConns: 1}
	}
	s, err := store.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	_, latest, err := s.SchemaVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().Exec(s.DB().Rebind(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (?, ?)`), latest+1, true); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = store.Open(ctx, opts)
	want := "the database is at schema version " + itoa(latest+1) + ", newer than this devport knows (" + itoa(latest) + "): run a newer devport"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("open: %v, want %q", err, want)
	}
	// Nothing changed: the version rows are as they were.
	opts.Log = nil
	s2, err := store.OpenWithoutMigrating(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	var n, top int64
	if err := s2.DB().QueryRow(`SELECT COUNT(*), MAX(version_id) FROM goose_db_version`).Scan(&n, &top); err != nil {
		t.Fatal(err)
	}
	if top != latest+1 {
		t.Errorf("newest version row %d, want %d", top, latest+1)
	}
	p, err := s2.Migrator()
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(p.ListSources())) + 2; n != want { // the initial 0 row, each migration, the newer one
		t.Errorf("%d version rows, want %d", n, want)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://ann:s3cret@db:5432/devport?sslmode=disable": "postgres://ann:xxxxx@db:5432/devport?sslmode=disable",
		"postgres://ann:s3/cr@t@db:port/devport":                "postgres://ann:xxxxx@db:port/devport",
		"postgres://db/devport":                                 "postgres://db/devport",
		// pgx takes the password from the query as well.
		"postgres://ann@db/devport?password=s3cret&sslmode=disable": "postgres://ann@db/devport?password=xxxxx&sslmode=disable",
		"postgres://ann@db/devport?sslmode=bogus&password=s3%20cr":  "postgres://ann@db/devport?password=xxxxx&sslmode=bogus",
		"postgres://ann@[db/devport?password=s3cret":                "postgres://ann@[db/devport?password=xxxxx",
		// A libpq keyword/value string, which devport refuses, in the refusal.
		"host=db user=ann password=s3cret dbname=devport": "host=db user=ann password=xxxxx dbname=devport",
		"host=db password = 's3 cr\\'et' dbname=devport":  "host=db password = xxxxx dbname=devport",
	} {
		if got := store.RedactURL(in); got != want || strings.Contains(got, "s3") {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
