package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/pressly/goose/v3"

	"github.com/devport/devport/jobs"
	"github.com/devport/devport/migrations"
	"github.com/devport/devport/store"
)

// migrateData is `devport migrate-data`: it copies a SQLite installation's
// rows into an empty PostgreSQL database in one transaction, checks every
// table (row count and a SHA-256 over canonical rows) before committing, and
// moves the jobs that had not finished. The SQLite file is only read.
func migrateData(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	var from string
	c, err := parseConfig("migrate-data", args, getenv, stdout, func(fs *flag.FlagSet) {
		fs.StringVar(&from, "from", "", "the SQLite database to copy: a file or sqlite:PATH (default: devport.db in the data directory)")
	})
	if err != nil {
		return err
	}
	if c.DatabaseURL == "" {
		return errors.New("migrate-data: give the PostgreSQL database to copy into with --database-url postgres://USER:PASSWORD@HOST:PORT/DATABASE (or DEVPORT_DATABASE_URL)")
	}
	if c.DatabaseEngine() != store.Postgres {
		return fmt.Errorf("migrate-data: the destination %s is not PostgreSQL: migrate-data copies a SQLite installation into PostgreSQL (--database-url postgres://USER:PASSWORD@HOST:PORT/DATABASE)", store.RedactURL(c.DatabaseURL))
	}
	src := from
	if src == "" {
		src = filepath.Join(c.DataDir, "devport.db")
	} else if strings.HasPrefix(src, "sqlite:") || strings.HasPrefix(src, "file:") {
		u, err := url.Parse(src)
		if err != nil || (u.Opaque == "" && u.Path == "") {
			return fmt.Errorf("migrate-data: --from %q is not a SQLite file or sqlite:PATH", src)
		}
		src = cmp.Or(u.Opaque, u.Path)
	}
	m, err := openSource(ctx, src)
	if err != nil {
		return fmt.Errorf("migrate-data: %w; nothing was copied", err)
	}
	defer m.close()

	dst, err := store.Open(ctx, store.Options{URL: c.DatabaseURL, Log: slog.New(slog.DiscardHandler), MaxConns: 4, ReadConns: 1})
	if err != nil {
		return fmt.Errorf("migrate-data: destination %s: %w; nothing was copied", store.RedactURL(c.DatabaseURL), err)
	}
	defer dst.Close()
	// River's tables (the jobs that had not finished move over), as a
	// portal creates them at start.
	if err := jobs.MigrateQueue(ctx, dst, slog.New(slog.DiscardHandler)); err != nil {
		return fmt.Errorf("migrate-data: destination %s: job queue tables: %w; nothing was copied", store.RedactURL(c.DatabaseURL), err)
	}

	var results []tableResult
	err = dst.InTx(ctx, func(tx *store.Tx) error {
		return tx.River(func(ptx pgx.Tx) error {
			var err error
			results, err = m.copyAll(ctx, ptx)
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("migrate-data: %w; nothing was copied", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tROWS\tCHECKSUM\tOK")
	var total int64
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%s\tok\n", r.name, r.rows, r.sum[:16])
		total += r.rows
	}
	fmt.Fprintf(tw, "TOTAL\t%d\t%d tables\tok\n", total, len(results))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "copied %s into %s and checked every table\n", src, store.RedactURL(c.DatabaseURL))
	return nil
}

// source is the SQLite database being copied, read in one read transaction
// (a consistent snapshot).
type source struct {
	path string
	db   *sql.DB
	tx   *sql.Tx
	lock *os.File
}

func (m *source) close() {
	if m.tx != nil {
		_ = m.tx.Rollback()
	}
	if m.db != nil {
		m.db.Close()
	}
	if m.lock != nil {
		m.lock.Close()
	}
}

// openSource opens path read-only, refuses it while a portal serves from its
// directory, and checks that its schema is this binary's newest.
func openSource(ctx context.Context, path string) (_ *source, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", path, err)
	}
	if st, err := os.Stat(abs); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("the SQLite database %s does not exist (give it with --from PATH, or the data directory with --data-dir)", path)
		}
		return nil, fmt.Errorf("source %s: %w", path, err)
	} else if st.IsDir() {
		return nil, fmt.Errorf("the source %s is a directory, not a SQLite database (--from PATH/devport.db)", path)
	}
	m := &source{path: path}
	defer func() {
		if err != nil {
			m.close()
		}
	}()
	// A portal serving from the file would go on writing to it: what it
	// writes after the copy would be lost. serve holds this lock.
	if f, err := os.Open(filepath.Join(filepath.Dir(abs), "serve.lock")); err == nil {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
			f.Close()
			return nil, fmt.Errorf("a devport is serving from %s (it holds serve.lock): stop it first, so that nothing it writes after the copy is lost", filepath.Dir(abs))
		}
		m.lock = f
	}
	dsn := (&url.URL{Scheme: "file", Path: abs, RawQuery: "mode=ro&_busy_timeout=10000&_query_only=true"}).String()
	m.db, err = sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	m.db.SetMaxOpenConns(1)
	if m.tx, err = m.db.BeginTx(ctx, nil); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	var hasGoose int
	if err := m.tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'goose_db_version'`).Scan(&hasGoose); err != nil {
		return nil, fmt.Errorf("%s is not a SQLite database devport can read: %w", path, err)
	}
	if hasGoose == 0 {
		return nil, fmt.Errorf("%s is not a devport database (it has no schema version table)", path)
	}
	var current sql.NullInt64
	if err := m.tx.QueryRowContext(ctx, `SELECT max(version_id) FROM goose_db_version WHERE is_applied`).Scan(&current); err != nil {
		return nil, fmt.Errorf("%s: read its schema version: %w", path, err)
	}
	latest, err := latestSQLiteVersion(m.db)
	if err != nil {
		return nil, err
	}
	if current.Int64 != latest {
		return nil, fmt.Errorf("the SQLite database %s is at schema version %d, this devport's is %d: run `devport migrate --database-url sqlite:%s` with this devport on it first", path, current.Int64, latest, abs)
	}
	return m, nil
}

// latestSQLiteVersion is the newest SQLite migration this binary holds.
func latestSQLiteVersion(db *sql.DB) (int64, error) {
	fsys, err := fs.Sub(migrations.SQLite, "sqlite")
	if err != nil {
		return 0, err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, fsys)
	if err != nil {
		return 0, err
	}
	src := p.ListSources()
	if len(src) == 0 {
		return 0, errors.New("this devport holds no SQLite migrations")
	}
	return src[len(src)-1].Version, nil
}

// column is one column of a copied table: its name and its PostgreSQL type.
type column struct {
	name   string
	pgType string // information_schema data_type
}

type table struct {
	name string
	cols []column
	pk   []string // primary-key columns, in key order ("rowid" when none)
	refs []string // tables it references
	// textPK marks the primary-key columns that are text (ordered bytewise on PostgreSQL).
	textPK map[string]bool
}

type tableResult struct {
	name string
	rows int64
	sum  string
}

// skipTable tells the tables migrate-data does not copy as rows: SQLite's
// own, goose's version table (the destination has its own) and River's
// (its jobs move separately).
func skipTable(name string) bool {
	return strings.HasPrefix(name, "sqlite_") || name == "goose_db_version" || strings.HasPrefix(name, "river_")
}

// tables reads the source's tables, their columns and their foreign keys,
// matches them with the destination's, and returns them parents first.
func (m *source) tables(ctx context.Context, ptx pgx.Tx) ([]*table, error) {
	rows, err := m.tx.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list the source's tables: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		if !skipTable(n) {
			names = append(names, n)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}

	pgCols := map[string]map[string]string{}
	prows, err := ptx.Query(ctx, `SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema()`)
	if err != nil {
		return nil, fmt.Errorf("list the destination's columns: %w", err)
	}
	for prows.Next() {
		var t, c, ty string
		if err := prows.Scan(&t, &c, &ty); err != nil {
			prows.Close()
			return nil, err
		}
		if pgCols[t] == nil {
			pgCols[t] = map[string]string{}
		}
		pgCols[t][c] = ty
	}
	prows.Close()
	if err := prows.Err(); err != nil {
		return nil, err
	}

	byName := map[string]*table{}
	for _, n := range names {
		pc, ok := pgCols[n]
		if !ok {
			return nil, fmt.Errorf("table %s of the SQLite database has no twin in PostgreSQL: this devport's PostgreSQL schema lacks it", n)
		}
		t := &table{name: n, textPK: map[string]bool{}}
		crows, err := m.tx.QueryContext(ctx, `SELECT name, upper(type), pk FROM pragma_table_info(?) ORDER BY cid`, n)
		if err != nil {
			return nil, fmt.Errorf("table %s: columns: %w", n, err)
		}
		type pkCol struct {
			name string
			pos  int
		}
		var pks []pkCol
		seen := map[string]bool{}
		for crows.Next() {
			var cn, ty string
			var pk int
			if err := crows.Scan(&cn, &ty, &pk); err != nil {
				crows.Close()
				return nil, err
			}
			pt, ok := pc[cn]
			if !ok {
				crows.Close()
				return nil, fmt.Errorf("column %s.%s of the SQLite database has no twin in PostgreSQL", n, cn)
			}
			seen[cn] = true
			t.cols = append(t.cols, column{name: cn, pgType: pt})
			if pk > 0 {
				pks = append(pks, pkCol{cn, pk})
				if pt == "text" || strings.HasPrefix(pt, "character") {
					t.textPK[cn] = true
				}
			}
		}
		crows.Close()
		if err := crows.Err(); err != nil {
			return nil, err
		}
		for cn := range pc {
			if !seen[cn] {
				return nil, fmt.Errorf("column %s.%s of PostgreSQL has no twin in the SQLite database", n, cn)
			}
		}
		sort.Slice(pks, func(i, j int) bool { return pks[i].pos < pks[j].pos })
		for _, p := range pks {
			t.pk = append(t.pk, p.name)
		}
		if len(t.pk) == 0 {
			return nil, fmt.Errorf("table %s has no primary key: migrate-data cannot order its rows", n)
		}
		frows, err := m.tx.QueryContext(ctx, `SELECT DISTINCT "table" FROM pragma_foreign_key_list(?)`, n)
		if err != nil {
			return nil, fmt.Errorf("table %s: foreign keys: %w", n, err)
		}
		for frows.Next() {
			var ref string
			if err := frows.Scan(&ref); err != nil {
				frows.Close()
				return nil, err
			}
			if ref != n {
				t.refs = append(t.refs, ref)
			}
		}
		frows.Close()
		byName[n] = t
	}

	// Parents first (Kahn's algorithm; ties by name, so the order is stable).
	var order []*table
	done := map[string]bool{}
	for len(order) < len(names) {
		progress := false
		for _, n := range names {
			t := byName[n]
			if done[n] {
				continue
			}
			ready := true
			for _, r := range t.refs {
				if _, copied := byName[r]; copied && !done[r] {
					ready = false
				}
			}
			if ready {
				order = append(order, t)
				done[n] = true
				progress = true
			}
		}
		if !progress {
			var left []string
			for _, n := range names {
				if !done[n] {
					left = append(left, n)
				}
			}
			return nil, fmt.Errorf("the foreign keys of tables %s form a cycle: migrate-data cannot order them", strings.Join(left, ", "))
		}
	}
	return order, nil
}

// copyAll copies every table into the destination transaction, sets the
// identity sequences, moves the unfinished jobs and checks the result.
func (m *source) copyAll(ctx context.Context, ptx pgx.Tx) ([]tableResult, error) {
	tables, err := m.tables(ctx, ptx)
	if err != nil {
		return nil, err
	}
	if err := destinationEmpty(ctx, ptx); err != nil {
		return nil, err
	}
	var results []tableResult
	for _, t := range tables {
		r, err := m.copyTable(ctx, ptx, t)
		if err != nil {
			return nil, err
		}
		results = append(results, r)
	}
	seqs, err := m.autoincrements(ctx)
	if err != nil {
		return nil, err
	}
	if err := setSequences(ctx, ptx, seqs); err != nil {
		return nil, err
	}
	jobs, err := m.copyJobs(ctx, ptx)
	if err != nil {
		return nil, err
	}
	if beforeVerify != nil {
		if err := beforeVerify(ctx, ptx); err != nil {
			return nil, err
		}
	}
	// Check every table as PostgreSQL now holds it.
	for i, t := range tables {
		n, sum, err := destinationSum(ctx, ptx, t)
		if err != nil {
			return nil, err
		}
		if n != results[i].rows || sum != results[i].sum {
			return nil, fmt.Errorf("table %s does not read back as it was copied: SQLite has %d rows (checksum %.16s), PostgreSQL %d (checksum %.16s); rolled back", t.name, results[i].rows, results[i].sum, n, sum)
		}
	}
	return append(results, jobs), nil
}

// beforeVerify, when set (by tests), runs in the destination transaction
// after the copy and before the check.
var beforeVerify func(ctx context.Context, ptx pgx.Tx) error

// destinationEmpty refuses a destination that holds rows in a devport table
// (any table but goose's and River's) or in River's job table.
func destinationEmpty(ctx context.Context, ptx pgx.Tx) error {
	names := []string{"river_job"}
	rows, err := ptx.Query(ctx, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
		AND table_name <> 'goose_db_version' AND table_name NOT LIKE 'river\_%' ORDER BY table_name`)
	if err != nil {
		return fmt.Errorf("destination: list its tables: %w", err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("destination: list its tables: %w", err)
	}
	var full []string
	for _, n := range names {
		var rows bool
		if err := ptx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+pgIdent(n)+`)`).Scan(&rows); err != nil {
			return fmt.Errorf("destination: read %s: %w", n, err)
		}
		if rows {
			full = append(full, n)
		}
	}
	if len(full) > 0 {
		return fmt.Errorf("the destination already holds data: tables %s have rows; migrate-data copies into an empty database only", strings.Join(full, ", "))
	}
	return nil
}

