package store

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// The N-1 packing orders hosts by positions for speed; it must place in the
// same order as reservations do.
func TestPlacementIndexIsPlacementOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 1))
	kinds := []string{"hypervisor", "physical", "container"}
	states := []string{"ready", "ready", "ready", "maintenance", "unreachable"}
	var hosts []Host
	for i := range 300 {
		h := Host{ID: int64(i + 1), Name: fmt.Sprintf("h%03d", rng.IntN(1000)), Kind: kinds[rng.IntN(3)], State: states[rng.IntN(len(states))],
			CPUs: 64, MemoryGB: 512, DiskGB: 4000}
		if rng.IntN(4) == 0 {
			h.GPUs, h.Tags = 8, "a100"
		}
		if rng.IntN(3) > 0 { // a third stay empty, so the biggest flavours fit somewhere
			h.UsedCPUs, h.UsedMemoryGB = rng.IntN(65), rng.IntN(513)
		}
		hosts = append(hosts, h)
	}
	for _, f := range Demo("sim").Flavors {
		var want, got []int64
		for _, h := range PlacementOrder(f, hosts) {
			want = append(want, h.ID)
		}
		for _, i := range placementIndex(f, hosts) {
			got = append(got, hosts[i].ID)
		}
		if len(want) == 0 {
			t.Errorf("%s: no host fits; the test proves nothing", f.Name)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: placementIndex order %v, PlacementOrder %v", f.Name, got, want)
		}
	}
}
