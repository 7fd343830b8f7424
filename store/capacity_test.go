package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// demoFlavor is a flavour of the demo inventory.
func demoFlavor(t testing.TB, name string) store.Flavor {
	t.Helper()
	for _, f := range store.Demo("sim").Flavors {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("no demo flavour %s", name)
	return store.Flavor{}
}

var hostIDs int64

// capHost is a ready host of a kind with cpus, memory and disk; gpus and tags
// when it has accelerators.
func capHost(region, kind string, cpus, mem, gpus int, tags string) store.Host {
	hostIDs++
	return store.Host{ID: hostIDs, Name: fmt.Sprintf("%s-%s-%d", region, kind, hostIDs), Region: region, Kind: kind, State: "ready",
		CPUs: cpus, MemoryGB: mem, DiskGB: 100000, GPUs: gpus, Tags: tags}
}

func inState(state string, h store.Host) store.Host { h.State = state; return h }

func used(h store.Host, cpus, mem int) store.Host { h.UsedCPUs, h.UsedMemoryGB = cpus, mem; return h }

func regions(statuses ...string) []store.Region {
	var out []store.Region
	for i := 0; i+1 < len(statuses); i += 2 {
		out = append(out, store.Region{Code: statuses[i], Name: statuses[i], Status: statuses[i+1], Position: i})
	}
	return out
}

func owned(region, flavor string, n int) store.DevserverCount {
	return store.DevserverCount{Region: region, Flavor: flavor, Used: n}
}

// shortBy renders shortfalls as "what: short by n" for comparison.
func shortBy(r store.NMinus1) []string {
	out := []string{}
	for _, a := range r.Shortfalls {
		out = append(out, fmt.Sprintf("%s: short by %d", a.What(), a.Short))
	}
	return out
}

func TestAbsorbRegion(t *testing.T) {
	flavors := []store.Flavor{
		demoFlavor(t, "vm.small"), demoFlavor(t, "vm.medium"), demoFlavor(t, "vm.large"),
		demoFlavor(t, "physical.standard"), demoFlavor(t, "gpu.a100"), demoFlavor(t, "container.medium"),
	}
	tests := []struct {
		name       string
		regions    []store.Region
		hosts      []store.Host
		devservers []store.DevserverCount
		containers []store.ContainerCount
		absorbable bool
		absorbers  []string
		shortfalls []string
		// available is the free slots found per flavour, when checked.
		available map[string]int
	}{
		{
			name:       "fits: the other region has room for every devserver",
			regions:    regions("a", "active", "b", "active"),
			hosts:      []store.Host{capHost("a", "hypervisor", 64, 256, 0, ""), capHost("b", "hypervisor", 8, 32, 0, "")},
			devservers: []store.DevserverCount{owned("a", "vm.small", 4)},
			absorbable: true, absorbers: []string{"b"}, shortfalls: []string{},
			available: map[string]int{"vm.small": 4},
		},
		{
			name:       "does not fit: the shortfall is what is left over",
			regions:    regions("a", "active", "b", "active"),
			hosts:      []store.Host{capHost("a", "hypervisor", 64, 256, 0, ""), used(capHost("b", "hypervisor", 8, 32, 0, ""), 2, 8)},
			devservers: []store.DevserverCount{owned("a", "vm.small", 5)},
			absorbers:  []string{"b"}, shortfalls: []string{"vm.small: short by 2"},
			available: map[string]int{"vm.small": 3},
		},
		{
			name:    "one host's room is shared by two flavours, biggest packed first",
			regions: regions("a", "active", "b", "active"),
			// Alone, b's host takes one vm.large or four vm.small; not both.
			hosts:      []store.Host{capHost("b", "hypervisor", 8, 32, 0, "")},
			devservers: []store.DevserverCount{owned("a", "vm.small", 1), owned("a", "vm.large", 1)},
			absorbers:  []string{"b"}, shortfalls: []string{"vm.small: short by 1"},
			available: map[string]int{"vm.large": 1, "vm.small": 0},
		},
		{
			name:       "what a big flavour leaves on a host takes smaller ones",
			regions:    regions("a", "active", "b", "active", "c", "active"),
			hosts:      []store.Host{capHost("b", "hypervisor", 12, 48, 0, ""), capHost("c", "hypervisor", 4, 16, 0, "")},
			devservers: []store.DevserverCount{owned("a", "vm.large", 1), owned("a", "vm.medium", 2)},
			absorbable: true, absorbers: []string{"b", "c"}, shortfalls: []string{},
			available: map[string]int{"vm.large": 1, "vm.medium": 2},
		},
		{
			name:       "draining and down regions absorb nothing",
			regions:    regions("a", "active", "b", "draining", "c", "down", "d", "drained"),
			hosts:      []store.Host{capHost("b", "hypervisor", 64, 256, 0, ""), capHost("c", "hypervisor", 64, 256, 0, ""), capHost("d", "hypervisor", 64, 256, 0, "")},
			devservers: []store.DevserverCount{owned("a", "vm.small", 1)},
			absorbers:  []string{}, shortfalls: []string{"vm.small: short by 1"},
			available: map[string]int{"vm.small": 0},
		},
		{
			name:    "a down region's devservers still count as load",
			regions: regions("a", "down", "b", "active"),
			hosts: []store.Host{inState("unreachable", capHost("a", "hypervisor", 64, 256, 0, "")),
				capHost("b", "hypervisor", 8, 32, 0, "")},
			devservers: []store.DevserverCount{owned("a", "vm.medium", 3)},
			absorbers:  []string{"b"}, shortfalls: []string{"vm.medium: short by 1"},
			available: map[string]int{"vm.medium": 2},
		},
		{
			name:    "hosts that are not ready absorb nothing",
			regions: regions("a", "active", "b", "active"),
			hosts: []store.Host{inState("maintenance", capHost("b", "hypervisor", 64, 256, 0, "")), inState("decommissioning", capHost("b", "hypervisor", 64, 256, 0, "")),
				inState("retired", capHost("b", "hypervisor", 64, 256, 0, "")), inState("unreachable", capHost("b", "hypervisor", 64, 256, 0, ""))},
			devservers: []store.DevserverCount{owned("a", "vm.small", 1)},
			absorbers:  []string{"b"}, shortfalls: []string{"vm.small: short by 1"},
		},
		{
			name:    "GPU flavours go only on hosts with their accelerator",
			regions: regions("a", "active", "b", "active"),
			hosts: []store.Host{capHost("b", "physical", 128, 1024, 0, ""), capHost("b", "physical", 64, 512, 8, "l4"),
				capHost("b", "hypervisor", 512, 2048, 8, "a100")},
			devservers: []store.DevserverCount{owned("a", "gpu.a100", 1)},
			absorbers:  []string{"b"}, shortfalls: []string{"gpu.a100: short by 1"},
		},
		{
			name:    "GPU hosts take GPU flavours before anything else",
			regions: regions("a", "active", "b", "active"),
			// physical.standard would fit on the GPU host too; packed biggest
			// first, the GPU flavour takes it and physical.standard goes to the plain host.
			hosts:      []store.Host{capHost("b", "physical", 64, 512, 8, "a100"), capHost("b", "physical", 32, 128, 0, "")},
			devservers: []store.DevserverCount{owned("a", "gpu.a100", 1), owned("a", "physical.standard", 1)},
			absorbable: true, absorbers: []string{"b"}, shortfalls: []string{},
		},
		{
			name:       "physical flavours go only on physical hosts",
			regions:    regions("a", "active", "b", "active"),
			hosts:      []store.Host{capHost("b", "hypervisor", 512, 2048, 0, ""), capHost("b", "container", 512, 2048, 0, "")},
			devservers: []store.DevserverCount{owned("a", "physical.standard", 2)},
			absorbers:  []string{"b"}, shortfalls: []string{"physical.standard: short by 2"},
		},
		{
			name:       "pool spares are not load",
			regions:    regions("a", "active", "b", "active"),
			hosts:      []store.Host{capHost("b", "hypervisor", 4, 16, 0, "")},
			devservers: []store.DevserverCount{{Region: "a", Flavor: "vm.small", Used: 7, Pooled: 4, Spare: 5}},
			absorbable: true, absorbers: []string{"b"}, shortfalls: []string{},
			available: map[string]int{"vm.small": 2},
		},
		{
			name:    "containers take what the devservers leave on container hosts",
			regions: regions("a", "active", "b", "active"),
			// b's container host has 16 CPUs and 32 GB; two container.medium
			// devservers take 8 and 16, leaving 8 CPUs and 16 GB for 12 and 12.
			hosts:      []store.Host{capHost("b", "container", 16, 32, 0, ""), capHost("b", "hypervisor", 64, 256, 0, "")},
			devservers: []store.DevserverCount{owned("a", "container.medium", 2)},
			containers: []store.ContainerCount{{Region: "a", Live: 5, CPUs: 14, MemoryGB: 14, OwnedCPUs: 12, OwnedMemoryGB: 12}},
			absorbers:  []string{"b"}, shortfalls: []string{"containers cpus: short by 4"},
		},
		{
			name:       "the region itself never absorbs its own load",
			regions:    regions("a", "active"),
			hosts:      []store.Host{capHost("a", "hypervisor", 64, 256, 0, "")},
			devservers: []store.DevserverCount{owned("a", "vm.small", 1)},
			absorbers:  []string{}, shortfalls: []string{"vm.small: short by 1"},
		},
		{
			name:       "a region with nothing in it is absorbable",
			regions:    regions("a", "active", "b", "active"),
			hosts:      []store.Host{capHost("a", "hypervisor", 64, 256, 0, "")},
			absorbable: true, absorbers: []string{"b"}, shortfalls: []string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inputs := store.CapacityInputs{Regions: tt.regions, Flavors: flavors, Hosts: tt.hosts, Devservers: tt.devservers, Containers: tt.containers}
			got := store.AbsorbRegion("a", inputs)
			if got.Absorbable != tt.absorbable {
				t.Errorf("absorbable = %v, want %v (%+v)", got.Absorbable, tt.absorbable, got)
			}
			if !slices.Equal(got.Absorbers, tt.absorbers) {
				t.Errorf("absorbers = %v, want %v", got.Absorbers, tt.absorbers)
			}
			if s := shortBy(got); !slices.Equal(s, tt.shortfalls) {
				t.Errorf("shortfalls = %q, want %q", s, tt.shortfalls)
			}
			for _, a := range got.Devservers {
				if want, ok := tt.available[a.Flavor]; ok && a.Available != want {
					t.Errorf("%s: available = %d, want %d", a.Flavor, a.Available, want)
				}
				if a.Short != max(a.Needed-a.Available, 0) {
					t.Errorf("%s: short %d is not needed %d less available %d", a.Flavor, a.Short, a.Needed, a.Available)
				}
			}
			// The inputs are untouched: packing works on copies.
			for i, h := range tt.hosts {
				if inputs.Hosts[i] != h {
					t.Errorf("host %s changed: %+v", h.Name, inputs.Hosts[i])
				}
			}
		})
	}
}