// sqlList is a list of quoted identifiers.
func sqlList(names []string, quote func(string) string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = quote(n)
	}
	return strings.Join(q, ", ")
}

func sqliteIdent(n string) string { return `"` + strings.ReplaceAll(n, `"`, `""`) + `"` }
func pgIdent(n string) string     { return pgx.Identifier{n}.Sanitize() }

func (t *table) colNames() []string {
	out := make([]string, len(t.cols))
	for i, c := range t.cols {
		out[i] = c.name
	}
	return out
}

// copyTable streams the table's rows, in primary-key order, into
// PostgreSQL with COPY, converting each value to its PostgreSQL column's
// type, and sums them as they go.
func (m *source) copyTable(ctx context.Context, ptx pgx.Tx, t *table) (tableResult, error) {
	q := `SELECT ` + sqlList(t.colNames(), sqliteIdent) + ` FROM ` + sqliteIdent(t.name) + ` ORDER BY ` + sqlList(t.pk, sqliteIdent)
	rows, err := m.tx.QueryContext(ctx, q)
	if err != nil {
		return tableResult{}, fmt.Errorf("read %s: %w", t.name, err)
	}
	defer rows.Close()
	sum := newRowSum()
	raw := make([]any, len(t.cols))
	ptrs := make([]any, len(t.cols))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	var n int64
	var convErr error
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if !rows.Next() {
			return nil, rows.Err()
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		n++
		vals := make([]any, len(t.cols))
		for i, c := range t.cols {
			v, err := convert(raw[i], c.pgType)
			if err != nil {
				convErr = fmt.Errorf("table %s, row %s, column %s: %w", t.name, rowKey(t, raw), c.name, err)
				return nil, convErr
			}
			vals[i] = v
		}
		sum.add(vals)
		return vals, nil
	})
	copied, err := ptx.CopyFrom(ctx, pgx.Identifier{t.name}, t.colNames(), src)
	if convErr != nil {
		return tableResult{}, convErr
	}
	if err != nil {
		return tableResult{}, fmt.Errorf("copy %s (row %d): %w", t.name, n, err)
	}
	if copied != n {
		return tableResult{}, fmt.Errorf("copy %s: read %d rows, PostgreSQL took %d", t.name, n, copied)
	}
	return tableResult{name: t.name, rows: n, sum: sum.hex()}, nil
}

