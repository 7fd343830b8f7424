package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"
	"github.com/pressly/goose/v3"

	"github.com/devport/devport/migrations"
)

var postgresDialect = dialect{
	engine:     Postgres,
	goose:      goose.DialectPostgres,
	migrations: migrations.Postgres,
	// CAST, not ::, which sqlx's named queries would eat.
	riverArg:      func(field string) string { return `CAST(args->>'` + field + `' AS BIGINT)` },
	jsonText:      func(col string) string { return `CAST(` + col + ` AS TEXT)` },
	jsonArrayText: func(col string) string { return `CAST(array_to_json(` + col + `) AS TEXT)` },
	listDistinct:  func(expr string) string { return `string_agg(DISTINCT ` + expr + `, ',' ORDER BY ` + expr + `)` },
}

// Advisory lock keys (the one-bigint form). Other devport locks use the
// two-int4 form, so they cannot collide with these.
const (
	// lockWrite serializes write transactions, as SQLite's single writer does.
	lockWrite int64 = 0x6465767077726974 // "devpwrit"
	// lockMigrate lets one process at a time migrate the database.
	lockMigrate int64 = 0x646576706d696772 // "devpmigr"
)

// deadPeerProbes are the server's TCP keepalive settings for devport's
// sessions: a dead client is found after idle + interval × count seconds.
var deadPeerProbes = map[string]string{
	"tcp_keepalives_idle":     "10",
	"tcp_keepalives_interval": "5",
	"tcp_keepalives_count":    "3",
}

// minConns is the smallest pool_max_conns devport runs with.
const minConns = 4

// connectTimeout bounds the first contact with PostgreSQL at Open.
const connectTimeout = 10 * time.Second

// openPostgres opens the two pools on the database at opts.URL: one for
// write transactions and River, one read-only for reads, so that writers
// waiting for the write lock never starve the reads.
func openPostgres(ctx context.Context, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("the database URL %s is not a PostgreSQL URL devport can use (postgres://USER:PASSWORD@HOST:PORT/DATABASE): %s", RedactURL(opts.URL), parseProblem(err))
	}
	where := cfg.ConnConfig.Host + ":" + strconv.Itoa(int(cfg.ConnConfig.Port)) + "/" + cfg.ConnConfig.Database
	if u, err := url.Parse(opts.URL); err != nil || !u.Query().Has("pool_max_conns") {
		cfg.MaxConns = int32(opts.MaxConns)
	} else if cfg.MaxConns < minConns {
		// Fewer would wait for a connection that never comes, silently:
		// the migration lock and goose each hold one at start.
		return nil, fmt.Errorf("the database URL %s sets pool_max_conns=%d: devport needs at least %d (one holds the replica's liveness lock, one River's notifications, one the migration lock at start, the others the transactions)", RedactURL(opts.URL), cfg.MaxConns, minConns)
	}
	params := cfg.ConnConfig.RuntimeParams
	if params["application_name"] == "" {
		params["application_name"] = "devport"
	}
	// Times travel as UTC, and scan as UTC (pgx would give time.Local).
	params["timezone"] = "UTC"
	// A replica whose machine dies (power, kernel panic, lost network)
	// closes no socket: PostgreSQL would keep its session, with the write
	// lock of the transaction it was in and its liveness lock, until the
	// operating system's TCP keepalive gives up (over two hours on Linux),
	// and every replica's writes would wait that long. Probing an idle
	// connection every few seconds ends such a session in about half a
	// minute. Values in the URL win.
	for k, v := range deadPeerProbes {
		if params[k] == "" {
			params[k] = v
		}
	}
	cfg.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		c.TypeMap().RegisterType(&pgtype.Type{Name: "timestamptz", OID: pgtype.TimestamptzOID, Codec: &pgtype.TimestamptzCodec{ScanLocation: time.UTC}})
		return nil
	}
	readCfg := cfg.Copy()
	readCfg.MaxConns = int32(opts.ReadConns)
	readCfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"

	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to PostgreSQL at %s: %s", where, connectProblem(err))
	}
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("cannot connect to PostgreSQL at %s: %s", where, connectProblem(err))
	}
	readPool, err := pgxpool.NewWithConfig(ctx, readCfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("cannot connect to PostgreSQL at %s: %s", where, connectProblem(err))
	}
	// database/sql (and sqlx, which binds $n for the driver name "pgx") on
	// the pools. Connections come from the pools: database/sql keeps none.
	write := sqlx.NewDb(stdlib.OpenDBFromPool(pool), "pgx")
	read := sqlx.NewDb(stdlib.OpenDBFromPool(readPool), "pgx")
	return &Store{write: write, read: read, d: postgresDialect, pool: pool, readPool: readPool, where: where}, nil
}

