package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// The replica processes TestDrainSurvivesReplicaKill starts: this test
// binary running only TestReplicaChild, serving from a data directory on a
// PostgreSQL database.
const (
	replicaChildDir     = "DEVPORT_TEST_REPLICA_CHILD_DIR"
	replicaChildDB      = "DEVPORT_TEST_REPLICA_CHILD_DB"
	replicaChildBackups = "DEVPORT_TEST_REPLICA_CHILD_BACKUPS"
	replicaChildLatency = "DEVPORT_TEST_REPLICA_CHILD_LATENCY"
)

// TestReplicaChild is a replica process that TestDrainSurvivesReplicaKill
// starts and kills; on its own it does nothing.
func TestReplicaChild(t *testing.T) {
	dir := os.Getenv(replicaChildDir)
	if dir == "" {
		t.Skip("a process TestDrainSurvivesReplicaKill starts and kills; not a test on its own")
	}
	args := []string{"devport", "serve", "--addr", "127.0.0.1:0", "--ssh-addr", "127.0.0.1:0", "--data-dir", dir,
		"--database-url", os.Getenv(replicaChildDB), "--backup-dir", os.Getenv(replicaChildBackups),
		"--sim-latency", os.Getenv(replicaChildLatency), "--pool-interval", "0s"}
	if err := run(context.Background(), args, func(string) string { return "" }, os.Stdout); err != nil {
		fmt.Println("run:", err)
		os.Exit(1)
	}
}

// startReplica starts a replica of the portal on the PostgreSQL database
// dbURL and waits until it logged its replica ID.
func startReplica(t *testing.T, dir, dbURL, backups, latency string) *crashPortal {
	t.Helper()
	p := startChildPortal(t, "TestReplicaChild", []string{replicaChildDir + "=" + dir, replicaChildDB + "=" + dbURL, replicaChildBackups + "=" + backups, replicaChildLatency + "=" + latency})
	select {
	case p.id = <-p.ids:
	case <-time.After(10 * time.Second):
		t.Fatalf("the replica did not log its replica ID:\n%s", p.log())
	}
	return p
}

