package jobs_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/docker"
	"github.com/devport/devport/fleet/docker/dockertest"
	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// dockerRegion is one active region whose one container host runs on the
// Docker engine.
func dockerRegion() store.DemoInventory {
	demo := store.Demo("docker")
	inv := store.DemoInventory{Flavors: demo.Flavors, Features: demo.Features, Policies: demo.Policies, Quotas: demo.Quotas}
	inv.Regions = []store.Region{{Code: "dkr", Name: "Docker", Status: "active", Position: 1}}
	inv.Hosts = []store.Host{{Name: "dkr-ct01", Region: "dkr", Kind: "container", Driver: "docker", State: "ready", CPUs: 64, MemoryGB: 128, DiskGB: 2000}}
	return inv
}

// A pool on a Docker host is filled with a real container; a request is
// served from it at once, the container holds its stack's manifest and runs
// commands as the dev user, and when its lifetime runs out it ends: the
// Docker container and its home volume are gone from the engine.
func TestContainerPoolLifetimeDocker(t *testing.T) {
	endpoint := dockertest.Require(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	run := "jobs-containers-" + hex.EncodeToString(b)
	// Registered first, so it runs last: after the runner stopped.
	dockertest.Cleanup(t, endpoint, "devport.test", run)

	ctx := context.Background()
	inv := dockerRegion()
	s := storetest.Seeded(t, &inv)
	// The store's clock, moved forward by the test.
	var ahead atomic.Int64
	s.Now = func() time.Time { return time.Now().UTC().Add(time.Duration(ahead.Load())) }

	// One web/medium container in the pool; no other pool.
	err := s.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.SetContainerPool(ctx, store.System, store.ContainerPoolTarget{Region: "dkr", Type: "web", Profile: "medium", Target: 1, Min: 0, Max: 1}); err != nil {
			return err
		}
		return tx.SetContainerPool(ctx, store.System, store.ContainerPoolTarget{Region: "dkr", Type: "jupyter", Profile: "small"})
	})
	if err != nil {
		t.Fatal(err)
	}

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	drv, err := docker.New(docker.Options{Log: log, Engines: map[string]string{"dkr-ct01": endpoint}, Image: dockertest.Image, Labels: map[string]string{"devport.test": run}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drv.Close() })
	runner, err := jobs.New(ctx, jobs.Options{Store: s, Fleet: fleet.New(drv), Log: log, NoSchedules: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := runner.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := runner.Stop(stop); err != nil {
			t.Errorf("stop runner: %v", err)
		}
	})

	refill, err := jobs.RefillContainerPools(ctx, s, runner, 0, log)
	if err != nil {
		t.Fatal(err)
	}
	if refill.Built != 1 {
		t.Fatalf("refill built %d containers, want 1", refill.Built)
	}
	var pooled store.Container
	waitLong(t, 2*time.Minute, "the pooled container to be ready on Docker", func() bool {
		cs, err := s.Containers(ctx, store.ContainerFilter{Pooled: true, Ended: true, Region: "dkr"})
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) != 1 {
			t.Fatalf("%d containers after the refill, want 1: %+v", len(cs), cs)
		}
		if cs[0].State == store.ContainerFailed {
			t.Fatalf("the pooled container failed: %s", cs[0].StatusNote)
		}
		pooled = cs[0]
		return pooled.State == store.ContainerReady
	})
	if !pooled.Pooled() || pooled.InstanceID == "" || pooled.Host != "dkr-ct01" || pooled.Driver != "docker" {
		t.Fatalf("pooled container = %+v", pooled)
	}
	if n := dockertest.Count(t, endpoint, "devport.test="+run, docker.LabelName+"="+pooled.Name); n != 1 {
		t.Fatalf("%d Docker containers for %s, want 1", n, pooled.Name)
	}

	// A request is served from the pool, as the request handler does it.
	owner := storetest.User(t, s, "owner@example.com", store.RoleEngineer)
	var c store.Container
	err = s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		c, err = tx.RequestContainer(ctx, store.UserActor(owner, "127.0.0.1", "test"), store.ContainerRequest{Owner: owner, Type: "web", Profile: "medium"})
		if err != nil {
			return err
		}
		for _, a := range jobs.ContainerWork(c) {
			if err := runner.Enqueue(ctx, tx, a); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != pooled.Name || !c.FromPool() || c.State != store.ContainerReady || c.OwnerID != owner.ID || c.ExpiresAt == nil {
		t.Fatalf("request = %s (from pool %v, state %s, owner %d, expires %v), want the pooled %s, ready and owned", c.Name, c.FromPool(), c.State, c.OwnerID, c.ExpiresAt, pooled.Name)
	}

	// The container runs the web stack, as the dev user in its home.
	exec := func(cmd ...string) string {
		t.Helper()
		ectx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		res, err := drv.Exec(ectx, c.InstanceID, cmd)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("exec %q: %v, exit %d: %s", cmd, err, res.ExitCode, res.Output)
		}
		return res.Output
	}
	var manifest struct{ Type, Profile, Image string }
	if out := exec("cat", jobs.StackManifestPath); json.Unmarshal([]byte(out), &manifest) != nil || manifest.Type != "web" || manifest.Profile != "medium" || manifest.Image != dockertest.Image {
		t.Errorf("stack manifest = %q, want the web type on medium with %s", out, dockertest.Image)
	}
	if out := strings.TrimSpace(exec("id", "-un")); out != docker.User {
		t.Errorf("id -un = %q, want %s", out, docker.User)
	}
	if out := strings.TrimSpace(exec("pwd")); out != docker.Home {
		t.Errorf("pwd = %q, want %s", out, docker.Home)
	}

	// Its lifetime runs out: it ends, and the engine holds nothing of it.
	ahead.Store(int64(c.ExpiresAt.Sub(time.Now()) + time.Minute))
	warned, ended, err := jobs.CheckContainerLifetimes(ctx, s, runner, 0, log)
	if err != nil {
		t.Fatal(err)
	}
	if ended != 1 || warned != 0 {
		t.Fatalf("lifetime check warned %d and ended %d, want 0 and 1", warned, ended)
	}
	waitLong(t, 2*time.Minute, "the expired container to end", func() bool {
		got, err := s.Container(ctx, c.Name)
		if err != nil {
			t.Fatal(err)
		}
		c = got
		return c.State == store.ContainerEnded
	})
	if c.EndReason != store.EndExpired {
		t.Errorf("end reason = %q, want %q", c.EndReason, store.EndExpired)
	}
	if n := dockertest.Count(t, endpoint, "devport.test="+run, docker.LabelName+"="+c.Name); n != 0 {
		t.Errorf("%d Docker containers left for the ended %s", n, c.Name)
	}
	if vs := dockertest.Volumes(t, endpoint, "devport.test="+run, docker.LabelName+"="+c.Name); len(vs) != 0 {
		t.Errorf("volumes left for the ended %s: %v", c.Name, vs)
	}
	ectx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := drv.Exec(ectx, c.InstanceID, []string{"true"}); !errors.Is(err, fleet.ErrNotFound) {
		t.Errorf("exec in the ended container: %v, want fleet.ErrNotFound", err)
	}
}

// waitLong waits for cond, for as long as real containers may take.
func waitLong(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
