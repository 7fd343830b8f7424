package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
)

// Capacity per region and flavour, and the N-1 analysis: could the other
// active regions take a region's work if it were lost? The arithmetic is
// plain functions with no I/O (PlanCapacity and AbsorbRegion);
// CapacityInputs is the one read that feeds them, counted with GROUP BY so it
// stays fast with a hundred thousand devservers.

// DevserverCount is how many devservers of one flavour a region holds.
type DevserverCount struct {
	Region string `db:"region"`
	Flavor string `db:"flavor"`
	// Used is every devserver that holds capacity (not released or failed).
	Used int `db:"used"`
	// Pooled is the ready devservers nobody owns yet.
	Pooled int `db:"pooled"`
	// Spare is every pool devserver nobody owns (ready or still being built):
	// spares are not moved when the region is lost, so they are no load.
	Spare int `db:"spare"`
}

// ContainerCount is what a region's live On Demand containers take.
type ContainerCount struct {
	Region   string `db:"region"`
	Live     int    `db:"live"`
	Pooled   int    `db:"pooled"`
	CPUs     int    `db:"cpus"`
	MemoryGB int    `db:"memory_gb"`
	GPUs     int    `db:"gpus"`
	// The owned containers' share: the load another region would take.
	OwnedCPUs     int `db:"owned_cpus"`
	OwnedMemoryGB int `db:"owned_memory_gb"`
	OwnedGPUs     int `db:"owned_gpus"`
}

// CapacityInputs is what the capacity report is computed from: the whole
// inventory and the devservers and containers counted per region.
type CapacityInputs struct {
	Regions    []Region
	Flavors    []Flavor
	Hosts      []Host
	Devservers []DevserverCount
	Containers []ContainerCount
}

// FlavorCapacity is one flavour's room in one region. Flavours share hosts,
// so Free counts each flavour alone: free slots of two flavours do not add up.
type FlavorCapacity struct {
	Flavor string `json:"flavor"`
	// Total is the slots the region's ready hosts would have empty.
	Total int `json:"total"`
	Used  int `json:"used"`
	// Free is the slots its ready hosts have now; hosts in maintenance,
	// decommissioning, retired or unreachable have none.
	Free   int `json:"free"`
	Pooled int `json:"pooled"`
}

// ContainerCapacity is a region's On Demand containers and container hosts.
type ContainerCapacity struct {
	Live     int `json:"live"`
	Pooled   int `json:"pooled"`
	CPUs     int `json:"cpus"`
	MemoryGB int `json:"memory_gb"`
	GPUs     int `json:"gpus"`
	// What its ready container hosts hold in all, and have free.
	HostCPUs     int `json:"host_cpus"`
	HostMemoryGB int `json:"host_memory_gb"`
	FreeCPUs     int `json:"free_cpus"`
	FreeMemoryGB int `json:"free_memory_gb"`
}

// RegionCapacityReport is one region's capacity, flavour by flavour.
type RegionCapacityReport struct {
	Code       string            `json:"code"`
	Name       string            `json:"name"`
	Status     string            `json:"status"`
	Flavors    []FlavorCapacity  `json:"flavors"`
	Containers ContainerCapacity `json:"containers"`
}

// Absorption is one flavour (or, for containers, one resource) of a lost
// region: how much must go elsewhere, how much the other active regions can
// take, and what is left over.
type Absorption struct {
	Flavor    string `json:"flavor,omitempty"`
	Resource  string `json:"resource,omitempty"`
	Needed    int    `json:"needed"`
	Available int    `json:"available"`
	Short     int    `json:"short"`
}

// What tells what an absorption is about: a flavour, or a container resource.
func (a Absorption) What() string {
	if a.Flavor != "" {
		return a.Flavor
	}
	return "containers " + a.Resource
}

// Container resources in an Absorption.
const (
	ResourceCPUs     = "cpus"
	ResourceMemoryGB = "memory_gb"
	ResourceGPUs     = "gpus"
)

