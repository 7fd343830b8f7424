// Package handlertest starts devport's real router on a real store, with the
// job runner and the simulated fleet, behind httptest, and signs in users of
// any role.
package handlertest

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/sim"
	"github.com/devport/devport/handlers"
	"github.com/devport/devport/jobs"
	"github.com/devport/devport/static"
	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
	"github.com/devport/devport/web"
)

// Server is a running portal for a test.
type Server struct {
	*httptest.Server
	Store    *store.Store
	Sim      *sim.Driver
	Runner   *jobs.Runner
	Sessions *web.SessionStore
	// Terminals are the open web terminals; the end of the test shuts them down.
	Terminals *handlers.Terminals
}

// Options change the portal under test.
type Options struct {
	// Inventory replaces the demo inventory.
	Inventory *store.DemoInventory
	// NoDevLogin turns the dev login off.
	NoDevLogin bool
	// OIDC enables sign-in through a provider. An empty RedirectURL becomes
	// the portal's own callback URL, which is known only once it listens.
	OIDC *web.OIDCConfig
	// SimLatency slows the simulated fleet (default instant).
	SimLatency time.Duration
	// NoJobs leaves the job runner stopped, so jobs stay queued.
	NoJobs bool
	// SessionIdle and SessionMaxAge bound sessions (defaults 12 h and 7 days).
	SessionIdle, SessionMaxAge time.Duration
	// MaxAttempts overrides job attempts by kind.
	MaxAttempts map[string]int
	// PoolInterval turns on the periodic pool refill (default off: tests
	// call jobs.RefillPools when they want pools filled).
	PoolInterval time.Duration
	// Schedules turns on the periodic backup schedule and lease check
	// (default off, so a test knows every fleet call that happens).
	Schedules bool
	// Drivers are fleet drivers besides the simulator, for inventory hosts
	// that name them (such as the Docker driver).
	Drivers []fleet.Driver
	// Senders turn on email and chat (default: inbox only).
	Senders jobs.Senders
	// DatabaseURL opens the store on this database (migrating it) instead of
	// a fresh one from storetest: Servers on one PostgreSQL database are
	// replicas of one portal (replicas.go).
	DatabaseURL string
	// NoSeed leaves the inventory out of a DatabaseURL store: another Server
	// on the same database seeded it already.
	NoSeed bool
}

// New starts a portal. It stops when the test ends.
func New(t testing.TB, opts ...Options) *Server {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.SessionIdle == 0 {
		o.SessionIdle = 12 * time.Hour
	}
	if o.SessionMaxAge == 0 {
		o.SessionMaxAge = 7 * 24 * time.Hour
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	var s *store.Store
	if o.DatabaseURL != "" {
		s = openAt(t, o.DatabaseURL, o.Inventory, !o.NoSeed)
	} else {
		s = storetest.Seeded(t, o.Inventory)
	}
	ctx := context.Background()
	simDriver := sim.New(s, sim.Options{Latency: o.SimLatency, Seed: 1})
	registry := prometheus.NewRegistry()
	drivers := fleet.New(append([]fleet.Driver{simDriver}, o.Drivers...)...)
	runner, err := jobs.New(ctx, jobs.Options{BackupDir: t.TempDir(), Store: s, Fleet: drivers, Log: log, Metrics: registry, SessionIdle: o.SessionIdle, MaxAttempts: o.MaxAttempts,
		PoolInterval: o.PoolInterval, NoSchedules: !o.Schedules, Senders: o.Senders})
	if err != nil {
		t.Fatalf("jobs: %v", err)
	}
	if !o.NoJobs {
		if err := runner.Start(ctx); err != nil {
			t.Fatalf("start jobs: %v", err)
		}
	}
	srv := httptest.NewUnstartedServer(nil)
	var oidc *web.OIDC
	if o.OIDC != nil {
		cfg := *o.OIDC
		if cfg.RedirectURL == "" {
			cfg.RedirectURL = "http://" + srv.Listener.Addr().String() + "/auth/oidc/callback"
		}
		oidc = web.NewOIDC(cfg)
	}
	sessions := web.NewSessionStore(s, []byte(strings.Repeat("k", 64)), o.SessionIdle, o.SessionMaxAge, false, log)
	terminals := handlers.NewTerminals()
	h := handlers.New(handlers.Options{
		Log: log, Store: s, Jobs: runner, Sessions: sessions, OIDC: oidc, DevLogin: !o.NoDevLogin,
		Fleet: "simulated fleet", Drivers: drivers, Terminals: terminals, Registry: registry, Static: static.FS,
		Ready:    func(ctx context.Context) error { return s.Ping(ctx) },
		Channels: o.Senders.Offered(),
	})
	srv.Config.Handler = h
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = terminals.Shutdown(stop)
		if !o.NoJobs {
			_ = runner.Stop(stop)
		}
	})
	return &Server{Server: srv, Store: s, Sim: simDriver, Runner: runner, Sessions: sessions, Terminals: terminals}
}

