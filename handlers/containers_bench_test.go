package handlers_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/docker"
	"github.com/devport/devport/fleet/docker/dockertest"
	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
)

// BenchmarkContainerRequest measures what an engineer waits for when they
// request an On Demand container: from POST /api/v1/containers to the
// container being ready (ms/ready) and to the first prompt of a shell in it
// (ms/prompt), on the simulated fleet and on a real Docker engine, served
// from a pool of pre-warmed containers and built cold.
func BenchmarkContainerRequest(b *testing.B) {
	for _, c := range []struct {
		name         string
		docker, pool bool
	}{
		{"sim/pool", false, true}, {"sim/cold", false, false},
		{"docker/pool", true, true}, {"docker/cold", true, false},
	} {
		b.Run(c.name, func(b *testing.B) { benchContainerRequest(b, c.docker, c.pool) })
	}
}

func benchContainerRequest(b *testing.B, useDocker, pool bool) {
	ctx := context.Background()
	demo := store.Demo("sim")
	inv := store.DemoInventory{Regions: demo.Regions[:1], Flavors: demo.Flavors, Features: demo.Features,
		Hosts: []store.Host{{Name: "prn-ct01", Region: "prn", Kind: "container", Driver: "sim", State: "ready", CPUs: 64, MemoryGB: 256, DiskGB: 4000}}}
	opts := handlertest.Options{Inventory: &inv}
	var drv fleet.Interactive
	if useDocker {
		endpoint := dockertest.Require(b)
		label := "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		dockertest.Cleanup(b, endpoint, "devport.test", label)
		d, err := docker.New(docker.Options{Engines: map[string]string{"prn-ct01": endpoint}, Labels: map[string]string{"devport.test": label}})
		if err != nil {
			b.Fatal(err)
		}
		inv.Hosts[0].Driver = "docker"
		opts.Drivers, drv = []fleet.Driver{d}, d
	}
	if pool {
		opts.PoolInterval = 100 * time.Millisecond
	}
	srv := handlertest.New(b, opts)
	if drv == nil {
		drv = srv.Sim
	}
	err := srv.Store.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.SetQuota(ctx, store.System, store.Quota{Role: store.RoleEngineer, Devservers: 5, GPUDevservers: 1, Containers: store.MaxRoleContainers}); err != nil {
			return err
		}
		target := store.ContainerPoolTarget{Region: "prn", Type: "web", Profile: "medium"}
		if pool {
			target.Target, target.Min, target.Max = 2, 1, 4
		}
		if err := tx.SetContainerPool(ctx, store.System, target); err != nil {
			return err
		}
		return tx.SetContainerPool(ctx, store.System, store.ContainerPoolTarget{Region: "prn", Type: "jupyter", Profile: "small"})
	})
	if err != nil {
		b.Fatal(err)
	}
	tok := srv.Token(b, "bench@example.com")
	var toReady, toPrompt time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if pool {
			handlertest.Eventually(b, time.Minute, "a ready pooled container", func() bool {
				ready, err := srv.Store.ContainerPoolReady(ctx)
				return err == nil && ready[store.ContainerPoolKey("prn", "web", "medium")] >= 1
			})
		}
		b.StartTimer()
		start := time.Now()
		resp, body := srv.Do(b, nil, handlertest.Request{Method: "POST", Path: "/api/v1/containers", Token: tok, Body: `{"type":"web","profile":"medium"}`})
		if resp.StatusCode != http.StatusCreated {
			b.Fatalf("request: %d %s", resp.StatusCode, body)
		}
		id := decode[containerJSON](b, body).ID
		var c store.Container
		for c.State != store.ContainerReady {
			if c, err = srv.Store.Container(ctx, id); err != nil {
				b.Fatal(err)
			}
			if c.State != store.ContainerReady {
				time.Sleep(2 * time.Millisecond)
			}
		}
		toReady += time.Since(start)
		sess, err := drv.OpenSession(ctx, c.InstanceID, fleet.SessionSpec{TTY: true, Rows: 24, Cols: 80})
		if err != nil {
			b.Fatal(err)
		}
		if err := readPrompt(sess.Stdout()); err != nil {
			b.Fatal(err)
		}
		toPrompt += time.Since(start)
		b.StopTimer()
		sess.Close()
		if pool != c.FromPool() {
			b.Fatalf("%s: served from the pool %v, want %v", id, c.FromPool(), pool)
		}
		srv.Do(b, nil, handlertest.Request{Method: "DELETE", Path: "/api/v1/containers/" + id, Token: tok})
		b.StartTimer()
	}
	b.ReportMetric(float64(toReady.Microseconds())/1000/float64(b.N), "ms/ready")
	b.ReportMetric(float64(toPrompt.Microseconds())/1000/float64(b.N), "ms/prompt")
}
