package store

import (
	"context"
	"fmt"
)

// DemoInventory is the built-in fleet a first start seeds: three regions,
// each with hypervisors, physical hosts (some with GPUs) and container hosts;
// the flavours; and a features catalogue.
type DemoInventory struct {
	Regions  []Region
	Hosts    []Host
	Flavors  []Flavor
	Features []Feature
	// Latencies between regions (each pair once; both ways are written),
	// lease policies by flavour, quotas by role and pool targets.
	Latencies []RegionLatency
	Policies  []LeasePolicy
	Quotas    []Quota
	Pools     []PoolTarget
}

// Demo returns the demo inventory for a driver name ("sim").
func Demo(driver string) DemoInventory {
	inv := DemoInventory{
		Regions: []Region{
			{Code: "prn", Name: "Prineville, Oregon", Status: "active", Position: 1},
			{Code: "ftw", Name: "Fort Worth, Texas", Status: "active", Position: 2},
			{Code: "lla", Name: "Luleå, Sweden", Status: "active", Position: 3},
		},
		Flavors: []Flavor{
			{Name: "vm.small", Kind: "vm", Description: "Small VM for scripting and light builds", CPUs: 2, MemoryGB: 8, DiskGB: 50, Position: 1},
			{Name: "vm.medium", Kind: "vm", Description: "Everyday VM for most repositories", CPUs: 4, MemoryGB: 16, DiskGB: 100, Position: 2},
			{Name: "vm.large", Kind: "vm", Description: "Large VM for big builds and IDE indexing", CPUs: 8, MemoryGB: 32, DiskGB: 200, Position: 3},
			{Name: "vm.xlarge", Kind: "vm", Description: "Extra-large VM for monorepo work", CPUs: 16, MemoryGB: 64, DiskGB: 400, Position: 4},
			{Name: "physical.standard", Kind: "physical", Description: "A whole physical server", CPUs: 32, MemoryGB: 128, DiskGB: 2000, Position: 5},
			{Name: "gpu.a100", Kind: "physical", Description: "Physical server with 8 A100 GPUs", CPUs: 64, MemoryGB: 512, DiskGB: 4000, GPUs: 8, Accelerator: "a100", Position: 6},
			{Name: "container.medium", Kind: "container", Description: "Container with a persistent home volume", CPUs: 4, MemoryGB: 8, DiskGB: 50, Position: 7},
		},
		Features: []Feature{
			{Name: "git", Version: "2.47.1", Description: "Git with the company's hooks and config"},
			{Name: "vscode-server", Version: "1.96.0", Description: "VS Code server for remote development"},
			{Name: "docker", Version: "27.4.0", Description: "Docker engine (rootless)"},
			{Name: "python", Version: "3.12.8", Description: "Python with uv and the internal package index"},
			{Name: "node", Version: "22.12.0", Description: "Node.js LTS with npm and pnpm"},
			{Name: "go", Version: "1.23.4", Description: "Go toolchain with the module proxy configured"},
			{Name: "rust", Version: "1.83.0", Description: "Rust toolchain through rustup"},
			{Name: "cuda", Version: "12.6.3", Description: "CUDA toolkit and drivers (GPU flavours)"},
			{Name: "android-sdk", Version: "35.0.0", Description: "Android SDK and emulator images"},
		},
	}
	inv.Latencies = []RegionLatency{{From: "prn", To: "ftw", MS: 38}, {From: "prn", To: "lla", MS: 155}, {From: "ftw", To: "lla", MS: 125}}
	for _, f := range inv.Flavors {
		p := DefaultLeasePolicy(f)
		switch {
		case f.GPUs > 0:
			p.PermanentRoles = "" // GPUs are scarce: nobody keeps one for good
		case f.Kind == "container":
			p.PermanentRoles = RoleEngineer // a small persistent container is cheap enough for everyone to keep
		}
		inv.Policies = append(inv.Policies, p)
	}
	inv.Quotas = []Quota{DefaultQuotas[RoleEngineer], DefaultQuotas[RoleAdmin], DefaultQuotas[RoleReviewer]}
	for _, r := range inv.Regions {
		inv.Pools = append(inv.Pools, PoolTarget{Region: r.Code, Flavor: "vm.small", Target: 2}, PoolTarget{Region: r.Code, Flavor: "vm.medium", Target: 2})
	}
	for _, r := range inv.Regions {
		add := func(kind string, n, cpus, mem, disk, gpus int, tags, prefix string) {
			for i := 1; i <= n; i++ {
				inv.Hosts = append(inv.Hosts, Host{
					Name: fmt.Sprintf("%s-%s%02d", r.Code, prefix, i), Region: r.Code, Kind: kind, Driver: driver, State: "ready",
					CPUs: cpus, MemoryGB: mem, DiskGB: disk, GPUs: gpus, Tags: tags,
				})
			}
		}
		add("hypervisor", 12, 64, 256, 4000, 0, "", "hv")
		add("physical", 6, 32, 128, 2000, 0, "", "ph")
		add("physical", 2, 64, 512, 4000, 8, "a100", "gpu")
		add("container", 4, 64, 128, 2000, 0, "", "ct")
		add("container", 1, 64, 256, 2000, 4, "l4", "gct")
	}
	return inv
}