func TestAbsorbRegionOrdersFlavoursBiggestFirst(t *testing.T) {
	flavors := []store.Flavor{demoFlavor(t, "vm.small"), demoFlavor(t, "gpu.a100"), demoFlavor(t, "vm.large"), demoFlavor(t, "physical.standard")}
	in := store.CapacityInputs{Regions: regions("a", "active", "b", "active"), Flavors: flavors,
		Devservers: []store.DevserverCount{owned("a", "vm.small", 1), owned("a", "vm.large", 1), owned("a", "gpu.a100", 1), owned("a", "physical.standard", 1)}}
	var got []string
	for _, a := range store.AbsorbRegion("a", in).Devservers {
		got = append(got, a.Flavor)
	}
	if want := []string{"gpu.a100", "physical.standard", "vm.large", "vm.small"}; !slices.Equal(got, want) {
		t.Errorf("packing order = %v, want %v", got, want)
	}
}

func TestPlanCapacity(t *testing.T) {
	small, large := demoFlavor(t, "vm.small"), demoFlavor(t, "vm.large")
	in := store.CapacityInputs{
		Regions: regions("a", "active", "b", "down"),
		Flavors: []store.Flavor{small, large},
		Hosts: []store.Host{
			used(capHost("a", "hypervisor", 16, 64, 0, ""), 4, 16),
			inState("maintenance", capHost("a", "hypervisor", 64, 256, 0, "")),
			used(capHost("a", "container", 32, 64, 0, ""), 8, 20),
			inState("unreachable", capHost("b", "hypervisor", 64, 256, 0, "")),
		},
		Devservers: []store.DevserverCount{{Region: "a", Flavor: "vm.small", Used: 2, Pooled: 1, Spare: 1}, owned("b", "vm.large", 3)},
		Containers: []store.ContainerCount{{Region: "a", Live: 3, Pooled: 1, CPUs: 8, MemoryGB: 20, OwnedCPUs: 6, OwnedMemoryGB: 16}},
	}
	rep := store.PlanCapacity(in)
	if len(rep.Regions) != 2 || len(rep.NMinus1) != 2 {
		t.Fatalf("report has %d regions and %d N-1 rows, want 2 and 2", len(rep.Regions), len(rep.NMinus1))
	}
	a, b := rep.Regions[0], rep.Regions[1]
	want := []store.FlavorCapacity{
		// Only the ready hypervisor counts: 16 CPUs hold 8 vm.small empty, 6 now.
		{Flavor: "vm.small", Total: 8, Used: 2, Free: 6, Pooled: 1},
		{Flavor: "vm.large", Total: 2, Used: 0, Free: 1},
	}
	if !slices.Equal(a.Flavors, want) {
		t.Errorf("region a flavours = %+v, want %+v", a.Flavors, want)
	}
	if wantC := (store.ContainerCapacity{Live: 3, Pooled: 1, CPUs: 8, MemoryGB: 20, GPUs: 0, HostCPUs: 32, HostMemoryGB: 64, FreeCPUs: 24, FreeMemoryGB: 44}); a.Containers != wantC {
		t.Errorf("region a containers = %+v, want %+v", a.Containers, wantC)
	}
	wantB := []store.FlavorCapacity{{Flavor: "vm.small"}, {Flavor: "vm.large", Used: 3}}
	if !slices.Equal(b.Flavors, wantB) || b.Status != "down" {
		t.Errorf("down region b = %s %+v, want down %+v", b.Status, b.Flavors, wantB)
	}
	// b is down: it absorbs nothing, so a's owned devserver and containers
	// have nowhere to go; b's three vm.large fit a's free 12 CPUs once.
	if got, want := shortBy(rep.NMinus1[0]), []string{"vm.small: short by 1", "containers cpus: short by 6", "containers memory_gb: short by 16"}; !slices.Equal(got, want) {
		t.Errorf("N-1 of a = %q, want %q", got, want)
	}
	if got, want := shortBy(rep.NMinus1[1]), []string{"vm.large: short by 2"}; !slices.Equal(got, want) {
		t.Errorf("N-1 of b = %q, want %q", got, want)
	}
	nb := rep.NMinus1[1]
	if nb.LoadCPUs != 24 || nb.LoadMemoryGB != 96 || nb.OthersFreeCPUs != 12+24 || nb.OthersFreeMemoryGB != 48+44 {
		t.Errorf("b's chart figures = load %d CPUs %d GB, others free %d CPUs %d GB", nb.LoadCPUs, nb.LoadMemoryGB, nb.OthersFreeCPUs, nb.OthersFreeMemoryGB)
	}
}

