package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/jmoiron/sqlx"
	_ "github.com/mattn/go-sqlite3" // the embedded SQL engine
	"github.com/pressly/goose/v3"

	"github.com/devport/devport/migrations"
)

var sqliteDialect = dialect{
	engine:        SQLite,
	goose:         goose.DialectSQLite3,
	migrations:    migrations.SQLite,
	riverArg:      func(field string) string { return `json_extract(args, '$.` + field + `')` },
	jsonText:      func(col string) string { return `CAST(json(` + col + `) AS TEXT)` },
	jsonArrayText: func(col string) string { return `CAST(json(` + col + `) AS TEXT)` },
	listDistinct:  func(expr string) string { return `GROUP_CONCAT(DISTINCT ` + expr + `)` },
}

// sqliteDSN is the one place that knows SQLite's connection settings: WAL,
// a busy timeout so callers never see SQLITE_BUSY, foreign keys on,
// synchronous=NORMAL, and IMMEDIATE write transactions on the writer.
func sqliteDSN(path string, writer bool) string {
	v := url.Values{}
	v.Set("_journal_mode", "WAL")
	v.Set("_busy_timeout", "10000")
	v.Set("_foreign_keys", "on")
	v.Set("_synchronous", "NORMAL")
	v.Set("_cache_size", "-16000")
	// Reuse prepared statements: the same few queries run all day.
	v.Set("_stmt_cache_size", "64")
	if writer {
		v.Set("_txlock", "immediate")
	} else {
		v.Set("_query_only", "true")
	}
	return "file:" + path + "?" + v.Encode()
}

// sqlitePath is the file of a sqlite:PATH or file:PATH URL.
func sqlitePath(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "sqlite" && u.Scheme != "file") {
		return "", fmt.Errorf("not a database URL devport knows: use sqlite:PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE")
	}
	if u.Opaque != "" {
		return u.Opaque, nil
	}
	if u.Path == "" {
		return "", fmt.Errorf("the SQLite URL %s names no file (sqlite:/var/lib/devport/devport.db)", raw)
	}
	return u.Path, nil
}

// openSQLite opens the file (creating it) with its single writer and its
// read-only pool.
func openSQLite(ctx context.Context, opts Options) (*Store, error) {
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
	return &Store{write: write, read: read, d: sqliteDialect, where: opts.Path}, nil
}
