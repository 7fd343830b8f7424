package store

import "time"

// Share gives a collaborator access to someone else's devserver: they see it,
// its connection details and backups, and their SSH keys are put on it.
type Share struct {
	DevserverID int64     `db:"devserver_id" json:"-"`
	UserID      int64     `db:"user_id" json:"-"`
	Email       string    `db:"email" json:"email"`
	CreatedAt   time.Time `db:"created_at" json:"created_at"`
	CreatedBy   string    `db:"created_by" json:"created_by"`
}
