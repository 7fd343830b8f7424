// Package migrations holds devport's schema as goose SQL migrations, one folder
// per SQL dialect, embedded into the binary.
package migrations

import "embed"

// SQLite is the schema for the embedded SQLite store.
//
//go:embed sqlite/*.sql
var SQLite embed.FS
