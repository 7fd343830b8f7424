package sim

import (
	"context"

	"github.com/devport/devport/store"
)

// regionDown tells whether the host's region is down (a storm): every host
// of a region that is down refuses calls, whatever its own state says, so
// the refusal begins the moment the region goes down and is deterministic.
func (d *Driver) regionDown(ctx context.Context, h store.Host) bool {
	r, err := d.s.Region(ctx, h.Region)
	return err == nil && r.Status == "down"
}
