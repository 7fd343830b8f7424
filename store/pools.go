package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

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

// MaxPoolTarget is the largest target an admin may set: a pool is a buffer
// ahead of demand, not a way to take a region's whole capacity.
const MaxPoolTarget = 500

// PoolTarget is an admin's wish for one pool.
type PoolTarget struct {
	Region string `json:"region"`
	Flavor string `json:"flavor"`
	Target int    `json:"target"`
}

// PoolKey names a pool in messages and form fields: region/flavour.
func PoolKey(region, flavor string) string { return region + "/" + flavor }

// poolCount is how many pooled devservers a pool has, by state.
type poolCount struct {
	Region   string `db:"region"`
	Flavor   string `db:"flavor"`
	Ready    int    `db:"ready"`
	Building int    `db:"building"`
}

const poolCountsSQL = `
SELECT region, flavor,
       SUM(CASE WHEN state = 'ready' THEN 1 ELSE 0 END) AS ready,
       SUM(CASE WHEN state = 'provisioning' THEN 1 ELSE 0 END) AS building
FROM devservers
WHERE owner_id IS NULL AND state IN ('ready', 'provisioning')
GROUP BY region, flavor`

// Pools lists every region × flavour with its target (0 where none is set)
// and its ready and building devservers, in display order.
func (s *Store) Pools(ctx context.Context) ([]Pool, error) {
	regions, err := s.Regions(ctx)
	if err != nil {
		return nil, err
	}
	flavors, err := s.Flavors(ctx)
	if err != nil {
		return nil, err
	}
	var rows []Pool
	if err := s.read.SelectContext(ctx, &rows, `SELECT region, flavor, target, updated_at, updated_by FROM pools`); err != nil {
		return nil, fmt.Errorf("pools: %w", err)
	}
	var counts []poolCount
	if err := s.read.SelectContext(ctx, &counts, poolCountsSQL); err != nil {
		return nil, fmt.Errorf("pools: %w", err)
	}
	set := map[string]Pool{}
	for _, p := range rows {
		set[PoolKey(p.Region, p.Flavor)] = p
	}
	count := map[string]poolCount{}
	for _, c := range counts {
		count[PoolKey(c.Region, c.Flavor)] = c
	}
	out := make([]Pool, 0, len(regions)*len(flavors))
	for _, r := range regions {
		for _, f := range flavors {
			k := PoolKey(r.Code, f.Name)
			p, ok := set[k]
			if !ok {
				p = Pool{Region: r.Code, Flavor: f.Name}
			}
			p.Ready, p.Building = count[k].Ready, count[k].Building
			out = append(out, p)
		}
	}
	return out, nil
}

// PoolReady is how many pooled devservers are ready, by region and flavour.
func (s *Store) PoolReady(ctx context.Context) (map[string]map[string]int, error) {
	var counts []poolCount
	if err := s.read.SelectContext(ctx, &counts, poolCountsSQL); err != nil {
		return nil, fmt.Errorf("pool ready: %w", err)
	}
	out := map[string]map[string]int{}
	for _, c := range counts {
		if out[c.Region] == nil {
			out[c.Region] = map[string]int{}
		}
		out[c.Region][c.Flavor] = c.Ready
	}
	return out, nil
}

