// Package migrations holds devport's schema as goose SQL migrations, one folder
// per SQL dialect, embedded into the binary.
package migrations

import "embed"

// SQLite is the schema for the embedded SQLite store.
//
//go:embed sqlite/*.sql
var SQLite embed.FS

// Postgres is the same schema for PostgreSQL, with the same version numbers,
// so a database's schema version means the same thing on both engines.
//
//go:embed postgres/*.sql
var Postgres embed.FS