// RedactURL is a database URL without its password, for messages: the
// password of its user information, of a password= query parameter (which
// pgx reads as well), or of a keyword/value string ("host=… password=…").
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return keywordPassword.ReplaceAllString(userinfoPassword.ReplaceAllString(raw, "${1}xxxxx@"), "${1}xxxxx")
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// userinfoPassword is the password of a URL that net/url cannot parse.
var userinfoPassword = regexp.MustCompile(`(://[^/@:]*:)[^?#]*@`)

// keywordPassword is a password=VALUE pair (quoted or not) of a query or of
// a keyword/value connection string.
var keywordPassword = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&#]*)`)

// parseProblem is what is wrong with a connection string, never the string
// itself (it may hold a password).
func parseProblem(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "`: "); i >= 0 {
		return msg[i+3:]
	}
	return "cannot parse it"
}

// connectProblem is the reason a connection failed: the server's message, or
// the network's.
func connectProblem(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Message + " (SQLSTATE " + pe.Code + ")"
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) && ce.Unwrap() != nil {
		return ce.Unwrap().Error()
	}
	return err.Error()
}

// beginPostgres starts a write transaction on a dedicated connection (kept
// in the Tx, so that River can borrow it) at READ COMMITTED, and takes the
// global write lock first: every statement after it sees what the previous
// writers committed, and no other writer runs until this one ends. The code
// relies on serialized writers (quotas counted in the transaction, name
// retries, capacity checks), as on SQLite.
func (s *Store) beginPostgres(ctx context.Context) (*Tx, error) {
	c, err := s.write.Connx(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	sqltx, err := c.BeginTxx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("begin: %w", err)
	}
	if _, err := sqltx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, lockWrite); err != nil {
		_ = sqltx.Rollback()
		c.Close()
		return nil, fmt.Errorf("begin: take the write lock: %w", err)
	}
	return &Tx{Tx: sqltx, s: s, conn: c}, nil
}

// River lends the transaction's own connection to fn as a pgx.Tx, for
// riverpgxv5 (InsertTx, JobCompleteTx): what River writes commits or rolls
// back with the transaction. fn must not keep ptx, and must not run while
// another statement of tx runs. PostgreSQL only.
func (tx *Tx) River(fn func(ptx pgx.Tx) error) error {
	if tx.conn == nil {
		return errors.New("store: Tx.River is for PostgreSQL; on SQLite River takes tx.SQLTx()")
	}
	return tx.conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("store: the transaction's connection is a %T, not pgx's", dc)
		}
		return fn(&lentTx{c: sc.Conn()})
	})
}

// lentTx is a pgx.Tx over a connection whose transaction database/sql owns:
// Commit and Rollback at the top are the owner's, nested Begins are
// savepoints.
type lentTx struct {
	c     *pgx.Conn
	depth int
}

func (t *lentTx) Begin(ctx context.Context) (pgx.Tx, error) {
	n := t.depth + 1
	if _, err := t.c.Exec(ctx, "SAVEPOINT lent_"+strconv.Itoa(n)); err != nil {
		return nil, err
	}
	return &lentTx{c: t.c, depth: n}, nil
}

func (t *lentTx) Commit(ctx context.Context) error {
	if t.depth == 0 {
		return nil // the owner commits
	}
	_, err := t.c.Exec(ctx, "RELEASE SAVEPOINT lent_"+strconv.Itoa(t.depth))
	return err
}

func (t *lentTx) Rollback(ctx context.Context) error {
	if t.depth == 0 {
		return nil // the owner rolls back
	}
	_, err := t.c.Exec(ctx, "ROLLBACK TO SAVEPOINT lent_"+strconv.Itoa(t.depth))
	return err
}

func (t *lentTx) CopyFrom(ctx context.Context, name pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	return t.c.CopyFrom(ctx, name, cols, src)
}

func (t *lentTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return t.c.SendBatch(ctx, b)
}

func (t *lentTx) LargeObjects() pgx.LargeObjects {
	panic("store: devport uses no large objects")
}

func (t *lentTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	return t.c.Prepare(ctx, name, sql)
}

func (t *lentTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return t.c.Exec(ctx, sql, args...)
}

func (t *lentTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return t.c.Query(ctx, sql, args...)
}

func (t *lentTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return t.c.QueryRow(ctx, sql, args...)
}

func (t *lentTx) Conn() *pgx.Conn { return t.c }

// CheckPostgresURL tells what is wrong with a postgres:// URL without
// connecting (never repeating its password).
func CheckPostgresURL(raw string) error {
	cfg, err := pgxpool.ParseConfig(raw)
	if err != nil {
		return fmt.Errorf("not a PostgreSQL URL devport can use (postgres://USER:PASSWORD@HOST:PORT/DATABASE): %s", parseProblem(err))
	}
	if cfg.ConnConfig.Database == "" {
		return errors.New("the PostgreSQL URL names no database (postgres://USER:PASSWORD@HOST:PORT/DATABASE)")
	}
	return nil
}