// NMinus1 is whether the other active regions can absorb one region.
type NMinus1 struct {
	Region string `json:"region"`
	Status string `json:"status"`
	// Absorbers is the other active regions, whose ready hosts take the load.
	Absorbers  []string `json:"absorbers"`
	Absorbable bool     `json:"absorbable"`
	// Devservers is each flavour with owned devservers, biggest first;
	// Containers each resource the owned containers take.
	Devservers []Absorption `json:"devservers"`
	Containers []Absorption `json:"containers"`
	Shortfalls []Absorption `json:"shortfalls"`
	// The load in CPUs and memory (devservers' flavours and containers), and
	// what the absorbers' ready hosts have free before packing, for the chart.
	LoadCPUs           int `json:"load_cpus"`
	LoadMemoryGB       int `json:"load_memory_gb"`
	OthersFreeCPUs     int `json:"others_free_cpus"`
	OthersFreeMemoryGB int `json:"others_free_memory_gb"`
}

// CapacityReport is the capacity page and GET /api/v1/capacity.
type CapacityReport struct {
	Regions []RegionCapacityReport `json:"regions"`
	NMinus1 []NMinus1              `json:"n_minus_1"`
}

// PlanCapacity computes the report from its inputs.
func PlanCapacity(in CapacityInputs) CapacityReport {
	byRegion := hostsByRegion(in.Hosts)
	counts := map[[2]string]DevserverCount{}
	for _, c := range in.Devservers {
		counts[[2]string{c.Region, c.Flavor}] = c
	}
	containers := map[string]ContainerCount{}
	for _, c := range in.Containers {
		containers[c.Region] = c
	}
	rep := CapacityReport{Regions: make([]RegionCapacityReport, 0, len(in.Regions)), NMinus1: make([]NMinus1, 0, len(in.Regions))}
	for _, r := range in.Regions {
		hosts := byRegion[r.Code]
		empty := make([]Host, len(hosts))
		for i, h := range hosts {
			empty[i] = h
			empty[i].UsedCPUs, empty[i].UsedMemoryGB, empty[i].UsedDiskGB, empty[i].UsedGPUs = 0, 0, 0, 0
		}
		rr := RegionCapacityReport{Code: r.Code, Name: r.Name, Status: r.Status, Flavors: make([]FlavorCapacity, 0, len(in.Flavors))}
		for _, f := range in.Flavors {
			c := counts[[2]string{r.Code, f.Name}]
			rr.Flavors = append(rr.Flavors, FlavorCapacity{Flavor: f.Name, Total: FreeSlots(f, empty), Used: c.Used, Free: FreeSlots(f, hosts), Pooled: c.Pooled})
		}
		cc := containers[r.Code]
		rr.Containers = ContainerCapacity{Live: cc.Live, Pooled: cc.Pooled, CPUs: cc.CPUs, MemoryGB: cc.MemoryGB, GPUs: cc.GPUs}
		for _, h := range hosts {
			if h.State == "ready" && h.Kind == HostKindFor("container") {
				rr.Containers.HostCPUs += h.CPUs
				rr.Containers.HostMemoryGB += h.MemoryGB
				rr.Containers.FreeCPUs += max(h.CPUs-h.UsedCPUs, 0)
				rr.Containers.FreeMemoryGB += max(h.MemoryGB-h.UsedMemoryGB, 0)
			}
		}
		rep.Regions = append(rep.Regions, rr)
	}
	for _, r := range in.Regions {
		rep.NMinus1 = append(rep.NMinus1, AbsorbRegion(r.Code, in))
	}
	return rep
}

func hostsByRegion(hosts []Host) map[string][]Host {
	out := map[string][]Host{}
	for _, h := range hosts {
		out[h.Region] = append(out[h.Region], h)
	}
	return out
}

// biggerFirst orders flavours for packing: GPUs, then CPUs, memory and disk,
// largest first, so the big ones find whole hosts before small ones fragment them.
func biggerFirst(a, b Flavor) int {
	return cmp.Or(
		cmp.Compare(b.GPUs, a.GPUs),
		cmp.Compare(b.CPUs, a.CPUs),
		cmp.Compare(b.MemoryGB, a.MemoryGB),
		cmp.Compare(b.DiskGB, a.DiskGB),
		cmp.Compare(a.Name, b.Name),
	)
}

