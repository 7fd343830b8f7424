package handlers_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
)

// bigRegion is one region whose hypervisor can take a million vm.small.
func bigRegion() *store.DemoInventory {
	demo := store.Demo("sim")
	inv := &store.DemoInventory{Regions: demo.Regions[:1], Flavors: demo.Flavors, Features: demo.Features}
	inv.Hosts = []store.Host{{Name: "prn-big01", Region: "prn", Kind: "hypervisor", Driver: "sim", State: "ready", CPUs: 2_000_000, MemoryGB: 8_000_000, DiskGB: 50_000_000}}
	return inv
}

func post(b *testing.B, c *http.Client, url, token, body string) int {
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// BenchmarkReserveAPI measures reservations through the real API, router,
// authentication, write transaction and job insert, with concurrent clients.
// Provisioning is not running, so this is the reservation alone. Afterwards
// it checks that nothing was allocated twice.
func BenchmarkReserveAPI(b *testing.B) {
	srv := handlertest.New(b, handlertest.Options{Inventory: bigRegion(), NoJobs: true})
	setQuota(b, srv.Store, store.RoleEngineer, store.MaxQuota, 0)
	// Many engineers, as in life: 1,024 of them take turns, so each holds a
	// handful of devservers against their quota (the quota count is per
	// owner; one engineer holding thousands would measure that instead).
	tokens := make([]string, 1024)
	for i := range tokens {
		tokens[i] = srv.Token(b, fmt.Sprintf("bench%04d@example.com", i))
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var ok, turn atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tok := tokens[int(turn.Add(1))%len(tokens)]
			if code := post(b, client, srv.URL+"/api/v1/devservers", tok, `{"flavor":"vm.small","region":"prn"}`); code != http.StatusAccepted {
				b.Errorf("status %d", code)
				return
			}
			ok.Add(1)
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reservations/s")

	// Zero double allocation: the host's use is exactly the successes' and
	// within its capacity, one devserver and one open lease per success.
	h, err := srv.Store.HostByName(b.Context(), "prn-big01")
	if err != nil {
		b.Fatal(err)
	}
	var devservers, leases int
	db := srv.Store.WriteDB()
	if err := db.QueryRow(`SELECT COUNT(*) FROM devservers`).Scan(&devservers); err != nil {
		b.Fatal(err)
	}
	if err := db.QueryRow(`SELECT COUNT(DISTINCT devserver_id) FROM leases WHERE ended_at IS NULL`).Scan(&leases); err != nil {
		b.Fatal(err)
	}
	n := int(ok.Load())
	if h.UsedCPUs > h.CPUs || h.UsedCPUs != 2*n || devservers != n || leases != n {
		b.Errorf("double allocation: %d successes, %d devservers, %d leased, host uses %d of %d CPUs", n, devservers, leases, h.UsedCPUs, h.CPUs)
	}
}

// BenchmarkPoolServedReservation measures a reservation that a pool serves,
// from the request to the devserver being ready (the budget is under 1 s).
// Refilling the pool between rounds is not timed.
func BenchmarkPoolServedReservation(b *testing.B) {
	srv := handlertest.New(b, handlertest.Options{Inventory: bigRegion()})
	setQuota(b, srv.Store, store.RoleEngineer, store.MaxQuota, 0)
	tok := srv.Token(b, "bench@example.com")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	size := min(b.N, store.MaxPoolTarget)
	err := srv.Store.InTx(b.Context(), func(tx *store.Tx) error {
		return tx.SetPoolTargets(b.Context(), store.System, []store.PoolTarget{{Region: "prn", Flavor: "vm.small", Target: size}})
	})
	if err != nil {
		b.Fatal(err)
	}
	fillPools(b, srv, "prn")
	var ready time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 && i%size == 0 {
			b.StopTimer()
			fillPools(b, srv, "prn")
			b.StartTimer()
		}
		start := time.Now()
		req, _ := http.NewRequest("POST", srv.URL+"/api/v1/devservers", strings.NewReader(`{"flavor":"vm.small","region":"prn"}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var d struct {
			Name  string `json:"name"`
			State string `json:"state"`
		}
		err = json.NewDecoder(resp.Body).Decode(&d)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusAccepted {
			b.Fatalf("status %d: %v", resp.StatusCode, err)
		}
		if d.State != store.StateReady {
			b.Fatalf("%s is %s: the pool did not serve it", d.Name, d.State)
		}
		ready += time.Since(start)
	}
	b.StopTimer()
	b.ReportMetric(float64(ready.Microseconds())/1000/float64(b.N), "ms/ready")
}

// BenchmarkDevserverPage measures a signed-in engineer's devserver page.
func BenchmarkDevserverPage(b *testing.B) {
	srv := handlertest.New(b, handlertest.Options{Inventory: bigRegion(), NoJobs: true})
	tok := srv.Token(b, "bench@example.com")
	c := srv.SignIn(b, "bench@example.com")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var name string
	setQuota(b, srv.Store, store.RoleEngineer, store.MaxQuota, 0)
	for i := 0; i < 50; i++ {
		post(b, client, srv.URL+"/api/v1/devservers", tok, `{"flavor":"vm.small"}`)
	}
	ds, _ := srv.Store.Devservers(b.Context(), store.DevserverFilter{Limit: 1})
	name = ds[0].Name
	cookie := c.Jar.Cookies(mustURL(srv.URL))[0]
	for _, path := range []string{"/devservers/" + name, "/devservers"} {
		b.Run(strings.TrimPrefix(strings.ReplaceAll(path, name, "{name}"), "/"), func(b *testing.B) {
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("GET", srv.URL+path, nil)
					req.AddCookie(cookie)
					resp, err := client.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pages/s")
		})
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
