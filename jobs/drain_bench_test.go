package jobs

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/devport/devport/store"
)

// BenchmarkDrain10k drains a region of 10,000 simulated devservers (9,900
// VMs live-migrated, 100 physical whose owners are tasked) to two other
// regions, from the start of the drain to its run's end: DESIGN.md's budget
// is under 60 s, every owner notified once, progress visible throughout.
func BenchmarkDrain10k(b *testing.B) {
	for range b.N {
		b.StopTimer()
		inv := drainInventory()
		for i := range inv.Hosts {
			switch inv.Hosts[i].Name {
			case "src-hv01":
				inv.Hosts[i].CPUs, inv.Hosts[i].MemoryGB, inv.Hosts[i].DiskGB = 2*10000, 8*10000, 50*10000
			case "near-hv01", "far-hv01":
				inv.Hosts[i].CPUs, inv.Hosts[i].MemoryGB, inv.Hosts[i].DiskGB = 2*6000, 8*6000, 50*6000
			}
		}
		for i := 6; i <= 100; i++ {
			inv.Hosts = append(inv.Hosts, store.Host{Name: fmt.Sprintf("src-ph%02d", i), Region: "src", Kind: "physical", Driver: "sim", State: "ready", CPUs: 32, MemoryGB: 128, DiskGB: 2000})
		}
		g := newDrainRigOf(b, inv, 0)
		owners := g.owners(b, 2000)
		g.populate(b, owners, 9900, 0, 100)
		ctx := context.Background()
		b.StartTimer()
		start := time.Now()
		drain, run, err := StartDrain(ctx, g.s, g.runner, g.admin, DrainRequest{Region: "src", Reason: "benchmark", MaxParallel: intp(1000)})
		if err != nil {
			b.Fatal(err)
		}
		done := waitDrainRun(b, g.s, run.ID, 10*time.Minute)
		took := time.Since(start)
		b.StopTimer()
		if done.State != store.RunSucceeded {
			b.Fatalf("drain run %s: %s", done.State, done.Error)
		}
		p, err := g.s.DrainProgress(ctx, drain.ID)
		if err != nil {
			b.Fatal(err)
		}
		if p.Total != 10000 || p.Done != 9900 || p.Owner != 100 || p.Failed != 0 {
			b.Fatalf("progress %+v", p)
		}
		var notified int
		if err := g.s.DB().QueryRow(`SELECT COUNT(DISTINCT user_id) FROM notifications WHERE idempotency_key LIKE 'drain:%'`).Scan(&notified); err != nil || notified != 2000 {
			b.Fatalf("%d owners notified, want 2000 (%v)", notified, err)
		}
		b.ReportMetric(took.Seconds(), "s/drain")
		b.ReportMetric(10000/took.Seconds(), "devservers/s")
	}
}
