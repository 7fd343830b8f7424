package jobs

import (
	"context"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/devport/devport/store"
)

// FollowupsOverdueArgs is the periodic escalation of overdue critical
// follow-ups: their owner and their SEV's review facilitator hear of each
// once a day until it is done (or won't be).
type FollowupsOverdueArgs struct{}

// Kind names the job.
func (FollowupsOverdueArgs) Kind() string { return "escalate_overdue_followups" }

// InsertOpts retries a failed check a little; the next tick runs anyway.
func (FollowupsOverdueArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 3} }

// followupsOverdueEvery is how often the check runs; the notifications'
// keys carry the date, so an hourly check sends each one once a day.
const followupsOverdueEvery = time.Hour

type followupsOverdueWorker struct {
	river.WorkerDefaults[FollowupsOverdueArgs]
	s   *store.Store
	log *slog.Logger
}

func (w *followupsOverdueWorker) Timeout(*river.Job[FollowupsOverdueArgs]) time.Duration {
	return scheduleTimeout
}

func (w *followupsOverdueWorker) Work(ctx context.Context, _ *river.Job[FollowupsOverdueArgs]) error {
	_, err := CheckOverdueFollowups(ctx, w.s, w.log)
	return err
}

// CheckOverdueFollowups notifies the owner of every critical follow-up past
// its due date and its SEV's review facilitator, once per follow-up per
// person per UTC date at the store's clock. It returns how many
// notifications it sent.
func CheckOverdueFollowups(ctx context.Context, s *store.Store, log *slog.Logger) (int, error) {
	now := s.Now()
	sent, after := 0, int64(0)
	for {
		fs, err := s.OverdueCriticalFollowups(ctx, now, after, 500)
		if err != nil {
			return sent, err
		}
		n := 0
		err = s.InTx(ctx, func(tx *store.Tx) error {
			for _, f := range fs {
				k, err := tx.EscalateOverdueFollowup(ctx, f, now)
				if err != nil {
					return err
				}
				n += k
			}
			return nil
		})
		if err != nil {
			return sent, err
		}
		sent += n
		if len(fs) < 500 {
			break
		}
		after = fs[len(fs)-1].ID
	}
	if sent > 0 {
		log.Info("Escalated overdue critical follow-ups", "notifications", sent)
	}
	return sent, nil
}