// SeedInventory writes an inventory into an empty database. It does nothing
// when regions exist already, so it is safe at every start.
func (s *Store) SeedInventory(ctx context.Context, inv DemoInventory) (bool, error) {
	seeded := false
	err := s.InTx(ctx, func(tx *Tx) error {
		var n int
		if err := tx.GetContext(ctx, &n, `SELECT COUNT(*) FROM regions`); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		now := tx.Now()
		for _, r := range inv.Regions {
			if _, err := execNamed(ctx, tx, `INSERT INTO regions (code, name, status, position, created_at) VALUES (:code, :name, :status, :position, :now)`,
				arg{"code": r.Code, "name": r.Name, "status": r.Status, "position": r.Position, "now": now}); err != nil {
				return fmt.Errorf("region %s: %w", r.Code, err)
			}
		}
		for _, h := range inv.Hosts {
			h.CreatedAt = now
			if _, err := execNamed(ctx, tx, `
INSERT INTO hosts (name, region, kind, driver, state, cpus, memory_gb, disk_gb, gpus, tags, created_at)
VALUES (:name, :region, :kind, :driver, :state, :cpus, :memory_gb, :disk_gb, :gpus, :tags, :created_at)`, h); err != nil {
				return fmt.Errorf("host %s: %w", h.Name, err)
			}
		}
		for _, f := range inv.Flavors {
			f.CreatedAt = now
			if _, err := execNamed(ctx, tx, `
INSERT INTO flavors (name, kind, description, cpus, memory_gb, disk_gb, gpus, accelerator, position, created_at)
VALUES (:name, :kind, :description, :cpus, :memory_gb, :disk_gb, :gpus, :accelerator, :position, :created_at)`, f); err != nil {
				return fmt.Errorf("flavor %s: %w", f.Name, err)
			}
		}
		for _, f := range inv.Features {
			f.CreatedAt, f.UpdatedAt = now, now
			if _, err := execNamed(ctx, tx, `
INSERT INTO features (name, version, description, created_at, updated_at)
VALUES (:name, :version, :description, :created_at, :updated_at)`, f); err != nil {
				return fmt.Errorf("feature %s: %w", f.Name, err)
			}
		}
		for _, l := range inv.Latencies {
			if err := tx.SetLatency(ctx, l.From, l.To, l.MS); err != nil {
				return err
			}
		}
		for _, p := range inv.Policies {
			if err := tx.SetLeasePolicy(ctx, System, p); err != nil {
				return err
			}
		}
		for _, q := range inv.Quotas {
			if err := tx.SetQuota(ctx, System, q); err != nil {
				return err
			}
		}
		if err := tx.SetPoolTargets(ctx, System, inv.Pools); err != nil {
			return err
		}
		seeded = true
		return tx.Audit(ctx, System, "inventory.seed", "inventory", "demo", map[string]any{
			"regions": len(inv.Regions), "hosts": len(inv.Hosts), "flavors": len(inv.Flavors), "features": len(inv.Features),
		})
	})
	if err != nil {
		return false, fmt.Errorf("seed inventory: %w", err)
	}
	return seeded, nil
}
