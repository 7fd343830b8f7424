package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// FleetDeclaration is the inventory a fleet file declares. A host's State is
// "" when the file does not state one. Flavors and Features are nil when the
// file leaves the catalogues to the demo's.
type FleetDeclaration struct {
	Source   string // the file, for audit events and messages
	Regions  []Region
	Hosts    []Host
	Flavors  []Flavor
	Features []Feature
}

// FleetChanges is what a reconcile changed, object by object ("host prn-ct01").
type FleetChanges struct {
	Created []string
	Updated []string
	Retired []string
}

// Empty tells whether the inventory already matched the declaration.
func (c FleetChanges) Empty() bool {
	return len(c.Created)+len(c.Updated)+len(c.Retired) == 0
}

// liveDevserversOnHostSQL lists the devservers that occupy a host.
const liveDevserversOnHostSQL = `
SELECT name FROM devservers
WHERE host_id = :host AND state NOT IN ('released', 'failed')
ORDER BY name`

// liveContainersOnHostSQL lists the On Demand containers on a host.
const liveContainersOnHostSQL = `
SELECT name FROM containers
WHERE host_id = :host AND state IN ('provisioning', 'ready', 'ending')
ORDER BY name`

// ReconcileFleet makes the inventory match a fleet file, in one write
// transaction: declared regions and hosts are inserted or updated (sizes,
// kind, driver, tags, state), hosts that are not declared are retired, and
// regions that are not declared stop taking placements (drained). Capacity
// already in use is kept. A change that would strand devservers (removing or
// moving a host that holds them, shrinking it below what they use) refuses
// the whole reconcile with a conflict naming the host and its devservers,
// and nothing changes.
func (s *Store) ReconcileFleet(ctx context.Context, d FleetDeclaration) (FleetChanges, error) {
	var ch FleetChanges
	err := s.InTx(ctx, func(tx *Tx) error {
		ch = FleetChanges{}
		return tx.reconcileFleet(ctx, d, &ch)
	})
	if err != nil {
		return FleetChanges{}, fmt.Errorf("fleet file %s: %w", d.Source, err)
	}
	return ch, nil
}

