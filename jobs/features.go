package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/store"
)

// FeatureArgs installs or removes one feature on one devserver, as its row
// in devserver_features says.
type FeatureArgs struct {
	DevserverID int64  `json:"devserver_id"`
	Feature     string `json:"feature"`
}

// Kind names the job.
func (FeatureArgs) Kind() string { return "devserver_feature" }

// InsertOpts: a few tries, then the feature is marked failed with the error.
func (FeatureArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 4} }

const featureTimeout = 10 * time.Minute

// waitForReady is how long a job on a devserver that is still provisioning or
// migrating waits before it looks again.
const waitForReady = time.Second

type featureWorker struct {
	river.WorkerDefaults[FeatureArgs]
	s   *store.Store
	f   *fleet.Fleet
	log *slog.Logger
}

func (w *featureWorker) Timeout(*river.Job[FeatureArgs]) time.Duration { return featureTimeout }

func (w *featureWorker) NextRetry(job *river.Job[FeatureArgs]) time.Time { return backoff(job.Attempt) }

// featurePath is where a feature records itself in the home directory.
func featurePath(name string) string { return ".devport/features/" + name }

func (w *featureWorker) Work(ctx context.Context, job *river.Job[FeatureArgs]) error {
	d, drv, wait, err := readyDevserver(ctx, w.s, w.f, job.Args.DevserverID)
	if err != nil && d.State == store.StateUnreachable && job.Attempt >= job.MaxAttempts {
		// The last attempt: say why on the feature, rather than leave it
		// pending for ever.
		return w.giveUp(ctx, job, d, err)
	}
	if err != nil || wait > 0 || drv == nil {
		return snoozeOr(wait, err)
	}
	f, err := w.s.DevserverFeature(ctx, d.ID, job.Args.Feature)
	if errors.Is(err, store.ErrNotFound) {
		return nil // removed meanwhile
	}
	if err != nil {
		return err
	}
	var cmd []string
	switch f.State {
	case store.FeaturePending:
		cmd = fleet.WriteFileCmd(featurePath(f.Feature), f.Feature+" "+f.Version+"\n")
	case store.FeatureRemoving:
		cmd = []string{"rm", "-f", featurePath(f.Feature)}
	default:
		return nil
	}
	failure := execOK(ctx, drv, d.InstanceID, cmd)
	if failure != nil && job.Attempt < job.MaxAttempts {
		return failure
	}
	return w.s.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.FinishFeature(ctx, d, f.Feature, f.State, f.Version, failure); err != nil {
			return err
		}
		return completeTx(ctx, tx, job)
	})
}

// giveUp records the feature's change as failed with cause and completes the job.
func (w *featureWorker) giveUp(ctx context.Context, job *river.Job[FeatureArgs], d store.Devserver, cause error) error {
	f, err := w.s.DevserverFeature(ctx, d.ID, job.Args.Feature)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if f.State != store.FeaturePending && f.State != store.FeatureRemoving {
		return nil
	}
	return w.s.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.FinishFeature(ctx, d, f.Feature, f.State, f.Version, cause); err != nil {
			return err
		}
		return completeTx(ctx, tx, job)
	})
}

// execOK runs a command and turns a non-zero exit into an error with its output.
func execOK(ctx context.Context, drv fleet.Driver, instance string, cmd []string) error {
	res, err := drv.Exec(ctx, instance, cmd)
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		out := res.Output
		if len(out) > 500 {
			out = out[len(out)-500:]
		}
		return fmt.Errorf("exit status %d: %s", res.ExitCode, out)
	}
	return nil
}

// readyDevserver loads a devserver for work on its instance. It says how
// long to wait when the devserver is not ready yet (provisioning, migrating),
// and returns no driver when there is nothing to do (it is gone).
func readyDevserver(ctx context.Context, s *store.Store, f *fleet.Fleet, id int64) (store.Devserver, fleet.Driver, time.Duration, error) {
	d, err := s.DevserverByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return d, nil, 0, river.JobCancel(err)
	}
	if err != nil {
		return d, nil, 0, err
	}
	switch d.State {
	case store.StateProvisioning, store.StateMigrating:
		return d, nil, waitForReady, nil
	case store.StateReady:
	case store.StateUnreachable:
		return d, nil, 0, fmt.Errorf("devserver %s is unreachable", d.Name)
	default:
		return d, nil, 0, nil // releasing, released, failed, lost: nothing to do
	}
	host, err := s.Host(ctx, d.HostID)
	if err != nil {
		return d, nil, 0, err
	}
	drv, err := f.Driver(host.Driver)
	return d, drv, 0, err
}

// snoozeOr waits without using up an attempt, or returns err.
func snoozeOr(wait time.Duration, err error) error {
	if err == nil && wait > 0 {
		return river.JobSnooze(wait)
	}
	return err
}
