// Package store is devport's data access: one file per aggregate, SQL as
// constants, every invariant that concurrency could break held by the database.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/pressly/goose/v3"

	"github.com/devport/devport/migrations"
)

// Store is the database: one writer connection that serializes every write
// transaction, and a pool of readers that never wait for it (WAL).
type Store struct {
	write *sqlx.DB
	read  *sqlx.DB
	log   *slog.Logger
	// Now is the store's clock; tests replace it.
	Now func() time.Time
}

// Options configure Open.
type Options struct {
	// Path is the SQLite database file.
	Path string
	// ReadConns is the size of the read pool (default 8).
	ReadConns int
	Log       *slog.Logger
}

// Open opens (creating if needed) the SQLite database at opts.Path and applies
// pending migrations.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.ReadConns <= 0 {
		opts.ReadConns = 8
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	write, err := sqlx.Open("sqlite3", sqliteDSN(opts.Path, true))
	if err != nil {
		return nil, fmt.Errorf("open store writer: %w", err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	if err := write.PingContext(ctx); err != nil {
		write.Close()
		return nil, fmt.Errorf("open store %s: %w", opts.Path, err)
	}
	// The file exists now; keep it private to the service account.
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Chmod(opts.Path+suffix, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			write.Close()
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	read, err := sqlx.Open("sqlite3", sqliteDSN(opts.Path, false))
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open store readers: %w", err)
	}
	read.SetMaxOpenConns(opts.ReadConns)
	read.SetMaxIdleConns(opts.ReadConns)
	s := &Store{write: write, read: read, log: opts.Log.With("component", "store"), Now: func() time.Time { return time.Now().UTC() }}
	if err := s.Migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Migrate applies every pending schema migration. It refuses a database whose
// schema is newer than this binary knows.
func (s *Store) Migrate(ctx context.Context) error {
	p, err := s.migrator()
	if err != nil {
		return err
	}
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
	fsys, err := subFS(migrations.SQLite, "sqlite")
	if err != nil {
		return nil, err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, s.write.DB, fsys)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return p, nil
}

// Close closes both pools.
func (s *Store) Close() error {
	return errors.Join(s.read.Close(), s.write.Close())
}

// WriteDB is the single writer connection, shared with the job queue so that
// a job is inserted in the same transaction as the change that needs it.
func (s *Store) WriteDB() *sql.DB { return s.write.DB }

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
type Tx struct {
	*sqlx.Tx
	s *Store
}

// Now is the store's clock.
func (tx *Tx) Now() time.Time { return tx.s.Now() }

// InTx runs fn in a write transaction, committing when fn returns nil and
// rolling back otherwise.
func (s *Store) InTx(ctx context.Context, fn func(tx *Tx) error) (err error) {
	sqltx, err := s.write.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	tx := &Tx{Tx: sqltx, s: s}
	defer func() {
		if p := recover(); p != nil {
			_ = sqltx.Rollback()
			panic(p)
		}
		if err != nil {
			_ = sqltx.Rollback()
			return
		}
		if cerr := sqltx.Commit(); cerr != nil {
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
