package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/sim"
	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// testClock is a clock tests move by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// backupRig is a started job runner on a small inventory, with a backup
// store in a temporary folder and a clock the test moves.
type backupRig struct {
	s      *store.Store
	sim    *sim.Driver
	runner *Runner
	clock  *testClock
	dir    string
	owner  store.User
	opts   Options
}

func newBackupRig(t *testing.T, o Options) *backupRig {
	t.Helper()
	inv := storetest.SmallRegion(6)
	s := storetest.Seeded(t, &inv)
	clock := &testClock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	s.Now = clock.Now
	d := sim.New(s, sim.Options{Seed: 11})
	o.Store, o.Fleet, o.Log = s, fleet.New(d), slog.New(slog.DiscardHandler)
	o.BackupDir = filepath.Join(t.TempDir(), "backups")
	r, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Stop(ctx)
	})
	return &backupRig{s: s, sim: d, runner: r, clock: clock, dir: o.BackupDir, owner: storetest.User(t, s, "alice@example.com"), opts: o}
}

func (g *backupRig) reserve(t *testing.T, owner store.User, until *time.Time) store.Devserver {
	t.Helper()
	ctx := context.Background()
	var d store.Devserver
	err := g.s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if d, err = tx.Reserve(ctx, store.System, store.Reservation{Owner: owner, Flavor: "vm.small", Region: "tst", LeaseUntil: until}); err != nil {
			return err
		}
		return g.runner.Enqueue(ctx, tx, ProvisionArgs{DevserverID: d.ID})
	})
	if err != nil {
		t.Fatal(err)
	}
	return g.waitState(t, d.ID, store.StateReady)
}

func (g *backupRig) waitState(t *testing.T, id int64, state string) store.Devserver {
	t.Helper()
	var d store.Devserver
	eventually(t, "devserver to be "+state, func() bool {
		var err error
		d, err = g.s.DevserverByID(context.Background(), id)
		return err == nil && d.State == state
	})
	return d
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (g *backupRig) exec(t *testing.T, d store.Devserver, cmd ...string) string {
	t.Helper()
	res, err := g.sim.Exec(context.Background(), d.InstanceID, cmd)
	if err != nil {
		t.Fatalf("exec %v: %v", cmd, err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("exec %v: exit %d: %s", cmd, res.ExitCode, res.Output)
	}
	return res.Output
}

// backUp requests a backup of kind and waits until it is no longer pending.
func (g *backupRig) backUp(t *testing.T, d store.Devserver, kind string) store.Backup {
	t.Helper()
	ctx := context.Background()
	var b store.Backup
	err := g.s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if b, err = tx.RequestBackup(ctx, store.System, d, kind); err != nil {
			return err
		}
		return g.runner.Enqueue(ctx, tx, BackupArgs{BackupID: b.ID})
	})
	if err != nil {
		t.Fatal(err)
	}
	return g.waitBackup(t, b.ID)
}

func (g *backupRig) waitBackup(t *testing.T, id int64) store.Backup {
	t.Helper()
	var b store.Backup
	eventually(t, "backup to finish", func() bool {
		var err error
		b, err = g.s.Backup(context.Background(), id)
		return err == nil && b.State != store.BackupPending
	})
	return b
}

func (g *backupRig) restore(t *testing.T, b store.Backup, target store.Devserver) store.Restore {
	t.Helper()
	ctx := context.Background()
	var r store.Restore
	err := g.s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if r, err = tx.RequestRestore(ctx, store.System, b, target); err != nil {
			return err
		}
		return g.runner.Enqueue(ctx, tx, RestoreArgs{RestoreID: r.ID})
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "restore to finish", func() bool {
		r, err = g.s.RestoreByID(ctx, r.ID)
		return err == nil && !r.InFlight()
	})
	return r
}

