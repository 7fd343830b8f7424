package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

func setPoolOD(s *store.Store, p store.ContainerPoolTarget) error {
	ctx := context.Background()
	return s.InTx(ctx, func(tx *store.Tx) error { return tx.SetContainerPool(ctx, store.System, p) })
}

func poolOD(t *testing.T, s *store.Store, freshness time.Duration, region, typ, profile string) (store.ContainerPool, bool) {
	t.Helper()
	ps, err := s.ContainerPools(context.Background(), s.Now().Add(-freshness))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Region == region && p.Type == typ && p.Profile == profile {
			return p, true
		}
	}
	return store.ContainerPool{}, false
}

// pooledOD counts the pooled containers of a pool by state.
func pooledOD(t *testing.T, s *store.Store, region, typ, profile string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, c := range allContainersOD(t, s) {
		if c.Pooled() && c.Region == region && c.Type == typ && c.Profile == profile {
			out[c.State]++
		}
	}
	return out
}

func TestRefillContainerPool(t *testing.T) {
	const fresh = 6 * time.Hour

	t.Run("a pool fills to its target and a second refill builds nothing more", func(t *testing.T) {
		s, _ := odStore(t, 8)
		r := refillOD(t, s, "tst", "web", "medium", fresh)
		if len(r.Built) != 2 || len(r.Recycled) != 0 || r.NoRoom {
			t.Errorf("first refill = %+v", r)
		}
		if r := refillOD(t, s, "tst", "web", "medium", fresh); len(r.Built) != 0 {
			t.Errorf("a refill while 2 build built %d more", len(r.Built))
		}
		p, _ := poolOD(t, s, fresh, "tst", "web", "medium")
		if p.Building != 2 || p.Ready != 0 || p.Health() != store.PoolLow {
			t.Errorf("pool = %+v (%s)", p, p.Health())
		}
		readyOD(t, s, r.Built...)
		p, _ = poolOD(t, s, fresh, "tst", "web", "medium")
		if p.Ready != 2 || p.Building != 0 || p.Health() != store.PoolHealthy || p.OldestReady == nil {
			t.Errorf("pool = %+v (%s)", p, p.Health())
		}
		for _, id := range r.Built {
			c := containerOD(t, s, id)
			if !c.Pooled() || c.ExpiresAt != nil || c.PooledAt == nil || c.Host != "tst-ct01" {
				t.Errorf("pooled container = %+v", c)
			}
		}
		events, _ := s.AuditEvents(context.Background(), "container_pool", "tst/web/medium")
		if last := events[len(events)-1]; last.Action != "container_pool.refill" || !strings.Contains(last.Detail, `"built":2`) {
			t.Errorf("last pool event = %+v", last)
		}
	})

	t.Run("a pool never grows past its maximum, stale ones included", func(t *testing.T) {
		s, clock := odStore(t, 8)
		if err := setPoolOD(s, store.ContainerPoolTarget{Region: "tst", Type: "web", Profile: "medium", Target: 2, Min: 0, Max: 2}); err != nil {
			t.Fatal(err)
		}
		readyOD(t, s, refillOD(t, s, "tst", "web", "medium", fresh).Built...)
		clock.Add(fresh + time.Minute)
		r := refillOD(t, s, "tst", "web", "medium", fresh)
		if len(r.Built) != 0 {
			t.Errorf("a full pool of stale ones built %d more past its maximum", len(r.Built))
		}
		if got := pooledOD(t, s, "tst", "web", "medium"); got[store.ContainerReady]+got[store.ContainerProvisioning] > 2 {
			t.Errorf("pool holds %v, over its maximum of 2", got)
		}
	})

	t.Run("two refills at once never over-fill", func(t *testing.T) {
		s, _ := odStore(t, 20)
		if err := setPoolOD(s, store.ContainerPoolTarget{Region: "tst", Type: "web", Profile: "medium", Target: 5, Min: 1, Max: 6}); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		built := make([]int, 4)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range built {
			wg.Go(func() {
				<-start
				err := s.InTx(ctx, func(tx *store.Tx) error {
					r, err := tx.RefillContainerPool(ctx, "tst", "web", "medium", tx.Now().Add(-fresh))
					built[i] = len(r.Built)
					return err
				})
				if err != nil {
					t.Error(err)
				}
			})
		}
		close(start)
		wg.Wait()
		got := pooledOD(t, s, "tst", "web", "medium")
		if got[store.ContainerProvisioning] != 5 || built[0]+built[1]+built[2]+built[3] != 5 {
			t.Errorf("refills built %v, pool holds %v; want 5 in all", built, got)
		}
	})

	t.Run("a region without room stops the refill with NoRoom", func(t *testing.T) {
		s, _ := odStore(t, 3) // alt holds three mediums
		if err := setPoolOD(s, store.ContainerPoolTarget{Region: "alt", Type: "web", Profile: "medium", Target: 5, Min: 1, Max: 5}); err != nil {
			t.Fatal(err)
		}
		r := refillOD(t, s, "alt", "web", "medium", fresh)
		if len(r.Built) != 3 || !r.NoRoom {
			t.Errorf("refill = %+v, want 3 built and no room for the rest", r)
		}
		if h, _ := s.HostByName(context.Background(), "alt-ct01"); h.UsedCPUs != h.CPUs {
			t.Errorf("alt-ct01 uses %d of %d CPUs", h.UsedCPUs, h.CPUs)
		}
	})

	t.Run("stale ready ones are recycled, keeping enough to leave the minimum ready", func(t *testing.T) {
		s, clock := odStore(t, 8)
		first := refillOD(t, s, "tst", "web", "medium", fresh).Built // target 2, min 1, max 4
		readyOD(t, s, first...)
		before := capacityOD(t, s)
		clock.Add(fresh + time.Minute)
		p, _ := poolOD(t, s, fresh, "tst", "web", "medium")
		if p.Stale != 2 || p.Health() != store.PoolFilling {
			t.Errorf("pool past the freshness limit = %+v (%s)", p, p.Health())
		}
		r := refillOD(t, s, "tst", "web", "medium", fresh)
		if len(r.Built) != 2 || len(r.Recycled) != 1 || r.Recycled[0] != first[0] {
			t.Fatalf("refill = %+v, want 2 replacements and the oldest (%d) recycled", r, first[0])
		}
		gone := containerOD(t, s, first[0])
		if gone.State != store.ContainerEnding || gone.EndReason != store.EndRecycled || gone.EndedBy != "system" || gone.EndText() != "Recycled from its pool." {
			t.Errorf("recycled = %+v", gone)
		}
		if kept := containerOD(t, s, first[1]); kept.State != store.ContainerReady {
			t.Errorf("the stale one kept for the minimum is %s", kept.State)
		}
		if again := refillOD(t, s, "tst", "web", "medium", fresh); len(again.Built)+len(again.Recycled) != 0 {
			t.Errorf("a refill while the replacements build did %+v", again)
		}

		readyOD(t, s, r.Built...)
		r2 := refillOD(t, s, "tst", "web", "medium", fresh)
		if len(r2.Built) != 0 || len(r2.Recycled) != 1 || r2.Recycled[0] != first[1] {
			t.Errorf("refill once the replacements are ready = %+v, want %d recycled", r2, first[1])
		}
		got := pooledOD(t, s, "tst", "web", "medium")
		if got[store.ContainerReady] != 2 || got[store.ContainerEnding] != 2 {
			t.Errorf("pool holds %v", got)
		}
		// The recycled ones hold their capacity until the fleet destroyed them.
		err := s.InTx(context.Background(), func(tx *store.Tx) error {
			for _, id := range first {
				if ok, err := tx.MarkContainerEnded(context.Background(), id); err != nil || !ok {
					return errors.Join(err, errors.New("not ended"))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if after := capacityOD(t, s); after != before {
			t.Errorf("capacity %s, want %s as before the recycling", after, before)
		}
	})

	t.Run("a pool in a draining region is emptied", func(t *testing.T) {
		s, _ := odStore(t, 8)
		r := refillOD(t, s, "alt", "web", "medium", fresh)
		readyOD(t, s, r.Built...)
		setRegionStatus(t, s, "alt", "draining")
		p, _ := poolOD(t, s, fresh, "alt", "web", "medium")
		if p.Health() != store.PoolStopped {
			t.Errorf("health %s", p.Health())
		}
		e := refillOD(t, s, "alt", "web", "medium", fresh)
		if len(e.Built) != 0 || len(e.Recycled) != 2 {
			t.Errorf("refill in a draining region = %+v", e)
		}
		if got := pooledOD(t, s, "alt", "web", "medium"); got[store.ContainerReady] != 0 || got[store.ContainerEnding] != 2 {
			t.Errorf("pool holds %v", got)
		}
		if r := refillOD(t, s, "drn", "web", "medium", fresh); len(r.Built) != 0 {
			t.Errorf("a draining region's pool built %d", len(r.Built))
		}
	})

	t.Run("a removed pool's ready containers are recycled", func(t *testing.T) {
		s, _ := odStore(t, 8)
		readyOD(t, s, refillOD(t, s, "tst", "jupyter", "small", fresh).Built...)
		if err := setPoolOD(s, store.ContainerPoolTarget{Region: "tst", Type: "jupyter", Profile: "small"}); err != nil {
			t.Fatal(err)
		}
		if _, ok := poolOD(t, s, fresh, "tst", "jupyter", "small"); ok {
			t.Error("a pool set to 0/0/0 is still listed")
		}
		keys, _ := s.ContainerPoolKeys(context.Background())
		if !slices.ContainsFunc(keys, func(k store.ContainerPoolTarget) bool { return k.Region == "tst" && k.Type == "jupyter" }) {
			t.Errorf("the refill would not visit the removed pool's containers: %+v", keys)
		}
		if r := refillOD(t, s, "tst", "jupyter", "small", fresh); len(r.Recycled) != 1 {
			t.Errorf("refill = %+v", r)
		}
	})
}

func TestSetContainerPool(t *testing.T) {
	s, _ := odStore(t, 8)
	for _, tc := range []struct {
		name  string
		p     store.ContainerPoolTarget
		field string
	}{
		{"a minimum above the target", store.ContainerPoolTarget{Region: "tst", Type: "web", Profile: "medium", Target: 2, Min: 3, Max: 4}, "min"},
		{"a target above the maximum", store.ContainerPoolTarget{Region: "tst", Type: "web", Profile: "medium", Target: 5, Min: 1, Max: 4}, "target"},
		{"a maximum above 500", store.ContainerPoolTarget{Region: "tst", Type: "web", Profile: "medium", Target: 2, Min: 1, Max: 501}, "max"},
		{"a negative maximum", store.ContainerPoolTarget{Region: "tst", Type: "web", Profile: "medium", Max: -1}, "max"},
		{"an unknown region", store.ContainerPoolTarget{Region: "mars", Type: "web", Profile: "medium", Target: 1, Max: 1}, "region"},
		{"an unknown type", store.ContainerPoolTarget{Region: "tst", Type: "cobol", Profile: "medium", Target: 1, Max: 1}, "type"},
		{"an unknown profile", store.ContainerPoolTarget{Region: "tst", Type: "web", Profile: "huge", Target: 1, Max: 1}, "profile"},
		{"a profile the type does not allow", store.ContainerPoolTarget{Region: "tst", Type: "web", Profile: "gpu", Target: 1, Max: 1}, "profile"},
	} {
		t.Run(tc.name+" is refused on "+tc.field+" and changes nothing", func(t *testing.T) {
			before, _ := s.ContainerPools(context.Background(), s.Now())
			events := auditTotalOD(t, s)
			err := setPoolOD(s, tc.p)
			var ve *store.ValidationError
			if !errors.As(err, &ve) || ve.Fields[tc.field] == "" {
				t.Fatalf("err = %v, want a validation error on %s", err, tc.field)
			}
			after, _ := s.ContainerPools(context.Background(), s.Now())
			if !slices.Equal(poolRows(before), poolRows(after)) || auditTotalOD(t, s) != events {
				t.Error("a refused pool setting changed the pools or the audit log")
			}
		})
	}
	t.Run("a valid setting is written with who set it and an audit event", func(t *testing.T) {
		ctx := context.Background()
		root := storetest.User(t, s, "root@example.com", store.RoleAdmin)
		err := s.InTx(ctx, func(tx *store.Tx) error {
			return tx.SetContainerPool(ctx, store.UserActor(root, "", ""), store.ContainerPoolTarget{Region: "alt", Type: "ios", Profile: "large", Target: 3, Min: 2, Max: 5})
		})
		if err != nil {
			t.Fatal(err)
		}
		p, ok := poolOD(t, s, time.Hour, "alt", "ios", "large")
		if !ok || p.Target != 3 || p.Min != 2 || p.Max != 5 || p.UpdatedBy != "root@example.com" {
			t.Errorf("pool = %+v", p)
		}
		events, _ := s.AuditEvents(ctx, "container_pool", "alt/ios/large")
		if len(events) != 1 || events[0].Action != "container_pool.set" || !strings.Contains(events[0].Detail, "2/3/5") {
			t.Errorf("events = %+v", events)
		}
	})
}

func poolRows(ps []store.ContainerPool) []string {
	var out []string
	for _, p := range ps {
		out = append(out, fmt.Sprintf("%s:%d/%d/%d", store.ContainerPoolKey(p.Region, p.Type, p.Profile), p.Min, p.Target, p.Max))
	}
	return out
}

func TestContainerCatalogue(t *testing.T) {
	ctx := context.Background()
	s, _ := odStore(t, 8)
	root := storetest.User(t, s, "root@example.com", store.RoleAdmin)
	who := store.UserActor(root, "", "")
	saveType := func(ct store.ContainerType) (store.ContainerType, error) {
		var out store.ContainerType
		err := s.InTx(ctx, func(tx *store.Tx) error {
			var err error
			out, err = tx.SaveContainerType(ctx, who, ct)
			return err
		})
		return out, err
	}
	saveProfile := func(p store.ContainerProfile) (store.ContainerProfile, error) {
		var out store.ContainerProfile
		err := s.InTx(ctx, func(tx *store.Tx) error {
			var err error
			out, err = tx.SaveContainerProfile(ctx, who, p)
			return err
		})
		return out, err
	}
	good := func() store.ContainerType {
		return store.ContainerType{Name: "go", Stack: "Go services", Images: store.DriverImages{"sim": "sim/od-go:1"}, LifetimeHours: 12,
			Tools: store.VersionedList{{Name: "go", Version: "1.26"}}, Profiles: []string{"small", "medium"}, Features: []string{"vscode-server"}}
	}
	catalogue := func() store.Catalogue {
		c, err := s.ContainerCatalogue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	t.Run("the demo catalogue has its five types in order", func(t *testing.T) {
		var names []string
		for _, ct := range catalogue().Types {
			names = append(names, ct.Name)
		}
		if strings.Join(names, " ") != "web android ios jupyter ml-gpu" {
			t.Errorf("types %v", names)
		}
		jup, _ := catalogue().Type("jupyter")
		if strings.Join(jup.Profiles, " ") != "small medium large gpu" || jup.LifetimeHours != 24 {
			t.Errorf("jupyter = %+v", jup)
		}
	})

	for _, tc := range []struct {
		name  string
		edit  func(*store.ContainerType)
		field string
	}{
		{"a name with capitals", func(ct *store.ContainerType) { ct.Name = "Go" }, "name"},
		{"a name with a space", func(ct *store.ContainerType) { ct.Name = "go lang" }, "name"},
		{"no stack", func(ct *store.ContainerType) { ct.Stack = " " }, "stack"},
		{"a negative lifetime", func(ct *store.ContainerType) { ct.LifetimeHours = -1 }, "lifetime_hours"},
		{"a lifetime of 721 hours", func(ct *store.ContainerType) { ct.LifetimeHours = 721 }, "lifetime_hours"},
		{"no profiles", func(ct *store.ContainerType) { ct.Profiles = nil }, "profiles"},
		{"an unknown profile", func(ct *store.ContainerType) { ct.Profiles = []string{"small", "huge"} }, "profiles"},
		{"an unknown feature", func(ct *store.ContainerType) { ct.Features = []string{"emacs"} }, "features"},
		{"a sandbox address that is not http", func(ct *store.ContainerType) { ct.SandboxURL = "ftp://{name}.example.com/" }, "sandbox_url"},
		{"a sandbox address without a host", func(ct *store.ContainerType) { ct.SandboxURL = "https:///{name}" }, "sandbox_url"},
		{"a tool listed twice", func(ct *store.ContainerType) {
			ct.Tools = store.VersionedList{{Name: "go", Version: "1.26"}, {Name: "go", Version: "1.25"}}
		}, "tools"},
		{"a tool without a version", func(ct *store.ContainerType) { ct.Tools = store.VersionedList{{Name: "go"}} }, "tools"},
		{"an image with a space", func(ct *store.ContainerType) { ct.Images = store.DriverImages{"sim": "a b"} }, "images"},
	} {
		t.Run("a type with "+tc.name+" is refused on "+tc.field+" and changes nothing", func(t *testing.T) {
			before, events := catalogue(), auditTotalOD(t, s)
			ct := good()
			tc.edit(&ct)
			_, err := saveType(ct)
			var ve *store.ValidationError
			if !errors.As(err, &ve) || ve.Fields[tc.field] == "" {
				t.Fatalf("err = %v, want a validation error on %s", err, tc.field)
			}
			if after := catalogue(); len(after.Types) != len(before.Types) || auditTotalOD(t, s) != events {
				t.Error("a refused type changed the catalogue or the audit log")
			}
		})
	}

	t.Run("a type saved with no lifetime (0) lives the default 36 hours", func(t *testing.T) {
		ct := good()
		ct.Name, ct.LifetimeHours = "default-life", 0
		saved, err := saveType(ct)
		if err != nil || saved.Lifetime() != store.DefaultContainerLifetime {
			t.Errorf("saved = %+v, %v", saved, err)
		}
	})

	t.Run("a new type goes last; an update keeps its position and writes an audit event", func(t *testing.T) {
		created, err := saveType(good())
		if err != nil {
			t.Fatal(err)
		}
		if created.Position != 7 || created.UpdatedBy != "root@example.com" || strings.Join(created.Profiles, " ") != "small medium" {
			t.Errorf("created = %+v", created)
		}
		upd := good()
		upd.Stack, upd.LifetimeHours = "Go services and tools", 48
		updated, err := saveType(upd)
		if err != nil {
			t.Fatal(err)
		}
		if updated.Position != 7 || updated.Stack != "Go services and tools" || updated.Lifetime() != 48*time.Hour {
			t.Errorf("updated = %+v", updated)
		}
		events, _ := s.AuditEvents(ctx, "container_type", "go")
		if len(events) != 2 || events[0].Action != "container_type.create" || events[1].Action != "container_type.update" {
			t.Errorf("events = %+v", events)
		}
		web, _ := catalogue().Type("web")
		if web.Position != 1 {
			t.Errorf("web moved to %d", web.Position)
		}
	})

	t.Run("removing a profile from a type deletes that type's pools of that profile", func(t *testing.T) {
		web, _ := catalogue().Type("web")
		web.Profiles = []string{"small", "large"}
		if _, err := saveType(web); err != nil {
			t.Fatal(err)
		}
		for _, r := range []string{"tst", "alt", "drn"} {
			if _, ok := poolOD(t, s, time.Hour, r, "web", "medium"); ok {
				t.Errorf("the %s/web/medium pool is left", r)
			}
			if _, ok := poolOD(t, s, time.Hour, r, "jupyter", "small"); !ok {
				t.Errorf("the %s/jupyter/small pool went too", r)
			}
		}
		if _, err := requestOD(s, store.ContainerRequest{Owner: root, Type: "web", Profile: "medium"}); !errors.As(err, new(*store.ValidationError)) {
			t.Errorf("a request for the removed profile: %v", err)
		}
	})

	for _, tc := range []struct {
		name  string
		p     store.ContainerProfile
		field string
	}{
		{"a bad name", store.ContainerProfile{Name: "XL", CPUs: 2, MemoryGB: 4, DiskGB: 20}, "name"},
		{"no CPUs", store.ContainerProfile{Name: "tiny", MemoryGB: 4, DiskGB: 20}, "cpus"},
		{"too much memory", store.ContainerProfile{Name: "tiny", CPUs: 1, MemoryGB: 5000, DiskGB: 20}, "memory_gb"},
		{"17 GPUs", store.ContainerProfile{Name: "tiny", CPUs: 1, MemoryGB: 4, DiskGB: 20, GPUs: 17}, "gpus"},
	} {
		t.Run("a profile with "+tc.name+" is refused on "+tc.field, func(t *testing.T) {
			before, events := len(catalogue().Profiles), auditTotalOD(t, s)
			_, err := saveProfile(tc.p)
			var ve *store.ValidationError
			if !errors.As(err, &ve) || ve.Fields[tc.field] == "" {
				t.Fatalf("err = %v, want a validation error on %s", err, tc.field)
			}
			if len(catalogue().Profiles) != before || auditTotalOD(t, s) != events {
				t.Error("a refused profile changed the catalogue or the audit log")
			}
		})
	}

	t.Run("a profile update keeps its position; running containers keep what they were given", func(t *testing.T) {
		c := mustRequestOD(t, s, store.ContainerRequest{Owner: root, Type: "web", Profile: "small"})
		p, err := saveProfile(store.ContainerProfile{Name: "small", Description: "Bigger small", CPUs: 3, MemoryGB: 6, DiskGB: 30})
		if err != nil {
			t.Fatal(err)
		}
		if p.Position != 1 || p.CPUs != 3 || p.Size() != "3 CPUs, 6 GB memory, 30 GB disk" {
			t.Errorf("profile = %+v", p)
		}
		if got := containerOD(t, s, c.ID); got.CPUs != 2 {
			t.Errorf("a running container now has %d CPUs", got.CPUs)
		}
		events, _ := s.AuditEvents(ctx, "container_profile", "small")
		if last := events[len(events)-1]; last.Action != "container_profile.update" {
			t.Errorf("last event %s", last.Action)
		}
	})
}