// insertLoad writes n devservers straight into the store (as if reserved
// and provisioned), round robin over every hypervisor, flavours in turn, and
// charges the hosts for them. In the first round each hypervisor gets a
// ready pool spare, in the second a released devserver (no load), and owned
// ready devservers after that.
func insertLoad(t testing.TB, s *store.Store, n int, flavors ...store.Flavor) {
	t.Helper()
	ctx := context.Background()
	tx, err := s.DB().BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var owner int64
	if err := tx.QueryRowContext(ctx, tx.Rebind(`INSERT INTO users (email, created_at) VALUES ('load@example.com', ?) RETURNING id`), time.Now().UTC()).Scan(&owner); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, region FROM hosts WHERE kind = 'hypervisor' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	type hostRef struct {
		id     int64
		region string
	}
	var hosts []hostRef
	for rows.Next() {
		var h hostRef
		if err := rows.Scan(&h.id, &h.region); err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, h)
	}
	rows.Close()
	stmt, err := tx.PrepareContext(ctx, tx.Rebind(`INSERT INTO devservers (name, owner_id, flavor, region, host_id, hostname, state, created_at, updated_at, pooled_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`))
	if err != nil {
		t.Fatal(err)
	}
	defer stmt.Close()
	now := time.Now().UTC()
	for i := range n {
		h := hosts[i%len(hosts)]
		var who, pooled any = owner, nil
		state := store.StateReady
		switch i / len(hosts) {
		case 0:
			who, pooled = nil, now
		case 1:
			state = store.StateReleased
		}
		name := fmt.Sprintf("load-%06d", i)
		if _, err := stmt.ExecContext(ctx, name, who, flavors[i%len(flavors)].Name, h.region, h.id, name, state, now, now, pooled); err != nil {
			t.Fatal(err)
		}
	}
	_, err = tx.ExecContext(ctx, `
WITH held AS (
    SELECT d.host_id, SUM(f.cpus) AS cpus, SUM(f.memory_gb) AS memory_gb, SUM(f.disk_gb) AS disk_gb
    FROM devservers d JOIN flavors f ON f.name = d.flavor
    WHERE d.state NOT IN ('released', 'failed') GROUP BY d.host_id
)
UPDATE hosts SET used_cpus = held.cpus, used_memory_gb = held.memory_gb, used_disk_gb = held.disk_gb
FROM held WHERE held.host_id = hosts.id`)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestCapacityReportCountsTheStore(t *testing.T) {
	s := storetest.Seeded(t, nil)
	ctx := context.Background()
	// Ten vm.small on each of the 12 hypervisors of each of three regions:
	// one a ready pool spare, one released, eight owned.
	insertLoad(t, s, 360, demoFlavor(t, "vm.small"))
	if _, err := s.WriteDB().ExecContext(ctx, `UPDATE regions SET status = 'down' WHERE code = 'lla'`); err != nil {
		t.Fatal(err)
	}
	rep, err := s.CapacityReport(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Regions) != 3 {
		t.Fatalf("regions = %d, want 3", len(rep.Regions))
	}
	for _, r := range rep.Regions {
		var small store.FlavorCapacity
		for _, f := range r.Flavors {
			if f.Flavor == "vm.small" {
				small = f
			}
		}
		// 12 hypervisors of 64 CPUs: 384 vm.small empty; 9 on each leave
		// 46 CPUs, room for 23 more.
		if small.Total != 384 || small.Used != 108 || small.Pooled != 12 || small.Free != 12*23 {
			t.Errorf("%s vm.small = %+v, want total 384, used 108, pooled 12, free 276", r.Code, small)
		}
	}
	for _, n := range rep.NMinus1 {
		wantAbsorbers := map[string][]string{"prn": {"ftw"}, "ftw": {"prn"}, "lla": {"prn", "ftw"}}[n.Region]
		if !n.Absorbable || !slices.Equal(n.Absorbers, wantAbsorbers) {
			t.Errorf("%s: absorbable %v by %v, want true by %v", n.Region, n.Absorbable, n.Absorbers, wantAbsorbers)
		}
		if len(n.Devservers) != 1 || n.Devservers[0].Needed != 96 {
			t.Errorf("%s: devservers to place = %+v, want 96 vm.small (108 used less 12 spares)", n.Region, n.Devservers)
		}
	}
}

