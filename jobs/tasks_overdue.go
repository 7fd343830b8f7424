package jobs

import (
	"context"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/devport/devport/store"
)

// TasksOverdueArgs is the periodic reminder of overdue tasks: once per task
// per day, until the task is done.
type TasksOverdueArgs struct{}

// Kind names the job.
func (TasksOverdueArgs) Kind() string { return "remind_overdue_tasks" }

// InsertOpts retries a failed check a little; the next tick runs anyway.
func (TasksOverdueArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 3} }

const tasksOverdueEvery = 15 * time.Minute

type tasksOverdueWorker struct {
	river.WorkerDefaults[TasksOverdueArgs]
	s   *store.Store
	log *slog.Logger
}

func (w *tasksOverdueWorker) Timeout(*river.Job[TasksOverdueArgs]) time.Duration {
	return scheduleTimeout
}

func (w *tasksOverdueWorker) Work(ctx context.Context, _ *river.Job[TasksOverdueArgs]) error {
	_, err := RemindOverdueTasks(ctx, w.s, w.log)
	return err
}

// RemindOverdueTasks notifies the person of every open task past its due
// date, once per task per day (the notification's key carries the date at
// the store's clock). It returns how many reminders it sent.
func RemindOverdueTasks(ctx context.Context, s *store.Store, log *slog.Logger) (int, error) {
	now := s.Now()
	sent, after := 0, int64(0)
	for {
		ts, err := s.OverdueTasks(ctx, now, after, 500)
		if err != nil {
			return sent, err
		}
		n := 0
		err = s.InTx(ctx, func(tx *store.Tx) error {
			for _, t := range ts {
				ok, err := tx.RemindOverdueTask(ctx, t, now)
				if err != nil {
					return err
				}
				if ok {
					n++
				}
			}
			return nil
		})
		if err != nil {
			return sent, err
		}
		sent += n
		if len(ts) < 500 {
			break
		}
		after = ts[len(ts)-1].ID
	}
	if sent > 0 {
		log.Info("Reminded overdue tasks", "reminders", sent)
	}
	return sent, nil
}