// placementIndex is PlacementOrder as positions in hosts: the hosts that can
// take one devserver of flavour f, best first by the same rule. Sorting
// positions rather than copies of hosts keeps the N-1 table fast over
// thousands of hosts; a test holds it to PlacementOrder.
func placementIndex(f Flavor, hosts []Host) []int {
	var fit []int
	for i, h := range hosts {
		if Fits(h, f) > 0 {
			fit = append(fit, i)
		}
	}
	wasted := func(h *Host) int {
		if f.GPUs == 0 {
			return h.GPUs
		}
		return 0
	}
	slices.SortFunc(fit, func(i, j int) int {
		a, b := &hosts[i], &hosts[j]
		return cmp.Or(
			cmp.Compare(wasted(a), wasted(b)),
			cmp.Compare(a.CPUs-a.UsedCPUs, b.CPUs-b.UsedCPUs),
			strings.Compare(a.Name, b.Name),
		)
	})
	return fit
}

// AbsorbRegion tells whether the other active regions could take region
// lost's load: its owned devservers (pool spares are not moved) and its owned
// live containers. A region that is down still has load; only active regions
// absorb, and only their ready hosts count.
//
// One host's free room is shared by every flavour it can run, so the load is
// packed into real hosts greedily: flavours biggest first, each into hosts in
// placement order (as PlacementOrder: GPU hosts kept for GPU work, fullest
// host first), taking room from the host as it goes. What the devservers leave on
// the container hosts then takes the containers, resource by resource. Greedy
// packing can miss a packing that fits, never claim one that does not.
func AbsorbRegion(lost string, in CapacityInputs) NMinus1 {
	out := NMinus1{Region: lost, Absorbers: []string{}, Devservers: []Absorption{}, Containers: []Absorption{}, Shortfalls: []Absorption{}}
	active := map[string]bool{}
	for _, r := range in.Regions {
		if r.Code == lost {
			out.Status = r.Status
		} else if r.Active() {
			active[r.Code] = true
			out.Absorbers = append(out.Absorbers, r.Code)
		}
	}
	// The absorbers' ready hosts, copied: packing takes room from them.
	var hosts []Host
	for _, h := range in.Hosts {
		if active[h.Region] && h.State == "ready" {
			hosts = append(hosts, h)
			out.OthersFreeCPUs += max(h.CPUs-h.UsedCPUs, 0)
			out.OthersFreeMemoryGB += max(h.MemoryGB-h.UsedMemoryGB, 0)
		}
	}
	need := map[string]int{}
	for _, c := range in.Devservers {
		if c.Region == lost {
			need[c.Flavor] += c.Used - c.Spare
		}
	}
	flavors := slices.Clone(in.Flavors)
	slices.SortFunc(flavors, biggerFirst)
	for _, f := range flavors {
		n := need[f.Name]
		if n <= 0 {
			continue
		}
		out.LoadCPUs += n * f.CPUs
		out.LoadMemoryGB += n * f.MemoryGB
		a := Absorption{Flavor: f.Name, Needed: n, Available: FreeSlots(f, hosts)}
		left := n
		for _, i := range placementIndex(f, hosts) {
			if left == 0 {
				break
			}
			p := &hosts[i]
			take := min(Fits(*p, f), left)
			p.UsedCPUs += take * f.CPUs
			p.UsedMemoryGB += take * f.MemoryGB
			p.UsedDiskGB += take * f.DiskGB
			p.UsedGPUs += take * f.GPUs
			left -= take
		}
		a.Short = left
		out.Devservers = append(out.Devservers, a)
	}
	for _, c := range in.Containers {
		if c.Region != lost {
			continue
		}
		out.LoadCPUs += c.OwnedCPUs
		out.LoadMemoryGB += c.OwnedMemoryGB
		var free [3]int
		for _, h := range hosts {
			if h.Kind == HostKindFor("container") {
				free[0] += max(h.CPUs-h.UsedCPUs, 0)
				free[1] += max(h.MemoryGB-h.UsedMemoryGB, 0)
				free[2] += max(h.GPUs-h.UsedGPUs, 0)
			}
		}
		for i, res := range []struct {
			name   string
			needed int
		}{{ResourceCPUs, c.OwnedCPUs}, {ResourceMemoryGB, c.OwnedMemoryGB}, {ResourceGPUs, c.OwnedGPUs}} {
			if res.needed <= 0 {
				continue
			}
			out.Containers = append(out.Containers, Absorption{Resource: res.name, Needed: res.needed, Available: free[i], Short: max(res.needed-free[i], 0)})
		}
	}
	for _, a := range slices.Concat(out.Devservers, out.Containers) {
		if a.Short > 0 {
			out.Shortfalls = append(out.Shortfalls, a)
		}
	}
	out.Absorbable = len(out.Shortfalls) == 0
	return out
}

