package handlers_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// replicaUsers is how many clients run at once in BenchmarkReplicas.
const replicaUsers = 64

// BenchmarkReplicas measures the same portal on SQLite, on PostgreSQL with
// one replica and on PostgreSQL with two replicas (two in-process portals,
// each with its own store pools, job runner and router, on one database; the
// clients' requests go to them in turn, as through a load balancer without
// affinity). For each it measures, with 64 concurrent clients:
//
//   - page, list: a signed-in engineer's devserver page and devserver list
//     (50 devservers): pages/s and each request's latency (p50-ms, p99-ms);
//   - reserve: POST /api/v1/devservers by 1,024 engineers taking turns, as
//     BenchmarkReserveAPI: reservations/s and latency. The job runners are
//     built but not started (as NoJobs), so provisioning does not run and
//     this is the reservation alone, job insert included. Afterwards it
//     checks that nothing was allocated twice;
//   - reserve-1client: the same from one client at a time, the cost of one
//     reservation when nothing waits.
//
// The PostgreSQL cases need DEVPORT_TEST_POSTGRES_URL (a role that may create
// databases; `make bench` starts a throwaway cluster with .ci/postgres-up when
// it can) and skip loudly without it; each gets a fresh database.
func BenchmarkReplicas(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		// A sqlite: URL, so the case stays SQLite whatever DEVPORT_TEST_ENGINE says.
		url := "sqlite:" + filepath.Join(b.TempDir(), "devport.db")
		benchPortals(b, startReplicas(b, url, 1))
	})
	for _, n := range []int{1, 2} {
		b.Run(fmt.Sprintf("postgres-%d", n), func(b *testing.B) {
			if os.Getenv("DEVPORT_TEST_POSTGRES_URL") == "" {
				// go test hides a benchmark's skip message without -v.
				fmt.Fprintf(os.Stderr, "######## SKIPPED: %s needs PostgreSQL: set DEVPORT_TEST_POSTGRES_URL (.ci/postgres-up DIR PORT prints one) ########\n", b.Name())
			}
			url := storetest.PostgresURL(b) // skips (fails under DEVPORT_REQUIRE_ALL=1) without it
			benchPortals(b, startReplicas(b, url, n))
		})
	}
}

// startReplicas starts n portals on the database at url; the first seeds it.
func startReplicas(b *testing.B, url string, n int) []*handlertest.Server {
	b.Helper()
	srvs := make([]*handlertest.Server, n)
	for i := range srvs {
		srvs[i] = handlertest.New(b, handlertest.Options{Inventory: bigRegion(), NoJobs: true, DatabaseURL: url, NoSeed: i > 0})
	}
	return srvs
}

func benchPortals(b *testing.B, srvs []*handlertest.Server) {
	first := srvs[0]
	setQuota(b, first.Store, store.RoleEngineer, store.MaxQuota, 0)
	tokens := make([]string, 1024)
	for i := range tokens {
		tokens[i] = first.Token(b, fmt.Sprintf("bench%04d@example.com", i))
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: replicaUsers}, Timeout: time.Minute}

	// The engineer whose pages are read: 50 devservers, one session, signed
	// in on the first replica and used on all (sessions live in the database).
	tok := first.Token(b, "reader@example.com")
	for i := 0; i < 50; i++ {
		if code := post(b, client, first.URL+"/api/v1/devservers", tok, `{"flavor":"vm.small"}`); code != http.StatusAccepted {
			b.Fatalf("reserve for the reader: status %d", code)
		}
	}
	ds, err := first.Store.Devservers(b.Context(), store.DevserverFilter{Limit: 1})
	if err != nil || len(ds) == 0 {
		b.Fatalf("the reader's devservers: %v (%d)", err, len(ds))
	}
	browser := first.SignIn(b, "reader@example.com")
	cookie := browser.Jar.Cookies(mustURL(first.URL))[0]

	get := func(path string) func(i int) error {
		return func(i int) error {
			req, _ := http.NewRequest("GET", srvs[i%len(srvs)].URL+path, nil)
			req.AddCookie(cookie)
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
			}
			return nil
		}
	}
	b.Run("page", func(b *testing.B) {
		loadTest(b, replicaUsers, "pages/s", get("/devservers/"+ds[0].Name))
	})
	b.Run("list", func(b *testing.B) {
		loadTest(b, replicaUsers, "pages/s", get("/devservers"))
	})

	var turn atomic.Int64
	reserve := func(users int) func(b *testing.B) {
		return func(b *testing.B) {
			before := countDevservers(b, first.Store)
			var ok atomic.Int64
			loadTest(b, users, "reservations/s", func(i int) error {
				tok := tokens[int(turn.Add(1))%len(tokens)]
				if code := post(b, client, srvs[i%len(srvs)].URL+"/api/v1/devservers", tok, `{"flavor":"vm.small","region":"prn"}`); code != http.StatusAccepted {
					return fmt.Errorf("reserve: status %d", code)
				}
				ok.Add(1)
				return nil
			})
			checkNoDoubleAllocation(b, first.Store, before, int(ok.Load()))
		}
	}
	b.Run("reserve", reserve(replicaUsers))
	// One client: what one reservation costs when nothing waits, which bounds
	// the rate of serialized writes.
	b.Run("reserve-1client", reserve(1))
}

// loadTest runs do b.N times from users goroutines at once and reports the
// rate (as unit) and the p50 and p99 of each call's duration.
func loadTest(b *testing.B, users int, unit string, do func(i int) error) {
	var next atomic.Int64
	var failed atomic.Bool
	durations := make([][]time.Duration, users)
	var wg sync.WaitGroup
	b.ResetTimer()
	for u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= b.N {
					return
				}
				start := time.Now()
				if err := do(i); err != nil {
					failed.Store(true)
					b.Error(err)
					return
				}
				durations[u] = append(durations[u], time.Since(start))
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	all := slices.Concat(durations...)
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	pct := func(p float64) float64 {
		return float64(all[min(len(all)-1, int(p*float64(len(all))))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(all))/b.Elapsed().Seconds(), unit)
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op") // the rate and the percentiles say it better
}

func countDevservers(b *testing.B, s *store.Store) int {
	b.Helper()
	var n int
	if err := s.DB().QueryRow(`SELECT COUNT(*) FROM devservers`).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

// checkNoDoubleAllocation: the run added exactly ok devservers, each with one
// open lease, and the one host's use is exactly 2 CPUs per devserver, within
// its capacity (every devserver here is a vm.small on prn-big01).
func checkNoDoubleAllocation(b *testing.B, s *store.Store, before, ok int) {
	b.Helper()
	h, err := s.HostByName(b.Context(), "prn-big01")
	if err != nil {
		b.Fatal(err)
	}
	devservers := countDevservers(b, s)
	var leases int
	if err := s.DB().QueryRow(`SELECT COUNT(DISTINCT devserver_id) FROM leases WHERE ended_at IS NULL`).Scan(&leases); err != nil {
		b.Fatal(err)
	}
	if devservers != before+ok || leases != devservers || h.UsedCPUs != 2*devservers || h.UsedCPUs > h.CPUs {
		b.Errorf("double allocation: %d before + %d successes, %d devservers, %d leased, host uses %d of %d CPUs",
			before, ok, devservers, leases, h.UsedCPUs, h.CPUs)
	}
}