func (tx *Tx) reconcileFleet(ctx context.Context, d FleetDeclaration, ch *FleetChanges) error {
	now := tx.Now()
	who := System
	audit := func(action, objectType, id string, detail map[string]any) error {
		if detail == nil {
			detail = map[string]any{}
		}
		detail["source"] = d.Source
		return tx.Audit(ctx, who, action, objectType, id, detail)
	}

	// Regions first: hosts refer to them.
	var regions []Region
	if err := tx.SelectContext(ctx, &regions, `SELECT `+regionColumns+` FROM regions`); err != nil {
		return fmt.Errorf("regions: %w", err)
	}
	declaredRegions := map[string]bool{}
	for _, r := range d.Regions {
		declaredRegions[r.Code] = true
		i := slices.IndexFunc(regions, func(x Region) bool { return x.Code == r.Code })
		if i < 0 {
			if _, err := execNamed(ctx, tx, `INSERT INTO regions (code, name, status, position, created_at) VALUES (:code, :name, 'active', :position, :now)`,
				arg{"code": r.Code, "name": r.Name, "position": r.Position, "now": now}); err != nil {
				return fmt.Errorf("region %s: %w", r.Code, err)
			}
			ch.Created = append(ch.Created, "region "+r.Code)
			if err := audit("region.create", "region", r.Code, map[string]any{"name": r.Name, "position": r.Position}); err != nil {
				return err
			}
			continue
		}
		old := regions[i]
		changed := map[string]any{}
		if old.Name != r.Name {
			changed["name"] = []any{old.Name, r.Name}
		}
		if old.Position != r.Position {
			changed["position"] = []any{old.Position, r.Position}
		}
		if len(changed) == 0 {
			continue
		}
		if _, err := execNamed(ctx, tx, `UPDATE regions SET name = :name, position = :position WHERE code = :code`,
			arg{"code": r.Code, "name": r.Name, "position": r.Position}); err != nil {
			return fmt.Errorf("region %s: %w", r.Code, err)
		}
		ch.Updated = append(ch.Updated, "region "+r.Code)
		if err := audit("region.update", "region", r.Code, changed); err != nil {
			return err
		}
	}

	var hosts []Host
	if err := tx.SelectContext(ctx, &hosts, `SELECT `+hostColumns+` FROM hosts ORDER BY name`); err != nil {
		return fmt.Errorf("hosts: %w", err)
	}
	// live says what occupies a host: its devservers, and its On Demand
	// containers (pooled ones included); "" when nothing does.
	live := func(h Host) (string, error) {
		var names, containers []string
		if err := selectNamed(ctx, tx, &names, liveDevserversOnHostSQL, arg{"host": h.ID}); err != nil {
			return "", fmt.Errorf("devservers on host %s: %w", h.Name, err)
		}
		if err := selectNamed(ctx, tx, &containers, liveContainersOnHostSQL, arg{"host": h.ID}); err != nil {
			return "", fmt.Errorf("containers on host %s: %w", h.Name, err)
		}
		var parts []string
		if len(names) > 0 {
			parts = append(parts, devserverList(names))
		}
		if len(containers) > 0 {
			parts = append(parts, strings.Replace(devserverList(containers), "devserver", "container", 1))
		}
		return strings.Join(parts, " and "), nil
	}
	var refusals []string
	declaredHosts := map[string]bool{}
	for _, h := range d.Hosts {
		declaredHosts[h.Name] = true
		i := slices.IndexFunc(hosts, func(x Host) bool { return x.Name == h.Name })
		if i < 0 {
			h.CreatedAt = now
			if h.State == "" {
				h.State = "ready"
			}
			if _, err := execNamed(ctx, tx, `
INSERT INTO hosts (name, region, kind, driver, state, cpus, memory_gb, disk_gb, gpus, tags, created_at)
VALUES (:name, :region, :kind, :driver, :state, :cpus, :memory_gb, :disk_gb, :gpus, :tags, :created_at)`, h); err != nil {
				return fmt.Errorf("host %s: %w", h.Name, err)
			}
			ch.Created = append(ch.Created, "host "+h.Name)
			if err := audit("host.create", "host", h.Name, map[string]any{
				"region": h.Region, "kind": h.Kind, "driver": h.Driver, "state": h.State,
				"cpus": h.CPUs, "memory_gb": h.MemoryGB, "disk_gb": h.DiskGB, "gpus": h.GPUs, "tags": h.Tags,
			}); err != nil {
				return err
			}
			continue
		}
		old := hosts[i]
		// A host's state belongs to operations (maintenance, drains): the
		// file sets it only where it states one, and brings a retired host
		// back.
		state := old.State
		switch {
		case h.State != "":
			state = h.State
		case old.State == "retired":
			state = "ready"
		}
		changed := map[string]any{}
		diff := func(field string, was, is any) {
			if was != is {
				changed[field] = []any{was, is}
			}
		}
		diff("region", old.Region, h.Region)
		diff("kind", old.Kind, h.Kind)
		diff("driver", old.Driver, h.Driver)
		diff("state", old.State, state)
		diff("cpus", old.CPUs, h.CPUs)
		diff("memory_gb", old.MemoryGB, h.MemoryGB)
		diff("disk_gb", old.DiskGB, h.DiskGB)
		diff("gpus", old.GPUs, h.GPUs)
		diff("tags", old.Tags, h.Tags)
		if len(changed) == 0 {
			continue
		}
		// What devservers on the host depend on cannot change under them.
		var problems []string
		for _, field := range []string{"region", "kind", "driver"} {
			if c, ok := changed[field]; ok {
				problems = append(problems, fmt.Sprintf("its %s cannot change from %q to %q", field, c.([]any)[0], c.([]any)[1]))
			}
		}
		if len(problems) > 0 {
			occupants, err := live(old)
			if err != nil {
				return err
			}
			if occupants != "" {
				refusals = append(refusals, fmt.Sprintf("host %s has %s: %s while they are on it; move or release them first",
					h.Name, occupants, strings.Join(problems, ", ")))
				continue
			}
		}
		var short []string
		for _, c := range []struct {
			field      string
			used, size int
		}{{"cpus", old.UsedCPUs, h.CPUs}, {"memory_gb", old.UsedMemoryGB, h.MemoryGB}, {"disk_gb", old.UsedDiskGB, h.DiskGB}, {"gpus", old.UsedGPUs, h.GPUs}} {
			if c.used > c.size {
				short = append(short, fmt.Sprintf("%s %d is less than the %d in use", c.field, c.size, c.used))
			}
		}
		if len(short) > 0 {
			occupants, err := live(old)
			if err != nil {
				return err
			}
			refusals = append(refusals, fmt.Sprintf("host %s has %s: %s; move or release some of them first",
				h.Name, occupants, strings.Join(short, ", ")))
			continue
		}
		h.ID, h.State = old.ID, state
		if _, err := execNamed(ctx, tx, `
UPDATE hosts SET region = :region, kind = :kind, driver = :driver, state = :state,
    cpus = :cpus, memory_gb = :memory_gb, disk_gb = :disk_gb, gpus = :gpus, tags = :tags
WHERE id = :id`, h); err != nil {
			return fmt.Errorf("host %s: %w", h.Name, err)
		}
		ch.Updated = append(ch.Updated, "host "+h.Name)
		if err := audit("host.update", "host", h.Name, changed); err != nil {
			return err
		}
	}

	// Hosts the file no longer declares are retired, unless devservers live there.
	for _, h := range hosts {
		if declaredHosts[h.Name] || h.State == "retired" {
			continue
		}
		occupants, err := live(h)
		if err != nil {
			return err
		}
		if occupants != "" {
			refusals = append(refusals, fmt.Sprintf("host %s has %s: move or release them before removing it from the fleet file",
				h.Name, occupants))
			continue
		}
		if _, err := execNamed(ctx, tx, `UPDATE hosts SET state = 'retired' WHERE id = :id`, arg{"id": h.ID}); err != nil {
			return fmt.Errorf("retire host %s: %w", h.Name, err)
		}
		ch.Retired = append(ch.Retired, "host "+h.Name)
		if err := audit("host.retire", "host", h.Name, map[string]any{"state": []any{h.State, "retired"}, "reason": "not in the fleet file"}); err != nil {
			return err
		}
	}
	if len(refusals) > 0 {
		return Conflict("fleet_in_use", strings.Join(refusals, "\n"))
	}

	// Regions the file no longer declares take no new placements.
	for _, r := range regions {
		if declaredRegions[r.Code] || r.Status == "drained" {
			continue
		}
		if _, err := execNamed(ctx, tx, `UPDATE regions SET status = 'drained' WHERE code = :code`, arg{"code": r.Code}); err != nil {
			return fmt.Errorf("region %s: %w", r.Code, err)
		}
		ch.Retired = append(ch.Retired, "region "+r.Code)
		if err := audit("region.update", "region", r.Code, map[string]any{"status": []any{r.Status, "drained"}, "reason": "not in the fleet file"}); err != nil {
			return err
		}
	}

	if err := tx.reconcileCatalogues(ctx, d, ch, audit); err != nil {
		return err
	}
	if ch.Empty() {
		return nil
	}
	return audit("fleet.reconcile", "inventory", "fleet", map[string]any{
		"created": len(ch.Created), "updated": len(ch.Updated), "retired": len(ch.Retired),
	})
}

