// Package store is devport's data access: one file per aggregate, SQL as
// constants, every invariant that concurrency could break held by the database.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jmoiron/sqlx"
	"github.com/pressly/goose/v3"
)

// Store is the database. On SQLite: one writer connection that serializes
// every write transaction, and a pool of readers that never wait for it (WAL).
// On PostgreSQL: a pool for write transactions (and River), serialized by a
// transaction-scoped advisory lock, and a read-only pool for reads.
type Store struct {
	write *sqlx.DB
	read  *sqlx.DB
	log   *slog.Logger
	d     dialect
	// pool and readPool are the PostgreSQL connection pools (nil on SQLite).
	pool, readPool *pgxpool.Pool
	// where names the database in messages (a file, or host:port/db).
	where string
	// Now is the store's clock; tests replace it. It keeps microseconds,
	// what PostgreSQL stores, so a time reads back equal on both engines.
	Now func() time.Time
}

// Engine is the SQL engine behind a Store.
type Engine string

// The engines devport runs on.
const (
	SQLite   Engine = "sqlite"
	Postgres Engine = "postgres"
)

// Options configure Open.
type Options struct {
	// URL selects the database: postgres://… or postgresql://… is
	// PostgreSQL; sqlite:PATH (or file:PATH) a SQLite file. Empty means the
	// SQLite file at Path.
	URL string
	// Path is the SQLite database file when URL is empty.
	Path string
	// ReadConns is the size of the read pool (default 8).
	ReadConns int
	// MaxConns is the size of the PostgreSQL pool for write transactions and
	// the job queue (default 24; pool_max_conns in the URL wins).
	MaxConns int
	Log      *slog.Logger
}

// EngineOf tells which engine a database URL selects.
func EngineOf(url string) Engine {
	if strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://") {
		return Postgres
	}
	return SQLite
}

// Open opens the database opts selects, creating a SQLite file if needed,
// and applies pending migrations. It changes nothing when it cannot reach
// the database or when the database's schema is newer than this binary's.
func Open(ctx context.Context, opts Options) (*Store, error) {
	s, err := OpenWithoutMigrating(ctx, opts)
	if err != nil {
		return nil, err
	}
	if err := s.Migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// OpenWithoutMigrating opens the database as Open does but leaves its schema
// as it is: for looking at a database (its version, its rows) that this
// binary may not be able to migrate.
func OpenWithoutMigrating(ctx context.Context, opts Options) (*Store, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.ReadConns <= 0 {
		opts.ReadConns = 8
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 24
	}
	var s *Store
	var err error
	if EngineOf(opts.URL) == Postgres {
		s, err = openPostgres(ctx, opts)
	} else {
		if opts.URL != "" {
			if opts.Path, err = sqlitePath(opts.URL); err != nil {
				return nil, err
			}
		}
		s, err = openSQLite(ctx, opts)
	}
	if err != nil {
		return nil, err
	}
	s.log = opts.Log.With("component", "store")
	s.Now = func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
	return s, nil
}

// Migrate applies every pending schema migration. It refuses a database whose
// schema is newer than this binary knows.
func (s *Store) Migrate(ctx context.Context) error {
	p, err := s.migrator()
	if err != nil {
		return err
	}
	return s.WithMigrationLock(ctx, func(ctx context.Context) error {
		current, err := p.GetDBVersion(ctx)
		if err != nil {
			return fmt.Errorf("migrate: read schema version: %w", err)
		}
		sources := p.ListSources()
		if len(sources) > 0 && current > sources[len(sources)-1].Version {
			return fmt.Errorf("migrate: the database is at schema version %d, newer than this devport knows (%d): run a newer devport", current, sources[len(sources)-1].Version)
		}
		results, err := p.Up(ctx)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		for _, r := range results {
			s.log.Info("Applied migration", "version", r.Source.Version, "file", filepath.Base(r.Source.Path), "duration", r.Duration)
		}
		return nil
	})
}

// SchemaVersion is the database's schema version and the newest this binary knows.
func (s *Store) SchemaVersion(ctx context.Context) (current, latest int64, err error) {
	p, err := s.migrator()
	if err != nil {
		return 0, 0, err
	}
	current, err = p.GetDBVersion(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("schema version: %w", err)
	}
	sources := p.ListSources()
	if len(sources) > 0 {
		latest = sources[len(sources)-1].Version
	}
	return current, latest, nil
}

func (s *Store) migrator() (*goose.Provider, error) {
	return s.Migrator()
}

// Migrator is the goose provider of this store's engine over its migrations
// (tests go down and up with it).
func (s *Store) Migrator() (*goose.Provider, error) {
	fsys, err := fs.Sub(s.d.migrations, string(s.d.engine))
	if err != nil {
		return nil, err
	}
	p, err := goose.NewProvider(s.d.goose, s.write.DB, fsys)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return p, nil
}

// Close closes the pools.
func (s *Store) Close() error {
	if s.d.engine == Postgres {
		err := errors.Join(s.read.Close(), s.write.Close())
		s.readPool.Close()
		s.pool.Close()
		return err
	}
	return errors.Join(s.read.Close(), s.write.Close())
}

// Engine is the SQL engine of the store.
func (s *Store) Engine() Engine { return s.d.engine }

// Where names the database for messages: the SQLite file, or PostgreSQL's
// host:port/database (never a password).
func (s *Store) Where() string { return s.where }

// WriteDB is the connection pool of write transactions: SQLite's single
// writer, shared with the job queue (riversqlite) so that a job is inserted in
// the same transaction as the change that needs it; on PostgreSQL the
// database/sql face of Pool.
func (s *Store) WriteDB() *sql.DB { return s.write.DB }

// DB is WriteDB for sqlx, with the engine's bind type: tests write their ad
// hoc SQL with ? and run it through DB().Rebind.
func (s *Store) DB() *sqlx.DB { return s.write }

// Pool is the PostgreSQL pool of write transactions, for River's riverpgxv5
// driver; nil on SQLite.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks that both the readers and the writer answer.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.read.PingContext(ctx); err != nil {
		return fmt.Errorf("ping readers: %w", err)
	}
	var one int
	if err := s.write.GetContext(ctx, &one, `SELECT 1`); err != nil {
		return fmt.Errorf("ping writer: %w", err)
	}
	return nil
}

