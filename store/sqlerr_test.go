package store_test

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
	sqlite3 "github.com/mattn/go-sqlite3"
)

// isCheckViolation tells whether err is the database refusing a row that
// breaks a CHECK constraint, on either engine.
func isCheckViolation(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.ExtendedCode == sqlite3.ErrConstraintCheck
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23514"
}

// isUniqueViolation tells whether err is the database refusing a row that
// breaks a UNIQUE constraint or index, on either engine.
func isUniqueViolation(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.ExtendedCode == sqlite3.ErrConstraintUnique
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}
