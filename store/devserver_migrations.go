package store

import "time"

// Migration steps, in order.
const (
	StepBackup        = "backup"
	StepProvision     = "provision"
	StepRestore       = "restore"
	StepSwitch        = "switch"
	StepReleaseSource = "release_source"
	StepDone          = "done"
)

// MigrationSteps lists the steps of a devserver migration in order.
var MigrationSteps = []string{StepBackup, StepProvision, StepRestore, StepSwitch, StepReleaseSource}

// DevserverMigration moves a devserver to another flavour and/or region:
// backup, provision the target, restore, move the hostname, release the
// source. A failure rolls back to the untouched source.
type DevserverMigration struct {
	ID           int64      `db:"id" json:"id"`
	DevserverID  int64      `db:"devserver_id" json:"-"`
	FromRegion   string     `db:"from_region" json:"from_region"`
	FromFlavor   string     `db:"from_flavor" json:"from_flavor"`
	FromHostID   int64      `db:"from_host_id" json:"-"`
	ToRegion     string     `db:"to_region" json:"to_region"`
	ToFlavor     string     `db:"to_flavor" json:"to_flavor"`
	ToHostID     int64      `db:"to_host_id" json:"-"`
	ToHost       string     `db:"to_host" json:"to_host"`
	ToInstanceID string     `db:"to_instance_id" json:"-"`
	ToAddress    string     `db:"to_address" json:"-"`
	BackupID     *int64     `db:"backup_id" json:"backup_id,omitempty"`
	Step         string     `db:"step" json:"step"`
	State        string     `db:"state" json:"state"`
	Error        string     `db:"error" json:"error,omitempty"`
	RequestedBy  string     `db:"requested_by" json:"requested_by"`
	CreatedAt    time.Time  `db:"created_at" json:"created_at"`
	UpdatedAt    time.Time  `db:"updated_at" json:"updated_at"`
	FinishedAt   *time.Time `db:"finished_at" json:"finished_at,omitempty"`
}
