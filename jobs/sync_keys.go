package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/store"
)

// SyncKeysArgs writes a devserver's authorized_keys: the SSH keys of its
// owner and of everyone it is shared with. It is enqueued on every change of
// who may reach the devserver or of their keys, and when it becomes ready.
type SyncKeysArgs struct {
	DevserverID int64 `json:"devserver_id"`
}

// Kind names the job.
func (SyncKeysArgs) Kind() string { return "sync_ssh_keys" }

// InsertOpts: an unreachable devserver gets a few tries; the next change or
// the next ready devserver writes the file again anyway.
func (SyncKeysArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 6} }

// AuthorizedKeysPath is where the keys go, relative to the devserver's home.
const AuthorizedKeysPath = ".ssh/authorized_keys"

const syncKeysTimeout = time.Minute

// syncRounds bounds how often one job rewrites the file while the keys keep
// changing under it.
const syncRounds = 5

type syncKeysWorker struct {
	river.WorkerDefaults[SyncKeysArgs]
	s   *store.Store
	f   *fleet.Fleet
	log *slog.Logger
}

func (w *syncKeysWorker) Timeout(*river.Job[SyncKeysArgs]) time.Duration { return syncKeysTimeout }

func (w *syncKeysWorker) NextRetry(job *river.Job[SyncKeysArgs]) time.Time {
	return backoff(job.Attempt)
}

// Work writes the file when it differs from what the database says. Two
// jobs for one devserver may run at once; each reads the keys again after
// writing and writes once more if they changed meanwhile, so the last writer
// always leaves the current keys.
func (w *syncKeysWorker) Work(ctx context.Context, job *river.Job[SyncKeysArgs]) error {
	d, drv, wait, err := readyDevserver(ctx, w.s, w.f, job.Args.DevserverID)
	if err != nil || wait > 0 || drv == nil {
		return snoozeOr(wait, err)
	}
	if d.InstanceID == "" {
		return nil
	}
	want, err := w.s.AuthorizedKeys(ctx, d.ID)
	if err != nil {
		return err
	}
	written, hadKeys := false, false
	for round := 0; ; round++ {
		res, err := drv.Exec(ctx, d.InstanceID, []string{"cat", AuthorizedKeysPath})
		if err != nil {
			return fmt.Errorf("read authorized_keys of %s: %w", d.Name, err)
		}
		if res.ExitCode == 0 && round == 0 {
			hadKeys = keyLines(res.Output) > 0
		}
		if res.ExitCode != 0 || res.Output != want {
			res, err = drv.Exec(ctx, d.InstanceID, fleet.WriteFileCmd(AuthorizedKeysPath, want))
			if err != nil {
				return fmt.Errorf("write authorized_keys of %s: %w", d.Name, err)
			}
			if res.ExitCode != 0 {
				return fmt.Errorf("write authorized_keys of %s: exit %d: %s", d.Name, res.ExitCode, strings.TrimSpace(res.Output))
			}
			written = true
		}
		now, err := w.s.AuthorizedKeys(ctx, d.ID)
		if err != nil {
			return err
		}
		if now == want {
			break
		}
		if round == syncRounds {
			return fmt.Errorf("keys of %s keep changing; trying again later", d.Name)
		}
		want = now
	}
	return w.s.InTx(ctx, func(tx *store.Tx) error {
		// Writing the empty file on a devserver that had no keys either
		// changes nobody's access; anything else is recorded.
		if keys := keyLines(want); written && (keys > 0 || hadKeys) {
			if err := tx.Audit(ctx, store.System, "devserver.keys_synced", "devserver", d.Name, map[string]any{"keys": keys}); err != nil {
				return err
			}
			w.log.Info("Wrote authorized_keys", "devserver", d.Name, "keys", keys)
		}
		return completeTx(ctx, tx, job)
	})
}

// keyLines counts the keys in an authorized_keys file.
func keyLines(file string) int {
	n := 0
	for l := range strings.Lines(file) {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			n++
		}
	}
	return n
}