// copySecrets gives dst's data directory the secrets of src's: every
// replica of a portal shares them.
func copySecrets(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dst, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(src, "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, "secrets", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, "secrets", e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDrainSurvivesReplicaKill runs a region drain on replica A, starts
// replica B on the same PostgreSQL database (another data directory with a
// copy of A's secrets, the shared backup store), kills A with SIGKILL while
// it runs jobs of the drain, and checks that B finishes the drain at once
// (it requeues the dead replica's jobs; River's rescuer would wait half an
// hour) with no devserver lost or duplicated and every owner told once.
func TestDrainSurvivesReplicaKill(t *testing.T) {
	if os.Getenv(replicaChildDir) != "" || os.Getenv(crashChildDir) != "" {
		t.Skip("in the child")
	}
	ctx := context.Background()
	dbURL := storetest.PostgresURL(t)
	dirA, dirB, backups := t.TempDir(), t.TempDir(), t.TempDir()
	newToken := tokenMaker(t, "--data-dir", dirA, "--database-url", dbURL)
	admin := newToken("admin@example.com", "admin")
	owners := []string{newToken("ann@example.com"), newToken("bob@example.com"), newToken("cai@example.com")}

	a := startReplica(t, dirA, dbURL, backups, "150ms")
	names := reserveReady(t, a, admin, owners, 15)
	a.api(t, admin, "POST", "/api/v1/regions/prn/drain", `{"reason":"replica kill drill","max_parallel":2}`, http.StatusAccepted)

	db, err := store.OpenWithoutMigrating(ctx, store.Options{URL: dbURL, MaxConns: 4, ReadConns: 2, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func(q string, args ...any) int {
		t.Helper()
		var n int
		if err := db.DB().QueryRowContext(ctx, db.DB().Rebind(q), args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	within(t, 60*time.Second, "the drain to be under way", func() bool { n := a.movedOutOfPRN(t, admin, names); return n >= 2 && n < 15 })

	copySecrets(t, dirA, dirB)
	b := startReplica(t, dirB, dbURL, backups, "150ms")
	if a.id == b.id {
		t.Fatalf("both replicas are %s", a.id)
	}
	// Freeze A while it runs a job, so that the kill lands in the middle of one.
	running := `SELECT COUNT(*) FROM river_job WHERE state = 'running' AND attempted_by[array_upper(attempted_by, 1)] = ?`
	var orphans int
	within(t, 60*time.Second, "replica A to be running a job of the drain", func() bool {
		_ = a.cmd.Process.Signal(syscall.SIGSTOP)
		if orphans = count(running, a.id); orphans > 0 {
			return true
		}
		_ = a.cmd.Process.Signal(syscall.SIGCONT)
		return false
	})
	a.kill()
	t.Logf("killed replica %s with %d running jobs", a.id, orphans)

	defer func() {
		if t.Failed() {
			t.Logf("replica B's log:\n%s", b.log())
		}
	}()
	within(t, 60*time.Second, "replica B to finish the drain", func() bool { return b.prnDrained(t, admin) })
	if want := fmt.Sprintf("Requeued %d jobs of stopped replica %s", orphans, a.id); !strings.Contains(b.log(), "Requeued") || !strings.Contains(b.log(), a.id) {
		t.Errorf("replica B's log does not say %q", want)
	}
	b.kill()

	for _, name := range names {
		var row struct {
			Region    string `db:"region"`
			State     string `db:"state"`
			Host      string `db:"host"`
			Instance  string `db:"instance_id"`
			InstHost  string `db:"inst_host"`
			InstState string `db:"inst_state"`
		}
		err := db.DB().GetContext(ctx, &row, db.DB().Rebind(`SELECT d.region, d.state, h.name AS host, d.instance_id, COALESCE(i.host, '') AS inst_host, COALESCE(i.state, '') AS inst_state
FROM devservers d JOIN hosts h ON h.id = d.host_id LEFT JOIN sim_instances i ON i.id = d.instance_id WHERE d.name = ?`), name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if row.Region == "prn" || row.State != "ready" || row.InstHost != row.Host || row.InstState != "running" {
			t.Errorf("%s after the drain: region %s, %s, on %s; its instance %s is %s on %q", name, row.Region, row.State, row.Host, row.Instance, row.InstState, row.InstHost)
		}
	}
	if n := count(`SELECT COUNT(*) FROM devservers WHERE owner_id IS NOT NULL AND state NOT IN ('released', 'failed')`); n != len(names) {
		t.Errorf("%d live owned devservers, want %d: a devserver was lost or duplicated", n, len(names))
	}
	if n := count(`SELECT COUNT(*) FROM sim_instances WHERE state = 'running' AND id NOT IN (SELECT instance_id FROM devservers WHERE state = 'ready')`); n != 0 {
		t.Errorf("%d running sim instances belong to no ready devserver", n)
	}
	if n := count(`SELECT COUNT(*) FROM sim_instances WHERE state = 'running'`); n != len(names) {
		t.Errorf("%d running sim instances for %d devservers", n, len(names))
	}
	if n := count(`SELECT COUNT(*) FROM notifications WHERE idempotency_key LIKE 'drain:%'`); n != 3 {
		t.Errorf("%d drain notifications for 3 owners", n)
	}
	if n := count(`SELECT COALESCE(SUM(used_cpus), 0) FROM hosts WHERE region = 'prn'`); n != 0 {
		t.Errorf("prn's hosts still have %d CPUs in use", n)
	}
	// Each devserver moved once: one finished drain item each.
	if n := count(`SELECT COUNT(*) FROM drain_items WHERE state = 'done'`); n != len(names) {
		t.Errorf("%d drain items done, want %d", n, len(names))
	}
}
