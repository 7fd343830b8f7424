package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// DefaultContainerFreshness is how long a pooled container may wait for an
// owner before it is recycled, so every user gets current tooling.
const DefaultContainerFreshness = 6 * time.Hour

// ContainerPoolTarget is an admin's wish for one pool of containers.
type ContainerPoolTarget struct {
	Region  string `json:"region"`
	Type    string `json:"type"`
	Profile string `json:"profile"`
	Target  int    `json:"target"`
	Min     int    `json:"min"`
	Max     int    `json:"max"`
}

// ContainerPoolKey names a pool in messages and form fields: region/type/profile.
func ContainerPoolKey(region, typ, profile string) string { return region + "/" + typ + "/" + profile }

// Pool health, as the admin capacity page shows it.
const (
	PoolHealthy = "healthy" // ready at target
	PoolFilling = "filling" // at least the minimum ready, the rest building
	PoolLow     = "low"     // fewer ready than the minimum
	PoolOff     = "off"     // target 0
	PoolStopped = "stopped" // its region takes no placements
)

// ContainerPool is one pool with its targets and what it holds now.
type ContainerPool struct {
	Region    string    `db:"region" json:"region"`
	Type      string    `db:"type" json:"type"`
	Profile   string    `db:"profile" json:"profile"`
	Target    int       `db:"target" json:"target"`
	Min       int       `db:"min_ready" json:"min"`
	Max       int       `db:"max_size" json:"max"`
	UpdatedAt time.Time `db:"updated_at" json:"updated_at"`
	UpdatedBy string    `db:"updated_by" json:"updated_by,omitempty"`
	// Counted from the containers, not stored.
	Ready    int `db:"-" json:"ready"`
	Building int `db:"-" json:"building"`
	// Stale are ready ones older than the freshness limit, awaiting recycling.
	Stale int `db:"-" json:"stale"`
	// OldestReady is when the oldest ready one was built.
	OldestReady  *time.Time `db:"-" json:"oldest_ready,omitempty"`
	RegionStatus string     `db:"-" json:"region_status"`
	// Served is how many requests the pool served in the last 24 hours.
	Served int `db:"-" json:"served_24h"`
}

// Health says how the pool stands.
func (p ContainerPool) Health() string {
	switch {
	case p.RegionStatus != "" && p.RegionStatus != "active":
		return PoolStopped
	case p.Target == 0:
		return PoolOff
	case p.Ready < p.Min:
		return PoolLow
	case p.Ready-p.Stale >= p.Target:
		return PoolHealthy
	}
	return PoolFilling
}

const containerPoolColumns = `region, type, profile, target, min_ready, max_size, updated_at, updated_by`

type containerPoolCount struct {
	Region   string     `db:"region"`
	Type     string     `db:"type"`
	Profile  string     `db:"profile"`
	Ready    int        `db:"ready"`
	Building int        `db:"building"`
	Stale    int        `db:"stale"`
	Oldest   *time.Time `db:"oldest"`
}