// Tx is a write transaction. Its methods are the store's writes.
//
// The job queue inserts and completes jobs inside it (jobs/register.go):
//   - SQLite (riversqlite, river.Client[*sql.Tx]): pass tx.SQLTx() (the same
//     as tx.Tx.Tx) to InsertTx / JobCompleteTx[*riversqlite.Driver].
//   - PostgreSQL (riverpgxv5, river.Client[pgx.Tx]): call
//     tx.River(func(ptx pgx.Tx) error { … client.InsertTx(ctx, ptx, …) … })
//     or JobCompleteTx[*riverpgxv5.Driver](ctx, ptx, job) inside it; ptx is
//     the connection of this very transaction lent as a pgx.Tx, so the job
//     commits or rolls back with the change. River's client is built on
//     Store.Pool(); the River migrations run inside Store.WithMigrationLock.
type Tx struct {
	*sqlx.Tx
	s *Store
	// conn is the PostgreSQL connection the transaction runs on (nil on SQLite).
	conn *sqlx.Conn
}

// Now is the store's clock.
func (tx *Tx) Now() time.Time { return tx.s.Now() }

// Engine is the SQL engine of the transaction's store.
func (tx *Tx) Engine() Engine { return tx.s.d.engine }

// SQLTx is the database/sql transaction (River's TTx on SQLite).
func (tx *Tx) SQLTx() *sql.Tx { return tx.Tx.Tx }

// InTx runs fn in a write transaction, committing when fn returns nil and
// rolling back otherwise. Write transactions run one at a time on both
// engines (SQLite's single writer; PostgreSQL's advisory lock), so fn may
// read, decide and write without another writer in between.
func (s *Store) InTx(ctx context.Context, fn func(tx *Tx) error) (err error) {
	var tx *Tx
	if s.d.engine == Postgres {
		if tx, err = s.beginPostgres(ctx); err != nil {
			return err
		}
	} else {
		sqltx, err := s.write.BeginTxx(ctx, nil)
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		tx = &Tx{Tx: sqltx, s: s}
	}
	defer func() {
		if tx.conn != nil {
			defer tx.conn.Close()
		}
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
		if err != nil {
			_ = tx.Rollback()
			return
		}
		if cerr := tx.Commit(); cerr != nil {
			err = fmt.Errorf("commit: %w", cerr)
		}
	}()
	return fn(tx)
}

// queryer is what both the read pool and a transaction answer, so every query
// is written once.
type queryer interface {
	GetContext(ctx context.Context, dest any, query string, args ...any) error
	SelectContext(ctx context.Context, dest any, query string, args ...any) error
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	BindNamed(query string, arg any) (string, []any, error)
}

// getNamed runs a named-parameter query that returns one row.
func getNamed(ctx context.Context, q queryer, dest any, query string, arg any) error {
	bound, args, err := q.BindNamed(query, arg)
	if err != nil {
		return err
	}
	err = q.GetContext(ctx, dest, bound, args...)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// selectNamed runs a named-parameter query that returns rows.
func selectNamed(ctx context.Context, q queryer, dest any, query string, arg any) error {
	bound, args, err := q.BindNamed(query, arg)
	if err != nil {
		return err
	}
	return q.SelectContext(ctx, dest, bound, args...)
}

// execNamed runs a named-parameter statement and returns the rows it touched.
func execNamed(ctx context.Context, q queryer, query string, arg any) (int64, error) {
	bound, args, err := q.BindNamed(query, arg)
	if err != nil {
		return 0, err
	}
	res, err := q.ExecContext(ctx, bound, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// arg is a named-parameter map.
type arg = map[string]any