// rowKey names a row by its primary key, for messages.
func rowKey(t *table, raw []any) string {
	var parts []string
	for _, k := range t.pk {
		for i, c := range t.cols {
			if c.name == k {
				parts = append(parts, fmt.Sprintf("%s=%v", k, raw[i]))
			}
		}
	}
	return strings.Join(parts, ",")
}

// convert turns a value read from SQLite into what its PostgreSQL column takes.
func convert(v any, pgType string) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch pgType {
	case "boolean":
		switch x := v.(type) {
		case bool:
			return x, nil
		case int64:
			if x == 0 || x == 1 {
				return x == 1, nil
			}
		}
		return nil, fmt.Errorf("holds %v (%T), not a boolean (0 or 1)", v, v)
	case "bigint", "integer", "smallint":
		if x, ok := v.(int64); ok {
			return x, nil
		}
		return nil, fmt.Errorf("holds %q (%T), not an integer", fmt.Sprint(v), v)
	case "timestamp with time zone":
		x, ok := v.(time.Time)
		if !ok {
			return nil, fmt.Errorf("holds %q (%T), not a time", fmt.Sprint(v), v)
		}
		if x.IsZero() {
			return nil, errors.New("holds a time devport cannot read (SQLite returned no valid time for it)")
		}
		return x.UTC().Truncate(time.Microsecond), nil
	case "text", "character varying":
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case []byte:
			s = string(x)
		case int64:
			s = strconv.FormatInt(x, 10)
		default:
			return nil, fmt.Errorf("holds %v (%T), not text", v, v)
		}
		if i := strings.IndexByte(s, 0); i >= 0 {
			return nil, fmt.Errorf("the text holds a NUL byte (at byte %d), which PostgreSQL cannot store: remove it in the SQLite database and run migrate-data again", i)
		}
		if !utf8.ValidString(s) {
			return nil, errors.New("the text is not valid UTF-8, which PostgreSQL cannot store: fix it in the SQLite database and run migrate-data again")
		}
		return s, nil
	}
	return nil, fmt.Errorf("its PostgreSQL type %s is not one migrate-data converts to", pgType)
}

