package store

import "time"

// Feature states on a devserver.
const (
	FeaturePending   = "pending"
	FeatureInstalled = "installed"
	FeatureRemoving  = "removing"
	FeatureFailed    = "failed"
)

// DevserverFeature is a feature on a devserver: the version wanted or
// installed, and where its install stands.
type DevserverFeature struct {
	DevserverID int64     `db:"devserver_id" json:"-"`
	Feature     string    `db:"feature" json:"feature"`
	Version     string    `db:"version" json:"version"`
	State       string    `db:"state" json:"state"`
	Error       string    `db:"error" json:"error,omitempty"`
	UpdatedAt   time.Time `db:"updated_at" json:"updated_at"`
}
