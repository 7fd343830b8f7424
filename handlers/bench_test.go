package handlers_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

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
// Provisioning is not running, so this is the reservation alone.
func BenchmarkReserveAPI(b *testing.B) {
	srv := handlertest.New(b, handlertest.Options{Inventory: bigRegion(), NoJobs: true})
	tok := srv.Token(b, "bench@example.com")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if code := post(b, client, srv.URL+"/api/v1/devservers", tok, `{"flavor":"vm.small","region":"prn"}`); code != http.StatusAccepted {
				b.Errorf("status %d", code)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reservations/s")
}

// BenchmarkDevserverPage measures a signed-in engineer's devserver page.
func BenchmarkDevserverPage(b *testing.B) {
	srv := handlertest.New(b, handlertest.Options{Inventory: bigRegion(), NoJobs: true})
	tok := srv.Token(b, "bench@example.com")
	c := srv.SignIn(b, "bench@example.com")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var name string
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