// rowSum is a SHA-256 over canonical rows: NULL is \N, integers decimal,
// booleans t/f, times UTC RFC 3339 with microseconds, text as it is; fields
// end with 0x1f, rows with 0x1e.
type rowSum struct{ h hash.Hash }

func newRowSum() *rowSum { return &rowSum{h: sha256.New()} }

func (s *rowSum) add(vals []any) {
	var b bytes.Buffer
	for _, v := range vals {
		b.WriteString(canonical(v))
		b.WriteByte(0x1f)
	}
	b.WriteByte(0x1e)
	s.h.Write(b.Bytes())
}

func (s *rowSum) hex() string { return hex.EncodeToString(s.h.Sum(nil)) }

func canonical(v any) string {
	switch x := v.(type) {
	case nil:
		return `\N`
	case bool:
		if x {
			return "t"
		}
		return "f"
	case int64:
		return strconv.FormatInt(x, 10)
	case int32:
		return strconv.FormatInt(int64(x), 10)
	case int16:
		return strconv.FormatInt(int64(x), 10)
	case time.Time:
		return x.UTC().Truncate(time.Microsecond).Format("2006-01-02T15:04:05.000000Z07:00")
	case string:
		return x
	case []byte:
		return string(x)
	}
	return fmt.Sprintf("?%T:%v", v, v)
}

