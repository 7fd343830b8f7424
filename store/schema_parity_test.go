package store_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// column is one column of the schema as both engines can describe it.
type column struct {
	Table   string `db:"tbl"`
	Name    string `db:"col"`
	NotNull bool   `db:"notnull"`
}

func (c column) String() string {
	s := c.Table + "." + c.Name
	if c.NotNull {
		s += " NOT NULL"
	}
	return s
}

// TestSchemaParity holds migrations/postgres to migrations/sqlite: the same
// versions, the same tables with the same columns (and NOT NULLs), and every
// PostgreSQL migration goes down to nothing and up again.
func TestSchemaParity(t *testing.T) {
	ctx := context.Background()
	pgURL := storetest.PostgresURL(t)
	lite, err := store.Open(ctx, store.Options{Path: filepath.Join(t.TempDir(), "devport.db"), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	pg, err := store.Open(ctx, store.Options{URL: pgURL, MaxConns: 2, ReadConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()

	versions := func(s *store.Store) []int64 {
		p, err := s.Migrator()
		if err != nil {
			t.Fatal(err)
		}
		var vs []int64
		for _, src := range p.ListSources() {
			vs = append(vs, src.Version)
		}
		return vs
	}
	if lv, pv := versions(lite), versions(pg); !slices.Equal(lv, pv) {
		t.Errorf("migration versions: sqlite %v, postgres %v", lv, pv)
	}
	for _, s := range []*store.Store{lite, pg} {
		if cur, latest, err := s.SchemaVersion(ctx); err != nil || cur != latest {
			t.Errorf("%s: schema version %d of %d (%v)", s.Engine(), cur, latest, err)
		}
	}

	// An INTEGER PRIMARY KEY is the rowid in SQLite, which pragma_table_info
	// reports as nullable: primary keys count as NOT NULL on both sides.
	var liteCols, pgCols []column
	if err := lite.DB().SelectContext(ctx, &liteCols, `
SELECT m.name AS tbl, c.name AS col, (c."notnull" OR c.pk > 0) AS "notnull"
FROM sqlite_master m, pragma_table_info(m.name) c
WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name != 'goose_db_version'
ORDER BY 1, 2`); err != nil {
		t.Fatal(err)
	}
	schemaOf := func(s *store.Store) []column {
		var cols []column
		if err := s.DB().SelectContext(ctx, &cols, `
SELECT table_name AS tbl, column_name AS col, is_nullable = 'NO' AS "notnull"
FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name != 'goose_db_version'
ORDER BY table_name, column_name`); err != nil {
			t.Fatal(err)
		}
		return cols
	}
	pgCols = schemaOf(pg)
	if len(liteCols) < 100 {
		t.Fatalf("only %d SQLite columns", len(liteCols))
	}
	if diff := columnDiff(liteCols, pgCols); diff != "" {
		t.Errorf("the schemas differ (- sqlite only, + postgres only):\n%s", diff)
	}

	// Down to nothing and up again.
	p, err := pg.Migrator()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, 0); err != nil {
		t.Fatalf("postgres down to 0: %v", err)
	}
	var left []string
	if err := pg.DB().SelectContext(ctx, &left, `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name != 'goose_db_version'`); err != nil || len(left) != 0 {
		t.Errorf("tables left after going down to 0: %v %v", left, err)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("postgres up again: %v", err)
	}
	if diff := columnDiff(pgCols, schemaOf(pg)); diff != "" {
		t.Errorf("the PostgreSQL schema after down and up differs:\n%s", diff)
	}
}

func columnDiff(a, b []column) string {
	var out []string
	in := func(cs []column, c column) bool { return slices.Contains(cs, c) }
	for _, c := range a {
		if !in(b, c) {
			out = append(out, "- "+c.String())
		}
	}
	for _, c := range b {
		if !in(a, c) {
			out = append(out, "+ "+c.String())
		}
	}
	return strings.Join(out, "\n")
}
