package store

import "time"

// Backup kinds.
const (
	BackupScheduled    = "scheduled"
	BackupManual       = "manual"
	BackupPreRelease   = "pre_release"
	BackupPreMigration = "pre_migration"
	BackupPreRestore   = "pre_restore"
	BackupFinal        = "final" // at lease expiry
)

// Backup is a point-in-time copy of a devserver's persistent data (home
// directory and one-offs), kept in the backup store.
type Backup struct {
	ID          int64      `db:"id" json:"id"`
	DevserverID int64      `db:"devserver_id" json:"-"`
	Devserver   string     `db:"devserver" json:"devserver"`
	OwnerID     int64      `db:"owner_id" json:"-"`
	Kind        string     `db:"kind" json:"kind"`
	State       string     `db:"state" json:"state"`
	SizeBytes   int64      `db:"size_bytes" json:"size_bytes"`
	SHA256      string     `db:"sha256" json:"sha256"`
	Location    string     `db:"location" json:"-"`
	Error       string     `db:"error" json:"error,omitempty"`
	CreatedAt   time.Time  `db:"created_at" json:"created_at"`
	FinishedAt  *time.Time `db:"finished_at" json:"finished_at,omitempty"`
}
