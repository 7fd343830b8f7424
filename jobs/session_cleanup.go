package jobs

import (
	"context"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/devport/devport/store"
)

// SessionCleanupArgs removes expired web sessions, idempotency keys and
// CLI sign-in codes.
type SessionCleanupArgs struct{}

// Kind names the job.
func (SessionCleanupArgs) Kind() string { return "cleanup_sessions" }

type sessionCleanupWorker struct {
	river.WorkerDefaults[SessionCleanupArgs]
	s    *store.Store
	idle time.Duration
	log  *slog.Logger
}

func (w *sessionCleanupWorker) Timeout(*river.Job[SessionCleanupArgs]) time.Duration {
	return cleanupTimeout
}

func (w *sessionCleanupWorker) Work(ctx context.Context, _ *river.Job[SessionCleanupArgs]) error {
	n, err := w.s.DeleteExpiredSessions(ctx, w.idle)
	if err != nil {
		return err
	}
	if n > 0 {
		w.log.Info("Removed expired sessions", "sessions", n)
	}
	keys, err := w.s.DeleteExpiredIdempotencyKeys(ctx)
	if err != nil {
		return err
	}
	if keys > 0 {
		w.log.Info("Removed expired idempotency keys", "keys", keys)
	}
	codes, err := w.s.DeleteExpiredCLILoginCodes(ctx)
	if err != nil {
		return err
	}
	if codes > 0 {
		w.log.Info("Removed expired CLI sign-in codes", "codes", codes)
	}
	return nil
}
