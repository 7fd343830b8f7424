package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/sim"
	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// odClock is a clock the container tests move by hand.
type odClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *odClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *odClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// odInventory has the active regions "tst" and "alt" and the draining
// region "drn", each with one container host that holds mediums medium
// containers.
func odInventory(mediums int) store.DemoInventory {
	demo := store.Demo("sim")
	inv := store.DemoInventory{Features: demo.Features}
	inv.Regions = []store.Region{
		{Code: "tst", Name: "Test", Status: "active", Position: 1},
		{Code: "alt", Name: "Alternative", Status: "active", Position: 2},
		{Code: "drn", Name: "Draining", Status: "draining", Position: 3},
	}
	inv.Latencies = []store.RegionLatency{{From: "tst", To: "alt", MS: 20}, {From: "tst", To: "drn", MS: 50}, {From: "alt", To: "drn", MS: 30}}
	for _, r := range inv.Regions {
		inv.Hosts = append(inv.Hosts, store.Host{Name: r.Code + "-ct01", Region: r.Code, Kind: "container", Driver: "sim", State: "ready",
			CPUs: 4 * mediums, MemoryGB: 8 * mediums, DiskGB: 40 * mediums})
	}
	return inv
}

// odRig is a started job runner with the simulated fleet on odInventory
// and a store clock the test moves; the periodic jobs are off, so the test
// runs the refills and lifetime checks itself.
type odRig struct {
	s      *store.Store
	sim    *sim.Driver
	runner *jobs.Runner
	clock  *odClock
	log    *slog.Logger
	owner  store.User
}

func newODRig(t *testing.T, mediums int, latency time.Duration) *odRig {
	t.Helper()
	inv := odInventory(mediums)
	s := storetest.Seeded(t, &inv)
	clock := &odClock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
	s.Now = clock.Now
	d := sim.New(s, sim.Options{Latency: latency, Seed: 5})
	log := slog.New(slog.DiscardHandler)
	r, err := jobs.New(context.Background(), jobs.Options{Store: s, Fleet: fleet.New(d), Log: log, NoSchedules: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Stop(ctx)
	})
	return &odRig{s: s, sim: d, runner: r, clock: clock, log: log, owner: storetest.User(t, s, "alice@example.com")}
}

