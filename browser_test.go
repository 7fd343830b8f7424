package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/devport/devport/static"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web/browsertest"
)

// portal is the real binary's run, serving on loopback for a test.
type portal struct {
	URL     string
	DataDir string

	cancel context.CancelFunc
	done   chan error // run's result
	output chan struct{}

	mu   sync.Mutex
	logs []string

	stopOnce sync.Once
	stopErr  error
}

// startPortal starts run("serve") on a free loopback port with a fresh data
// directory and the given extra flags, and returns once /readyz answers 200.
// It stops when the test ends; Stop stops it earlier and returns run's error.
func startPortal(t *testing.T, flags ...string) *portal {
	t.Helper()
	if _, err := fs.Stat(static.FS, "vendor/htmx.min.js"); err != nil {
		t.Fatal("static/vendor/htmx.min.js is not embedded: run `make static` (or `make test`, which runs it) before the browser tests")
	}
	dataDir := t.TempDir()
	args := append([]string{"devport", "serve", "--addr", "127.0.0.1:0", "--ssh-addr", "127.0.0.1:0", "--data-dir", dataDir}, flags...)
	getenv := func(string) string { return "" } // no DEVPORT_* from the environment leaks in

	ctx, cancel := context.WithCancel(context.Background())
	r, w := io.Pipe()
	p := &portal{DataDir: dataDir, cancel: cancel, done: make(chan error, 1), output: make(chan struct{})}
	go func() {
		err := run(ctx, args, getenv, w)
		w.Close()
		p.done <- err
	}()
	listening := make(chan string, 1)
	go func() {
		defer close(p.output)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if u, ok := strings.CutPrefix(line, "devport listening on "); ok {
				listening <- u
			}
			p.mu.Lock()
			p.logs = append(p.logs, line)
			p.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("run returned %v after the test cancelled it; want nil (a graceful shutdown)", err)
		}
		if t.Failed() {
			p.mu.Lock()
			logs := p.logs
			if len(logs) > 60 {
				logs = logs[len(logs)-60:]
			}
			t.Logf("the portal's last log lines:\n%s", strings.Join(logs, "\n"))
			p.mu.Unlock()
		}
	})

	select {
	case p.URL = <-listening:
	case err := <-p.done:
		p.done <- err
		t.Fatalf("run returned before listening: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("run did not print \"devport listening on\" within 30 s")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/readyz did not answer 200 within 30 s (last: %v %v)", p.URL, resp, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop cancels run's context and returns what run returned.
func (p *portal) Stop() error {
	p.stopOnce.Do(func() {
		p.cancel()
		select {
		case p.stopErr = <-p.done:
		case <-time.After(30 * time.Second):
			p.stopErr = errors.New("run did not return within 30 s of its context being cancelled")
		}
		<-p.output
	})
	return p.stopErr
}

// step runs one step of a story as a subtest and ends the story at the
// first step that fails: the later ones depend on it.
func step(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	if !t.Run(name, f) {
		t.FailNow()
	}
}

// pageState is what the devserver page's status panel shows at one moment,
// read in one evaluation so an HTMX swap cannot fall between two reads.
type pageState struct {
	State    string            `json:"state"`
	Progress bool              `json:"progress"`
	Release  string            `json:"release"` // the release button's text, if any
	Facts    map[string]string `json:"facts"`   // the panel's <dt> → <dd> text
	Marker   bool              `json:"marker"`  // the document is the one marked by markDocument
}

func readPanel(t *testing.T, ctx context.Context, name string) pageState {
	t.Helper()
	js := fmt.Sprintf(`(() => {
		const panel = document.getElementById(%q);
		if (!panel) return {state: "", facts: {}, marker: window.__devportMarker === true};
		const state = panel.querySelector("span.state");
		const release = panel.querySelector("form button[type=submit]");
		return {
			state: state ? state.dataset.state : "",
			progress: panel.querySelector("progress") !== null,
			release: release ? release.textContent.trim() : "",
			facts: Object.fromEntries(Array.from(panel.querySelectorAll("dl.facts dt"),
				dt => [dt.textContent.trim(), dt.nextElementSibling ? dt.nextElementSibling.textContent.trim() : ""])),
			marker: window.__devportMarker === true,
		};
	})()`, views.DevserverStatusID(name))
	return browsertest.Run(t, ctx, 5*time.Second, chromedp.Evaluate[pageState](js))
}

// markDocument marks the current document; the mark survives HTMX swaps and
// disappears with a reload or a navigation.
func markDocument(t *testing.T, ctx context.Context) {
	t.Helper()
	browsertest.Do(t, ctx, 5*time.Second, chromedp.Evaluate[chromedp.Void](`window.__devportMarker = true`))
}

func location(t *testing.T, ctx context.Context) string {
	t.Helper()
	return browsertest.Run(t, ctx, 5*time.Second, chromedp.Location())
}

func text(t *testing.T, ctx context.Context, css string) string {
	t.Helper()
	return strings.TrimSpace(browsertest.Run(t, ctx, 5*time.Second, chromedp.Text(chromedp.CSS(css))))
}

// checkBadges asserts the page's frame says the login and the fleet are not real.
func checkBadges(t *testing.T, ctx context.Context) {
	t.Helper()
	browsertest.Do(t, ctx, 5*time.Second,
		chromedp.WaitVisible(chromedp.CSS("header .badge-dev")),
		chromedp.WaitVisible(chromedp.CSS("header .badge-sim")))
	if got := text(t, ctx, "header .badge-dev"); got != "dev login" {
		t.Errorf("dev login badge says %q, want %q", got, "dev login")
	}
	if got := text(t, ctx, "header .badge-sim"); got != "simulated fleet" {
		t.Errorf("fleet badge says %q, want %q", got, "simulated fleet")
	}
}

func TestBrowserReserveAndRelease(t *testing.T) {
	// The portal starts first so that it stops last: the browser's cleanup
	// screenshots a failure and checks the console while the portal still serves.
	// No pools: this story watches a devserver being provisioned, which a
	// pooled one would skip.
	p := startPortal(t, "--sim-latency", "700ms", "--pool-interval", "0s")
	ctx := browsertest.New(t)
	const email = "ada.lovelace@example.com"

	step(t, "an anonymous visitor is sent to the sign-in page", func(t *testing.T) {
		browsertest.Do(t, ctx, 10*time.Second, chromedp.Navigate(p.URL+"/"))
		if got, want := location(t, ctx), p.URL+"/login"; got != want {
			t.Fatalf("at %s, want %s", got, want)
		}
		checkBadges(t, ctx)
	})

	step(t, "a new engineer signs in with the dev login and sees an empty devserver list", func(t *testing.T) {
		browsertest.Do(t, ctx, 10*time.Second, chromedp.SendKeys(chromedp.ID("login-email"), email))
		browsertest.WaitForPage(t, ctx, 10*time.Second,
			chromedp.Click(chromedp.CSS(`form[action="/login/dev"] button[type=submit]`)))
		if got, want := location(t, ctx), p.URL+"/devservers"; got != want {
			t.Errorf("at %s, want %s", got, want)
		}
		if got := text(t, ctx, "header .who"); got != email {
			t.Errorf("signed in as %q, want %q", got, email)
		}
		if got := text(t, ctx, "#"+views.DevserverRowsID); !strings.Contains(got, "You have no devservers") {
			t.Errorf("the list says %q, want it to say there are no devservers", got)
		}
		if got := text(t, ctx, "main a[role=button]"); got != "Reserve a devserver" {
			t.Errorf("the list's button says %q, want %q", got, "Reserve a devserver")
		}
		checkBadges(t, ctx)
	})

	var region, leaseUntil string
	step(t, "the reservation form shows the home region's free room once a flavour is chosen", func(t *testing.T) {
		browsertest.WaitForPage(t, ctx, 10*time.Second,
			chromedp.Click(chromedp.CSS(fmt.Sprintf(`main a[role=button][href=%q]`, views.ReserveURL))))
		checkBadges(t, ctx)
		if n := browsertest.Run(t, ctx, 5*time.Second, chromedp.Evaluate[int](`document.querySelectorAll("#reserve-regions .free").length`)); n != 0 {
			t.Errorf("before a flavour is chosen the form shows %d free counts, want none", n)
		}
		region = browsertest.Run(t, ctx, 5*time.Second, chromedp.Evaluate[string](
			`(document.querySelector("#reserve-regions input[name=region]:checked") || {value: ""}).value`))
		if region == "" {
			t.Fatal("no region is preselected; want the engineer's home region")
		}

		markDocument(t, ctx)
		browsertest.Do(t, ctx, 10*time.Second,
			chromedp.Click(chromedp.CSS(`#reserve-form input[name=flavor][value="vm.small"]`)),
			chromedp.WaitVisible(chromedp.CSS("#reserve-regions .free")))
		type choice struct {
			Region string `json:"region"`
			Free   string `json:"free"`
			Marker bool   `json:"marker"`
		}
		got := browsertest.Run(t, ctx, 5*time.Second, chromedp.Evaluate[choice](`(() => {
			const r = document.querySelector("#reserve-regions input[name=region]:checked");
			const f = r && r.closest("label").querySelector(".free");
			return {region: r ? r.value : "", free: f ? f.textContent.trim() : "", marker: window.__devportMarker === true};
		})()`))
		if !got.Marker {
			t.Error("choosing a flavour reloaded the page; want the regions swapped in place")
		}
		if got.Region != region {
			t.Errorf("after choosing a flavour region %q is chosen, want the home region %q still chosen", got.Region, region)
		}
		m := regexp.MustCompile(`^(\d+) free$`).FindStringSubmatch(got.Free)
		if m == nil {
			t.Fatalf("the home region shows %q, want \"N free\"", got.Free)
		}
		if n, _ := strconv.Atoi(m[1]); n == 0 {
			t.Fatalf("the home region %s has no free room for vm.small in the demo inventory", region)
		}
		leaseUntil = browsertest.Run(t, ctx, 5*time.Second, chromedp.Value(chromedp.ID("lease-until")))
		if _, err := time.Parse(time.DateOnly, leaseUntil); err != nil {
			t.Errorf("the lease end is %q, want a date preset", leaseUntil)
		}
	})

	var name, host string
	step(t, "reserving shows the devserver provisioning, with its progress", func(t *testing.T) {
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`#reserve-form button[type=submit]`)))
		name = strings.TrimPrefix(location(t, ctx), p.URL+"/devservers/")
		if name == "" || strings.Contains(name, "/") {
			t.Fatalf("after reserving the browser is at %s, want a devserver's page", location(t, ctx))
		}
		got := readPanel(t, ctx, name)
		if got.State != "provisioning" || !got.Progress {
			t.Fatalf("the new devserver shows state %q (progress bar: %v), want provisioning with a progress bar", got.State, got.Progress)
		}
		if got.Facts["Address"] != "assigned when ready" {
			t.Errorf("while provisioning the address is %q, want %q", got.Facts["Address"], "assigned when ready")
		}
		flash := text(t, ctx, "main .flash-success")
		prefix := fmt.Sprintf("Reserving %s (vm.small) in %s on ", name, region)
		if !strings.HasPrefix(flash, prefix) {
			t.Errorf("the flash says %q, want it to start %q", flash, prefix)
		}
		host = strings.TrimSuffix(strings.TrimPrefix(flash, prefix), ".")
		if h1 := text(t, ctx, "main h1"); h1 != name {
			t.Errorf("the heading says %q, want %q", h1, name)
		}
		checkBadges(t, ctx)
		markDocument(t, ctx)
	})

	step(t, "the page turns ready with an address without a reload", func(t *testing.T) {
		browsertest.Do(t, ctx, 20*time.Second, chromedp.WaitVisible(chromedp.CSS(
			fmt.Sprintf(`section[id=%q] span.state[data-state="ready"]`, views.DevserverStatusID(name)))))
		got := readPanel(t, ctx, name)
		if !got.Marker {
			t.Fatal("the page was reloaded; want the status panel to update itself in place")
		}
		if got.State != "ready" || got.Progress {
			t.Errorf("state %q, progress bar %v; want ready without a progress bar", got.State, got.Progress)
		}
		if ip := net.ParseIP(got.Facts["Address"]); ip == nil {
			t.Errorf("the address is %q, want an IP address", got.Facts["Address"])
		}
		if h := got.Facts["Hostname"]; !strings.HasPrefix(h, name+".") {
			t.Errorf("the hostname is %q, want %s.<domain>", h, name)
		}
		if got.Facts["Host"] == "" || got.Facts["Host"] != host {
			t.Errorf("the host is %q, want %q as the reservation said", got.Facts["Host"], host)
		}
		if got.Facts["Region"] != region {
			t.Errorf("the region is %q, want %q", got.Facts["Region"], region)
		}
		if !strings.HasPrefix(got.Facts["Flavour"], "vm.small") {
			t.Errorf("the flavour is %q, want vm.small", got.Facts["Flavour"])
		}
		if want := "until " + leaseUntil + " 23:59 UTC"; got.Facts["Lease"] != want {
			t.Errorf("the lease is %q, want %q", got.Facts["Lease"], want)
		}
		if got.Release != "Release "+name {
			t.Errorf("the release button says %q, want %q", got.Release, "Release "+name)
		}
	})

	step(t, "releasing shows the devserver releasing and then released without a reload", func(t *testing.T) {
		// The panel was just swapped in; a person cannot click before HTMX has
		// processed its form (within one settle delay), but a robot can.
		browsertest.Do(t, ctx, 5*time.Second, chromedp.Poll[chromedp.Void](fmt.Sprintf(
			`!!(document.querySelector('section[id=%q] form[action$="/release"]') || {})['htmx-internal-data']`,
			views.DevserverStatusID(name))))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(
			fmt.Sprintf(`section[id=%q] form[action$="/release"] button[type=submit]`, views.DevserverStatusID(name)))))
		// The form posts through HTMX, which asks first; the harness accepts.
		if dialogs := browsertest.Dialogs(ctx); len(dialogs) != 1 || !strings.Contains(dialogs[0], "Release "+name+"?") {
			t.Errorf("dialogs shown on release: %q, want one asking to confirm the release of %s", dialogs, name)
		}
		if flash := text(t, ctx, "main .flash-success"); flash != "Releasing "+name+"." {
			t.Errorf("the flash says %q, want %q", flash, "Releasing "+name+".")
		}
		got := readPanel(t, ctx, name)
		if got.State != "releasing" || !got.Progress {
			t.Fatalf("after the release the page shows state %q (progress bar: %v), want releasing with a progress bar", got.State, got.Progress)
		}
		markDocument(t, ctx)
		browsertest.Do(t, ctx, 20*time.Second, chromedp.WaitVisible(chromedp.CSS(
			fmt.Sprintf(`section[id=%q] span.state[data-state="released"]`, views.DevserverStatusID(name)))))
		got = readPanel(t, ctx, name)
		if !got.Marker {
			t.Fatal("the page was reloaded; want the status panel to update itself in place")
		}
		if got.Progress || got.Release != "" {
			t.Errorf("a released devserver shows a progress bar (%v) or a release button (%q); want neither", got.Progress, got.Release)
		}
		if _, err := time.Parse("2006-01-02 15:04:05 UTC", got.Facts["Released"]); err != nil {
			t.Errorf("the release time is %q, want a time", got.Facts["Released"])
		}
		checkBadges(t, ctx)
	})

	step(t, "the browser saw no console errors, exceptions or CSP violations", func(t *testing.T) {
		for _, p := range browsertest.Problems(ctx) {
			t.Error(p)
		}
	})

	step(t, "the portal shuts down gracefully when its context is cancelled", func(t *testing.T) {
		if err := p.Stop(); err != nil {
			t.Fatalf("run returned %v, want nil", err)
		}
	})
}
