package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// TestMigrateData copies a real SQLite installation (a portal that ran, plus
// SEVs, runbook runs, a drain, health checks, a CLI bundle, preferences,
// non-ASCII text and pending jobs) into PostgreSQL, and checks what both
// databases hold with its own reading of them.
func TestMigrateData(t *testing.T) {
	pgURL := storetest.PostgresURL(t) // skips loudly without DEVPORT_TEST_POSTGRES_URL
	ctx := context.Background()
	dir := seedSQLiteInstallation(t)
	dbPath := filepath.Join(dir, "devport.db")
	before, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if err := run(ctx, []string{"devport", "migrate-data", "--data-dir", dir, "--database-url", pgURL}, env(nil), &out); err != nil {
		t.Fatalf("migrate-data: %v\n%s", err, out.String())
	}
	for _, want := range []string{"TABLE", "ROWS", "CHECKSUM", "devservers", "sev_timeline", "TOTAL", "river_job (unfinished)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, out.String())
		}
	}
	if after, _ := os.ReadFile(dbPath); !bytes.Equal(before, after) {
		t.Error("migrate-data changed the SQLite file")
	}

	src, err := sql.Open("sqlite3", "file:"+dbPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	pg, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(ctx)

	t.Run("every table holds the same rows on both sides", func(t *testing.T) {
		tables := sqliteTables(t, src)
		if len(tables) < 50 {
			t.Fatalf("only %d tables in the SQLite database", len(tables))
		}
		total := 0
		for _, tb := range tables {
			a := dumpSQLite(t, src, pg, tb)
			b := dumpPostgres(t, pg, tb)
			if len(a) != len(b) || digest(a) != digest(b) {
				t.Errorf("%s: SQLite %d rows (%s), PostgreSQL %d rows (%s)", tb, len(a), digest(a), len(b), digest(b))
				for i := range min(len(a), len(b)) {
					if a[i] != b[i] {
						t.Errorf("%s first difference:\n sqlite   %q\n postgres %q", tb, a[i], b[i])
						break
					}
				}
			}
			total += len(a)
		}
		for _, tb := range []string{"devservers", "users", "sevs", "sev_timeline", "runbook_runs", "runbook_run_events", "drains", "health_checks", "diagnostic_bundles", "notification_preferences", "audit_events", "hosts"} {
			var n int
			if err := src.QueryRow(`SELECT count(*) FROM ` + tb).Scan(&n); err != nil || n == 0 {
				t.Errorf("the seed left %s empty (%v): the test would prove nothing about it", tb, err)
			}
		}
		t.Logf("%d rows in %d tables compared", total, len(tables))
	})

	t.Run("booleans, NULLs and text arrive as such", func(t *testing.T) {
		var email, chat bool
		if err := pg.QueryRow(ctx, `SELECT p.email, p.chat FROM notification_preferences p JOIN users u ON u.id = p.user_id WHERE u.email = 'zoë@example.com'`).Scan(&email, &chat); err != nil || !email || chat {
			t.Errorf("preferences = email %v chat %v, %v; want true false", email, chat, err)
		}
		var okT, okF int
		if err := pg.QueryRow(ctx, `SELECT count(*) FILTER (WHERE ok), count(*) FILTER (WHERE NOT ok) FROM health_checks`).Scan(&okT, &okF); err != nil || okT == 0 || okF == 0 {
			t.Errorf("health checks ok/not ok = %d/%d, %v", okT, okF, err)
		}
		var nullBundles int
		if err := pg.QueryRow(ctx, `SELECT count(*) FROM diagnostic_bundles WHERE devserver_id IS NULL`).Scan(&nullBundles); err != nil || nullBundles != 1 {
			t.Errorf("bundles without a devserver = %d, %v", nullBundles, err)
		}
		var name string
		if err := pg.QueryRow(ctx, `SELECT name FROM users WHERE email = 'zoë@example.com'`).Scan(&name); err != nil || name != "Zoë Ångström — 日本語" {
			t.Errorf("name = %q, %v", name, err)
		}
	})

	t.Run("the unfinished jobs moved, the finished did not", func(t *testing.T) {
		// The portal's own unfinished jobs (scheduled periodic ones, with
		// their uniqueness) move too.
		var srcOther, pgOther, pgUnique int
		if err := src.QueryRow(`SELECT count(*) FROM river_job WHERE state IN ('available', 'scheduled', 'retryable', 'running') AND kind NOT LIKE 'md_%'`).Scan(&srcOther); err != nil {
			t.Fatal(err)
		}
		if err := pg.QueryRow(ctx, `SELECT count(*), count(unique_states) FROM river_job WHERE kind NOT LIKE 'md_%'`).Scan(&pgOther, &pgUnique); err != nil || pgOther != srcOther {
			t.Errorf("the portal's unfinished jobs: %d in SQLite, %d on PostgreSQL (%v)", srcOther, pgOther, err)
		}
		t.Logf("%d of the portal's unfinished jobs moved, %d of them unique", pgOther, pgUnique)
		rows, err := pg.Query(ctx, `SELECT kind, state::text, CAST(args AS text), queue, priority, max_attempts FROM river_job WHERE kind LIKE 'md_%' ORDER BY kind`)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var kind, state, args, queue string
			var prio, maxA int
			if err := rows.Scan(&kind, &state, &args, &queue, &prio, &maxA); err != nil {
				t.Fatal(err)
			}
			var a map[string]any
			_ = json.Unmarshal([]byte(args), &a)
			got = append(got, kind+"|"+state+"|"+a["note"].(string)+"|"+queue+"|"+itoa(prio)+"|"+itoa(maxA))
		}
		var key []byte
		var states int
		var inAvailable, inCompleted bool
		if err := pg.QueryRow(ctx, `SELECT unique_key, CAST(unique_states AS integer), river_job_state_in_bitmask(unique_states, 'available'), river_job_state_in_bitmask(unique_states, 'completed')
			FROM river_job WHERE kind = 'md_available'`).Scan(&key, &states, &inAvailable, &inCompleted); err != nil || !bytes.Equal(key, []byte{1, 2, 0xff}) || states != 163 || !inAvailable || inCompleted {
			t.Errorf("uniqueness on PostgreSQL: key %x states %d available %v completed %v, %v", key, states, inAvailable, inCompleted, err)
		}
		want := []string{"md_available|available|ä|default|2|5", "md_running|available|r|default|1|25", "md_scheduled|scheduled|s|default|1|3"}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("river_job on PostgreSQL:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})

	t.Run("the store opens on PostgreSQL, reads the data and numbers new rows after the copied ones", func(t *testing.T) {
		s, err := store.Open(ctx, store.Options{URL: pgURL, MaxConns: 4, ReadConns: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var name string
		var maxUser, maxAudit int64
		if err := src.QueryRow(`SELECT name FROM devservers ORDER BY id LIMIT 1`).Scan(&name); err != nil {
			t.Fatal(err)
		}
		_ = src.QueryRow(`SELECT max(id) FROM users`).Scan(&maxUser)
		_ = src.QueryRow(`SELECT max(id) FROM audit_events`).Scan(&maxAudit)
		d, err := s.Devserver(ctx, name)
		if err != nil || d.Name != name || d.Flavor == "" || d.Region == "" {
			t.Fatalf("devserver %s on PostgreSQL = %+v, %v", name, d, err)
		}
		var u store.User
		err = s.InTx(ctx, func(tx *store.Tx) error {
			var err error
			u, err = tx.UpsertUser(ctx, "new-after-copy@example.com", "New", false)
			if err != nil {
				return err
			}
			return tx.Audit(ctx, store.Actor{Name: "test"}, "test.after_copy", "user", itoa(int(u.ID)), nil)
		})
		if err != nil {
			t.Fatalf("a new user on PostgreSQL after the copy: %v", err)
		}
		if u.ID != maxUser+1 {
			t.Errorf("new user id = %d, want %d (the sequence follows the copied rows)", u.ID, maxUser+1)
		}
		var auditID int64
		if err := pg.QueryRow(ctx, `SELECT max(id) FROM audit_events`).Scan(&auditID); err != nil || auditID != maxAudit+1 {
			t.Errorf("new audit event id = %d, %v; want %d", auditID, err, maxAudit+1)
		}
	})

	t.Run("bad input changes nothing", func(t *testing.T) {
		countPG := func(t *testing.T, url string) string {
			c, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			var tables, users int
			_ = c.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'`).Scan(&tables)
			if tables > 0 {
				_ = c.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&users)
			}
			return itoa(tables) + " tables, " + itoa(users) + " users"
		}
		migrateData := func(args ...string) error {
			var out bytes.Buffer
			return run(ctx, append([]string{"devport", "migrate-data"}, args...), env(nil), &out)
		}
		expect := func(t *testing.T, err error, wants ...string) {
			t.Helper()
			if err == nil {
				t.Fatal("migrate-data succeeded")
			}
			for _, w := range wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		}
		t.Run("a destination that holds data", func(t *testing.T) {
			was := countPG(t, pgURL)
			expect(t, migrateData("--data-dir", dir, "--database-url", pgURL), "the destination already holds data", "users", "nothing was copied")
			if now := countPG(t, pgURL); now != was {
				t.Errorf("destination went from %s to %s", was, now)
			}
		})
		t.Run("a source at an older schema version", func(t *testing.T) {
			old := filepath.Join(t.TempDir(), "old.db")
			s, err := store.OpenWithoutMigrating(ctx, store.Options{Path: old})
			if err != nil {
				t.Fatal(err)
			}
			p, err := s.Migrator()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.UpTo(ctx, 2); err != nil {
				t.Fatal(err)
			}
			s.Close()
			dst := storetest.PostgresURL(t)
			expect(t, migrateData("--from", "sqlite:"+old, "--database-url", dst), "schema version 2", "devport migrate", "nothing was copied")
			if now := countPG(t, dst); now != "0 tables, 0 users" {
				t.Errorf("destination now has %s", now)
			}
		})
		t.Run("a missing source file", func(t *testing.T) {
			dst := storetest.PostgresURL(t)
			missing := filepath.Join(t.TempDir(), "nope", "devport.db")
			var out bytes.Buffer
			err := run(ctx, []string{"devport", "migrate-data", "--from", missing}, env(map[string]string{"DEVPORT_DATABASE_URL": dst}), &out)
			expect(t, err, missing, "does not exist", "nothing was copied")
			if now := countPG(t, dst); now != "0 tables, 0 users" {
				t.Errorf("destination now has %s", now)
			}
			if _, err := os.Stat(missing); !os.IsNotExist(err) {
				t.Errorf("the missing source was created: %v", err)
			}
		})
		t.Run("a source that is not a devport SQLite database", func(t *testing.T) {
			dst := storetest.PostgresURL(t)
			notDB := filepath.Join(t.TempDir(), "notes.txt")
			empty := filepath.Join(t.TempDir(), "empty.db")
			for path, text := range map[string]string{notDB: "these are notes, not a database\n", empty: ""} {
				if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range []struct {
				what, from string
				wants      []string
			}{
				{"a directory", t.TempDir(), []string{"is a directory, not a SQLite database", "nothing was copied"}},
				{"an empty sqlite: URL", "sqlite:", []string{`--from "sqlite:" is not a SQLite file or sqlite:PATH`}},
				{"a text file", notDB, []string{notDB + ": file is not a database", "nothing was copied"}},
				{"an empty SQLite database", empty, []string{empty + " is not a devport database", "nothing was copied"}},
			} {
				t.Run(c.what, func(t *testing.T) {
					expect(t, migrateData("--from", c.from, "--database-url", dst), c.wants...)
				})
			}
			if now := countPG(t, dst); now != "0 tables, 0 users" {
				t.Errorf("destination now has %s", now)
			}
			if b, err := os.ReadFile(notDB); err != nil || string(b) != "these are notes, not a database\n" {
				t.Errorf("the source changed: %q %v", b, err)
			}
			if st, err := os.Stat(empty); err != nil || st.Size() != 0 {
				t.Errorf("the empty source changed: %v %v", st, err)
			}
		})
		t.Run("an unreachable database", func(t *testing.T) {
			expect(t, migrateData("--data-dir", dir, "--database-url", "postgres://devport:hunter2secret@127.0.0.1:1/devport?sslmode=disable"), "127.0.0.1:1", "refused")
			err := migrateData("--data-dir", dir, "--database-url", "postgres://devport:hunter2secret@127.0.0.1:1/devport?sslmode=disable")
			if strings.Contains(err.Error(), "hunter2secret") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
		t.Run("a SQLite destination", func(t *testing.T) {
			other := filepath.Join(t.TempDir(), "other.db")
			expect(t, migrateData("--data-dir", dir, "--database-url", "sqlite:"+other), "not PostgreSQL")
			if _, err := os.Stat(other); !os.IsNotExist(err) {
				t.Errorf("the SQLite destination was created: %v", err)
			}
			err := migrateData("--data-dir", dir, "--database-url", "sqlite://ann:hunter2secret@localhost"+other)
			expect(t, err, "not PostgreSQL")
			if strings.Contains(err.Error(), "hunter2secret") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
		t.Run("no destination", func(t *testing.T) {
			expect(t, migrateData("--data-dir", dir), "--database-url postgres://")
		})
		t.Run("a source a portal is serving from", func(t *testing.T) {
			p := startPortal(t, "--sim-latency", "0s", "--pool-interval", "0s", "--log-level", "warn")
			dst := storetest.PostgresURL(t)
			expect(t, migrateData("--data-dir", p.DataDir, "--database-url", dst), "a devport is serving from "+p.DataDir, "stop it first", "nothing was copied")
			if now := countPG(t, dst); now != "0 tables, 0 users" {
				t.Errorf("destination now has %s", now)
			}
		})
		t.Run("a copy that does not read back is rolled back", func(t *testing.T) {
			dst := storetest.PostgresURL(t)
			beforeVerify = func(ctx context.Context, ptx pgx.Tx) error {
				_, err := ptx.Exec(ctx, `UPDATE users SET name = name || '!' WHERE id = (SELECT max(id) FROM users)`)
				return err
			}
			defer func() { beforeVerify = nil }()
			expect(t, migrateData("--data-dir", dir, "--database-url", dst), "table users does not read back", "rolled back", "nothing was copied")
			if now := countPG(t, dst); !strings.HasSuffix(now, " 0 users") {
				t.Errorf("destination now has %s", now)
			}
			c, err := pgx.Connect(ctx, dst)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			var devservers, jobs int
			_ = c.QueryRow(ctx, `SELECT (SELECT count(*) FROM devservers), (SELECT count(*) FROM river_job)`).Scan(&devservers, &jobs)
			if devservers != 0 || jobs != 0 {
				t.Errorf("after the rollback: %d devservers, %d jobs", devservers, jobs)
			}
		})
		t.Run("text with a NUL byte", func(t *testing.T) {
			nul := filepath.Join(t.TempDir(), "nul.db")
			s, err := store.Open(ctx, store.Options{Path: nul})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.DB().ExecContext(ctx, `INSERT INTO users (email, name, created_at) VALUES ('nul@example.com', 'a' || char(0) || 'b', '2026-01-01 00:00:00+00:00')`); err != nil {
				t.Fatal(err)
			}
			s.Close()
			dst := storetest.PostgresURL(t)
			expect(t, migrateData("--from", nul, "--database-url", dst), "table users", "row id=1", "column name", "NUL byte", "nothing was copied")
			if now := countPG(t, dst); !strings.HasSuffix(now, " 0 users") {
				t.Errorf("destination now has %s", now)
			}
		})
	})
}

// seedSQLiteInstallation runs a portal on a fresh data directory (the demo
// inventory, pools filled, containers built), then adds through the store
// what a portal in use holds, and pending jobs.
func seedSQLiteInstallation(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	p := startPortal(t, "--sim-latency", "0s", "--log-level", "warn")
	deadline := time.Now().Add(30 * time.Second)
	for {
		db, err := sql.Open("sqlite3", "file:"+filepath.Join(p.DataDir, "devport.db")+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		var ready int
		_ = db.QueryRow(`SELECT count(*) FROM devservers WHERE state = 'ready'`).Scan(&ready)
		db.Close()
		if ready >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the portal readied no pooled devservers within 30 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}

	s, err := store.Open(ctx, store.Options{Path: filepath.Join(p.DataDir, "devport.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Times with nanoseconds, as older portals stored them.
	s.Now = func() time.Time { return time.Now().UTC() }
	who := store.Actor{Name: "admin@example.com"}
	err = s.InTx(ctx, func(tx *store.Tx) error {
		admin, err := tx.UpsertUser(ctx, "admin@example.com", "Admin", true)
		if err != nil {
			return err
		}
		if err := tx.SetRoles(ctx, admin.ID, []string{"admin"}); err != nil {
			return err
		}
		who.UserID = &admin.ID
		zoe, err := tx.UpsertUser(ctx, "zoë@example.com", "Zoë Ångström — 日本語", true)
		if err != nil {
			return err
		}
		if _, err := tx.SetPreferences(ctx, who, zoe.ID, store.Preferences{Inbox: true, Email: true, Chat: false}, store.Offered{Email: true, Chat: true}); err != nil {
			return err
		}
		d, err := tx.Reserve(ctx, who, store.Reservation{Owner: zoe, Flavor: "vm.small", Region: "ftw"})
		if err != nil {
			return err
		}
		if err := tx.AddHealthCheck(ctx, store.HealthResult{DevserverID: d.ID, OK: true, At: tx.Now()}, "test"); err != nil {
			return err
		}
		if err := tx.AddHealthCheck(ctx, store.HealthResult{DevserverID: d.ID, OK: false, Cause: "disk", Detail: "disque plein — 99 %", At: tx.Now()}, "test"); err != nil {
			return err
		}
		if _, err := tx.RecordHealth(ctx, []store.HealthResult{{DevserverID: d.ID, OK: true, At: tx.Now()}}, "test"); err != nil {
			return err
		}
		title, sev, kind := "Panne réseau à ftw ⚡", 2, "incident"
		regions := []string{"ftw"}
		sv, err := tx.CreateSev(ctx, who, store.SevInput{Title: &title, Severity: &sev, Kind: &kind, Regions: &regions})
		if err != nil {
			return err
		}
		if _, err := tx.AddSevTimeline(ctx, who, sv.ID, store.SevTimelineEntry{At: tx.Now(), Text: "Ça redémarre", Source: "human"}); err != nil {
			return err
		}
		run, err := tx.CreateRun(ctx, who, store.Run{Runbook: "drain-region", Version: 1, ParamsJSON: `{"region":"lla"}`, State: "running", Concurrency: 1, StartedBy: "admin@example.com"},
			[]store.RunStep{{Name: "first", Position: 0, Kind: "manual", NeedsJSON: "[]", State: "pending"}})
		if err != nil {
			return err
		}
		if err := tx.AddRunEvent(ctx, store.RunEvent{RunID: run.ID, Step: "first", Kind: "log", Message: "démarré", Actor: "admin@example.com", At: tx.Now()}); err != nil {
			return err
		}
		if _, err := tx.OpenDrain(ctx, who, store.Drain{Region: "lla", Reason: "maintenance — Wartung", Kind: "exercise", MaxParallel: 2, DeadlineAt: tx.Now().Add(48 * time.Hour), RunID: &run.ID}); err != nil {
			return err
		}
		if _, err := tx.AddClientBundle(ctx, store.Actor{Name: zoe.Email, UserID: &zoe.ID}, store.ClientBundle{Note: "le CLI ne marche pas", Parts: map[string]json.RawMessage{"doctor": json.RawMessage(`{"ok":false}`)}}); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
	// Jobs the portal had not finished when it stopped, and one it had.
	_, err = s.DB().ExecContext(ctx, `INSERT INTO river_job (args, kind, max_attempts, priority, queue, state, scheduled_at, attempt, attempted_at, finalized_at, attempted_by, unique_key, unique_states) VALUES
		(jsonb('{"note":"ä"}'), 'md_available', 5, 2, 'default', 'available', '2026-01-02 03:04:05.123456789+00:00', 0, NULL, NULL, NULL, x'0102ff', 163),
		(jsonb('{"note":"r"}'), 'md_running', 25, 1, 'default', 'running', '2026-01-02 03:04:05+00:00', 1, '2026-01-02 03:04:06+00:00', NULL, jsonb('["vm_old"]'), NULL, NULL),
		(jsonb('{"note":"s"}'), 'md_scheduled', 3, 1, 'default', 'scheduled', '2099-01-02 03:04:05+00:00', 0, NULL, NULL, NULL, NULL, NULL),
		(jsonb('{"note":"c"}'), 'md_completed', 3, 1, 'default', 'completed', '2026-01-02 03:04:05+00:00', 1, '2026-01-02 03:04:06+00:00', '2026-01-02 03:04:07+00:00', jsonb('["vm_old"]'), NULL, NULL)`)
	if err != nil {
		t.Fatalf("seed jobs: %v", err)
	}
	return p.DataDir
}

func itoa(n int) string { return strconv.Itoa(n) }

func digest(rows []string) string {
	h := sha256.New()
	for _, r := range rows {
		h.Write([]byte(r))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// sqliteTables are the devport tables of the SQLite database.
func sqliteTables(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' AND name NOT LIKE 'river%' AND name <> 'goose_db_version' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		_ = rows.Scan(&n)
		out = append(out, n)
	}
	return out
}

type testCol struct {
	name, pgType string
	pk           int
}

// testColumns reads the table's columns from SQLite with their PostgreSQL types.
func testColumns(t *testing.T, src *sql.DB, pg *pgx.Conn, table string) []testCol {
	t.Helper()
	rows, err := src.Query(`SELECT name, pk FROM pragma_table_info(?) ORDER BY cid`, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var cols []testCol
	for rows.Next() {
		var c testCol
		_ = rows.Scan(&c.name, &c.pk)
		if err := pg.QueryRow(context.Background(), `SELECT data_type FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 AND column_name = $2`, table, c.name).Scan(&c.pgType); err != nil {
			t.Fatalf("%s.%s on PostgreSQL: %v", table, c.name, err)
		}
		cols = append(cols, c)
	}
	return cols
}

var pgTestCols = map[string][]testCol{}

// dumpSQLite is the table's rows as canonical text, read raw from SQLite
// (CAST AS TEXT) and normalized here: booleans t/f, times UTC with
// microseconds, NULL \N.
func dumpSQLite(t *testing.T, src *sql.DB, pg *pgx.Conn, table string) []string {
	t.Helper()
	cols := testColumns(t, src, pg, table)
	pgTestCols[table] = cols
	var sel, order []string
	for i, c := range cols {
		sel = append(sel, `CAST("`+c.name+`" AS TEXT) AS out_`+strconv.Itoa(i))
	}
	for i := 1; i <= len(cols); i++ {
		for _, c := range cols {
			if c.pk == i {
				order = append(order, `"`+c.name+`"`)
			}
		}
	}
	rows, err := src.Query(`SELECT ` + strings.Join(sel, ", ") + ` FROM "` + table + `" ORDER BY ` + strings.Join(order, ", "))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	return canonRows(t, rows, cols, func(c testCol, v string) string {
		switch c.pgType {
		case "boolean":
			return map[string]string{"0": "f", "1": "t"}[v]
		case "timestamp with time zone":
			return normTime(t, v, []string{"2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02T15:04:05.999999999Z07:00", "2006-01-02 15:04:05"})
		}
		return v
	})
}

// dumpPostgres is the table's rows as canonical text, read from PostgreSQL as text.
func dumpPostgres(t *testing.T, pg *pgx.Conn, table string) []string {
	t.Helper()
	cols := pgTestCols[table]
	var sel, order []string
	for i, c := range cols {
		sel = append(sel, `CAST("`+c.name+`" AS TEXT) AS out_`+strconv.Itoa(i))
	}
	for i := 1; i <= len(cols); i++ {
		for _, c := range cols {
			if c.pk == i {
				o := `"` + c.name + `"`
				if c.pgType == "text" {
					o += ` COLLATE "C"`
				}
				order = append(order, o)
			}
		}
	}
	ctx := context.Background()
	rows, err := pg.Query(ctx, `SELECT `+strings.Join(sel, ", ")+` FROM "`+table+`" ORDER BY `+strings.Join(order, ", "))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals := make([]*string, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var fields []string
		for i, c := range cols {
			if vals[i] == nil {
				fields = append(fields, `\N`)
				continue
			}
			v := *vals[i]
			switch c.pgType {
			case "boolean":
				v = map[string]string{"true": "t", "false": "f"}[v]
			case "timestamp with time zone":
				v = normTime(t, v, []string{"2006-01-02 15:04:05.999999-07", "2006-01-02 15:04:05.999999-07:00"})
			}
			fields = append(fields, v)
		}
		out = append(out, strings.Join(fields, "\x1f"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func canonRows(t *testing.T, rows *sql.Rows, cols []testCol, norm func(testCol, string) string) []string {
	t.Helper()
	var out []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var fields []string
		for i, c := range cols {
			if !vals[i].Valid {
				fields = append(fields, `\N`)
				continue
			}
			fields = append(fields, norm(c, vals[i].String))
		}
		out = append(out, strings.Join(fields, "\x1f"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func normTime(t *testing.T, v string, layouts []string) string {
	t.Helper()
	for _, l := range layouts {
		if tm, err := time.Parse(l, v); err == nil {
			return tm.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano)
		}
	}
	t.Errorf("time %q in no known layout", v)
	return v
}
