package store

import (
	"testing"
)

func TestFits(t *testing.T) {
	small := Flavor{Name: "vm.small", Kind: "vm", CPUs: 2, MemoryGB: 8, DiskGB: 50}
	gpu := Flavor{Name: "gpu.a100", Kind: "physical", CPUs: 64, MemoryGB: 512, DiskGB: 4000, GPUs: 8, Accelerator: "a100"}
	hv := Host{Name: "hv", Kind: "hypervisor", State: "ready", CPUs: 64, MemoryGB: 256, DiskGB: 4000}
	gpuHost := Host{Name: "g", Kind: "physical", State: "ready", CPUs: 64, MemoryGB: 512, DiskGB: 4000, GPUs: 8, Tags: "a100"}
	tests := []struct {
		name string
		h    Host
		f    Flavor
		want int
	}{
		{"an empty hypervisor is limited by its scarcest resource", hv, small, 32},
		{"used memory limits what fits", func() Host { h := hv; h.UsedMemoryGB = 250; return h }(), small, 0},
		{"a host in maintenance takes nothing", func() Host { h := hv; h.State = "maintenance"; return h }(), small, 0},
		{"a VM flavour does not fit a physical host", gpuHost, small, 0},
		{"a GPU flavour fits a host with its accelerator", gpuHost, gpu, 1},
		{"a GPU flavour needs the accelerator tag", func() Host { h := gpuHost; h.Tags = "h100"; return h }(), gpu, 0},
		{"used GPUs limit GPU flavours", func() Host { h := gpuHost; h.UsedGPUs = 1; return h }(), gpu, 0},
		{"an over-used host never reports negative room", func() Host { h := hv; h.UsedCPUs = 70; return h }(), small, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Fits(tt.h, tt.f); got != tt.want {
				t.Errorf("Fits = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestPlacementOrder(t *testing.T) {
	phys := Flavor{Name: "physical.standard", Kind: "physical", CPUs: 32, MemoryGB: 128, DiskGB: 2000}
	hosts := []Host{
		{Name: "gpu01", Kind: "physical", State: "ready", CPUs: 64, MemoryGB: 512, DiskGB: 4000, GPUs: 8, Tags: "a100"},
		{Name: "ph02", Kind: "physical", State: "ready", CPUs: 32, MemoryGB: 128, DiskGB: 2000},
		{Name: "ph01", Kind: "physical", State: "ready", CPUs: 32, MemoryGB: 128, DiskGB: 2000, UsedCPUs: 32, UsedMemoryGB: 128, UsedDiskGB: 2000},
		{Name: "ph03", Kind: "physical", State: "ready", CPUs: 32, MemoryGB: 128, DiskGB: 2000},
	}
	got := PlacementOrder(phys, hosts)
	var names []string
	for _, h := range got {
		names = append(names, h.Name)
	}
	want := []string{"ph02", "ph03", "gpu01"}
	if len(names) != len(want) {
		t.Fatalf("order = %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("order = %v, want %v (full hosts left out, GPU hosts last for non-GPU work)", names, want)
		}
	}

	t.Run("fills the fuller host first", func(t *testing.T) {
		small := Flavor{Name: "vm.small", Kind: "vm", CPUs: 2, MemoryGB: 8, DiskGB: 50}
		hs := []Host{
			{Name: "a", Kind: "hypervisor", State: "ready", CPUs: 64, MemoryGB: 256, DiskGB: 4000},
			{Name: "b", Kind: "hypervisor", State: "ready", CPUs: 64, MemoryGB: 256, DiskGB: 4000, UsedCPUs: 10, UsedMemoryGB: 40, UsedDiskGB: 250},
		}
		if got := PlacementOrder(small, hs); got[0].Name != "b" {
			t.Errorf("first = %s, want b", got[0].Name)
		}
	})
}