// destinationSum reads the table back from PostgreSQL in primary-key order
// (text keys bytewise, as SQLite orders them) and sums it.
func destinationSum(ctx context.Context, ptx pgx.Tx, t *table) (int64, string, error) {
	order := make([]string, len(t.pk))
	for i, k := range t.pk {
		order[i] = pgIdent(k)
		if t.textPK[k] {
			order[i] += ` COLLATE "C"`
		}
	}
	rows, err := ptx.Query(ctx, `SELECT `+sqlList(t.colNames(), pgIdent)+` FROM `+pgIdent(t.name)+` ORDER BY `+strings.Join(order, ", "))
	if err != nil {
		return 0, "", fmt.Errorf("read back %s: %w", t.name, err)
	}
	defer rows.Close()
	sum := newRowSum()
	var n int64
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return 0, "", fmt.Errorf("read back %s: %w", t.name, err)
		}
		sum.add(vals)
		n++
	}
	if err := rows.Err(); err != nil {
		return 0, "", fmt.Errorf("read back %s: %w", t.name, err)
	}
	return n, sum.hex(), nil
}

// autoincrements are the last ids SQLite handed out in its AUTOINCREMENT
// tables (which never reuse an id, even of a deleted row).
func (m *source) autoincrements(ctx context.Context) (map[string]int64, error) {
	seqs := map[string]int64{}
	var has int
	if err := m.tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'`).Scan(&has); err != nil || has == 0 {
		return seqs, err
	}
	rows, err := m.tx.QueryContext(ctx, `SELECT name, seq FROM sqlite_sequence`)
	if err != nil {
		return nil, fmt.Errorf("read sqlite_sequence: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var n string
		var seq int64
		if err := rows.Scan(&n, &seq); err != nil {
			return nil, err
		}
		seqs[n] = seq
	}
	return seqs, rows.Err()
}