// files lists the backup store's files, temporary ones included.
func (g *backupRig) files(t *testing.T) []string {
	t.Helper()
	es, err := os.ReadDir(g.dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func fileSHA256(t *testing.T, path string) (string, int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), int64(len(b))
}

func TestBackupAndRestoreRoundTrip(t *testing.T) {
	g := newBackupRig(t, Options{})
	d := g.reserve(t, g.owner, nil)
	original := map[string]string{
		".bashrc":            "export EDITOR=vim\nalias ll='ls -l'\n",
		"src/main.go":        "package main\n\nfunc main() { println(\"héllo, wörld\") }\n",
		"notes/unicode.txt":  "tabs\there, a quote \" and a backslash \\ and emoji 🚀\r\n",
		"notes/empty-ish.md": " ",
	}
	for p, c := range original {
		g.exec(t, d, "write", p, c)
	}

	b := g.backUp(t, d, store.BackupManual)
	if b.State != store.BackupDone {
		t.Fatalf("backup is %s: %s", b.State, b.Error)
	}
	t.Run("the stored file's SHA-256 and size are the row's", func(t *testing.T) {
		sum, size := fileSHA256(t, filepath.Join(g.dir, b.Location))
		if sum != b.SHA256 || size != b.SizeBytes || size == 0 {
			t.Errorf("file %s (%d bytes), row %s (%d bytes)", sum, size, b.SHA256, b.SizeBytes)
		}
	})
	t.Run("the store is private: folder 0700, files 0600", func(t *testing.T) {
		st, err := os.Stat(g.dir)
		if err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("folder mode %v (%v)", st.Mode().Perm(), err)
		}
		fst, err := os.Stat(filepath.Join(g.dir, b.Location))
		if err != nil || fst.Mode().Perm() != 0o600 {
			t.Errorf("file mode %v (%v)", fst.Mode().Perm(), err)
		}
	})

	g.exec(t, d, "write", ".bashrc", "overwritten")
	g.exec(t, d, "write", "src/main.go", "broken")
	g.exec(t, d, "write", "new-after-backup.txt", "should vanish")

	r := g.restore(t, b, d)
	if r.State != store.RestoreDone {
		t.Fatalf("restore is %s at %s: %s", r.State, r.Step, r.Error)
	}
	t.Run("cat gives the original bytes", func(t *testing.T) {
		for p, c := range original {
			if got := g.exec(t, d, "cat", p); got != c {
				t.Errorf("%s = %q, want %q", p, got, c)
			}
		}
		if ls := g.exec(t, d, "ls"); strings.Contains(ls, "new-after-backup.txt") {
			t.Errorf("a file written after the backup survived the restore: %s", ls)
		}
	})
	t.Run("a pre_restore backup holds what the restore replaced", func(t *testing.T) {
		if r.PreBackupID == nil {
			t.Fatal("no pre_restore backup recorded")
		}
		pre, err := g.s.Backup(context.Background(), *r.PreBackupID)
		if err != nil || pre.Kind != store.BackupPreRestore || pre.State != store.BackupDone {
			t.Fatalf("pre_restore backup %+v (%v)", pre, err)
		}
		content, err := os.ReadFile(filepath.Join(g.dir, pre.Location))
		if err != nil || !strings.Contains(string(content), "overwritten") {
			t.Errorf("pre_restore backup does not hold the overwritten data: %q (%v)", content, err)
		}
	})
	t.Run("the owner is told in the inbox", func(t *testing.T) {
		ns, err := g.s.Notifications(context.Background(), g.owner.ID, 0, 10)
		if err != nil || len(ns) != 1 || !strings.Contains(ns[0].Title, "restored onto "+d.Name) {
			t.Errorf("notifications %+v (%v)", ns, err)
		}
	})
}

func TestBackupJob(t *testing.T) {
	g := newBackupRig(t, Options{MaxAttempts: map[string]int{BackupArgs{}.Kind(): 3}})
	d := g.reserve(t, g.owner, nil)
	g.exec(t, d, "write", "a.txt", "one")

	t.Run("a retried job makes one file", func(t *testing.T) {
		g.sim.FailNext(sim.OpBackup, 2)
		b := g.backUp(t, d, store.BackupManual)
		if b.State != store.BackupDone {
			t.Fatalf("backup is %s: %s", b.State, b.Error)
		}
		if files := g.files(t); len(files) != 1 || files[0] != b.Location {
			t.Errorf("backup store holds %v, want only %s", files, b.Location)
		}
	})
	t.Run("a backup the fleet keeps failing is recorded as failed with the error", func(t *testing.T) {
		g.sim.FailNext(sim.OpBackup, 3)
		b := g.backUp(t, d, store.BackupManual)
		if b.State != store.BackupFailed || !strings.Contains(b.Error, "simulated failure") || b.Location != "" {
			t.Errorf("backup %+v", b)
		}
		if files := g.files(t); len(files) != 1 {
			t.Errorf("a failed backup left files: %v", files)
		}
	})
	t.Run("a second manual backup while one is pending is refused", func(t *testing.T) {
		ctx := context.Background()
		err := g.s.InTx(ctx, func(tx *store.Tx) error {
			if _, err := tx.RequestBackup(ctx, store.System, d, store.BackupManual); err != nil {
				return err
			}
			_, err := tx.RequestBackup(ctx, store.System, d, store.BackupManual)
			return err
		})
		var ce *store.ConflictError
		if !errors.As(err, &ce) || ce.Code != "backup_in_progress" {
			t.Errorf("err = %v, want backup_in_progress", err)
		}
	})
}

