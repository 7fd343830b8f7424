package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
)

// RegionLatency is how far one region is from another, in milliseconds.
type RegionLatency struct {
	From string `db:"from_region" json:"from"`
	To   string `db:"to_region" json:"to"`
	MS   int    `db:"ms" json:"ms"`
}

// ByNearness orders regions by latency from the region from: from itself
// first, then the nearest; regions without a known latency come last, in
// display order. ms maps a region code to its latency from from.
func ByNearness(regions []Region, from string, ms map[string]int) []Region {
	out := slices.Clone(regions)
	distance := func(r Region) int {
		if r.Code == from {
			return -1
		}
		if d, ok := ms[r.Code]; ok {
			return d
		}
		return int(^uint(0) >> 1)
	}
	slices.SortStableFunc(out, func(a, b Region) int {
		return cmp.Or(cmp.Compare(distance(a), distance(b)), cmp.Compare(a.Position, b.Position), cmp.Compare(a.Code, b.Code))
	})
	return out
}

func latenciesFrom(ctx context.Context, q queryer, from string) (map[string]int, error) {
	var rows []RegionLatency
	if err := selectNamed(ctx, q, &rows, `SELECT from_region, to_region, ms FROM region_latencies WHERE from_region = :from`, arg{"from": from}); err != nil {
		return nil, fmt.Errorf("latencies from %s: %w", from, err)
	}
	out := make(map[string]int, len(rows))
	for _, r := range rows {
		out[r.To] = r.MS
	}
	return out, nil
}

// Latencies is the latency from region from to every region it is known for.
func (s *Store) Latencies(ctx context.Context, from string) (map[string]int, error) {
	return latenciesFrom(ctx, s.read, from)
}

// RegionsByNearness lists the regions ordered by nearness to from.
func (s *Store) RegionsByNearness(ctx context.Context, from string) ([]Region, error) {
	return regionsByNearness(ctx, s.read, from)
}

// regionsByNearness lists every region, from itself first, then the nearest.
func regionsByNearness(ctx context.Context, q queryer, from string) ([]Region, error) {
	var regions []Region
	if err := q.SelectContext(ctx, &regions, `SELECT `+regionColumns+` FROM regions ORDER BY position, code`); err != nil {
		return nil, fmt.Errorf("regions: %w", err)
	}
	ms, err := latenciesFrom(ctx, q, from)
	if err != nil {
		return nil, err
	}
	return ByNearness(regions, from, ms), nil
}

// SetLatency records the latency between two regions, both ways.
func (tx *Tx) SetLatency(ctx context.Context, a, b string, ms int) error {
	if ms < 0 {
		return &ValidationError{Fields: map[string]string{"ms": "must not be negative"}}
	}
	for _, pair := range [][2]string{{a, b}, {b, a}} {
		_, err := execNamed(ctx, tx, `
INSERT INTO region_latencies (from_region, to_region, ms) VALUES (:from, :to, :ms)
ON CONFLICT (from_region, to_region) DO UPDATE SET ms = excluded.ms`, arg{"from": pair[0], "to": pair[1], "ms": ms})
		if err != nil {
			return fmt.Errorf("set latency %s-%s: %w", pair[0], pair[1], err)
		}
	}
	return nil
}
