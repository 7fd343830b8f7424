package sim

import (
	"context"
	"fmt"
	"io"

	"github.com/devport/devport/fleet"
)

// DialPort cannot reach a port: a simulated instance runs no processes, so
// nothing listens in it. It says so (wrapping fleet.ErrNotSupported) for an
// instance that exists, and fleet.ErrNotFound for one that does not.
func (d *Driver) DialPort(ctx context.Context, id string, port int) (io.ReadWriteCloser, error) {
	in, err := d.instance(ctx, id)
	if err != nil {
		return nil, err
	}
	if in.State == "destroyed" {
		return nil, fmt.Errorf("sim dial %s: %w", id, fleet.ErrNotFound)
	}
	return nil, fmt.Errorf("the simulated fleet runs no processes, so nothing can listen on port %d in %s: %w", port, in.Name, fleet.ErrNotSupported)
}
