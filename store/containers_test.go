package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// odClock is a clock the On Demand tests move by hand.
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

// odInventory has three regions for containers: "tst" (position 1) and
// "alt" (2) are active, "drn" (3) is draining. Each has one container host
// that holds exactly mediums medium containers (4 CPUs, 8 GB, 40 GB each);
// "tst" also has a GPU container host for two gpu containers.
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
	inv.Hosts = append(inv.Hosts, store.Host{Name: "tst-gct01", Region: "tst", Kind: "container", Driver: "sim", State: "ready",
		CPUs: 16, MemoryGB: 64, DiskGB: 200, GPUs: 2, Tags: "l4"})
	return inv
}

// odStore is a seeded store on odInventory with a clock the test moves.
func odStore(t *testing.T, mediums int) (*store.Store, *odClock) {
	t.Helper()
	inv := odInventory(mediums)
	s := storetest.Seeded(t, &inv)
	clock := &odClock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
	s.Now = clock.Now
	return s, clock
}

func requestOD(s *store.Store, r store.ContainerRequest) (store.Container, error) {
	ctx := context.Background()
	var c store.Container
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		c, err = tx.RequestContainer(ctx, store.UserActor(r.Owner, "test", ""), r)
		return err
	})
	return c, err
}

func mustRequestOD(t *testing.T, s *store.Store, r store.ContainerRequest) store.Container {
	t.Helper()
	c, err := requestOD(s, r)
	if err != nil {
		t.Fatalf("request %s/%s: %v", r.Type, r.Profile, err)
	}
	return c
}

// refillOD refills one pool in its own transaction, with the freshness limit freshness.
func refillOD(t *testing.T, s *store.Store, region, typ, profile string, freshness time.Duration) store.ContainerPoolRefill {
	t.Helper()
	ctx := context.Background()
	var r store.ContainerPoolRefill
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		r, err = tx.RefillContainerPool(ctx, region, typ, profile, tx.Now().Add(-freshness))
		return err
	})
	if err != nil {
		t.Fatalf("refill %s: %v", store.ContainerPoolKey(region, typ, profile), err)
	}
	return r
}