// ContainerPools lists every pool an admin has set, with what it holds and
// its health; freshBefore is the freshness limit (ready ones built before
// it are stale).
func (s *Store) ContainerPools(ctx context.Context, freshBefore time.Time) ([]ContainerPool, error) {
	var pools []ContainerPool
	err := s.read.SelectContext(ctx, &pools, `
SELECT `+containerPoolColumns+` FROM container_pools p
ORDER BY (SELECT position FROM regions WHERE code = p.region), region,
    (SELECT position FROM container_types WHERE name = p.type), type,
    (SELECT position FROM container_profiles WHERE name = p.profile), profile`)
	if err != nil {
		return nil, fmt.Errorf("container pools: %w", err)
	}
	var counts []containerPoolCount
	err = selectNamed(ctx, s.read, &counts, `
SELECT region, type, profile,
       SUM(CASE WHEN state = 'ready' THEN 1 ELSE 0 END) AS ready,
       SUM(CASE WHEN state = 'provisioning' THEN 1 ELSE 0 END) AS building,
       SUM(CASE WHEN state = 'ready' AND created_at < :fresh THEN 1 ELSE 0 END) AS stale,
       NULL AS oldest
FROM containers WHERE owner_id IS NULL AND state IN ('ready', 'provisioning')
GROUP BY region, type, profile`, arg{"fresh": freshBefore})
	if err != nil {
		return nil, fmt.Errorf("container pools: %w", err)
	}
	// The oldest ready one of each pool is read as a column, not as MIN():
	// SQLite returns an aggregate of a timestamp as text, which does not
	// scan into a time.
	var readyAt []struct {
		Region  string    `db:"region"`
		Type    string    `db:"type"`
		Profile string    `db:"profile"`
		Created time.Time `db:"created_at"`
	}
	err = s.read.SelectContext(ctx, &readyAt, `
SELECT region, type, profile, created_at FROM containers WHERE owner_id IS NULL AND state = 'ready' ORDER BY created_at DESC`)
	if err != nil {
		return nil, fmt.Errorf("container pools: %w", err)
	}
	oldest := map[string]time.Time{}
	for _, r := range readyAt {
		oldest[ContainerPoolKey(r.Region, r.Type, r.Profile)] = r.Created // the last one seen is the oldest
	}
	for i := range counts {
		if t, ok := oldest[ContainerPoolKey(counts[i].Region, counts[i].Type, counts[i].Profile)]; ok {
			counts[i].Oldest = &t
		}
	}
	var served []struct {
		Key string `db:"k"`
		N   int    `db:"n"`
	}
	err = selectNamed(ctx, s.read, &served, `
SELECT region || '/' || type || '/' || profile AS k, COUNT(*) AS n FROM containers
WHERE pooled_at IS NOT NULL AND assigned_at IS NOT NULL AND assigned_at >= :since GROUP BY region, type, profile`,
		arg{"since": s.Now().Add(-24 * time.Hour)})
	if err != nil {
		return nil, fmt.Errorf("container pools: %w", err)
	}
	regions, err := s.Regions(ctx)
	if err != nil {
		return nil, err
	}
	status := map[string]string{}
	for _, r := range regions {
		status[r.Code] = r.Status
	}
	byKey := map[string]containerPoolCount{}
	for _, c := range counts {
		byKey[ContainerPoolKey(c.Region, c.Type, c.Profile)] = c
	}
	servedBy := map[string]int{}
	for _, s := range served {
		servedBy[s.Key] = s.N
	}
	for i := range pools {
		p := &pools[i]
		k := ContainerPoolKey(p.Region, p.Type, p.Profile)
		c := byKey[k]
		p.Ready, p.Building, p.Stale, p.Served = c.Ready, c.Building, c.Stale, servedBy[k]
		if c.Oldest != nil {
			t := c.Oldest.UTC()
			p.OldestReady = &t
		}
		p.RegionStatus = status[p.Region]
	}
	return pools, nil
}

// ContainerPoolReady is how many pooled containers are ready, by
// region/type/profile key.
func (s *Store) ContainerPoolReady(ctx context.Context) (map[string]int, error) {
	var counts []containerPoolCount
	err := s.read.SelectContext(ctx, &counts, `
SELECT region, type, profile, COUNT(*) AS ready, 0 AS building, 0 AS stale, NULL AS oldest
FROM containers WHERE owner_id IS NULL AND state = 'ready' GROUP BY region, type, profile`)
	if err != nil {
		return nil, fmt.Errorf("container pool ready: %w", err)
	}
	out := map[string]int{}
	for _, c := range counts {
		out[ContainerPoolKey(c.Region, c.Type, c.Profile)] = c.Ready
	}
	return out, nil
}

