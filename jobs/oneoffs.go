package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/store"
)

// OneoffsArgs applies the owner's one-offs (dotfiles, environment, setup
// script) to a devserver.
type OneoffsArgs struct {
	DevserverID int64 `json:"devserver_id"`
}

// Kind names the job.
func (OneoffsArgs) Kind() string { return "devserver_oneoffs" }

// InsertOpts: a few tries, then the devserver shows the error.
func (OneoffsArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 4} }

type oneoffsWorker struct {
	river.WorkerDefaults[OneoffsArgs]
	s   *store.Store
	f   *fleet.Fleet
	log *slog.Logger
}

func (w *oneoffsWorker) Timeout(*river.Job[OneoffsArgs]) time.Duration { return featureTimeout }

func (w *oneoffsWorker) NextRetry(job *river.Job[OneoffsArgs]) time.Time { return backoff(job.Attempt) }

// OneoffCommands are the commands that put one-offs on a host: the dotfiles,
// the environment in ~/.devport/env.sh (sourced from ~/.profile), and the
// setup script, written then run.
func OneoffCommands(o store.Oneoffs) [][]string {
	var cmds [][]string
	for _, f := range o.Dotfiles {
		cmds = append(cmds, fleet.WriteFileCmd(f.Path, f.Content))
	}
	cmds = append(cmds, fleet.WriteFileCmd(".devport/env.sh", o.EnvFile()))
	if strings.TrimSpace(o.SetupScript) != "" {
		cmds = append(cmds, fleet.WriteFileCmd(".devport/setup.sh", o.SetupScript), []string{"sh", ".devport/setup.sh"})
	}
	return cmds
}

func (w *oneoffsWorker) Work(ctx context.Context, job *river.Job[OneoffsArgs]) error {
	d, drv, wait, err := readyDevserver(ctx, w.s, w.f, job.Args.DevserverID)
	if err != nil && d.State == store.StateUnreachable && job.Attempt >= job.MaxAttempts && d.OneoffsState == "pending" {
		// The last attempt: say why on the devserver, rather than leave
		// its one-offs pending for ever.
		return w.s.InTx(ctx, func(tx *store.Tx) error {
			if err := tx.FinishOneoffs(ctx, d, err); err != nil {
				return err
			}
			return completeTx(ctx, tx, job)
		})
	}
	if err != nil || wait > 0 || drv == nil {
		return snoozeOr(wait, err)
	}
	if d.OneoffsState != "pending" || d.Pooled() {
		return nil
	}
	o, err := w.s.Oneoffs(ctx, d.OwnerID)
	if err != nil {
		return err
	}
	var failure error
	for _, cmd := range OneoffCommands(o) {
		if failure = execOK(ctx, drv, d.InstanceID, cmd); failure != nil {
			if cmd[0] == "sh" && len(cmd) == 2 {
				failure = fmt.Errorf("%w: %v", errScript, failure)
			}
			break
		}
	}
	if failure != nil && job.Attempt < job.MaxAttempts && !errors.Is(failure, errScript) {
		return failure
	}
	return w.s.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.FinishOneoffs(ctx, d, failure); err != nil {
			return err
		}
		return completeTx(ctx, tx, job)
	})
}

// errScript marks a failure of the user's own script, which retrying does not fix.
var errScript = errors.New("setup script failed")