// request asks for a container and enqueues its work in the same transaction, as the handlers do.
func (g *odRig) request(t *testing.T, r store.ContainerRequest) store.Container {
	t.Helper()
	ctx := context.Background()
	if r.Owner.ID == 0 {
		r.Owner = g.owner
	}
	var c store.Container
	err := g.s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if c, err = tx.RequestContainer(ctx, store.UserActor(r.Owner, "", ""), r); err != nil {
			return err
		}
		for _, a := range jobs.ContainerWork(c) {
			if err := g.runner.Enqueue(ctx, tx, a); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// end ends a container and enqueues its destruction, as the handlers do.
func (g *odRig) end(t *testing.T, c store.Container) {
	t.Helper()
	ctx := context.Background()
	err := g.s.InTx(ctx, func(tx *store.Tx) error {
		cur, err := tx.ContainerByID(ctx, c.ID)
		if err != nil {
			return err
		}
		_, needsFleet, err := tx.EndContainer(ctx, store.UserActor(g.owner, "", ""), cur, store.EndByOwner)
		if err != nil || !needsFleet {
			return err
		}
		return g.runner.Enqueue(ctx, tx, jobs.EndContainerArgs{ContainerID: c.ID})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (g *odRig) container(t *testing.T, id int64) store.Container {
	t.Helper()
	c, err := g.s.ContainerByID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (g *odRig) waitState(t *testing.T, id int64, state string) store.Container {
	t.Helper()
	var c store.Container
	waitFor(t, fmt.Sprintf("container %d to be %s", id, state), func() bool {
		c = g.container(t, id)
		return c.State == state
	})
	return c
}

// pooled counts a pool's pooled containers by state.
func (g *odRig) pooled(t *testing.T, region, typ, profile string) map[string]int {
	t.Helper()
	cs, err := g.s.Containers(context.Background(), store.ContainerFilter{Pooled: true, Ended: true, Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, c := range cs {
		if c.Pooled() && c.Region == region && c.Type == typ && c.Profile == profile {
			out[c.State]++
		}
	}
	return out
}

// settled tells whether no container job waits or runs.
func (g *odRig) settled(t *testing.T) bool {
	t.Helper()
	var n int
	err := g.s.InTx(context.Background(), func(tx *store.Tx) error {
		return tx.GetContext(context.Background(), &n, `
SELECT COUNT(*) FROM river_job WHERE kind IN ('provision_container', 'end_container', 'setup_container', 'refill_container_pool')
AND state NOT IN ('completed', 'cancelled', 'discarded')`)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n == 0
}

// liveInstances counts the simulated instances not destroyed, on every container host.
func (g *odRig) liveInstances(t *testing.T) int {
	t.Helper()
	n := 0
	for _, h := range []string{"tst-ct01", "alt-ct01", "drn-ct01"} {
		ins, err := g.s.SimInstancesOn(context.Background(), h)
		if err != nil {
			t.Fatal(err)
		}
		n += len(ins)
	}
	return n
}

// capacity is what every host has in use, in words.
func (g *odRig) capacity(t *testing.T) string {
	t.Helper()
	hs, err := g.s.Hosts(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, h := range hs {
		fmt.Fprintf(&b, "%s:%d/%d/%d/%d ", h.Name, h.UsedCPUs, h.UsedMemoryGB, h.UsedDiskGB, h.UsedGPUs)
	}
	return b.String()
}

func (g *odRig) refill(t *testing.T) jobs.PoolRefill {
	t.Helper()
	r, err := jobs.RefillContainerPools(context.Background(), g.s, g.runner, 0, g.log)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (g *odRig) cat(t *testing.T, c store.Container, path string) (string, int) {
	t.Helper()
	res, err := g.sim.Exec(context.Background(), c.InstanceID, []string{"cat", path})
	if err != nil {
		t.Fatalf("cat %s on %s: %v", path, c.Name, err)
	}
	return res.Output, res.ExitCode
}

func TestContainerPoolRefillJobs(t *testing.T) {
	g := newODRig(t, 10, 0)
	pools := []struct{ region, typ, profile string }{{"tst", "web", "medium"}, {"tst", "jupyter", "small"}, {"alt", "web", "medium"}, {"alt", "jupyter", "small"}}
	target := map[string]int{"web": 2, "jupyter": 1}

	t.Run("two refills at once fill every pool to its target and no further", func(t *testing.T) {
		var wg sync.WaitGroup
		built := make([]int, 2)
		for i := range built {
			wg.Go(func() {
				r, err := jobs.RefillContainerPools(context.Background(), g.s, g.runner, 0, g.log)
				if err != nil {
					t.Error(err)
				}
				built[i] = r.Built
			})
		}
		wg.Wait()
		if built[0]+built[1] != 6 {
			t.Errorf("the refills built %v, want 6 in all (3 in each active region)", built)
		}
		for _, p := range pools {
			got := g.pooled(t, p.region, p.typ, p.profile)
			if n := got[store.ContainerProvisioning] + got[store.ContainerReady]; n != target[p.typ] {
				t.Errorf("%s/%s/%s holds %v, want %d", p.region, p.typ, p.profile, got, target[p.typ])
			}
		}
		if got := g.pooled(t, "drn", "web", "medium"); len(got) != 0 {
			t.Errorf("the draining region's pool holds %v", got)
		}
	})

	t.Run("the provisioning jobs make them ready, with the stack manifest in each", func(t *testing.T) {
		for _, p := range pools {
			waitFor(t, "the "+p.region+"/"+p.typ+" pool to be ready", func() bool {
				return g.pooled(t, p.region, p.typ, p.profile)[store.ContainerReady] == target[p.typ]
			})
		}
		cs, _ := g.s.Containers(context.Background(), store.ContainerFilter{Pooled: true, Limit: 100})
		for _, c := range cs {
			out, code := g.cat(t, c, jobs.StackManifestPath)
			var m struct {
				Type  string            `json:"type"`
				Tools []store.Versioned `json:"tools"`
			}
			if code != 0 || json.Unmarshal([]byte(out), &m) != nil || m.Type != c.Type || len(m.Tools) == 0 {
				t.Errorf("%s manifest (exit %d): %q", c.Name, code, out)
			}
		}
		if n := g.liveInstances(t); n != 6 {
			t.Errorf("%d simulated instances, want 6", n)
		}
	})

	full := g.capacity(t)
	before, _ := g.s.Containers(context.Background(), store.ContainerFilter{Pooled: true, Limit: 100})

	t.Run("past the freshness limit the stale ones are recycled, keeping the minimum ready", func(t *testing.T) {
		g.clock.Add(6*time.Hour + time.Minute)
		r := g.refill(t)
		// Per active region: web builds 2 and recycles 1 (one stale kept
		// for its minimum of 1); jupyter (minimum 0) builds 1, recycles 1.
		if r.Built != 6 || r.Recycled != 4 {
			t.Errorf("refill = %+v, want 6 built and 4 recycled", r)
		}
		for _, region := range []string{"tst", "alt"} {
			if got := g.pooled(t, region, "web", "medium"); got[store.ContainerReady] < 1 {
				t.Errorf("%s/web/medium holds %v: fewer than its minimum ready", region, got)
			}
		}
		waitFor(t, "the replacements to be ready and the recycled ones ended", func() bool {
			return g.settled(t) && g.pooled(t, "tst", "web", "medium")[store.ContainerReady] == 3
		})
	})

	t.Run("once the replacements are ready the rest are recycled", func(t *testing.T) {
		r := g.refill(t)
		if r.Built != 0 || r.Recycled != 2 {
			t.Errorf("refill = %+v, want the 2 kept stale ones recycled", r)
		}
		waitFor(t, "the jobs", func() bool { return g.settled(t) })
		for _, c := range before {
			got := g.container(t, c.ID)
			if got.State != store.ContainerEnded || got.EndReason != store.EndRecycled || got.EndedAt == nil {
				t.Errorf("%s is %s (%s), want ended as recycled", got.Name, got.State, got.EndReason)
			}
			if in, err := g.s.SimInstance(context.Background(), got.InstanceID); err != nil || in.State != "destroyed" {
				t.Errorf("%s's instance is %s (%v)", got.Name, in.State, err)
			}
		}
		if after := g.capacity(t); after != full {
			t.Errorf("capacity %s, want %s as with the first full pools", after, full)
		}
		if n := g.liveInstances(t); n != 6 {
			t.Errorf("%d simulated instances, want 6", n)
		}
	})

	t.Run("a pool in a draining region is emptied and its host's capacity given back", func(t *testing.T) {
		err := g.s.InTx(context.Background(), func(tx *store.Tx) error {
			_, err := tx.ExecContext(context.Background(), `UPDATE regions SET status = 'draining' WHERE code = 'alt'`)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if r := g.refill(t); r.Recycled != 3 || r.Built != 0 {
			t.Errorf("refill = %+v, want alt's 3 recycled", r)
		}
		waitFor(t, "the jobs", func() bool { return g.settled(t) })
		for _, typ := range []string{"web", "jupyter"} {
			if got := g.pooled(t, "alt", typ, map[string]string{"web": "medium", "jupyter": "small"}[typ]); got[store.ContainerReady]+got[store.ContainerEnding] != 0 {
				t.Errorf("alt/%s holds %v", typ, got)
			}
		}
		if h, _ := g.s.HostByName(context.Background(), "alt-ct01"); h.UsedCPUs+h.UsedMemoryGB+h.UsedDiskGB != 0 {
			t.Errorf("alt-ct01 still uses %+v", h)
		}
	})
}

func TestContainerRequestJobs(t *testing.T) {
	t.Run("a cold request becomes ready through its provisioning job, with the stack manifest", func(t *testing.T) {
		g := newODRig(t, 4, 0)
		c := g.request(t, store.ContainerRequest{Type: "android", Profile: "large", Features: []string{"python"}})
		if c.State != store.ContainerProvisioning || c.FromPool() {
			t.Fatalf("cold container = %+v", c)
		}
		c = g.waitState(t, c.ID, store.ContainerReady)
		if c.Address == "" || c.InstanceID == "" || c.Progress != 100 || c.ReadyAt == nil || c.StatusNote != "" {
			t.Errorf("ready container = %+v", c)
		}
		out, code := g.cat(t, c, ".devport/stack.json")
		if code != 0 || !strings.Contains(out, `"type": "android"`) || !strings.Contains(out, `"gradle"`) || !strings.Contains(out, `"profile": "large"`) {
			t.Errorf("stack.json (exit %d) = %q", code, out)
		}
		waitFor(t, "the features to be set up", func() bool { return g.container(t, c.ID).SetupState == "done" })
		if c = g.container(t, c.ID); len(c.Features) != 1 || c.Features[0].State != "installed" {
			t.Errorf("features %+v", c.Features)
		}
	})

	t.Run("a pool-served request is ready at once and its pool is refilled", func(t *testing.T) {
		g := newODRig(t, 4, 0)
		g.refill(t)
		waitFor(t, "the pool", func() bool { return g.pooled(t, "tst", "web", "medium")[store.ContainerReady] == 2 })
		c := g.request(t, store.ContainerRequest{Type: "web", Profile: "medium"})
		if c.State != store.ContainerReady || !c.FromPool() || c.ExpiresAt == nil || !c.ExpiresAt.Equal(g.clock.Now().Add(36*time.Hour)) {
			t.Errorf("pool-served container = %+v", c)
		}
		if out, code := g.cat(t, c, jobs.StackManifestPath); code != 0 || !strings.Contains(out, `"type": "web"`) {
			t.Errorf("stack.json (exit %d) = %q", code, out)
		}
		waitFor(t, "the pool to be refilled", func() bool {
			return g.pooled(t, "tst", "web", "medium")[store.ContainerReady] == 2 && g.settled(t)
		})
	})
}

func TestContainerLifetimes(t *testing.T) {
	g := newODRig(t, 4, 0)
	ctx := context.Background()
	empty := g.capacity(t)
	c := g.waitState(t, g.request(t, store.ContainerRequest{Type: "jupyter", Profile: "small"}).ID, store.ContainerReady)
	check := func(t *testing.T) (int, int) {
		t.Helper()
		w, e, err := jobs.CheckContainerLifetimes(ctx, g.s, g.runner, 0, g.log)
		if err != nil {
			t.Fatal(err)
		}
		return w, e
	}
	inbox := func(t *testing.T) []store.Notification {
		t.Helper()
		ns, err := g.s.Notifications(ctx, g.owner.ID, 0, 50)
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}

	t.Run("no warning while the end is more than 2 hours away", func(t *testing.T) {
		g.clock.Add(21 * time.Hour) // 3 h left of 24
		if w, e := check(t); w+e != 0 || len(inbox(t)) != 0 {
			t.Errorf("warned %d ended %d, inbox %+v", w, e, inbox(t))
		}
	})
	t.Run("a warning 2 hours before the end, exactly once", func(t *testing.T) {
		g.clock.Add(time.Hour + time.Minute) // 1 h 59 min left
		w1, _ := check(t)
		w2, _ := check(t)
		ns := inbox(t)
		if w1 != 1 || w2 != 0 || len(ns) != 1 {
			t.Fatalf("warned %d then %d, inbox %+v", w1, w2, ns)
		}
		if ns[0].Kind != "container_ending" || ns[0].Link != "/containers/"+c.Name || !strings.Contains(ns[0].Title, c.Name) {
			t.Errorf("warning %+v", ns[0])
		}
		if got := g.container(t, c.ID); got.State != store.ContainerReady {
			t.Errorf("a warned container is %s", got.State)
		}
	})
	t.Run("at expiry it ends, is destroyed, gives its capacity back and its owner is told", func(t *testing.T) {
		g.clock.Add(2 * time.Hour)
		if _, e := check(t); e != 1 {
			t.Fatalf("ended %d, want 1", e)
		}
		if got := g.container(t, c.ID); got.State != store.ContainerEnding && got.State != store.ContainerEnded {
			t.Errorf("expired container is %s", got.State)
		}
		got := g.waitState(t, c.ID, store.ContainerEnded)
		if got.EndReason != store.EndExpired || got.EndText() != "Its lifetime ran out." {
			t.Errorf("ended container = %+v", got)
		}
		if in, err := g.s.SimInstance(ctx, got.InstanceID); err != nil || in.State != "destroyed" {
			t.Errorf("its instance is %s (%v)", in.State, err)
		}
		if after := g.capacity(t); after != empty {
			t.Errorf("capacity %s, want %s", after, empty)
		}
		ns := inbox(t)
		if len(ns) != 2 || ns[0].Kind != "container_expired" || ns[0].Link != "/containers/"+c.Name {
			t.Errorf("inbox %+v", ns)
		}
	})
	t.Run("a rerun after the end does nothing more", func(t *testing.T) {
		if w, e := check(t); w+e != 0 || len(inbox(t)) != 2 {
			t.Errorf("warned %d ended %d, inbox %d", w, e, len(inbox(t)))
		}
	})
}

func TestEndContainerWhileProvisioning(t *testing.T) {
	for _, tc := range []struct {
		name    string
		latency time.Duration
	}{
		{"ended right after the request", 0},
		{"ended while the fleet creates it", 300 * time.Millisecond},
	} {
		t.Run(tc.name+", it ends with no instance left and its capacity back", func(t *testing.T) {
			g := newODRig(t, 4, tc.latency)
			empty := g.capacity(t)
			c := g.request(t, store.ContainerRequest{Type: "web", Profile: "medium"})
			if c.State != store.ContainerProvisioning {
				t.Fatalf("container is %s", c.State)
			}
			if tc.latency > 0 {
				waitFor(t, "the fleet to be creating it", func() bool { return g.container(t, c.ID).Progress >= 10 })
			}
			g.end(t, c)
			got := g.waitState(t, c.ID, store.ContainerEnded)
			waitFor(t, "the jobs to settle and no instance to be left", func() bool { return g.settled(t) && g.liveInstances(t) == 0 })
			if got = g.container(t, c.ID); got.State != store.ContainerEnded || got.EndReason != store.EndByOwner {
				t.Errorf("container = %+v", got)
			}
			if after := g.capacity(t); after != empty {
				t.Errorf("capacity %s, want %s", after, empty)
			}
		})
	}
}
