package store

import (
	"cmp"
	"slices"
	"strings"
)

// HostKindFor is the kind of host that runs a flavour's kind.
func HostKindFor(flavorKind string) string {
	switch flavorKind {
	case "vm":
		return "hypervisor"
	case "physical":
		return "physical"
	case "container":
		return "container"
	}
	return ""
}

// Fits is how many devservers of flavour f the free part of host h can take.
// It is a plain rule with no I/O: the database enforces it again with a
// conditional update when capacity is taken.
func Fits(h Host, f Flavor) int {
	if h.State != "ready" || h.Kind != HostKindFor(f.Kind) {
		return 0
	}
	if f.Accelerator != "" && !slices.Contains(h.TagList(), f.Accelerator) {
		return 0
	}
	n := min((h.CPUs-h.UsedCPUs)/f.CPUs, (h.MemoryGB-h.UsedMemoryGB)/f.MemoryGB, (h.DiskGB-h.UsedDiskGB)/f.DiskGB)
	if f.GPUs > 0 {
		n = min(n, (h.GPUs-h.UsedGPUs)/f.GPUs)
	}
	return max(n, 0)
}

// PlacementOrder returns the hosts that can take one devserver of flavour f,
// best first: hosts without accelerators the flavour does not need come first
// (so GPUs stay free for GPU work), then the fullest host (bin packing keeps
// whole hosts free for large flavours and for maintenance), then by name.
func PlacementOrder(f Flavor, hosts []Host) []Host {
	var fit []Host
	for _, h := range hosts {
		if Fits(h, f) > 0 {
			fit = append(fit, h)
		}
	}
	wasted := func(h Host) int {
		if f.GPUs == 0 {
			return h.GPUs
		}
		return 0
	}
	slices.SortFunc(fit, func(a, b Host) int {
		return cmp.Or(
			cmp.Compare(wasted(a), wasted(b)),
			cmp.Compare(a.CPUs-a.UsedCPUs, b.CPUs-b.UsedCPUs),
			strings.Compare(a.Name, b.Name),
		)
	})
	return fit
}

// FreeSlots is how many devservers of flavour f the hosts can take in all.
func FreeSlots(f Flavor, hosts []Host) int {
	n := 0
	for _, h := range hosts {
		n += Fits(h, f)
	}
	return n
}
