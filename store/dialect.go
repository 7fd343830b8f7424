package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/pgconn"
	sqlite3 "github.com/mattn/go-sqlite3"
	"github.com/pressly/goose/v3"
)

// dialect is what differs between the engines in the store's SQL. A query
// that needs it calls s.d.riverArg(…) and friends; everything else is written
// once, in SQL both engines accept.
type dialect struct {
	engine     Engine
	goose      goose.Dialect
	migrations fs.FS
	// riverArg reads one integer field of a River job's arguments.
	riverArg func(field string) string
	// jsonText is a JSON(B) column as text.
	jsonText func(col string) string
	// jsonArrayText is river_job.errors as JSON text (a jsonb[] on PostgreSQL).
	jsonArrayText func(col string) string
	// listDistinct joins the distinct values of expr with commas, per group.
	listDistinct func(expr string) string
}

// isUniqueViolation tells whether err is a unique or primary-key failure, on
// either engine. On PostgreSQL the failed statement aborts the transaction:
// retry with INSERT … ON CONFLICT DO NOTHING (or inside tx.savepoint) rather
// than after the error.
func isUniqueViolation(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// RequeueOrphanedJobs makes the jobs a stopped process left "running"
// available again, and says how many there were. It is for SQLite only,
// where one process (holding the data directory's lock) owns the database,
// so no running job can belong to a live process; call it before the
// workers start. On PostgreSQL several replicas share the database and a
// running job may belong to a live one: it does nothing there (the jobs
// package requeues the jobs of replicas that stopped; River's rescuer is the
// last resort).
func (s *Store) RequeueOrphanedJobs(ctx context.Context) (int64, error) {
	if s.d.engine != SQLite {
		return 0, nil
	}
	res, err := s.write.ExecContext(ctx, `UPDATE river_job SET state = 'available' WHERE state = 'running'`)
	if err != nil {
		return 0, fmt.Errorf("requeue orphaned jobs: %w", err)
	}
	return res.RowsAffected()
}

// WithMigrationLock runs fn while this process alone may migrate the
// database: on PostgreSQL under a session advisory lock, so that replicas
// starting together do not apply the same migration twice (goose's and
// River's migrations both run under it); on SQLite (one process per
// database) it just runs fn.
func (s *Store) WithMigrationLock(ctx context.Context, fn func(ctx context.Context) error) error {
	if s.d.engine != Postgres {
		return fn(ctx)
	}
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer c.Release()
	if _, err := c.Exec(ctx, `SELECT pg_advisory_lock($1)`, lockMigrate); err != nil {
		return fmt.Errorf("migrate: take the migration lock: %w", err)
	}
	defer func() {
		if _, err := c.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, lockMigrate); err != nil {
			// A lock we cannot release dies with the connection.
			c.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	return fn(ctx)
}

// savepoint runs fn so that a statement of it that fails (a unique
// violation the caller retries or reports while the transaction goes on)
// leaves the transaction usable: on PostgreSQL a failed statement aborts the
// whole transaction unless it is rolled back to a savepoint; SQLite undoes
// the failed statement alone, so fn just runs.
func (tx *Tx) savepoint(ctx context.Context, fn func() error) error {
	if tx.s.d.engine != Postgres {
		return fn()
	}
	if _, err := tx.ExecContext(ctx, `SAVEPOINT devport_retry`); err != nil {
		return err
	}
	if err := fn(); err != nil {
		if _, rerr := tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT devport_retry`); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	_, err := tx.ExecContext(ctx, `RELEASE SAVEPOINT devport_retry`)
	return err
}
