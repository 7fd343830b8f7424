package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/riverqueue/river"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/store"
)

// BackupArgs takes one backup: it streams the devserver's persistent data
// from the fleet into a file in the backup store.
type BackupArgs struct {
	BackupID int64 `json:"backup_id"`
}

// Kind names the job.
func (BackupArgs) Kind() string { return "backup_devserver" }

// InsertOpts retries a backup a few times: a fleet hiccup should not cost
// the owner a day's backup.
func (BackupArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 5} }

// errNoBackupStore is what a backup meets when no backup directory is configured.
var errNoBackupStore = errors.New("no backup directory is configured (DEVPORT_BACKUP_DIR)")

// backupFiles is the backup store: one file per backup in one private folder.
type backupFiles struct {
	dir string
}

// name is a backup's file name in the store, the same on every attempt, so a
// retried job replaces its own file rather than making a second one.
func (bf backupFiles) name(b store.Backup) string {
	return filepath.Base(b.Devserver) + "-" + strconv.FormatInt(b.ID, 10) + ".backup"
}

func (bf backupFiles) path(location string) (string, error) {
	if bf.dir == "" {
		return "", errNoBackupStore
	}
	if location == "" || location != filepath.Base(location) {
		return "", fmt.Errorf("backup location %q is not a file in the backup store", location)
	}
	return filepath.Join(bf.dir, location), nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// write streams the instance's data into the backup's file: a temporary file
// first, renamed into place once complete, so the store never holds half a
// backup under a backup's name. It returns the size, the SHA-256 and the
// file's location (its name in the store).
func (bf backupFiles) write(ctx context.Context, drv fleet.Driver, instanceID string, b store.Backup) (int64, string, string, error) {
	if bf.dir == "" {
		return 0, "", "", errNoBackupStore
	}
	if err := os.MkdirAll(bf.dir, 0o700); err != nil {
		return 0, "", "", fmt.Errorf("backup store: %w", err)
	}
	name := bf.name(b)
	tmp, err := os.CreateTemp(bf.dir, "."+name+".tmp-*") // created 0600
	if err != nil {
		return 0, "", "", fmt.Errorf("backup store: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this finds nothing
	h := sha256.New()
	var count countingWriter
	info, err := drv.Backup(ctx, instanceID, io.MultiWriter(tmp, h, &count))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, "", "", fmt.Errorf("back up %s: %w", b.Devserver, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if info.SHA256 != "" && info.SHA256 != sum {
		return 0, "", "", fmt.Errorf("back up %s: the fleet reports checksum %s but %s arrived", b.Devserver, info.SHA256, sum)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(bf.dir, name)); err != nil {
		return 0, "", "", fmt.Errorf("backup store: %w", err)
	}
	return count.n, sum, name, nil
}

// verify checks that a finished backup's file is there, whole and unchanged.
func (bf backupFiles) verify(b store.Backup) error {
	p, err := bf.path(b.Location)
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("the file of backup %d is missing from the backup store", b.ID)
	}
	if err != nil {
		return fmt.Errorf("backup store: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("backup store: read backup %d: %w", b.ID, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != b.SHA256 || n != b.SizeBytes {
		return fmt.Errorf("the file of backup %d is damaged: its SHA-256 is %s (%d bytes), not %s (%d bytes)", b.ID, sum, n, b.SHA256, b.SizeBytes)
	}
	return nil
}

// open opens a finished backup's file for reading.
func (bf backupFiles) open(b store.Backup) (*os.File, error) {
	p, err := bf.path(b.Location)
	if err != nil {
		return nil, err
	}
	return os.Open(p)
}

// remove deletes a backup's file; one that is gone already is fine.
func (bf backupFiles) remove(b store.Backup) error {
	if b.Location == "" {
		return nil
	}
	p, err := bf.path(b.Location)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("backup store: %w", err)
	}
	return nil
}

// driverOf returns the fleet driver of the devserver's host.
func driverOf(ctx context.Context, s *store.Store, f *fleet.Fleet, d store.Devserver) (fleet.Driver, error) {
	host, err := s.Host(ctx, d.HostID)
	if err != nil {
		return nil, err
	}
	return f.Driver(host.Driver)
}

// takeBackup writes a pending backup's file and records it done. A failure
// is returned for the caller to retry or give up on.
func takeBackup(ctx context.Context, s *store.Store, f *fleet.Fleet, files backupFiles, b store.Backup, d store.Devserver, complete func(*store.Tx) error) error {
	drv, err := driverOf(ctx, s, f, d)
	if err != nil {
		return err
	}
	size, sum, location, err := files.write(ctx, drv, d.InstanceID, b)
	if err != nil {
		return err
	}
	return s.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.FinishBackup(ctx, b.ID, size, sum, location); err != nil {
			return err
		}
		if complete != nil {
			return complete(tx)
		}
		return nil
	})
}

type backupWorker struct {
	river.WorkerDefaults[BackupArgs]
	s     *store.Store
	f     *fleet.Fleet
	files backupFiles
	log   *slog.Logger
}

func (w *backupWorker) Timeout(*river.Job[BackupArgs]) time.Duration { return backupTimeout }

func (w *backupWorker) NextRetry(job *river.Job[BackupArgs]) time.Time { return backoff(job.Attempt) }

func (w *backupWorker) Work(ctx context.Context, job *river.Job[BackupArgs]) error {
	b, err := w.s.Backup(ctx, job.Args.BackupID)
	if errors.Is(err, store.ErrNotFound) {
		return river.JobCancel(err)
	}
	if err != nil {
		return err
	}
	if b.State != store.BackupPending {
		return nil // taken (or given up on) already
	}
	d, err := w.s.DevserverByID(ctx, b.DevserverID)
	if err != nil {
		return err
	}
	if d.InstanceID == "" || d.State == store.StateReleased || d.State == store.StateFailed {
		return w.fail(ctx, job, b, fmt.Errorf("devserver %s is %s and has nothing to back up", d.Name, d.State))
	}
	err = takeBackup(ctx, w.s, w.f, w.files, b, d, func(tx *store.Tx) error { return completeTx(ctx, tx, job) })
	if err == nil {
		w.log.Info("Backed up devserver", "devserver", d.Name, "backup", b.ID, "kind", b.Kind)
		return nil
	}
	if job.Attempt < job.MaxAttempts && !errors.Is(err, errNoBackupStore) {
		return err
	}
	return w.fail(ctx, job, b, err)
}

// fail records the backup as failed and completes the job with it: the
// failure is the job's result, shown in the devserver's backup list.
func (w *backupWorker) fail(ctx context.Context, job *river.Job[BackupArgs], b store.Backup, cause error) error {
	w.log.Warn("Backup failed", "devserver", b.Devserver, "backup", b.ID, "attempts", job.Attempt, "error", cause)
	return w.s.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.FailBackup(ctx, b.ID, cause.Error()); err != nil {
			return err
		}
		return completeTx(ctx, tx, job)
	})
}

// newBackupFiles prepares the backup store's folder, private to the service account.
func newBackupFiles(dir string) (backupFiles, error) {
	if dir == "" {
		return backupFiles{}, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return backupFiles{}, fmt.Errorf("backup directory %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return backupFiles{}, fmt.Errorf("backup directory %s: %w", dir, err)
	}
	return backupFiles{dir: dir}, nil
}