// CapacityInputs reads what the capacity report needs, in one read
// transaction so the counts and the hosts agree. Devservers and containers
// are counted per region with GROUP BY, never loaded one by one.
func (s *Store) CapacityInputs(ctx context.Context) (CapacityInputs, error) {
	var in CapacityInputs
	tx, err := s.read.BeginTxx(ctx, nil)
	if err != nil {
		return in, fmt.Errorf("capacity: begin: %w", err)
	}
	defer tx.Rollback()
	if err := tx.SelectContext(ctx, &in.Regions, `SELECT `+regionColumns+` FROM regions ORDER BY position, code`); err != nil {
		return in, fmt.Errorf("capacity: regions: %w", err)
	}
	if err := tx.SelectContext(ctx, &in.Flavors, `SELECT `+flavorColumns+` FROM flavors ORDER BY position, name`); err != nil {
		return in, fmt.Errorf("capacity: flavors: %w", err)
	}
	if err := tx.SelectContext(ctx, &in.Hosts, `SELECT `+hostColumns+` FROM hosts ORDER BY region, name`); err != nil {
		return in, fmt.Errorf("capacity: hosts: %w", err)
	}
	err = tx.SelectContext(ctx, &in.Devservers, `
SELECT region, flavor, COUNT(*) AS used,
       COALESCE(SUM(CASE WHEN owner_id IS NULL AND state = 'ready' THEN 1 ELSE 0 END), 0) AS pooled,
       COALESCE(SUM(CASE WHEN owner_id IS NULL THEN 1 ELSE 0 END), 0) AS spare
FROM devservers WHERE state NOT IN ('released', 'failed')
GROUP BY region, flavor`)
	if err != nil {
		return in, fmt.Errorf("capacity: devservers: %w", err)
	}
	err = tx.SelectContext(ctx, &in.Containers, `
SELECT region, COUNT(*) AS live,
       COALESCE(SUM(CASE WHEN owner_id IS NULL AND state = 'ready' THEN 1 ELSE 0 END), 0) AS pooled,
       COALESCE(SUM(cpus), 0) AS cpus, COALESCE(SUM(memory_gb), 0) AS memory_gb, COALESCE(SUM(gpus), 0) AS gpus,
       COALESCE(SUM(CASE WHEN owner_id IS NOT NULL THEN cpus ELSE 0 END), 0) AS owned_cpus,
       COALESCE(SUM(CASE WHEN owner_id IS NOT NULL THEN memory_gb ELSE 0 END), 0) AS owned_memory_gb,
       COALESCE(SUM(CASE WHEN owner_id IS NOT NULL THEN gpus ELSE 0 END), 0) AS owned_gpus
FROM containers WHERE state IN ('provisioning', 'ready')
GROUP BY region`)
	if err != nil {
		return in, fmt.Errorf("capacity: containers: %w", err)
	}
	return in, nil
}

// CapacityReport is the capacity of every region and the N-1 table, as the
// inventory stands now.
func (s *Store) CapacityReport(ctx context.Context) (CapacityReport, error) {
	in, err := s.CapacityInputs(ctx)
	if err != nil {
		return CapacityReport{}, err
	}
	return PlanCapacity(in), nil
}