// SetPoolTargets writes the targets that changed, all or nothing. A bad
// target is reported under its pool's key (region/flavour).
func (tx *Tx) SetPoolTargets(ctx context.Context, who Actor, targets []PoolTarget) error {
	p := Problems{}
	for _, t := range targets {
		k := PoolKey(t.Region, t.Flavor)
		if _, err := regionByCode(ctx, tx, t.Region); errors.Is(err, ErrNotFound) {
			p.Add(k, fmt.Sprintf("%q is not a region", clip(t.Region)))
			continue
		} else if err != nil {
			return err
		}
		if _, err := flavorByName(ctx, tx, t.Flavor); errors.Is(err, ErrNotFound) {
			p.Add(k, fmt.Sprintf("%q is not a flavour", clip(t.Flavor)))
			continue
		} else if err != nil {
			return err
		}
		if t.Target < 0 || t.Target > MaxPoolTarget {
			p.Add(k, fmt.Sprintf("must be a whole number from 0 to %d", MaxPoolTarget))
		}
	}
	if err := p.Err(); err != nil {
		return err
	}
	now := tx.Now()
	for _, t := range targets {
		var old int
		err := getNamed(ctx, tx, &old, `SELECT target FROM pools WHERE region = :region AND flavor = :flavor`, arg{"region": t.Region, "flavor": t.Flavor})
		if err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("set pool %s: %w", PoolKey(t.Region, t.Flavor), err)
		}
		if old == t.Target {
			continue
		}
		_, err = execNamed(ctx, tx, `
INSERT INTO pools (region, flavor, target, updated_at, updated_by) VALUES (:region, :flavor, :target, :now, :by)
ON CONFLICT (region, flavor) DO UPDATE SET target = excluded.target, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
			arg{"region": t.Region, "flavor": t.Flavor, "target": t.Target, "now": now, "by": who.Name})
		if err != nil {
			return fmt.Errorf("set pool %s: %w", PoolKey(t.Region, t.Flavor), err)
		}
		if err := tx.Audit(ctx, who, "pool.set_target", "pool", PoolKey(t.Region, t.Flavor), map[string]any{"from": old, "to": t.Target}); err != nil {
			return err
		}
	}
	return nil
}

// PoolsToFill lists the pools with a target, for the refill job.
func (s *Store) PoolsToFill(ctx context.Context) ([]Pool, error) {
	var ps []Pool
	if err := s.read.SelectContext(ctx, &ps, `SELECT region, flavor, target, updated_at, updated_by FROM pools WHERE target > 0 ORDER BY region, flavor`); err != nil {
		return nil, fmt.Errorf("pools to fill: %w", err)
	}
	return ps, nil
}

// FillPool tops up one pool inside tx: it records new pooled devservers
// (owner none, state provisioning) until ready plus building reach the
// target, as far as free capacity allows, and returns them so the caller
// enqueues their provisioning in the same transaction. Everything is counted
// inside the write transaction, so two refills at once never over-fill.
func (tx *Tx) FillPool(ctx context.Context, region, flavor string) ([]Devserver, error) {
	// Touching the pool's row first takes its row lock on PostgreSQL, where
	// write transactions are not serialized as they are on SQLite.
	n, err := execNamed(ctx, tx, `UPDATE pools SET target = target WHERE region = :region AND flavor = :flavor`, arg{"region": region, "flavor": flavor})
	if err != nil {
		return nil, fmt.Errorf("fill pool %s: %w", PoolKey(region, flavor), err)
	}
	if n == 0 {
		return nil, nil
	}
	var target int
	if err := getNamed(ctx, tx, &target, `SELECT target FROM pools WHERE region = :region AND flavor = :flavor`, arg{"region": region, "flavor": flavor}); err != nil {
		return nil, fmt.Errorf("fill pool %s: %w", PoolKey(region, flavor), err)
	}
	rg, err := regionByCode(ctx, tx, region)
	if err != nil {
		return nil, err
	}
	if !rg.Active() {
		return nil, nil
	}
	f, err := flavorByName(ctx, tx, flavor)
	if err != nil {
		return nil, err
	}
	var have int
	err = getNamed(ctx, tx, &have, `SELECT COUNT(*) FROM devservers WHERE owner_id IS NULL AND region = :region AND flavor = :flavor AND state IN ('ready', 'provisioning')`,
		arg{"region": region, "flavor": flavor})
	if err != nil {
		return nil, fmt.Errorf("fill pool %s: %w", PoolKey(region, flavor), err)
	}
	now := tx.Now()
	var made []Devserver
	for i := have; i < target; i++ {
		host, err := tx.takeCapacity(ctx, f, region)
		if err != nil {
			return nil, err
		}
		if host.ID == 0 {
			break // the region is full: the pool waits for room
		}
		var id int64
		for attempt := 0; ; attempt++ {
			name := "pool-" + NewSecret(3)[:5]
			err := tx.savepoint(ctx, func() error {
				return getNamed(ctx, tx, &id, `
INSERT INTO devservers (name, owner_id, flavor, region, host_id, hostname, state, progress, created_at, updated_at, pooled_at)
VALUES (:name, NULL, :flavor, :region, :host_id, :hostname, 'provisioning', 0, :now, :now, :now)
RETURNING id`, arg{"name": name, "flavor": f.Name, "region": region, "host_id": host.ID, "hostname": name + "." + region + ".devport.internal", "now": now})
			})
			if err == nil {
				break
			}
			if !isUniqueViolation(err) || attempt == 5 {
				return nil, fmt.Errorf("fill pool %s: %w", PoolKey(region, flavor), err)
			}
		}
		d, err := tx.DevserverByID(ctx, id)
		if err != nil {
			return nil, err
		}
		made = append(made, d)
	}
	if len(made) == 0 {
		return nil, nil
	}
	names := make([]string, len(made))
	for i, d := range made {
		names[i] = d.Name
	}
	err = tx.Audit(ctx, System, "pool.refill", "pool", PoolKey(region, flavor), map[string]any{
		"target": target, "had": have, "building": strings.Join(names, " "),
	})
	return made, err
}

// takeCapacity takes room for one devserver of flavour f on the best host of
// region, and returns that host (the zero Host when nothing has room).
func (tx *Tx) takeCapacity(ctx context.Context, f Flavor, region string) (Host, error) {
	return tx.takeCapacityExcept(ctx, f, region, 0)
}

// takeCapacityExcept is takeCapacity on any host but exclude (the one a
// devserver moves off).
func (tx *Tx) takeCapacityExcept(ctx context.Context, f Flavor, region string, exclude int64) (Host, error) {
	hosts, err := hostsIn(ctx, tx, region)
	if err != nil {
		return Host{}, err
	}
	for _, h := range PlacementOrder(f, hosts) {
		if h.ID == exclude {
			continue
		}
		n, err := execNamed(ctx, tx, takeCapacitySQL, capacityArgs(h.ID, f))
		if err != nil {
			return Host{}, fmt.Errorf("take capacity for %s on %s: %w", f.Name, h.Name, err)
		}
		if n == 1 {
			return h, nil
		}
	}
	return Host{}, nil
}

// assignPooled takes a ready pooled devserver of the flavour in the region
// for owner, if there is one: a conditional update (still unowned, still
// ready) inside the write transaction, so two reservations never get the same
// one. It renames it after its owner and returns its ID, or 0.
func (tx *Tx) assignPooled(ctx context.Context, owner User, f Flavor, region string) (int64, error) {
	now := tx.Now()
	for attempt := 0; ; attempt++ {
		var candidate int64
		err := getNamed(ctx, tx, &candidate, `
SELECT id FROM devservers WHERE owner_id IS NULL AND state = 'ready' AND region = :region AND flavor = :flavor
ORDER BY pooled_at, id LIMIT 1`, arg{"region": region, "flavor": f.Name})
		if errors.Is(err, ErrNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("take from pool %s: %w", PoolKey(region, f.Name), err)
		}
		name := devserverName(owner.Email)
		var n int64
		err = tx.savepoint(ctx, func() (err error) {
			n, err = execNamed(ctx, tx, `
UPDATE devservers SET owner_id = :owner_id, name = :name, hostname = :hostname, assigned_at = :now, updated_at = :now
WHERE id = :id AND owner_id IS NULL AND state = 'ready'`, arg{"id": candidate, "owner_id": owner.ID, "name": name,
				"hostname": name + "." + region + ".devport.internal", "now": now})
			return err
		})
		switch {
		case err != nil && isUniqueViolation(err) && attempt < 5:
			continue // the name is taken: draw another
		case err != nil:
			return 0, fmt.Errorf("take from pool %s: %w", PoolKey(region, f.Name), err)
		case n == 1:
			return candidate, nil
		case attempt >= 5:
			return 0, nil
		}
	}
}
