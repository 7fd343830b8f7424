package handlers_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/docker"
	"github.com/devport/devport/fleet/docker/dockertest"
	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// BenchmarkFirstShellPrompt measures what an engineer waits for: from the
// reservation (POST /api/v1/devservers) to the first prompt of a shell in
// the devserver, on the simulated fleet and on a real Docker engine, cold
// (provisioned for the reservation) and from a pool of ready devservers.
func BenchmarkFirstShellPrompt(b *testing.B) {
	for _, c := range []struct {
		name         string
		docker, pool bool
	}{
		{"sim/cold", false, false}, {"sim/pool", false, true},
		{"docker/cold", true, false}, {"docker/pool", true, true},
	} {
		b.Run(c.name, func(b *testing.B) { benchFirstPrompt(b, c.docker, c.pool) })
	}
}

func benchFirstPrompt(b *testing.B, useDocker, pool bool) {
	ctx := context.Background()
	inv := storetest.SmallRegion(64)
	opts := handlertest.Options{Inventory: &inv}
	var drv fleet.Interactive
	if useDocker {
		endpoint := dockertest.Require(b)
		label := "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		dockertest.Cleanup(b, endpoint, "devport.test", label)
		d, err := docker.New(docker.Options{Engines: map[string]string{"tst-hv01": endpoint}, Labels: map[string]string{"devport.test": label}})
		if err != nil {
			b.Fatal(err)
		}
		for i := range inv.Hosts {
			if inv.Hosts[i].Name == "tst-hv01" {
				inv.Hosts[i].Driver = "docker"
			}
		}
		opts.Drivers, drv = []fleet.Driver{d}, d
	}
	if pool {
		opts.PoolInterval = 100 * time.Millisecond
	}
	srv := handlertest.New(b, opts)
	if drv == nil {
		drv = srv.Sim
	}
	setQuota(b, srv.Store, store.RoleAdmin, store.MaxQuota, 0)
	tok := srv.Token(b, "bench@example.com", store.RoleAdmin)
	if pool {
		err := srv.Store.InTx(ctx, func(tx *store.Tx) error {
			return tx.SetPoolTargets(ctx, store.System, []store.PoolTarget{{Region: "tst", Flavor: "vm.small", Target: 2}})
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	var waited time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if pool {
			handlertest.Eventually(b, time.Minute, "a ready pooled devserver", func() bool {
				ready, err := srv.Store.PoolReady(ctx)
				return err == nil && ready["tst"]["vm.small"] >= 1
			})
		}
		b.StartTimer()
		start := time.Now()
		resp, body := srv.Do(b, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: tok, Body: `{"flavor":"vm.small","region":"tst"}`})
		if resp.StatusCode != http.StatusAccepted {
			b.Fatalf("reserve: %d %s", resp.StatusCode, body)
		}
		name := decode[devserverJSON](b, body).Name
		var d store.Devserver
		for d.State != store.StateReady {
			var err error
			if d, err = srv.Store.Devserver(ctx, name); err != nil {
				b.Fatal(err)
			}
			if d.State != store.StateReady {
				time.Sleep(2 * time.Millisecond)
			}
		}
		sess, err := drv.OpenSession(ctx, d.InstanceID, fleet.SessionSpec{TTY: true, Rows: 24, Cols: 80})
		if err != nil {
			b.Fatal(err)
		}
		if err := readPrompt(sess.Stdout()); err != nil {
			b.Fatal(err)
		}
		waited += time.Since(start)
		b.StopTimer()
		sess.Close()
		if pool && d.AssignedAt == nil {
			b.Fatalf("%s was not served from the pool", name)
		}
		srv.Do(b, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + name + "/release", Token: tok})
		b.StartTimer()
	}
	b.ReportMetric(float64(waited.Microseconds())/1000/float64(b.N), "ms/prompt")
}

// readPrompt reads a shell's output until its prompt ("$ ") appears.
func readPrompt(r io.Reader) error {
	var seen strings.Builder
	buf := make([]byte, 512)
	for !strings.Contains(seen.String(), "$ ") {
		n, err := r.Read(buf)
		seen.Write(buf[:n])
		if err != nil {
			return err
		}
	}
	return nil
}
