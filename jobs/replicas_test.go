package jobs_test

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"testing"
	"time"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/sim"
	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// replica is one portal process of several on one PostgreSQL database: its
// own store (pools) and its own job runner.
type replica struct {
	s      *store.Store
	runner *jobs.Runner
}

func openReplica(t *testing.T, url, id string, seed uint64) *replica {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, store.Options{URL: url, MaxConns: 16, ReadConns: 4, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	r, err := jobs.New(ctx, jobs.Options{Store: s, Fleet: fleet.New(sim.New(s, sim.Options{Seed: seed})), Log: slog.New(slog.DiscardHandler),
		ReplicaID: id, Workers: 10, NoSchedules: true, JanitorEvery: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return &replica{s: s, runner: r}
}

func (r *replica) start(t *testing.T) {
	t.Helper()
	if err := r.runner.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.runner.Stop(ctx)
	})
}

func count(t *testing.T, s *store.Store, q string, args ...any) int {
	t.Helper()
	var n int
	if err := s.DB().QueryRowContext(context.Background(), s.DB().Rebind(q), args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func TestTwoReplicasRunEachJobOnce(t *testing.T) {
	ctx := context.Background()
	url := storetest.PostgresURL(t)
	const reservations, pooled = 300, 10
	a := openReplica(t, url, "replica-a", 1)
	inv := storetest.SmallRegion(reservations + pooled + 5)
	if _, err := a.s.SeedInventory(ctx, inv); err != nil {
		t.Fatal(err)
	}
	b := openReplica(t, url, "replica-b", 2)
	replicas := []*replica{a, b}
	for _, r := range replicas {
		r.start(t)
	}

	// 60 people reserve 5 devservers each, every other one through the
	// other replica; replica b also refills a pool.
	users := make([]store.User, reservations/5)
	for i := range users {
		users[i] = storetest.User(t, a.s, fmt.Sprintf("u%02d@example.com", i))
	}
	ids := make([]int64, 0, reservations)
	for i := range reservations {
		r := replicas[i%2]
		err := r.s.InTx(ctx, func(tx *store.Tx) error {
			d, err := tx.Reserve(ctx, store.System, store.Reservation{Owner: users[i/5], Flavor: "vm.small", Region: "tst"})
			if err != nil {
				return err
			}
			ids = append(ids, d.ID)
			return r.runner.Enqueue(ctx, tx, jobs.ProvisionArgs{DevserverID: d.ID})
		})
		if err != nil {
			t.Fatalf("reservation %d: %v", i, err)
		}
	}
	err := b.s.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.SetPoolTargets(ctx, store.System, []store.PoolTarget{{Region: "tst", Flavor: "vm.small", Target: pooled}}); err != nil {
			return err
		}
		return b.runner.Enqueue(ctx, tx, jobs.PoolRefillArgs{})
	})
	if err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(90 * time.Second)
	for {
		ready := count(t, a.s, `SELECT COUNT(*) FROM devservers WHERE state = ?`, store.StateReady)
		if ready == reservations+pooled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d devservers ready after 90 s", ready, reservations+pooled)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The completions commit with the devserver's state; give the last
	// transactions a moment to be visible everywhere.
	waitFor(t, "every job completed", func() bool {
		return count(t, a.s, `SELECT COUNT(*) FROM river_job WHERE state <> 'completed'`) == 0
	})

	if n := count(t, a.s, `SELECT COUNT(*) FROM river_job WHERE kind = 'provision_devserver'`); n != reservations+pooled {
		t.Errorf("%d provision jobs, want %d", n, reservations+pooled)
	}
	if n := count(t, a.s, `SELECT COUNT(*) FROM river_job WHERE kind = 'refill_pools'`); n != 1 {
		t.Errorf("%d pool refill jobs, want 1", n)
	}
	if n := count(t, a.s, `SELECT COUNT(*) FROM river_job WHERE attempt <> 1 OR cardinality(attempted_by) <> 1`); n != 0 {
		t.Errorf("%d jobs ran more than once", n)
	}
	var by []struct {
		Replica string `db:"replica"`
		Jobs    int    `db:"jobs"`
	}
	if err := a.s.DB().SelectContext(ctx, &by, `SELECT attempted_by[1] AS replica, COUNT(*) AS jobs FROM river_job GROUP BY attempted_by[1] ORDER BY 1`); err != nil {
		t.Fatal(err)
	}
	if len(by) != 2 || by[0].Replica != "replica-a" || by[1].Replica != "replica-b" || by[0].Jobs < 20 || by[1].Jobs < 20 {
		t.Errorf("jobs by replica = %+v, want both replicas to have done a share", by)
	}
	// Each devserver's instance was created once, whoever ran its job.
	if n := count(t, a.s, `SELECT COUNT(*) FROM sim_instances`); n != reservations+pooled {
		t.Errorf("%d sim instances, want %d (one per devserver)", n, reservations+pooled)
	}
	if n := count(t, a.s, `SELECT COUNT(DISTINCT instance_id) FROM devservers WHERE state = 'ready'`); n != reservations+pooled {
		t.Errorf("%d distinct instances behind the ready devservers, want %d", n, reservations+pooled)
	}
	if n := count(t, a.s, `SELECT COUNT(*) FROM river_leader`); n != 1 {
		t.Errorf("%d River leaders, want 1", n)
	}
	// Periodic jobs are the leader's: the session cleanup that runs at start
	// (every 15 minutes) ran once for the two replicas.
	if n := count(t, a.s, `SELECT COUNT(*) FROM river_job WHERE kind = 'cleanup_sessions'`); n != 1 {
		t.Errorf("%d session cleanups, want 1 (one leader enqueues periodic jobs)", n)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for i := 1; i < len(ids); i++ {
		if ids[i] == ids[i-1] {
			t.Fatalf("devserver %d reserved twice", ids[i])
		}
	}
}

// A replica that stops (here: one that never comes back, recorded as the
// last attempt of a running job) leaves its running jobs to the others at
// once, not after River's rescue window of half an hour.
func TestJobsOfAStoppedReplicaAreRequeued(t *testing.T) {
	ctx := context.Background()
	url := storetest.PostgresURL(t)
	a := openReplica(t, url, "replica-a", 1)
	inv := storetest.SmallRegion(4)
	if _, err := a.s.SeedInventory(ctx, inv); err != nil {
		t.Fatal(err)
	}
	owner := storetest.User(t, a.s, "alice@example.com")
	var d store.Devserver
	err := a.s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if d, err = tx.Reserve(ctx, store.System, store.Reservation{Owner: owner, Flavor: "vm.small", Region: "tst"}); err != nil {
			return err
		}
		return a.runner.Enqueue(ctx, tx, jobs.ProvisionArgs{DevserverID: d.ID})
	})
	if err != nil {
		t.Fatal(err)
	}
	// A replica that died while running the job.
	if _, err := a.s.DB().ExecContext(ctx, `UPDATE river_job SET state = 'running', attempt = 1, attempted_at = now(),
		attempted_by = ARRAY['ghost-1-dead'] WHERE kind = 'provision_devserver'`); err != nil {
		t.Fatal(err)
	}
	// Another replica, alive, with a job of its own (its running jobs are
	// left alone: TestTwoReplicasRunEachJobOnce runs every job once).
	b := openReplica(t, url, "replica-b", 2)
	b.start(t)
	err = b.s.InTx(ctx, func(tx *store.Tx) error {
		d, err := tx.Reserve(ctx, store.System, store.Reservation{Owner: owner, Flavor: "vm.small", Region: "tst"})
		if err != nil {
			return err
		}
		return b.runner.Enqueue(ctx, tx, jobs.ProvisionArgs{DevserverID: d.ID})
	})
	if err != nil {
		t.Fatal(err)
	}

	a.start(t)
	waitFor(t, "the dead replica's job to finish", func() bool {
		got, err := a.s.DevserverByID(ctx, d.ID)
		return err == nil && got.State == store.StateReady
	})
	var lastBy string
	if err := a.s.DB().GetContext(ctx, &lastBy, `SELECT attempted_by[array_upper(attempted_by, 1)] FROM river_job WHERE kind = 'provision_devserver' AND CAST(args->>'devserver_id' AS BIGINT) = $1`, d.ID); err != nil {
		t.Fatal(err)
	}
	if lastBy != "replica-a" && lastBy != "replica-b" {
		t.Errorf("the requeued job last ran on %q, want a live replica", lastBy)
	}
	waitFor(t, "both jobs completed", func() bool {
		return count(t, a.s, `SELECT COUNT(*) FROM river_job WHERE kind = 'provision_devserver' AND state = 'completed'`) == 2
	})
	if n := count(t, a.s, `SELECT COUNT(*) FROM sim_instances`); n != 2 {
		t.Errorf("%d sim instances, want 2", n)
	}
}

// A process that restarts under the same replica ID (a container restarted
// in its pod keeps its hostname and PID 1; only the ID's random part differs,
// and it may not) finds the jobs its earlier self left running and runs
// them: no other replica would, since the ID's lock is held again.
func TestARestartedReplicaWithTheSameIDRunsWhatItLeft(t *testing.T) {
	ctx := context.Background()
	url := storetest.PostgresURL(t)
	a := openReplica(t, url, "replica-a", 1)
	inv := storetest.SmallRegion(4)
	if _, err := a.s.SeedInventory(ctx, inv); err != nil {
		t.Fatal(err)
	}
	owner := storetest.User(t, a.s, "alice@example.com")
	var d store.Devserver
	err := a.s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if d, err = tx.Reserve(ctx, store.System, store.Reservation{Owner: owner, Flavor: "vm.small", Region: "tst"}); err != nil {
			return err
		}
		return a.runner.Enqueue(ctx, tx, jobs.ProvisionArgs{DevserverID: d.ID})
	})
	if err != nil {
		t.Fatal(err)
	}
	// The earlier process with this ID died while running the job.
	if _, err := a.s.DB().ExecContext(ctx, `UPDATE river_job SET state = 'running', attempt = 1, attempted_at = now(),
		attempted_by = ARRAY['replica-a'] WHERE kind = 'provision_devserver'`); err != nil {
		t.Fatal(err)
	}
	a.start(t)
	waitFor(t, "the job its earlier self left to finish", func() bool {
		got, err := a.s.DevserverByID(ctx, d.ID)
		return err == nil && got.State == store.StateReady
	})
}

// A replica whose lock connection breaks takes its lock again, so that the
// other replicas do not go on taking its jobs.
func TestAReplicaTakesItsLockAgain(t *testing.T) {
	ctx := context.Background()
	url := storetest.PostgresURL(t)
	a := openReplica(t, url, "replica-a", 1)
	a.start(t)
	holder := func() int {
		t.Helper()
		var pids []int
		err := a.s.DB().SelectContext(ctx, &pids, `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2
			AND classid = 1684371058 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) > 1 {
			t.Fatalf("%d replica locks, want 1", len(pids))
		}
		if len(pids) == 0 {
			return 0
		}
		return pids[0]
	}
	first := holder()
	if first == 0 {
		t.Fatal("the replica holds no lock")
	}
	if _, err := a.s.DB().ExecContext(ctx, `SELECT pg_terminate_backend($1)`, first); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replica to take its lock again", func() bool {
		p := holder()
		return p != 0 && p != first
	})
}
