package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// capacityInventory is two active regions with hosts that fit a few
// devservers of two flavours, so reservations and migrations run out of room.
func capacityInventory() store.DemoInventory {
	demo := store.Demo("sim")
	inv := store.DemoInventory{Features: demo.Features}
	inv.Regions = []store.Region{
		{Code: "tst", Name: "Test", Status: "active", Position: 1},
		{Code: "alt", Name: "Alternative", Status: "active", Position: 2},
	}
	for _, f := range demo.Flavors {
		if f.Name == "vm.small" || f.Name == "vm.medium" {
			inv.Flavors = append(inv.Flavors, f)
		}
	}
	inv.Hosts = []store.Host{
		{Name: "tst-hv01", Region: "tst", Kind: "hypervisor", Driver: "sim", State: "ready", CPUs: 8, MemoryGB: 32, DiskGB: 400},
		{Name: "tst-hv02", Region: "tst", Kind: "hypervisor", Driver: "sim", State: "ready", CPUs: 6, MemoryGB: 24, DiskGB: 300},
		{Name: "alt-hv01", Region: "alt", Kind: "hypervisor", Driver: "sim", State: "ready", CPUs: 8, MemoryGB: 32, DiskGB: 400},
	}
	return inv
}

// hostUse is a host's used capacity.
type hostUse struct{ CPUs, MemoryGB, DiskGB, GPUs int }

// checkCapacity asserts the capacity invariant: every host's used_* is the
// sum of the flavours of what holds capacity on it, that is the devservers
// that are not released or failed, and each running migration's other side
// (its target before the switch, its source after it).
func checkCapacity(t *testing.T, s *store.Store, when string) {
	t.Helper()
	var rows []struct {
		Name string `db:"name"`
		hostUse
		Want hostUse `db:"want"`
	}
	err := s.DB().SelectContext(context.Background(), &rows, `
WITH held AS (
    SELECT d.host_id AS host_id, d.flavor AS flavor FROM devservers d WHERE d.state NOT IN ('released', 'failed')
    UNION ALL
    SELECT CASE WHEN m.step = 'release_source' THEN m.from_host_id ELSE m.to_host_id END,
           CASE WHEN m.step = 'release_source' THEN m.from_flavor ELSE m.to_flavor END
    FROM devserver_migrations m WHERE m.state = 'running'
)
SELECT h.name AS name, h.used_cpus AS cpus, h.used_memory_gb AS memorygb, h.used_disk_gb AS diskgb, h.used_gpus AS gpus,
       COALESCE(SUM(f.cpus), 0) AS "want.cpus", COALESCE(SUM(f.memory_gb), 0) AS "want.memorygb",
       COALESCE(SUM(f.disk_gb), 0) AS "want.diskgb", COALESCE(SUM(f.gpus), 0) AS "want.gpus"
FROM hosts h LEFT JOIN held ON held.host_id = h.id LEFT JOIN flavors f ON f.name = held.flavor
GROUP BY h.id ORDER BY h.name`)
	if err != nil {
		t.Fatalf("%s: capacity: %v", when, err)
	}
	for _, r := range rows {
		if r.hostUse != r.Want {
			t.Errorf("%s: host %s uses %+v, but what holds capacity on it adds up to %+v", when, r.Name, r.hostUse, r.Want)
		}
		if r.CPUs < 0 || r.MemoryGB < 0 || r.DiskGB < 0 || r.GPUs < 0 {
			t.Errorf("%s: host %s uses negative capacity %+v", when, r.Name, r.hostUse)
		}
	}
}

// TestCapacityProperty runs random sequences of what jobs and people do to
// devservers (reserve, provisioned, failed, release, released, migrate,
// migration steps, switch, finish, roll back), each job effect sometimes
// twice as a retried or rescued job would, and checks after every step that
// the hosts' used capacity is exactly what the devservers hold.
func TestCapacityProperty(t *testing.T) {
	for seed := uint64(1); seed <= 12; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { capacityRun(t, seed, 150) })
	}
}