// BenchmarkCapacityN1 reads and plans the capacity report over a large
// inventory: 10 regions of 400 hosts each (4,000 hosts, 3,200 of them
// hypervisors) and 100,000 devservers of three VM flavours, on seven flavours.
func BenchmarkCapacityN1(b *testing.B) {
	demo := store.Demo("sim")
	inv := store.DemoInventory{Flavors: demo.Flavors, Features: demo.Features}
	for r := range 10 {
		code := fmt.Sprintf("r%02d", r)
		inv.Regions = append(inv.Regions, store.Region{Code: code, Name: code, Status: "active", Position: r})
		for i := range 400 {
			kind, cpus, mem, gpus, tags := "hypervisor", 256, 1024, 0, ""
			switch {
			case i%20 == 0:
				kind, cpus, mem, gpus, tags = "physical", 64, 512, 8, "a100"
			case i%10 == 0:
				kind, cpus, mem = "physical", 32, 128
			case i%5 == 0:
				kind = "container"
			}
			inv.Hosts = append(inv.Hosts, store.Host{Name: fmt.Sprintf("%s-%s-%03d", code, kind, i), Region: code, Kind: kind, Driver: "sim", State: "ready",
				CPUs: cpus, MemoryGB: mem, DiskGB: 40000, GPUs: gpus, Tags: tags})
		}
	}
	s := storetest.Seeded(b, &inv)
	ctx := context.Background()
	insertLoad(b, s, 100_000, demoFlavor(b, "vm.small"), demoFlavor(b, "vm.medium"), demoFlavor(b, "vm.large"))
	in, err := s.CapacityInputs(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("read and plan", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.CapacityReport(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("plan only", func(b *testing.B) {
		for b.Loop() {
			store.PlanCapacity(in)
		}
	})
}
