package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Region is a data center.
type Region struct {
	Code      string    `db:"code" json:"code"`
	Name      string    `db:"name" json:"name"`
	Status    string    `db:"status" json:"status"`
	Position  int       `db:"position" json:"-"`
	CreatedAt time.Time `db:"created_at" json:"-"`
}

// Active tells whether the region takes new placements.
func (r Region) Active() bool { return r.Status == "active" }

// Host is a machine in a region that runs devservers through one fleet driver.
type Host struct {
	ID           int64     `db:"id" json:"id"`
	Name         string    `db:"name" json:"name"`
	Region       string    `db:"region" json:"region"`
	Kind         string    `db:"kind" json:"kind"`
	Driver       string    `db:"driver" json:"driver"`
	State        string    `db:"state" json:"state"`
	CPUs         int       `db:"cpus" json:"cpus"`
	MemoryGB     int       `db:"memory_gb" json:"memory_gb"`
	DiskGB       int       `db:"disk_gb" json:"disk_gb"`
	GPUs         int       `db:"gpus" json:"gpus"`
	Tags         string    `db:"tags" json:"-"`
	UsedCPUs     int       `db:"used_cpus" json:"used_cpus"`
	UsedMemoryGB int       `db:"used_memory_gb" json:"used_memory_gb"`
	UsedDiskGB   int       `db:"used_disk_gb" json:"used_disk_gb"`
	UsedGPUs     int       `db:"used_gpus" json:"used_gpus"`
	CreatedAt    time.Time `db:"created_at" json:"-"`
}

// TagList is the host's tags.
func (h Host) TagList() []string {
	if h.Tags == "" {
		return nil
	}
	return strings.Split(h.Tags, ",")
}

// Flavor is what a devserver is made of.
type Flavor struct {
	Name        string    `db:"name" json:"name"`
	Kind        string    `db:"kind" json:"kind"`
	Description string    `db:"description" json:"description"`
	CPUs        int       `db:"cpus" json:"cpus"`
	MemoryGB    int       `db:"memory_gb" json:"memory_gb"`
	DiskGB      int       `db:"disk_gb" json:"disk_gb"`
	GPUs        int       `db:"gpus" json:"gpus"`
	Accelerator string    `db:"accelerator" json:"accelerator,omitempty"`
	Position    int       `db:"position" json:"-"`
	CreatedAt   time.Time `db:"created_at" json:"-"`
}

// Group is how the UI groups flavours: VM, physical, GPU or container.
func (f Flavor) Group() string {
	switch {
	case f.GPUs > 0:
		return "GPU"
	case f.Kind == "vm":
		return "VM"
	case f.Kind == "physical":
		return "Physical"
	default:
		return "Container"
	}
}

// Feature is a catalogued, versioned piece of tooling.
type Feature struct {
	Name        string    `db:"name" json:"name"`
	Version     string    `db:"version" json:"version"`
	Description string    `db:"description" json:"description"`
	CreatedAt   time.Time `db:"created_at" json:"-"`
	UpdatedAt   time.Time `db:"updated_at" json:"updated_at"`
}

const (
	regionColumns = `code, name, status, position, created_at`
	hostColumns   = `id, name, region, kind, driver, state, cpus, memory_gb, disk_gb, gpus, tags, used_cpus, used_memory_gb, used_disk_gb, used_gpus, created_at`
	flavorColumns = `name, kind, description, cpus, memory_gb, disk_gb, gpus, accelerator, position, created_at`
)

// Regions lists the regions in display order.
func (s *Store) Regions(ctx context.Context) ([]Region, error) {
	var rs []Region
	if err := s.read.SelectContext(ctx, &rs, `SELECT `+regionColumns+` FROM regions ORDER BY position, code`); err != nil {
		return nil, fmt.Errorf("regions: %w", err)
	}
	return rs, nil
}

// Region returns one region.
func (s *Store) Region(ctx context.Context, code string) (Region, error) {
	return regionByCode(ctx, s.read, code)
}

func regionByCode(ctx context.Context, q queryer, code string) (Region, error) {
	var r Region
	if err := getNamed(ctx, q, &r, `SELECT `+regionColumns+` FROM regions WHERE code = :code`, arg{"code": code}); err != nil {
		return Region{}, fmt.Errorf("region %s: %w", code, err)
	}
	return r, nil
}

// Flavors lists the flavours in display order.
func (s *Store) Flavors(ctx context.Context) ([]Flavor, error) {
	var fs []Flavor
	if err := s.read.SelectContext(ctx, &fs, `SELECT `+flavorColumns+` FROM flavors ORDER BY position, name`); err != nil {
		return nil, fmt.Errorf("flavors: %w", err)
	}
	return fs, nil
}

// Flavor returns one flavour.
func (s *Store) Flavor(ctx context.Context, name string) (Flavor, error) {
	return flavorByName(ctx, s.read, name)
}

func flavorByName(ctx context.Context, q queryer, name string) (Flavor, error) {
	var f Flavor
	if err := getNamed(ctx, q, &f, `SELECT `+flavorColumns+` FROM flavors WHERE name = :name`, arg{"name": name}); err != nil {
		return Flavor{}, fmt.Errorf("flavor %s: %w", name, err)
	}
	return f, nil
}

