package store

import "time"

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
