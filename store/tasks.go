package store

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// Task is something a notification asks its person to do by a date.
type Task struct {
	ID             int64      `db:"id" json:"id"`
	UserID         int64      `db:"user_id" json:"-"`
	NotificationID *int64     `db:"notification_id" json:"notification_id,omitempty"`
	Title          string     `db:"title" json:"title"`
	Link           string     `db:"link" json:"link,omitempty"`
	DueAt          time.Time  `db:"due_at" json:"due_at"`
	DoneAt         *time.Time `db:"done_at" json:"done_at,omitempty"`
	CreatedAt      time.Time  `db:"created_at" json:"created_at"`
}

// Done tells whether the task is done.
func (t Task) Done() bool { return t.DoneAt != nil }

// Overdue tells whether the task is open past its due date.
func (t Task) Overdue(now time.Time) bool { return t.DoneAt == nil && now.After(t.DueAt) }

// createTask records a task for a person, from the notification that asks it.
func (tx *Tx) createTask(ctx context.Context, userID, notificationID int64, title, link string, due time.Time) (int64, error) {
	var nid *int64
	if notificationID != 0 {
		nid = &notificationID
	}
	var id int64
	err := getNamed(ctx, tx, &id, `
INSERT INTO tasks (user_id, notification_id, title, link, due_at, created_at)
VALUES (:user_id, :nid, :title, :link, :due, :now) RETURNING id`,
		arg{"user_id": userID, "nid": nid, "title": title, "link": link, "due": due.UTC(), "now": tx.Now()})
	if err != nil {
		return 0, fmt.Errorf("create task for user %d: %w", userID, err)
	}
	return id, tx.Audit(ctx, System, "task.create", "task", strconv.FormatInt(id, 10),
		map[string]any{"user": userID, "notification": notificationID, "due": due.UTC()})
}

// Tasks lists a person's tasks: open ones first by due date, then the done
// ones, most recently done first;
// offset pages through them.
func (s *Store) Tasks(ctx context.Context, userID int64, offset, limit int) ([]Task, error) {
	if limit <= 0 {
		limit = 50
	}
	var ts []Task
	err := selectNamed(ctx, s.read, &ts, `
SELECT * FROM tasks WHERE user_id = :user_id
ORDER BY done_at IS NOT NULL, CASE WHEN done_at IS NULL THEN due_at END, done_at DESC, id DESC
LIMIT :limit OFFSET :offset`, arg{"user_id": userID, "limit": limit, "offset": max(offset, 0)})
	if err != nil {
		return nil, fmt.Errorf("tasks: %w", err)
	}
	return ts, nil
}

// OpenTasks counts a person's open tasks for the navigation.
func (s *Store) OpenTasks(ctx context.Context, userID int64) (int, error) {
	var n int
	if err := getNamed(ctx, s.read, &n, `SELECT COUNT(*) FROM tasks WHERE user_id = :user_id AND done_at IS NULL`, arg{"user_id": userID}); err != nil {
		return 0, fmt.Errorf("open tasks: %w", err)
	}
	return n, nil
}

// Task returns one of a person's tasks; someone else's is not found.
func (s *Store) Task(ctx context.Context, userID, id int64) (Task, error) {
	var t Task
	if err := getNamed(ctx, s.read, &t, `SELECT * FROM tasks WHERE id = :id AND user_id = :user_id`, arg{"id": id, "user_id": userID}); err != nil {
		return Task{}, fmt.Errorf("task %d: %w", id, err)
	}
	return t, nil
}

// MarkTaskDone marks one of the person's tasks done. Someone else's task is
// not found; a task done already stays as it was.
func (tx *Tx) MarkTaskDone(ctx context.Context, who Actor, userID, id int64) (Task, error) {
	var t Task
	if err := getNamed(ctx, tx, &t, `SELECT * FROM tasks WHERE id = :id AND user_id = :user_id`, arg{"id": id, "user_id": userID}); err != nil {
		return Task{}, fmt.Errorf("task %d: %w", id, err)
	}
	if t.DoneAt != nil {
		return t, nil
	}
	now := tx.Now()
	if _, err := execNamed(ctx, tx, `UPDATE tasks SET done_at = :now WHERE id = :id AND done_at IS NULL`, arg{"id": id, "now": now}); err != nil {
		return Task{}, fmt.Errorf("finish task %d: %w", id, err)
	}
	t.DoneAt = &now
	return t, tx.Audit(ctx, who, "task.done", "task", strconv.FormatInt(id, 10), map[string]any{"user": userID})
}

// OverdueTasks lists open tasks whose due date has passed at now, a page at
// a time in ID order (afterID is the cursor: the largest ID of the previous page).
func (s *Store) OverdueTasks(ctx context.Context, now time.Time, afterID int64, limit int) ([]Task, error) {
	if limit <= 0 {
		limit = 500
	}
	var ts []Task
	err := selectNamed(ctx, s.read, &ts, `SELECT * FROM tasks WHERE done_at IS NULL AND due_at < :now AND id > :after ORDER BY id LIMIT :limit`,
		arg{"now": now.UTC(), "after": afterID, "limit": limit})
	if err != nil {
		return nil, fmt.Errorf("overdue tasks: %w", err)
	}
	return ts, nil
}

// RemindOverdueTask notifies the task's person that it is overdue, once per
// task per day (the idempotency key carries the date). It tells whether a
// reminder was sent now.
func (tx *Tx) RemindOverdueTask(ctx context.Context, t Task, now time.Time) (bool, error) {
	// Read again in the transaction: a task marked done a moment ago is not reminded.
	var open int
	if err := getNamed(ctx, tx, &open, `SELECT COUNT(*) FROM tasks WHERE id = :id AND done_at IS NULL`, arg{"id": t.ID}); err != nil {
		return false, fmt.Errorf("task %d: %w", t.ID, err)
	}
	if open == 0 {
		return false, nil
	}
	day := now.UTC().Format("2006-01-02")
	return tx.Notify(ctx, Notification{
		UserID: t.UserID, Kind: "task_overdue",
		Title:          "Overdue: " + t.Title,
		Body:           "This task was due " + t.DueAt.UTC().Format("2006-01-02 15:04 MST") + " and is still open. Mark it done on the tasks page once it is.",
		Link:           "/tasks",
		IdempotencyKey: "task-overdue:" + strconv.FormatInt(t.ID, 10) + ":" + day,
	})
}