// SetContainerPool writes one pool's target, minimum and maximum. A target
// of 0 with a maximum of 0 removes the pool; its ready containers are
// recycled by the next refill.
func (tx *Tx) SetContainerPool(ctx context.Context, who Actor, t ContainerPoolTarget) error {
	p := Problems{}
	if _, err := regionByCode(ctx, tx, t.Region); errors.Is(err, ErrNotFound) {
		p.Add("region", fmt.Sprintf("%q is not a region", clip(t.Region)))
	} else if err != nil {
		return err
	}
	typ, err := containerTypeByName(ctx, tx, t.Type)
	if errors.Is(err, ErrNotFound) {
		p.Add("type", fmt.Sprintf("%q is not a container type", clip(t.Type)))
	} else if err != nil {
		return err
	}
	if _, err := containerProfileByName(ctx, tx, t.Profile); errors.Is(err, ErrNotFound) {
		p.Add("profile", fmt.Sprintf("%q is not a hardware profile", clip(t.Profile)))
	} else if err != nil {
		return err
	} else if typ.Name != "" && !typ.Allows(t.Profile) {
		p.Add("profile", fmt.Sprintf("%s containers run on %s, not %s", typ.Name, strings.Join(typ.Profiles, ", "), t.Profile))
	}
	switch {
	case t.Max < 0 || t.Max > MaxPoolTarget:
		p.Add("max", fmt.Sprintf("must be a whole number from 0 to %d", MaxPoolTarget))
	case t.Target < 0 || t.Target > t.Max:
		p.Add("target", fmt.Sprintf("must be a whole number from 0 to the maximum (%d)", t.Max))
	case t.Min < 0 || t.Min > t.Target:
		p.Add("min", fmt.Sprintf("must be a whole number from 0 to the target (%d)", t.Target))
	}
	if err := p.Err(); err != nil {
		return err
	}
	key := ContainerPoolKey(t.Region, t.Type, t.Profile)
	a := arg{"region": t.Region, "type": t.Type, "profile": t.Profile, "target": t.Target, "min": t.Min, "max": t.Max, "now": tx.Now(), "by": who.Name}
	var old ContainerPool
	err = getNamed(ctx, tx, &old, `SELECT `+containerPoolColumns+` FROM container_pools WHERE region = :region AND type = :type AND profile = :profile`, a)
	exists := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("set container pool %s: %w", key, err)
	}
	if exists && old.Target == t.Target && old.Min == t.Min && old.Max == t.Max {
		return nil
	}
	if t.Target == 0 && t.Max == 0 {
		if !exists {
			return nil
		}
		_, err = execNamed(ctx, tx, `DELETE FROM container_pools WHERE region = :region AND type = :type AND profile = :profile`, a)
	} else {
		_, err = execNamed(ctx, tx, `
INSERT INTO container_pools (region, type, profile, target, min_ready, max_size, updated_at, updated_by)
VALUES (:region, :type, :profile, :target, :min, :max, :now, :by)
ON CONFLICT (region, type, profile) DO UPDATE SET target = excluded.target, min_ready = excluded.min_ready,
    max_size = excluded.max_size, updated_at = excluded.updated_at, updated_by = excluded.updated_by`, a)
	}
	if err != nil {
		return fmt.Errorf("set container pool %s: %w", key, err)
	}
	return tx.Audit(ctx, who, "container_pool.set", "container_pool", key, map[string]any{
		"from": fmt.Sprintf("%d/%d/%d", old.Min, old.Target, old.Max), "to": fmt.Sprintf("%d/%d/%d", t.Min, t.Target, t.Max),
	})
}

// ContainerPoolRefill is what one refill did to one pool.
type ContainerPoolRefill struct {
	// Built are new pooled containers to provision; Recycled are stale or
	// unwanted ones to destroy. The caller enqueues both in the same tx.
	Built    []int64
	Recycled []int64
	// NoRoom is set when the region had no room for all that was wanted.
	NoRoom bool
}

// PoolKeys lists every region/type/profile that has a pool or pooled
// containers, for the refill.
func (s *Store) ContainerPoolKeys(ctx context.Context) ([]ContainerPoolTarget, error) {
	var keys []ContainerPoolTarget
	err := s.read.SelectContext(ctx, &keys, `
SELECT region AS "region", type AS "type", profile AS "profile" FROM container_pools
UNION
SELECT region, type, profile FROM containers WHERE owner_id IS NULL AND state IN ('ready', 'provisioning')
ORDER BY 1, 2, 3`)
	if err != nil {
		return nil, fmt.Errorf("container pool keys: %w", err)
	}
	return keys, nil
}