func TestRestoreRefusesADamagedBackup(t *testing.T) {
	g := newBackupRig(t, Options{})
	d := g.reserve(t, g.owner, nil)
	g.exec(t, d, "write", "a.txt", "precious")
	b := g.backUp(t, d, store.BackupManual)
	if err := os.WriteFile(filepath.Join(g.dir, b.Location), []byte(`{"a.txt":"tampered"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	g.exec(t, d, "write", "a.txt", "current")

	r := g.restore(t, b, d)
	if r.State != store.RestoreFailed || r.Step != store.RestoreStepVerify || !strings.Contains(r.Error, "damaged") {
		t.Errorf("restore %+v", r)
	}
	if got := g.exec(t, d, "cat", "a.txt"); got != "current" {
		t.Errorf("a.txt = %q after a refused restore, want it unchanged", got)
	}
	if r.PreBackupID != nil {
		t.Errorf("a pre_restore backup was taken although the restore was refused at verification")
	}
}

func TestReleaseTakesABackupFirst(t *testing.T) {
	// No periodic schedule: a scheduled backup at start would race the count below.
	g := newBackupRig(t, Options{NoSchedules: true})
	d := g.reserve(t, g.owner, nil)
	other := g.reserve(t, g.owner, nil)
	g.exec(t, d, "write", "thesis.tex", "\\section{Results}")
	ctx := context.Background()
	err := g.s.InTx(ctx, func(tx *store.Tx) error {
		_, needsFleet, err := tx.StartRelease(ctx, store.System, d)
		if err != nil || !needsFleet {
			return err
		}
		return g.runner.Enqueue(ctx, tx, ReleaseArgs{DevserverID: d.ID})
	})
	if err != nil {
		t.Fatal(err)
	}
	g.waitState(t, d.ID, store.StateReleased)

	bs, err := g.s.Backups(ctx, store.BackupFilter{DevserverID: d.ID})
	if err != nil || len(bs) != 1 || bs[0].Kind != store.BackupPreRelease || bs[0].State != store.BackupDone {
		t.Fatalf("backups after release: %+v (%v)", bs, err)
	}
	t.Run("it restores onto another of the owner's devservers", func(t *testing.T) {
		r := g.restore(t, bs[0], other)
		if r.State != store.RestoreDone {
			t.Fatalf("restore %+v", r)
		}
		if got := g.exec(t, other, "cat", "thesis.tex"); got != "\\section{Results}" {
			t.Errorf("thesis.tex = %q", got)
		}
	})
	t.Run("a devserver released before it was ready has no backup", func(t *testing.T) {
		var p store.Devserver
		err := g.s.InTx(ctx, func(tx *store.Tx) error {
			var err error
			p, err = tx.Reserve(ctx, store.System, store.Reservation{Owner: g.owner, Flavor: "vm.small", Region: "tst"})
			if err != nil {
				return err
			}
			_, needsFleet, err := tx.StartRelease(ctx, store.System, p)
			if err != nil || !needsFleet {
				return err
			}
			return g.runner.Enqueue(ctx, tx, ReleaseArgs{DevserverID: p.ID})
		})
		if err != nil {
			t.Fatal(err)
		}
		g.waitState(t, p.ID, store.StateReleased)
		if bs, _ := g.s.Backups(ctx, store.BackupFilter{DevserverID: p.ID}); len(bs) != 0 {
			t.Errorf("backups %+v", bs)
		}
	})
}

func TestRestoreRefusesAnotherOwnersBackup(t *testing.T) {
	g := newBackupRig(t, Options{})
	bob := storetest.User(t, g.s, "bob@example.com")
	d := g.reserve(t, g.owner, nil)
	theirs := g.reserve(t, bob, nil)
	b := g.backUp(t, d, store.BackupManual)
	ctx := context.Background()
	err := g.s.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.RequestRestore(ctx, store.System, b, theirs)
		return err
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("err = %v, want not found", err)
	}
}

func TestScheduledBackupsAndRetention(t *testing.T) {
	// The test drives the schedule by hand: the periodic one would race it.
	g := newBackupRig(t, Options{NoSchedules: true, BackupInterval: 24 * time.Hour, BackupRetention: Retention{KeepLast: 2, KeepDays: 3}})
	ctx := context.Background()
	a := g.reserve(t, g.owner, nil)
	b := g.reserve(t, g.owner, nil)
	w := &backupScheduleWorker{s: g.s, r: g.runner, files: backupFiles{dir: g.dir}, interval: 24 * time.Hour,
		retention: Retention{KeepLast: 2, KeepDays: 3}, log: slog.New(slog.DiscardHandler)}
	tick := func(t *testing.T) {
		t.Helper()
		if err := w.Work(ctx, nil); err != nil {
			t.Fatal(err)
		}
		eventually(t, "scheduled backups to finish", func() bool {
			bs, err := g.s.Backups(ctx, store.BackupFilter{State: store.BackupPending})
			return err == nil && len(bs) == 0
		})
	}
	done := func(d store.Devserver) []store.Backup {
		bs, err := g.s.Backups(ctx, store.BackupFilter{DevserverID: d.ID, State: store.BackupDone})
		if err != nil {
			t.Fatal(err)
		}
		return bs
	}
	// a has a fresh manual backup; b has none.
	g.backUp(t, a, store.BackupManual)

	t.Run("backs up only devservers whose newest backup is older than the interval", func(t *testing.T) {
		g.clock.Add(time.Hour)
		tick(t)
		if n := len(done(a)); n != 1 {
			t.Errorf("a has %d backups, want its manual one only", n)
		}
		bs := done(b)
		if len(bs) != 1 || bs[0].Kind != store.BackupScheduled {
			t.Errorf("b's backups: %+v", bs)
		}
		tick(t) // a rerun within the interval takes nothing new
		if len(done(a)) != 1 || len(done(b)) != 1 {
			t.Errorf("a rerun took backups again")
		}
	})
	t.Run("a day later both are backed up", func(t *testing.T) {
		g.clock.Add(24 * time.Hour)
		tick(t)
		if len(done(a)) != 2 || len(done(b)) != 2 {
			t.Errorf("a has %d, b has %d backups, want 2 each", len(done(a)), len(done(b)))
		}
	})
	t.Run("retention keeps the last N and one per day for M days", func(t *testing.T) {
		for range 6 {
			g.clock.Add(24 * time.Hour)
			tick(t)
		}
		tick(t) // retention sees the last tick's backups too
		now := g.s.Now()
		kept := done(b)
		// Daily backups on each of the last 3 days (the newest two among them).
		if len(kept) != 3 {
			t.Fatalf("b keeps %d backups, want 3: %+v", len(kept), kept)
		}
		for _, k := range kept {
			if now.Sub(k.CreatedAt) > 3*24*time.Hour {
				t.Errorf("kept a backup from %s, older than 3 days", k.CreatedAt)
			}
		}
		deleted, err := g.s.Backups(ctx, store.BackupFilter{DevserverID: b.ID, State: store.BackupDeleted})
		if err != nil || len(deleted) == 0 {
			t.Fatalf("no deleted backups (%v)", err)
		}
		for _, del := range deleted {
			if _, err := os.Stat(filepath.Join(g.dir, del.Location)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the file of deleted backup %d is still there (%v)", del.ID, err)
			}
		}
		for _, k := range kept {
			if _, err := os.Stat(filepath.Join(g.dir, k.Location)); err != nil {
				t.Errorf("the file of kept backup %d: %v", k.ID, err)
			}
		}
	})
}