// Features lists the feature catalogue.
func (s *Store) Features(ctx context.Context) ([]Feature, error) {
	var fs []Feature
	if err := s.read.SelectContext(ctx, &fs, `SELECT name, version, description, created_at, updated_at FROM features ORDER BY name`); err != nil {
		return nil, fmt.Errorf("features: %w", err)
	}
	return fs, nil
}

func featureByName(ctx context.Context, q queryer, name string) (Feature, error) {
	var f Feature
	if err := getNamed(ctx, q, &f, `SELECT name, version, description, created_at, updated_at FROM features WHERE name = :name`, arg{"name": name}); err != nil {
		return f, fmt.Errorf("feature %q: %w", clip(name), err)
	}
	return f, nil
}

// Hosts lists the hosts of a region, or of every region when region is "".
func (s *Store) Hosts(ctx context.Context, region string) ([]Host, error) {
	return hostsIn(ctx, s.read, region)
}

func hostsIn(ctx context.Context, q queryer, region string) ([]Host, error) {
	var hs []Host
	err := selectNamed(ctx, q, &hs, `SELECT `+hostColumns+` FROM hosts WHERE (:region = '' OR region = :region) ORDER BY region, name`, arg{"region": region})
	if err != nil {
		return nil, fmt.Errorf("hosts %s: %w", region, err)
	}
	return hs, nil
}

// Host returns one host.
func (s *Store) Host(ctx context.Context, id int64) (Host, error) {
	var h Host
	if err := getNamed(ctx, s.read, &h, `SELECT `+hostColumns+` FROM hosts WHERE id = :id`, arg{"id": id}); err != nil {
		return Host{}, fmt.Errorf("host %d: %w", id, err)
	}
	return h, nil
}

// HostByName returns one host by name.
func (s *Store) HostByName(ctx context.Context, name string) (Host, error) {
	var h Host
	if err := getNamed(ctx, s.read, &h, `SELECT `+hostColumns+` FROM hosts WHERE name = :name`, arg{"name": name}); err != nil {
		return Host{}, fmt.Errorf("host %s: %w", name, err)
	}
	return h, nil
}

// RegionCapacity is a region's free room for one flavour.
type RegionCapacity struct {
	Region Region
	Free   int
}

// Capacity returns, for flavour f, every region with its free slots, in
// region display order.
func (s *Store) Capacity(ctx context.Context, f Flavor) ([]RegionCapacity, error) {
	return capacity(ctx, s.read, f)
}

func capacity(ctx context.Context, q queryer, f Flavor) ([]RegionCapacity, error) {
	var regions []Region
	if err := q.SelectContext(ctx, &regions, `SELECT `+regionColumns+` FROM regions ORDER BY position, code`); err != nil {
		return nil, fmt.Errorf("capacity: %w", err)
	}
	var hosts []Host
	err := selectNamed(ctx, q, &hosts, `SELECT `+hostColumns+` FROM hosts WHERE kind = :kind AND state = 'ready'`, arg{"kind": HostKindFor(f.Kind)})
	if err != nil {
		return nil, fmt.Errorf("capacity: %w", err)
	}
	byRegion := map[string][]Host{}
	for _, h := range hosts {
		byRegion[h.Region] = append(byRegion[h.Region], h)
	}
	out := make([]RegionCapacity, 0, len(regions))
	for _, r := range regions {
		out = append(out, RegionCapacity{Region: r, Free: FreeSlots(f, byRegion[r.Code])})
	}
	return out, nil
}

// CapacityTable is free slots by flavour and region, for the reservation form.
func (s *Store) CapacityTable(ctx context.Context) (map[string]map[string]int, error) {
	flavors, err := s.Flavors(ctx)
	if err != nil {
		return nil, err
	}
	hosts, err := s.Hosts(ctx, "")
	if err != nil {
		return nil, err
	}
	byRegion := map[string][]Host{}
	for _, h := range hosts {
		byRegion[h.Region] = append(byRegion[h.Region], h)
	}
	out := map[string]map[string]int{}
	for _, f := range flavors {
		out[f.Name] = map[string]int{}
		for region, hs := range byRegion {
			out[f.Name][region] = FreeSlots(f, hs)
		}
	}
	return out, nil
}

// takeCapacity reserves room for one devserver of flavour f on host id. The
// WHERE clause and the table's CHECKs make it impossible to over-allocate,
// whatever runs concurrently.
const takeCapacitySQL = `
UPDATE hosts SET
    used_cpus = used_cpus + :cpus,
    used_memory_gb = used_memory_gb + :memory_gb,
    used_disk_gb = used_disk_gb + :disk_gb,
    used_gpus = used_gpus + :gpus
WHERE id = :id AND state = 'ready'
  AND used_cpus + :cpus <= cpus
  AND used_memory_gb + :memory_gb <= memory_gb
  AND used_disk_gb + :disk_gb <= disk_gb
  AND used_gpus + :gpus <= gpus`

const freeCapacitySQL = `
UPDATE hosts SET
    used_cpus = used_cpus - :cpus,
    used_memory_gb = used_memory_gb - :memory_gb,
    used_disk_gb = used_disk_gb - :disk_gb,
    used_gpus = used_gpus - :gpus
WHERE id = :id`

func capacityArgs(hostID int64, f Flavor) arg {
	return arg{"id": hostID, "cpus": f.CPUs, "memory_gb": f.MemoryGB, "disk_gb": f.DiskGB, "gpus": f.GPUs}
}
