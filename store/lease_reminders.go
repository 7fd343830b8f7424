package store

import (
	"context"
	"fmt"
	"time"
)

// LeasesEndingBy returns owned devservers whose short lease is still open and
// ends at or before until, soonest first, leaving out those already on their
// way out (releasing or released). Permanent leases never appear.
func (s *Store) LeasesEndingBy(ctx context.Context, until time.Time, limit int) ([]Devserver, error) {
	if limit <= 0 {
		limit = 1000
	}
	var ds []Devserver
	err := selectNamed(ctx, s.read, &ds, devserverSelect+`
WHERE l.kind = 'short' AND l.ends_at <= :until AND d.owner_id IS NOT NULL AND d.state NOT IN ('releasing', 'released')
ORDER BY l.ends_at, d.id LIMIT :limit`, arg{"until": until, "limit": limit})
	if err != nil {
		return nil, fmt.Errorf("leases ending by %s: %w", until.Format(time.RFC3339), err)
	}
	return ds, nil
}