func capacityRun(t *testing.T, seed uint64, steps int) {
	ctx := context.Background()
	inv := capacityInventory()
	s := storetest.Seeded(t, &inv)
	rng := rand.New(rand.NewPCG(seed, 99))
	users := []store.User{
		storetest.User(t, s, "a@example.com", store.RoleAdmin),
		storetest.User(t, s, "b@example.com", store.RoleAdmin),
	}
	flavors := []string{"vm.small", "vm.medium"}
	regions := []string{"tst", "alt"}
	inTx := func(f func(tx *store.Tx) error) error { return s.InTx(ctx, f) }
	// ignore tolerates what a real caller meets when the world moved on.
	ignore := func(err error) error {
		var ce *store.ConflictError
		var qe *store.QuotaError
		var ve *store.ValidationError
		if errors.As(err, &ce) || errors.As(err, &qe) || errors.As(err, &ve) {
			return nil
		}
		return err
	}
	pick := func(state string) (store.Devserver, bool) {
		ds, err := s.Devservers(ctx, store.DevserverFilter{State: state, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var c []store.Devserver
		for _, d := range ds {
			if d.State == state {
				c = append(c, d)
			}
		}
		if len(c) == 0 {
			return store.Devserver{}, false
		}
		return c[rng.IntN(len(c))], true
	}
	running := func() (store.DevserverMigration, bool) {
		d, ok := pick(store.StateMigrating)
		if !ok {
			return store.DevserverMigration{}, false
		}
		m, err := s.LatestMigration(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		return m, true
	}
	// twice runs a job's final effect once or, as a retried or rescued job
	// would, twice.
	twice := func(f func(tx *store.Tx) error) error {
		n := 1 + rng.IntN(2)
		for range n {
			if err := inTx(f); err != nil {
				return err
			}
		}
		return nil
	}
	for step := range steps {
		var op string
		var err error
		switch rng.IntN(9) {
		case 0, 1:
			op = "reserve"
			err = inTx(func(tx *store.Tx) error {
				u := users[rng.IntN(len(users))]
				_, err := tx.Reserve(ctx, store.System, store.Reservation{Owner: u, Flavor: flavors[rng.IntN(2)], Region: regions[rng.IntN(2)]})
				return ignore(err)
			})
		case 2:
			op = "ready"
			if d, ok := pick(store.StateProvisioning); ok {
				err = twice(func(tx *store.Tx) error {
					_, err := tx.MarkReady(ctx, d.ID, fmt.Sprintf("sim-%d", d.ID), "2001:db8::1")
					return err
				})
			}
		case 3:
			op = "fail"
			if d, ok := pick(store.StateProvisioning); ok {
				err = twice(func(tx *store.Tx) error { return tx.MarkFailed(ctx, d.ID, "injected") })
			}
		case 4:
			op = "release"
			st := []string{store.StateProvisioning, store.StateReady, store.StateFailed}[rng.IntN(3)]
			if d, ok := pick(st); ok {
				err = inTx(func(tx *store.Tx) error {
					_, _, err := tx.StartRelease(ctx, store.System, d)
					return ignore(err)
				})
			}
		case 5:
			op = "released"
			if d, ok := pick(store.StateReleasing); ok {
				err = twice(func(tx *store.Tx) error { return tx.MarkReleased(ctx, d.ID) })
			}
		case 6:
			op = "migrate"
			if d, ok := pick(store.StateReady); ok {
				err = inTx(func(tx *store.Tx) error {
					_, err := tx.StartMigration(ctx, store.System, d, regions[rng.IntN(2)], flavors[rng.IntN(2)])
					return ignore(err)
				})
			}
		case 7:
			op = "migration step"
			if m, ok := running(); ok {
				if m.Step == store.StepReleaseSource {
					op = "finish migration"
					err = twice(func(tx *store.Tx) error { return tx.FinishMigration(ctx, m) })
				} else {
					op = "switch"
					m.ToInstanceID, m.ToAddress = fmt.Sprintf("sim-m%d", m.ID), "2001:db8::2"
					err = inTx(func(tx *store.Tx) error { return tx.SwitchMigration(ctx, m) })
				}
			}
		case 8:
			op = "roll back migration"
			if m, ok := running(); ok && m.Step != store.StepReleaseSource {
				err = twice(func(tx *store.Tx) error { return tx.RollBackMigration(ctx, m, errors.New("injected")) })
			}
		}
		if err != nil {
			t.Fatalf("step %d (%s): %v", step, op, err)
		}
		checkCapacity(t, s, fmt.Sprintf("after step %d (%s)", step, op))
		if t.Failed() {
			return
		}
	}
}

// TestNoMigrationWhileRestoring: a migration started while a backup is
// being restored onto the devserver would copy it before the restore wrote
// its data, and the restore would be lost at the switch. It is refused, and
// changes nothing.
func TestNoMigrationWhileRestoring(t *testing.T) {
	ctx := context.Background()
	inv := capacityInventory()
	s := storetest.Seeded(t, &inv)
	u := storetest.User(t, s, "a@example.com", store.RoleAdmin)
	var d store.Devserver
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if d, err = tx.Reserve(ctx, store.System, store.Reservation{Owner: u, Flavor: "vm.small", Region: "tst"}); err != nil {
			return err
		}
		if _, err := tx.MarkReady(ctx, d.ID, "sim-1", "2001:db8::1"); err != nil {
			return err
		}
		if d, err = tx.DevserverByID(ctx, d.ID); err != nil {
			return err
		}
		b, err := tx.RequestBackup(ctx, store.System, d, store.BackupManual)
		if err != nil {
			return err
		}
		if _, err := tx.FinishBackup(ctx, b.ID, 2, "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "x.backup"); err != nil {
			return err
		}
		if b, err = tx.BackupByID(ctx, b.ID); err != nil {
			return err
		}
		_, err = tx.RequestRestore(ctx, store.System, b, d)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := s.Host(ctx, d.HostID)
	err = s.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.StartMigration(ctx, store.System, d, "alt", "")
		return err
	})
	var ce *store.ConflictError
	if !errors.As(err, &ce) || ce.Code != "restore_in_progress" {
		t.Fatalf("migrating while restoring: %v, want a restore_in_progress conflict", err)
	}
	after, _ := s.Devserver(ctx, d.Name)
	if after.State != store.StateReady {
		t.Errorf("devserver %s after a refused migration", after.State)
	}
	if h, _ := s.Host(ctx, d.HostID); h != before {
		t.Errorf("host changed: %+v, was %+v", h, before)
	}
	checkCapacity(t, s, "after a refused migration")
}