// reconcileCatalogues inserts or updates the declared flavours and features;
// without a declaration, the demo catalogues fill in what is missing.
// Nothing is deleted: devservers keep referring to their flavour.
func (tx *Tx) reconcileCatalogues(ctx context.Context, d FleetDeclaration, ch *FleetChanges, audit func(string, string, string, map[string]any) error) error {
	now := tx.Now()
	demo := Demo("")
	flavors, declared := d.Flavors, d.Flavors != nil
	if !declared {
		flavors = demo.Flavors
	}
	for _, f := range flavors {
		old, err := flavorByName(ctx, tx, f.Name)
		switch {
		case err == nil && !declared:
			continue
		case err == nil:
			f.CreatedAt = old.CreatedAt
			old.CreatedAt = f.CreatedAt
			if old == f {
				continue
			}
			if _, err := execNamed(ctx, tx, `
UPDATE flavors SET kind = :kind, description = :description, cpus = :cpus, memory_gb = :memory_gb, disk_gb = :disk_gb,
    gpus = :gpus, accelerator = :accelerator, position = :position
WHERE name = :name`, f); err != nil {
				return fmt.Errorf("flavor %s: %w", f.Name, err)
			}
			ch.Updated = append(ch.Updated, "flavor "+f.Name)
			if err := audit("flavor.update", "flavor", f.Name, map[string]any{"kind": f.Kind, "cpus": f.CPUs, "memory_gb": f.MemoryGB, "disk_gb": f.DiskGB, "gpus": f.GPUs}); err != nil {
				return err
			}
		case errors.Is(err, ErrNotFound):
			f.CreatedAt = now
			if _, err := execNamed(ctx, tx, `
INSERT INTO flavors (name, kind, description, cpus, memory_gb, disk_gb, gpus, accelerator, position, created_at)
VALUES (:name, :kind, :description, :cpus, :memory_gb, :disk_gb, :gpus, :accelerator, :position, :created_at)`, f); err != nil {
				return fmt.Errorf("flavor %s: %w", f.Name, err)
			}
			ch.Created = append(ch.Created, "flavor "+f.Name)
			if err := audit("flavor.create", "flavor", f.Name, map[string]any{"kind": f.Kind, "cpus": f.CPUs, "memory_gb": f.MemoryGB, "disk_gb": f.DiskGB, "gpus": f.GPUs}); err != nil {
				return err
			}
		default:
			return err
		}
	}
	features, declared := d.Features, d.Features != nil
	if !declared {
		features = demo.Features
	}
	for _, f := range features {
		var old Feature
		err := getNamed(ctx, tx, &old, `SELECT name, version, description, created_at, updated_at FROM features WHERE name = :name`, arg{"name": f.Name})
		switch {
		case err == nil && (!declared || (old.Version == f.Version && old.Description == f.Description)):
			continue
		case err == nil:
			if _, err := execNamed(ctx, tx, `UPDATE features SET version = :version, description = :description, updated_at = :now WHERE name = :name`,
				arg{"name": f.Name, "version": f.Version, "description": f.Description, "now": now}); err != nil {
				return fmt.Errorf("feature %s: %w", f.Name, err)
			}
			ch.Updated = append(ch.Updated, "feature "+f.Name)
			if err := audit("feature.update", "feature", f.Name, map[string]any{"version": []any{old.Version, f.Version}}); err != nil {
				return err
			}
		case errors.Is(err, ErrNotFound):
			if _, err := execNamed(ctx, tx, `INSERT INTO features (name, version, description, created_at, updated_at) VALUES (:name, :version, :description, :now, :now)`,
				arg{"name": f.Name, "version": f.Version, "description": f.Description, "now": now}); err != nil {
				return fmt.Errorf("feature %s: %w", f.Name, err)
			}
			ch.Created = append(ch.Created, "feature "+f.Name)
			if err := audit("feature.create", "feature", f.Name, map[string]any{"version": f.Version}); err != nil {
				return err
			}
		default:
			return fmt.Errorf("feature %s: %w", f.Name, err)
		}
	}
	return nil
}

// devserverList names devservers for a message: "3 devservers (a-1, b-2, c-3)",
// the first few of a long list followed by an ellipsis.
func devserverList(names []string) string {
	const shown = 5
	noun := "devservers"
	if len(names) == 1 {
		noun = "devserver"
	}
	list := names
	more := ""
	if len(list) > shown {
		list, more = list[:shown], ", …"
	}
	return fmt.Sprintf("%d %s (%s%s)", len(names), noun, strings.Join(list, ", "), more)
}
