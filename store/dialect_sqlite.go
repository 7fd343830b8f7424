package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"

	sqlite3 "github.com/mattn/go-sqlite3" // the embedded SQL engine
)

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

func subFS(fsys fs.FS, dir string) (fs.FS, error) { return fs.Sub(fsys, dir) }

// isUniqueViolation tells whether err is a unique or primary-key failure.
func isUniqueViolation(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey)
}

// riverArg reads one field of a River job's arguments (stored as JSONB by
// riversqlite); PostgreSQL reads args->>'field'.
func riverArg(field string) string { return `json_extract(args, '$.` + field + `')` }

// jsonText is a JSON(B) column as text; PostgreSQL casts jsonb to text.
func jsonText(col string) string { return `CAST(json(` + col + `) AS TEXT)` }

// listDistinct joins the distinct values of expr with commas, per group;
// PostgreSQL writes string_agg(DISTINCT expr, ',').
func listDistinct(expr string) string { return `GROUP_CONCAT(DISTINCT ` + expr + `)` }

// RequeueOrphanedJobs makes the jobs a stopped process left "running"
// available again, and says how many there were. It is for SQLite only,
// where one process (holding the data directory's lock) owns the database,
// so no running job can belong to a live process; call it before the
// workers start. Several replicas on PostgreSQL leave this to River.
func (s *Store) RequeueOrphanedJobs(ctx context.Context) (int64, error) {
	res, err := s.write.ExecContext(ctx, `UPDATE river_job SET state = 'available' WHERE state = 'running'`)
	if err != nil {
		return 0, fmt.Errorf("requeue orphaned jobs: %w", err)
	}
	return res.RowsAffected()
}