// RefillContainerPool tops up one pool inside tx and recycles its stale
// containers. It builds until ready (fresh) plus building reach the target,
// never past the maximum in all, as far as capacity allows; it recycles
// ready ones built before freshBefore, keeping as many stale ones as are
// needed to leave the minimum ready until their replacements are. A pool
// whose region is not active, or that no longer exists, is emptied.
// Everything is counted inside the write transaction, so two refills at
// once never over-fill.
func (tx *Tx) RefillContainerPool(ctx context.Context, region, typ, profile string, freshBefore time.Time) (ContainerPoolRefill, error) {
	var out ContainerPoolRefill
	key := ContainerPoolKey(region, typ, profile)
	a := arg{"region": region, "type": typ, "profile": profile, "fresh": freshBefore}
	// Touching the pool's row first takes its row lock on PostgreSQL.
	if _, err := execNamed(ctx, tx, `UPDATE container_pools SET target = target WHERE region = :region AND type = :type AND profile = :profile`, a); err != nil {
		return out, fmt.Errorf("refill container pool %s: %w", key, err)
	}
	var pool ContainerPool
	err := getNamed(ctx, tx, &pool, `SELECT `+containerPoolColumns+` FROM container_pools WHERE region = :region AND type = :type AND profile = :profile`, a)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return out, fmt.Errorf("refill container pool %s: %w", key, err)
	}
	rg, err := regionByCode(ctx, tx, region)
	if err != nil {
		return out, err
	}
	if !rg.Active() {
		// A draining or down region keeps no pool: what waits there is
		// recycled, and requests go to the next region.
		pool.Target, pool.Min, pool.Max = 0, 0, 0
	}
	var members []struct {
		ID      int64     `db:"id"`
		State   string    `db:"state"`
		Created time.Time `db:"created_at"`
	}
	err = selectNamed(ctx, tx, &members, `
SELECT id, state, created_at FROM containers
WHERE owner_id IS NULL AND region = :region AND type = :type AND profile = :profile AND state IN ('ready', 'provisioning')
ORDER BY created_at, id`, a)
	if err != nil {
		return out, fmt.Errorf("refill container pool %s: %w", key, err)
	}
	var fresh, building int
	var stale []int64 // oldest first
	for _, m := range members {
		switch {
		case m.State == ContainerProvisioning:
			building++
		case m.Created.Before(freshBefore):
			stale = append(stale, m.ID)
		default:
			fresh++
		}
	}
	// Build what the pool lacks, within its maximum.
	want := min(pool.Target-fresh-building, pool.Max-len(members))
	if want > 0 {
		t, err := containerTypeByName(ctx, tx, typ)
		if err != nil {
			return out, err
		}
		prof, err := containerProfileByName(ctx, tx, profile)
		if err != nil {
			return out, err
		}
		for range want {
			id, err := tx.insertContainer(ctx, t, prof, region, nil, nil)
			if err != nil {
				return out, err
			}
			if id == 0 {
				out.NoRoom = true
				break
			}
			out.Built = append(out.Built, id)
		}
	}
	// Recycle stale ones, keeping enough to leave the minimum ready; and
	// fresh ones beyond the maximum (a lowered target).
	keep := max(pool.Min-fresh, 0)
	if len(stale) > keep {
		out.Recycled = append(out.Recycled, stale[:len(stale)-keep]...)
	}
	if extra := fresh + len(stale) - len(out.Recycled) - pool.Max; extra > 0 {
		for _, m := range members {
			if extra == 0 {
				break
			}
			if m.State == ContainerReady && !m.Created.Before(freshBefore) {
				out.Recycled = append(out.Recycled, m.ID)
				extra--
			}
		}
	}
	now := tx.Now()
	for _, id := range out.Recycled {
		_, err := execNamed(ctx, tx, `
UPDATE containers SET state = 'ending', status_note = 'Recycled from its pool', end_reason = 'recycled', ended_by = 'system', updated_at = :now
WHERE id = :id AND owner_id IS NULL AND state = 'ready'`, arg{"id": id, "now": now})
		if err != nil {
			return out, fmt.Errorf("refill container pool %s: recycle: %w", key, err)
		}
	}
	if len(out.Built)+len(out.Recycled) > 0 {
		err = tx.Audit(ctx, System, "container_pool.refill", "container_pool", key, map[string]any{
			"target": pool.Target, "fresh": fresh, "building": building, "built": len(out.Built), "recycled": len(out.Recycled), "no_room": out.NoRoom,
		})
	}
	return out, err
}
