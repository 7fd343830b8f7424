package store

import "time"

// Pool is the admins' target of ready, unowned devservers of one flavour in
// one region, so that a reservation is an assignment, not a build.
type Pool struct {
	Region    string    `db:"region" json:"region"`
	Flavor    string    `db:"flavor" json:"flavor"`
	Target    int       `db:"target" json:"target"`
	UpdatedAt time.Time `db:"updated_at" json:"updated_at"`
	UpdatedBy string    `db:"updated_by" json:"updated_by"`
	// Ready and Building are counted from the devservers, not stored.
	Ready    int `db:"ready" json:"ready"`
	Building int `db:"building" json:"building"`
}