// setSequences moves every identity sequence past its column's largest value
// (and past the last id SQLite's AUTOINCREMENT gave), so that the next row
// PostgreSQL numbers does not collide with a copied one.
func setSequences(ctx context.Context, ptx pgx.Tx, seqs map[string]int64) error {
	rows, err := ptx.Query(ctx, `SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND (is_identity = 'YES' OR column_default LIKE 'nextval(%')
		AND table_name <> 'goose_db_version' AND table_name NOT LIKE 'river\_%' ORDER BY table_name`)
	if err != nil {
		return fmt.Errorf("list identity columns: %w", err)
	}
	type tc struct{ t, c string }
	var cols []tc
	for rows.Next() {
		var x tc
		if err := rows.Scan(&x.t, &x.c); err != nil {
			rows.Close()
			return err
		}
		cols = append(cols, x)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, x := range cols {
		var last any
		if seq := seqs[x.t]; seq > 0 && x.c == "id" {
			last = seq
		}
		top := `GREATEST(max(` + pgIdent(x.c) + `), CAST($3 AS bigint))`
		q := `SELECT setval(pg_get_serial_sequence($1, $2), ` + top + `) FROM ` + pgIdent(x.t) + ` HAVING ` + top + ` IS NOT NULL`
		if _, err := ptx.Exec(ctx, q, pgIdent(x.t), x.c, last); err != nil {
			return fmt.Errorf("set the sequence of %s.%s: %w", x.t, x.c, err)
		}
	}
	return nil
}

// copyJobs moves the jobs that had not finished (available, scheduled,
// retryable, and running, which becomes available: the SQLite portal
// stopped while it ran) into River's table, with
// their kind, arguments, queue, priority, schedule, attempts and uniqueness,
// and checks them. Finished jobs (history) stay behind.
func (m *source) copyJobs(ctx context.Context, ptx pgx.Tx) (tableResult, error) {
	res := tableResult{name: "river_job (unfinished)"}
	var has int
	if err := m.tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'river_job'`).Scan(&has); err != nil {
		return res, err
	}
	srcSum, dstSum := newRowSum(), newRowSum()
	if has == 0 {
		res.sum = srcSum.hex()
		return res, nil
	}
	rows, err := m.tx.QueryContext(ctx, `SELECT id, json(args), attempt, attempted_at, json(attempted_by), created_at, json(errors),
		kind, max_attempts, json(metadata), priority, queue, state, scheduled_at, json(tags), unique_key, unique_states
		FROM river_job WHERE state IN ('available', 'scheduled', 'retryable', 'running') ORDER BY id`)
	if err != nil {
		return res, fmt.Errorf("read the jobs: %w", err)
	}
	defer rows.Close()
	const ins = `INSERT INTO river_job (args, attempt, attempted_at, attempted_by, created_at, errors, kind, max_attempts,
		metadata, priority, queue, state, scheduled_at, tags, unique_key, unique_states)
		VALUES ($1::jsonb, $2, $3, CASE WHEN $4::jsonb IS NULL THEN NULL ELSE ARRAY(SELECT jsonb_array_elements_text($4::jsonb)) END,
		$5, CASE WHEN $6::jsonb IS NULL THEN NULL ELSE ARRAY(SELECT jsonb_array_elements($6::jsonb)) END, $7, $8,
		$9::jsonb, $10, $11, $12::river_job_state, $13, ARRAY(SELECT jsonb_array_elements_text($14::jsonb)), $15, nullif($16::integer, 0)::bit(8))
		RETURNING id`
	var ids []int64
	for rows.Next() {
		var (
			id, attempt, maxAttempts, priority       int64
			args, kind, metadata, queue, state, tags string
			attemptedBy, errs                        sql.NullString
			attemptedAt                              sql.NullTime
			createdAt, scheduledAt                   time.Time
			uniqueKey                                []byte
			uniqueStates                             sql.NullInt64
		)
		if err := rows.Scan(&id, &args, &attempt, &attemptedAt, &attemptedBy, &createdAt, &errs, &kind, &maxAttempts,
			&metadata, &priority, &queue, &state, &scheduledAt, &tags, &uniqueKey, &uniqueStates); err != nil {
			return res, fmt.Errorf("read job %d: %w", id, err)
		}
		if state == "running" {
			state = "available"
		}
		for _, s := range []string{args, kind, metadata, queue, tags, attemptedBy.String, errs.String} {
			if strings.IndexByte(s, 0) >= 0 || strings.Contains(s, `\u0000`) {
				return res, fmt.Errorf("job %d (%s) holds a NUL byte, which PostgreSQL cannot store", id, kind)
			}
		}
		canonArgs, err := canonicalJSON(args)
		if err != nil {
			return res, fmt.Errorf("job %d (%s): arguments: %w", id, kind, err)
		}
		var at any
		if attemptedAt.Valid {
			at = attemptedAt.Time.UTC().Truncate(time.Microsecond)
		}
		var us any
		if uniqueStates.Valid {
			us = uniqueStates.Int64
		}
		var newID int64
		if err := ptx.QueryRow(ctx, ins, args, attempt, at, nullStr(attemptedBy), createdAt.UTC().Truncate(time.Microsecond), nullStr(errs),
			kind, maxAttempts, metadata, priority, queue, state, scheduledAt.UTC().Truncate(time.Microsecond), tags, uniqueKey, us).Scan(&newID); err != nil {
			return res, fmt.Errorf("move job %d (%s): %w", id, kind, err)
		}
		ids = append(ids, newID)
		srcSum.add([]any{kind, canonArgs, queue, priority, scheduledAt, maxAttempts, attempt, state})
		res.rows++
	}
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("read the jobs: %w", err)
	}
	rows.Close()
	// Read them back.
	prows, err := ptx.Query(ctx, `SELECT kind, CAST(args AS text), queue, CAST(priority AS bigint), scheduled_at, CAST(max_attempts AS bigint), CAST(attempt AS bigint), CAST(state AS text)
		FROM river_job WHERE id = ANY($1) ORDER BY id`, ids)
	if err != nil {
		return res, fmt.Errorf("read back the jobs: %w", err)
	}
	defer prows.Close()
	var n int64
	for prows.Next() {
		var kind, args, queue, state string
		var priority, maxAttempts, attempt int64
		var scheduledAt time.Time
		if err := prows.Scan(&kind, &args, &queue, &priority, &scheduledAt, &maxAttempts, &attempt, &state); err != nil {
			return res, fmt.Errorf("read back the jobs: %w", err)
		}
		canonArgs, err := canonicalJSON(args)
		if err != nil {
			return res, fmt.Errorf("read back the jobs: %w", err)
		}
		dstSum.add([]any{kind, canonArgs, queue, priority, scheduledAt, maxAttempts, attempt, state})
		n++
	}
	if err := prows.Err(); err != nil {
		return res, fmt.Errorf("read back the jobs: %w", err)
	}
	res.sum = srcSum.hex()
	if n != res.rows || dstSum.hex() != res.sum {
		return res, fmt.Errorf("the unfinished jobs do not read back as they were moved: SQLite has %d (checksum %.16s), PostgreSQL %d (checksum %.16s); rolled back", res.rows, res.sum, n, dstSum.hex())
	}
	return res, nil
}

func nullStr(s sql.NullString) any {
	if !s.Valid {
		return nil
	}
	return s.String
}

// canonicalJSON re-encodes a JSON document with sorted keys (PostgreSQL's
// jsonb orders keys its own way).
func canonicalJSON(s string) (string, error) {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return "", err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}