// Browser returns a client with its own cookie jar that does not follow redirects.
func (s *Server) Browser(t testing.TB) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// SignIn returns a browser signed in through the dev login as email with roles.
func (s *Server) SignIn(t testing.TB, email string, roles ...string) *http.Client {
	t.Helper()
	c := s.Browser(t)
	form := url.Values{"email": {email}, "roles": roles}
	resp, err := c.PostForm(s.URL+"/login/dev", form)
	if err != nil {
		t.Fatalf("sign in %s: %v", email, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in %s: status %d", email, resp.StatusCode)
	}
	return c
}

// Token creates the user (with roles) and a full-scope personal access token.
func (s *Server) Token(t testing.TB, email string, roles ...string) string {
	t.Helper()
	u := storetest.User(t, s.Store, email, roles...)
	var secret string
	err := s.Store.InTx(context.Background(), func(tx *store.Tx) error {
		var err error
		_, secret, err = tx.CreateToken(context.Background(), u.ID, "test", "full", nil)
		return err
	})
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	return secret
}

// Request is one HTTP request for Do.
type Request struct {
	Method  string
	Path    string
	Body    string
	Token   string
	Headers map[string]string
	Form    url.Values
}

// Do sends a request with client (nil: a fresh one) and returns the response
// with its body read.
func (s *Server) Do(t testing.TB, c *http.Client, r Request) (*http.Response, string) {
	t.Helper()
	if c == nil {
		c = s.Browser(t)
	}
	if r.Method == "" {
		r.Method = http.MethodGet
	}
	var body io.Reader
	if r.Form != nil {
		body = strings.NewReader(r.Form.Encode())
	} else if r.Body != "" {
		body = strings.NewReader(r.Body)
	}
	req, err := http.NewRequest(r.Method, s.URL+r.Path, body)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if r.Form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else if r.Body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.Token)
	}
	for k, v := range r.Headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(b)
}

// Doc parses an HTML body for CSS-selector assertions.
func Doc(t testing.TB, body string) *goquery.Document {
	t.Helper()
	d, err := goquery.NewDocumentFromReader(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse HTML: %v", err)
	}
	return d
}

// Eventually polls cond until it holds or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitState waits until the devserver reaches state.
func (s *Server) WaitState(t testing.TB, name, state string) store.Devserver {
	t.Helper()
	var d store.Devserver
	Eventually(t, 20*time.Second, name+" to be "+state, func() bool {
		var err error
		d, err = s.Store.Devserver(context.Background(), name)
		return err == nil && d.State == state
	})
	return d
}

// WaitContainer waits until the container with public ID id is in state.
func (s *Server) WaitContainer(t testing.TB, id, state string) store.Container {
	t.Helper()
	var c store.Container
	Eventually(t, 20*time.Second, id+" to be "+state, func() bool {
		var err error
		c, err = s.Store.Container(context.Background(), id)
		return err == nil && c.State == state
	})
	return c
}
