package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Notification is a message in a person's in-app inbox. Its idempotency key
// makes sure a retried job never sends it twice.
type Notification struct {
	ID             int64      `db:"id" json:"id"`
	UserID         int64      `db:"user_id" json:"-"`
	Kind           string     `db:"kind" json:"kind"`
	Title          string     `db:"title" json:"title"`
	Body           string     `db:"body" json:"body"`
	Link           string     `db:"link" json:"link,omitempty"`
	IdempotencyKey string     `db:"idempotency_key" json:"-"`
	CreatedAt      time.Time  `db:"created_at" json:"created_at"`
	ReadAt         *time.Time `db:"read_at" json:"read_at,omitempty"`
}

// Unread tells whether the notification has not been read yet.
func (n Notification) Unread() bool { return n.ReadAt == nil }

// Notify puts a notification in a person's inbox, once: a second call with
// the same idempotency key does nothing and returns false.
// Every notification also records its deliveries per the person's channel preferences.
func (tx *Tx) Notify(ctx context.Context, n Notification) (bool, error) {
	_, sent, err := tx.notify(ctx, n)
	return sent, err
}

// notify is Notify that also returns the new notification's ID.
func (tx *Tx) notify(ctx context.Context, n Notification) (int64, bool, error) {
	if n.UserID == 0 || n.IdempotencyKey == "" || strings.TrimSpace(n.Title) == "" {
		return 0, false, fmt.Errorf("notify: a user, a title and an idempotency key are required")
	}
	var id int64
	err := getNamed(ctx, tx, &id, `
INSERT INTO notifications (user_id, kind, title, body, link, idempotency_key, created_at)
VALUES (:user_id, :kind, :title, :body, :link, :key, :now)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id`, arg{"user_id": n.UserID, "kind": n.Kind, "title": n.Title, "body": n.Body, "link": n.Link, "key": n.IdempotencyKey, "now": tx.Now()})
	if errors.Is(err, ErrNotFound) {
		return 0, false, nil // already sent
	}
	if err != nil {
		return 0, false, fmt.Errorf("notify %s: %w", n.IdempotencyKey, err)
	}
	if err := tx.recordDeliveries(ctx, id, n.UserID); err != nil {
		return 0, false, err
	}
	return id, true, tx.Audit(ctx, System, "notification.send", "user", strconv.FormatInt(n.UserID, 10),
		map[string]any{"notification": id, "kind": n.Kind})
}

// Notifications lists a person's inbox, newest first, a page at a time
// (afterID is the cursor: the smallest ID of the previous page).
func (s *Store) Notifications(ctx context.Context, userID, afterID int64, limit int) ([]Notification, error) {
	if limit <= 0 {
		limit = 50
	}
	var ns []Notification
	err := selectNamed(ctx, s.read, &ns, `
SELECT * FROM notifications WHERE user_id = :user_id AND (:after_id = 0 OR id < :after_id)
ORDER BY id DESC LIMIT :limit`, arg{"user_id": userID, "after_id": afterID, "limit": limit})
	if err != nil {
		return nil, fmt.Errorf("notifications: %w", err)
	}
	return ns, nil
}

// UnreadNotifications counts a person's unread notifications.
func (s *Store) UnreadNotifications(ctx context.Context, userID int64) (int, error) {
	var n int
	err := getNamed(ctx, s.read, &n, `SELECT COUNT(*) FROM notifications WHERE user_id = :user_id AND read_at IS NULL`, arg{"user_id": userID})
	if err != nil {
		return 0, fmt.Errorf("unread notifications: %w", err)
	}
	return n, nil
}

// MarkNotificationRead marks one of the user's notifications read. Someone
// else's notification is not found. Reading what is read already changes nothing.
func (tx *Tx) MarkNotificationRead(ctx context.Context, who Actor, userID, id int64) (Notification, error) {
	var n Notification
	if err := getNamed(ctx, tx, &n, `SELECT * FROM notifications WHERE id = :id AND user_id = :user_id`, arg{"id": id, "user_id": userID}); err != nil {
		return Notification{}, fmt.Errorf("notification %d: %w", id, err)
	}
	if n.ReadAt != nil {
		return n, nil
	}
	now := tx.Now()
	if _, err := execNamed(ctx, tx, `UPDATE notifications SET read_at = :now WHERE id = :id AND read_at IS NULL`, arg{"id": id, "now": now}); err != nil {
		return Notification{}, fmt.Errorf("read notification %d: %w", id, err)
	}
	n.ReadAt = &now
	return n, tx.Audit(ctx, who, "notification.read", "user", strconv.FormatInt(userID, 10), map[string]any{"notification": id})
}

// MarkAllNotificationsRead marks every unread notification of the user read
// and returns how many there were.
func (tx *Tx) MarkAllNotificationsRead(ctx context.Context, who Actor, userID int64) (int64, error) {
	n, err := execNamed(ctx, tx, `UPDATE notifications SET read_at = :now WHERE user_id = :user_id AND read_at IS NULL`, arg{"user_id": userID, "now": tx.Now()})
	if err != nil {
		return 0, fmt.Errorf("read all notifications: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	return n, tx.Audit(ctx, who, "notification.read_all", "user", strconv.FormatInt(userID, 10), map[string]any{"notifications": n})
}