// readyOD finishes the building of containers the way the job does.
func readyOD(t *testing.T, s *store.Store, ids ...int64) {
	t.Helper()
	ctx := context.Background()
	err := s.InTx(ctx, func(tx *store.Tx) error {
		for _, id := range ids {
			if ok, err := tx.MarkContainerReady(ctx, id, fmt.Sprintf("10.9.0.%d", id)); err != nil || !ok {
				return fmt.Errorf("ready %d: %v (marked %v)", id, err, ok)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// endOD ends containers and finishes their end the way the job does.
func endOD(t *testing.T, s *store.Store, cs ...store.Container) {
	t.Helper()
	ctx := context.Background()
	err := s.InTx(ctx, func(tx *store.Tx) error {
		for _, c := range cs {
			if _, _, err := tx.EndContainer(ctx, store.System, c, store.EndByOwner); err != nil {
				return err
			}
			if ok, err := tx.MarkContainerEnded(ctx, c.ID); err != nil || !ok {
				return fmt.Errorf("ended %s: %v (marked %v)", c.Name, err, ok)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func containerOD(t *testing.T, s *store.Store, id int64) store.Container {
	t.Helper()
	c, err := s.ContainerByID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// allContainersOD is every container row, pooled and ended ones too.
func allContainersOD(t *testing.T, s *store.Store) []store.Container {
	t.Helper()
	cs, err := s.Containers(context.Background(), store.ContainerFilter{Pooled: true, Ended: true, Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// auditTotalOD counts every audit event.
func auditTotalOD(t *testing.T, s *store.Store) int {
	t.Helper()
	var n int
	err := s.InTx(context.Background(), func(tx *store.Tx) error {
		return tx.GetContext(context.Background(), &n, `SELECT COUNT(*) FROM audit_events`)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// capacityOD is what every host has in use, in words, to compare before and after.
func capacityOD(t *testing.T, s *store.Store) string {
	t.Helper()
	hs, err := s.Hosts(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, h := range hs {
		fmt.Fprintf(&b, "%s:%d/%d/%d/%d ", h.Name, h.UsedCPUs, h.UsedMemoryGB, h.UsedDiskGB, h.UsedGPUs)
	}
	return b.String()
}

func TestRequestContainer(t *testing.T) {
	ctx := context.Background()
	s, clock := odStore(t, 8)
	alice := storetest.User(t, s, "alice@example.com")
	r := refillOD(t, s, "tst", "web", "medium", store.DefaultContainerFreshness)
	if len(r.Built) != 2 {
		t.Fatalf("the web/medium pool built %d, want its target 2", len(r.Built))
	}
	readyOD(t, s, r.Built...)

	t.Run("a pooled ready web container is served at once and lives 36 hours", func(t *testing.T) {
		before := capacityOD(t, s)
		c := mustRequestOD(t, s, store.ContainerRequest{Owner: alice, Type: "web", Profile: "medium"})
		if c.State != store.ContainerReady || !c.FromPool() || c.Pooled() || c.Owner != "alice@example.com" || c.Region != "tst" {
			t.Errorf("container = %+v", c)
		}
		if c.ExpiresAt == nil || !c.ExpiresAt.Equal(clock.Now().Add(36*time.Hour)) {
			t.Errorf("expires at %v, want %v", c.ExpiresAt, clock.Now().Add(36*time.Hour))
		}
		if !store.IsContainerName(c.Name) || c.Hostname != c.Name+".tst.od.devport.internal" || c.Stack == "" {
			t.Errorf("name %q hostname %q stack %q", c.Name, c.Hostname, c.Stack)
		}
		if c.PlacementNote != "" || c.SetupState != "none" {
			t.Errorf("note %q setup %q", c.PlacementNote, c.SetupState)
		}
		if after := capacityOD(t, s); after != before {
			t.Errorf("a pool-served request took capacity again: %s → %s", before, after)
		}
		events, _ := s.AuditEvents(ctx, "container", c.Name)
		last := events[len(events)-1]
		if last.Action != "container.request" || last.Actor != "alice@example.com" || !strings.Contains(last.Detail, `"from_pool":true`) {
			t.Errorf("last audit event = %+v", last)
		}
	})

	t.Run("a jupyter container lives 24 hours", func(t *testing.T) {
		r := refillOD(t, s, "tst", "jupyter", "small", store.DefaultContainerFreshness)
		readyOD(t, s, r.Built...)
		c := mustRequestOD(t, s, store.ContainerRequest{Owner: alice, Type: "jupyter", Profile: "small", Region: "tst"})
		if !c.FromPool() || c.ExpiresAt == nil || !c.ExpiresAt.Equal(clock.Now().Add(24*time.Hour)) {
			t.Errorf("jupyter container = %+v", c)
		}
	})

	t.Run("with the pool empty a request is built cold and takes capacity", func(t *testing.T) {
		bob := storetest.User(t, s, "bob@example.com")
		h, _ := s.HostByName(ctx, "tst-ct01")
		c := mustRequestOD(t, s, store.ContainerRequest{Owner: bob, Type: "android", Profile: "medium", Features: []string{"python", "python"}})
		if c.State != store.ContainerProvisioning || c.FromPool() || c.Host != "tst-ct01" || c.Image != "sim/od-android:2026.11" {
			t.Errorf("cold container = %+v", c)
		}
		if c.CPUs != 4 || c.MemoryGB != 8 || c.DiskGB != 40 || c.ExpiresAt == nil || !c.ExpiresAt.Equal(clock.Now().Add(36*time.Hour)) {
			t.Errorf("cold container = %+v", c)
		}
		if len(c.Features) != 1 || c.Features[0].Feature != "python" || c.Features[0].State != "pending" || c.SetupState != "pending" {
			t.Errorf("features %+v, setup %q", c.Features, c.SetupState)
		}
		after, _ := s.HostByName(ctx, "tst-ct01")
		if after.UsedCPUs != h.UsedCPUs+4 || after.UsedMemoryGB != h.UsedMemoryGB+8 || after.UsedDiskGB != h.UsedDiskGB+40 {
			t.Errorf("host use went from %+v to %+v", h, after)
		}
	})

	t.Run("ml-gpu goes to the GPU host", func(t *testing.T) {
		carol := storetest.User(t, s, "carol@example.com")
		c := mustRequestOD(t, s, store.ContainerRequest{Owner: carol, Type: "ml-gpu", Profile: "gpu"})
		if c.Host != "tst-gct01" || c.GPUs != 1 {
			t.Errorf("gpu container = %+v", c)
		}
	})
}

func TestConcurrentContainerRequestsNeverShareAPooledOne(t *testing.T) {
	ctx := context.Background()
	s, _ := odStore(t, 20)
	err := s.InTx(ctx, func(tx *store.Tx) error {
		return tx.SetContainerPool(ctx, store.System, store.ContainerPoolTarget{Region: "tst", Type: "web", Profile: "medium", Target: 3, Min: 1, Max: 4})
	})
	if err != nil {
		t.Fatal(err)
	}
	r := refillOD(t, s, "tst", "web", "medium", store.DefaultContainerFreshness)
	readyOD(t, s, r.Built...)
	const pooled, users = 3, 8
	us := make([]store.User, users)
	for i := range us {
		us[i] = storetest.User(t, s, fmt.Sprintf("eng%02d@example.com", i))
	}
	got := make([]store.Container, users)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range us {
		wg.Go(func() {
			<-start
			c, err := requestOD(s, store.ContainerRequest{Owner: us[i], Type: "web", Profile: "medium", Region: "tst"})
			if err != nil {
				t.Error(err)
			}
			got[i] = c
		})
	}
	close(start)
	wg.Wait()
	t.Run("exactly the pooled ones are served from the pool, each to one user", func(t *testing.T) {
		owners := map[int64]int64{}
		fromPool := 0
		for i, c := range got {
			if prev, ok := owners[c.ID]; ok {
				t.Errorf("container %s went to users %d and %d", c.Name, prev, us[i].ID)
			}
			owners[c.ID] = us[i].ID
			if c.FromPool() {
				fromPool++
				if c.State != store.ContainerReady {
					t.Errorf("pool-served %s is %s", c.Name, c.State)
				}
			} else if c.State != store.ContainerProvisioning {
				t.Errorf("cold %s is %s", c.Name, c.State)
			}
		}
		if fromPool != pooled {
			t.Errorf("%d requests were served from a pool of %d", fromPool, pooled)
		}
	})
	t.Run("the database agrees: every container has one owner and none is left pooled", func(t *testing.T) {
		owned := 0
		for _, c := range allContainersOD(t, s) {
			if c.Pooled() {
				t.Errorf("%s is still pooled", c.Name)
			} else {
				owned++
			}
		}
		if owned != users {
			t.Errorf("%d owned containers, want %d", owned, users)
		}
	})
}

func TestContainerQuota(t *testing.T) {
	ctx := context.Background()
	s, _ := odStore(t, 8)
	dave := storetest.User(t, s, "dave@example.com")
	var held []store.Container
	for range 3 {
		held = append(held, mustRequestOD(t, s, store.ContainerRequest{Owner: dave, Type: "web", Profile: "small"}))
	}

	t.Run("the 4th live container of an engineer is refused and nothing is written", func(t *testing.T) {
		before, rows, events := capacityOD(t, s), len(allContainersOD(t, s)), auditTotalOD(t, s)
		_, err := requestOD(s, store.ContainerRequest{Owner: dave, Type: "web", Profile: "small"})
		var qe *store.QuotaError
		if !errors.As(err, &qe) || !strings.Contains(qe.Message, "3 of your 3") {
			t.Fatalf("4th request: %v, want a quota error", err)
		}
		if after := capacityOD(t, s); after != before {
			t.Errorf("capacity changed: %s → %s", before, after)
		}
		if n := len(allContainersOD(t, s)); n != rows {
			t.Errorf("%d containers, was %d", n, rows)
		}
		if n := auditTotalOD(t, s); n != events {
			t.Errorf("%d audit events, was %d", n, events)
		}
		use, err := s.ContainerQuotaUse(ctx, dave)
		if err != nil || !use.Full() || use.Text() != "3 of 3 containers" {
			t.Errorf("use = %+v (%v)", use, err)
		}
	})

	t.Run("a container that is ending frees its slot", func(t *testing.T) {
		err := s.InTx(ctx, func(tx *store.Tx) error {
			_, needsFleet, err := tx.EndContainer(ctx, store.UserActor(dave, "", ""), held[0], store.EndByOwner)
			if err == nil && !needsFleet {
				err = errors.New("ending a container needs no fleet call")
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if c := containerOD(t, s, held[0].ID); c.State != store.ContainerEnding || c.EndReason != store.EndByOwner {
			t.Errorf("ended container = %+v", c)
		}
		held[0] = mustRequestOD(t, s, store.ContainerRequest{Owner: dave, Type: "web", Profile: "small"})
	})

	t.Run("an ended container frees its slot", func(t *testing.T) {
		endOD(t, s, held[1])
		mustRequestOD(t, s, store.ContainerRequest{Owner: dave, Type: "web", Profile: "small"})
		if _, err := requestOD(s, store.ContainerRequest{Owner: dave, Type: "web", Profile: "small"}); !errors.As(err, new(*store.QuotaError)) {
			t.Errorf("with 3 live again: %v, want a quota error", err)
		}
	})

	t.Run("an admin holds up to 10", func(t *testing.T) {
		root := storetest.User(t, s, "root@example.com", store.RoleAdmin)
		for i := range 10 {
			if _, err := requestOD(s, store.ContainerRequest{Owner: root, Type: "web", Profile: "small", Region: "alt"}); err != nil {
				t.Fatalf("admin request %d: %v", i+1, err)
			}
		}
		if _, err := requestOD(s, store.ContainerRequest{Owner: root, Type: "web", Profile: "small"}); !errors.As(err, new(*store.QuotaError)) {
			t.Errorf("11th: %v, want a quota error", err)
		}
	})
}

func TestConcurrentContainerRequestsKeepTheQuota(t *testing.T) {
	s, _ := odStore(t, 20)
	kim := storetest.User(t, s, "kim@example.com")
	errs := make([]error, 7)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range errs {
		wg.Go(func() {
			<-start
			_, errs[i] = requestOD(s, store.ContainerRequest{Owner: kim, Type: "web", Profile: "small"})
		})
	}
	close(start)
	wg.Wait()
	served, refused := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			served++
		case errors.As(err, new(*store.QuotaError)):
			refused++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if served != 3 || refused != 4 {
		t.Errorf("%d served and %d refused, want 3 and 4", served, refused)
	}
	if use, _ := s.ContainerQuotaUse(context.Background(), kim); use.Containers != 3 {
		t.Errorf("kim holds %d", use.Containers)
	}
}

func setRegionStatus(t *testing.T, s *store.Store, code, status string) {
	t.Helper()
	err := s.InTx(context.Background(), func(tx *store.Tx) error {
		_, err := tx.ExecContext(context.Background(), tx.Rebind(`UPDATE regions SET status = ? WHERE code = ?`), status, code)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func setHome(t *testing.T, s *store.Store, u store.User, region string) store.User {
	t.Helper()
	ctx := context.Background()
	err := s.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, tx.Rebind(`UPDATE users SET home_region = ? WHERE id = ?`), region, u.ID)
		if err != nil {
			return err
		}
		u, err = tx.User(ctx, u.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestContainerRegionChoice(t *testing.T) {
	s, _ := odStore(t, 8)
	erin := storetest.User(t, s, "erin@example.com")
	if erin.HomeRegion != "tst" {
		t.Fatalf("a new user's home region is %q, want the first region", erin.HomeRegion)
	}

	t.Run("with no region the owner's home region serves", func(t *testing.T) {
		u := setHome(t, s, storetest.User(t, s, "alt-home@example.com"), "alt")
		c := mustRequestOD(t, s, store.ContainerRequest{Owner: u, Type: "web", Profile: "small"})
		if c.Region != "alt" || c.PlacementNote != "" || c.RequestedRegion != "" {
			t.Errorf("served from %s, note %q, requested %q", c.Region, c.PlacementNote, c.RequestedRegion)
		}
	})

	t.Run("with no home region the first region by position serves", func(t *testing.T) {
		u := setHome(t, s, storetest.User(t, s, "nowhere@example.com"), "")
		c := mustRequestOD(t, s, store.ContainerRequest{Owner: u, Type: "web", Profile: "small"})
		if c.Region != "tst" || c.PlacementNote != "" {
			t.Errorf("served from %s, note %q", c.Region, c.PlacementNote)
		}
	})

	t.Run("a draining home region is skipped and the note says which region served and why", func(t *testing.T) {
		u := setHome(t, s, storetest.User(t, s, "drn-home@example.com"), "drn")
		c := mustRequestOD(t, s, store.ContainerRequest{Owner: u, Type: "web", Profile: "small"})
		if c.Region != "alt" {
			t.Errorf("served from %s, want alt, the nearest active region to drn", c.Region)
		}
		if !strings.Contains(c.PlacementNote, "Served from alt") || !strings.Contains(c.PlacementNote, "drn is draining") {
			t.Errorf("note %q", c.PlacementNote)
		}
		if h, _ := s.HostByName(context.Background(), "drn-ct01"); h.UsedCPUs != 0 {
			t.Errorf("the draining region's host took %d CPUs", h.UsedCPUs)
		}
	})

	t.Run("an explicit draining region is served elsewhere with the note", func(t *testing.T) {
		u := storetest.User(t, s, "frank@example.com")
		c := mustRequestOD(t, s, store.ContainerRequest{Owner: u, Type: "web", Profile: "small", Region: "drn"})
		if c.Region == "drn" || c.RequestedRegion != "drn" {
			t.Errorf("served from %s, requested %q", c.Region, c.RequestedRegion)
		}
		if !strings.Contains(c.PlacementNote, "Served from "+c.Region) || !strings.Contains(c.PlacementNote, "drn is draining") {
			t.Errorf("note %q", c.PlacementNote)
		}
	})

	t.Run("a region that is down is skipped as well", func(t *testing.T) {
		setRegionStatus(t, s, "tst", "down")
		defer setRegionStatus(t, s, "tst", "active")
		c := mustRequestOD(t, s, store.ContainerRequest{Owner: erin, Type: "web", Profile: "small"})
		if c.Region != "alt" || !strings.Contains(c.PlacementNote, "tst is down") {
			t.Errorf("served from %s, note %q", c.Region, c.PlacementNote)
		}
	})

	t.Run("with every region inactive the request is refused and nothing is written", func(t *testing.T) {
		setRegionStatus(t, s, "tst", "drained")
		setRegionStatus(t, s, "alt", "down")
		defer setRegionStatus(t, s, "tst", "active")
		defer setRegionStatus(t, s, "alt", "active")
		u := storetest.User(t, s, "grace@example.com")
		before, rows := capacityOD(t, s), len(allContainersOD(t, s))
		_, err := requestOD(s, store.ContainerRequest{Owner: u, Type: "web", Profile: "small"})
		var ce *store.ConflictError
		if !errors.As(err, &ce) || ce.Code != "region_not_active" {
			t.Fatalf("err = %v, want a region_not_active conflict", err)
		}
		if capacityOD(t, s) != before || len(allContainersOD(t, s)) != rows {
			t.Error("a refused request changed capacity or containers")
		}
	})

	t.Run("with no room in any active region the request is a no_capacity conflict", func(t *testing.T) {
		u := storetest.User(t, s, "gpu-user@example.com")
		// tst has the only GPU host: fill it, then a GPU request has nowhere to go.
		for range 2 {
			mustRequestOD(t, s, store.ContainerRequest{Owner: storetest.User(t, s, fmt.Sprintf("g%d@example.com", len(allContainersOD(t, s)))), Type: "ml-gpu", Profile: "gpu"})
		}
		_, err := requestOD(s, store.ContainerRequest{Owner: u, Type: "ml-gpu", Profile: "gpu"})
		var ce *store.ConflictError
		if !errors.As(err, &ce) || ce.Code != "no_capacity" {
			t.Fatalf("err = %v, want a no_capacity conflict", err)
		}
	})
}

func TestContainerServedElsewhereWhenFull(t *testing.T) {
	s, _ := odStore(t, 1) // each region's container host holds one medium
	// The GPU host would take mediums too, after the others: keep it out.
	if err := s.InTx(context.Background(), func(tx *store.Tx) error {
		_, err := tx.ExecContext(context.Background(), `UPDATE hosts SET state = 'maintenance' WHERE name = 'tst-gct01'`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	mustRequestOD(t, s, store.ContainerRequest{Owner: storetest.User(t, s, "first@example.com"), Type: "android", Profile: "medium"})
	c := mustRequestOD(t, s, store.ContainerRequest{Owner: storetest.User(t, s, "second@example.com"), Type: "android", Profile: "medium"})
	t.Run("the next active region serves and the note names the full one", func(t *testing.T) {
		if c.Region != "alt" || !strings.Contains(c.PlacementNote, "tst had no room for a medium container") {
			t.Errorf("served from %s, note %q", c.Region, c.PlacementNote)
		}
	})
	t.Run("the note does not blame a draining region that was further away than the one that served", func(t *testing.T) {
		if strings.Contains(c.PlacementNote, "drn") {
			t.Errorf("note %q blames drn, which comes after alt from tst", c.PlacementNote)
		}
	})
}

func TestContainerRequestBadInput(t *testing.T) {
	s, _ := odStore(t, 8)
	hank := storetest.User(t, s, "hank@example.com")
	tooMany := make([]string, store.MaxContainerFeatures+1)
	for i := range tooMany {
		tooMany[i] = "python"
	}
	for _, tc := range []struct {
		name  string
		req   store.ContainerRequest
		field string
		says  string
	}{
		{"no type", store.ContainerRequest{Profile: "medium"}, "type", "is required"},
		{"an unknown type", store.ContainerRequest{Type: "cobol", Profile: "medium"}, "type", `"cobol" is not a container type`},
		{"no profile", store.ContainerRequest{Type: "web"}, "profile", "is required"},
		{"an unknown profile", store.ContainerRequest{Type: "web", Profile: "huge"}, "profile", `"huge" is not a hardware profile`},
		{"a profile the type does not allow", store.ContainerRequest{Type: "ml-gpu", Profile: "small"}, "profile", "ml-gpu containers run on gpu, not small"},
		{"a feature not allowed on the type", store.ContainerRequest{Type: "ios", Profile: "medium", Features: []string{"docker"}}, "features", `"docker" may not be added to ios containers`},
		{"an unknown feature", store.ContainerRequest{Type: "web", Profile: "medium", Features: []string{"emacs"}}, "features", `"emacs" may not be added`},
		{"too many features", store.ContainerRequest{Type: "web", Profile: "medium", Features: tooMany}, "features", "at most 20 features"},
		{"an unknown region", store.ContainerRequest{Type: "web", Profile: "medium", Region: "mars"}, "region", `"mars" is not a region`},
	} {
		t.Run(tc.name+" is a validation error on "+tc.field+" and changes nothing", func(t *testing.T) {
			before, rows, events := capacityOD(t, s), len(allContainersOD(t, s)), auditTotalOD(t, s)
			tc.req.Owner = hank
			_, err := requestOD(s, tc.req)
			var ve *store.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want a validation error", err)
			}
			if !strings.Contains(ve.Fields[tc.field], tc.says) {
				t.Errorf("fields = %v, want %s: %q", ve.Fields, tc.field, tc.says)
			}
			if capacityOD(t, s) != before || len(allContainersOD(t, s)) != rows || auditTotalOD(t, s) != events {
				t.Error("a refused request changed capacity, containers or the audit log")
			}
		})
	}
}

func TestEndContainer(t *testing.T) {
	ctx := context.Background()
	s, _ := odStore(t, 8)
	ivy := storetest.User(t, s, "ivy@example.com")
	empty := capacityOD(t, s)
	c := mustRequestOD(t, s, store.ContainerRequest{Owner: ivy, Type: "web", Profile: "large"})

	t.Run("ending marks it ending with the reason and who, and writes an audit event", func(t *testing.T) {
		err := s.InTx(ctx, func(tx *store.Tx) error {
			_, _, err := tx.EndContainer(ctx, store.UserActor(ivy, "", ""), c, store.EndByOwner)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		got := containerOD(t, s, c.ID)
		if got.State != store.ContainerEnding || got.EndReason != store.EndByOwner || got.EndedBy != "ivy@example.com" || got.Live() {
			t.Errorf("container = %+v", got)
		}
		events, _ := s.AuditEvents(ctx, "container", c.Name)
		if last := events[len(events)-1]; last.Action != "container.end" {
			t.Errorf("last event %s", last.Action)
		}
	})
	t.Run("ending it again is a not_live conflict", func(t *testing.T) {
		err := s.InTx(ctx, func(tx *store.Tx) error {
			_, _, err := tx.EndContainer(ctx, store.System, containerOD(t, s, c.ID), store.EndByOwner)
			return err
		})
		var ce *store.ConflictError
		if !errors.As(err, &ce) || ce.Code != "not_live" {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("once the fleet destroyed it, it is ended and the capacity is back", func(t *testing.T) {
		err := s.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.MarkContainerEnded(ctx, c.ID)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		got := containerOD(t, s, c.ID)
		if got.State != store.ContainerEnded || got.EndedAt == nil || got.EndText() != "Ended by ivy@example.com." {
			t.Errorf("container = %+v (%q)", got, got.EndText())
		}
		if after := capacityOD(t, s); after != empty {
			t.Errorf("capacity %s, want %s", after, empty)
		}
	})
}

func TestFreshContainer(t *testing.T) {
	ctx := context.Background()
	s, _ := odStore(t, 8)
	jo := storetest.User(t, s, "jo@example.com")
	old := mustRequestOD(t, s, store.ContainerRequest{Owner: jo, Type: "web", Profile: "medium", Region: "alt", Features: []string{"vscode-server", "docker"}})
	mustRequestOD(t, s, store.ContainerRequest{Owner: jo, Type: "jupyter", Profile: "small"})
	mustRequestOD(t, s, store.ContainerRequest{Owner: jo, Type: "jupyter", Profile: "small"})

	var fresh, ended store.Container
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		fresh, ended, err = tx.FreshContainer(ctx, store.UserActor(jo, "", ""), jo, old)
		return err
	})
	t.Run("the quota does not block a fresh one at the limit", func(t *testing.T) {
		if err != nil {
			t.Fatal(err)
		}
		use, _ := s.ContainerQuotaUse(ctx, jo)
		if use.Containers != 3 {
			t.Errorf("use = %+v", use)
		}
	})
	if err != nil {
		t.FailNow()
	}
	t.Run("the old one ends, replaced by the new one", func(t *testing.T) {
		if ended.State != store.ContainerEnding || ended.EndReason != store.EndReplaced || ended.ReplacedBy != fresh.Name {
			t.Errorf("old = %+v", ended)
		}
		if ended.EndText() != "Replaced by a fresh one, "+fresh.Name+"." {
			t.Errorf("end text %q", ended.EndText())
		}
	})
	t.Run("the new one has the same type, profile, region and features", func(t *testing.T) {
		if fresh.ID == old.ID || fresh.Type != "web" || fresh.Profile != "medium" || fresh.Region != "alt" || fresh.Owner != "jo@example.com" {
			t.Errorf("fresh = %+v", fresh)
		}
		if fresh.State != store.ContainerProvisioning && fresh.State != store.ContainerReady {
			t.Errorf("fresh is %s", fresh.State)
		}
		var names []string
		for _, f := range fresh.Features {
			names = append(names, f.Feature)
		}
		if strings.Join(names, " ") != "docker vscode-server" || fresh.SetupState != "pending" {
			t.Errorf("features %v, setup %q", names, fresh.SetupState)
		}
	})
	t.Run("an ended container cannot be replaced", func(t *testing.T) {
		err := s.InTx(ctx, func(tx *store.Tx) error {
			_, _, err := tx.FreshContainer(ctx, store.UserActor(jo, "", ""), jo, containerOD(t, s, old.ID))
			return err
		})
		var ce *store.ConflictError
		if !errors.As(err, &ce) || ce.Code != "not_live" {
			t.Errorf("err = %v", err)
		}
	})
}

func TestContainerNames(t *testing.T) {
	for name, want := range map[string]bool{
		"odabcdefgh": true, "od234567ab": true, "odABCDEFGH": false, "odabcdefg": false, "odabcdefghi": false,
		"xxabcdefgh": false, "od-bcdefgh": false, "odabcdef18": false, "alice-fuzzy-otter": false,
	} {
		if got := store.IsContainerName(name); got != want {
			t.Errorf("IsContainerName(%q) = %v, want %v", name, got, want)
		}
	}
}
