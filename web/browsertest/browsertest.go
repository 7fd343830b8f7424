// Package browsertest drives Debian's chromium with chromedp for devport's
// browser tests. It finds the browser (or skips loudly), starts it headless
// with a fresh profile, accepts and records JavaScript dialogs, collects
// console errors, uncaught exceptions and Content Security Policy violations
// and fails the test on them, and saves a screenshot when the test fails.
package browsertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// startTimeout bounds how long chromium may take to start.
const startTimeout = time.Minute

// candidates are where chromium is looked for, after $DEVPORT_CHROMIUM.
var candidates = []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// browserFavicon matches the error of chromium's own request for /favicon.ico.
var browserFavicon = regexp.MustCompile(`^error: Failed to load resource: .* \(https?://[^/]+/favicon\.ico:\d+\)$`)

// session is a test's browser: what it saw and how to stop it.
type session struct {
	artifacts string

	mu       sync.Mutex
	problems []string
	allowed  []*regexp.Regexp
	dialogs  []string
	output   bytes.Buffer // chromium's own stdout and stderr
}

type sessionKey struct{}

func from(ctx context.Context) *session {
	s, ok := ctx.Value(sessionKey{}).(*session)
	if !ok {
		panic("browsertest: the context does not come from browsertest.New")
	}
	return s
}

// Chromium returns the path of the browser: $DEVPORT_CHROMIUM, or the first
// of chromium, chromium-browser and google-chrome found. It is empty when
// there is none.
func Chromium() (string, error) {
	if p := os.Getenv("DEVPORT_CHROMIUM"); p != "" {
		path, err := exec.LookPath(p)
		if err != nil {
			return "", fmt.Errorf("DEVPORT_CHROMIUM=%s is not an executable: %w", p, err)
		}
		return path, nil
	}
	for _, name := range candidates {
		if path, err := exec.LookPath(name); err == nil {
			return path, nil
		}
	}
	return "", nil
}

// New starts a headless chromium for the test and returns the context of its
// tab, for chromedp actions. Without chromium the test is skipped with a loud
// reason, or fails when DEVPORT_REQUIRE_ALL=1. When the test ends, New fails it
// on any console error, uncaught exception or CSP violation the pages
// produced (see Allow), saves a screenshot if the test failed, and closes the
// browser. JavaScript dialogs are accepted and recorded (see Dialogs).
//
// Start the server under test before calling New: cleanups run last first,
// so the browser then closes, and photographs a failure, while the server
// still serves.
func New(t testing.TB) context.Context {
	t.Helper()
	path, err := Chromium()
	if err != nil {
		t.Fatal(err)
	}
	if path == "" {
		const reason = "SKIPPING BROWSER TEST: chromium not found; install Debian's chromium package " +
			"(apt-get install chromium) or set DEVPORT_CHROMIUM; DEVPORT_REQUIRE_ALL=1 turns this into a failure"
		if os.Getenv("DEVPORT_REQUIRE_ALL") == "1" {
			t.Fatal("BROWSER TEST FAILS: chromium not found and DEVPORT_REQUIRE_ALL=1 forbids skipping; " +
				"install Debian's chromium package (apt-get install chromium) or set DEVPORT_CHROMIUM")
		}
		t.Skip(reason)
	}

	// Chromium asks for /favicon.ico by itself when a page names no icon;
	// its 404 is the browser's guess failing, not the page's fault.
	s := &session{allowed: []*regexp.Regexp{browserFavicon}}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, // the tests run as root in CI, where chromium's sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.WindowSize(1280, 1024),
		chromedp.CombinedOutput(&lockedWriter{mu: &s.mu, w: &s.output}),
	)...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	ctx = context.WithValue(ctx, sessionKey{}, s)

	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err = <-started:
	case <-time.After(startTimeout):
		err = fmt.Errorf("chromium did not start within %s", startTimeout)
	}
	if err != nil {
		cancelTab()
		cancelAlloc()
		t.Fatalf("start chromium (%s): %v\n%s", path, err, s.chromiumOutput())
	}

	// Subscribe before the first page loads, so nothing it says is missed.
	var watchers sync.WaitGroup
	console := chromedp.Console(ctx)
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	watchers.Go(func() {
		for m, err := range console {
			if err != nil {
				return
			}
			// Chromium reports a CSP violation as an error of its log
			// ("... violates the following Content Security Policy directive ...").
			if m.Type == chromedp.ConsoleError || m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
				where := m.URL
				if where != "" {
					where = fmt.Sprintf(" (%s:%d)", where, m.Line+1)
				}
				s.problem(string(m.Type) + ": " + m.Text + where)
			}
		}
	})
	watchers.Go(func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			s.mu.Lock()
			s.dialogs = append(s.dialogs, string(ev.Type)+": "+ev.Message)
			s.mu.Unlock()
			// The dialog blocks the action that opened it; answering it here
			// lets that action finish.
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	})
	t.Cleanup(func() {
		for _, p := range Problems(ctx) {
			t.Errorf("the browser reported a problem: %s", p)
		}
		if t.Failed() {
			Screenshot(t, ctx, "failure")
		}
		closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_ = chromedp.Cancel(closeCtx)
		cancel()
		cancelTab()
		cancelAlloc() // waits for chromium to exit, before t.TempDir removes its profile
		watchers.Wait()
		if t.Failed() {
			if out := s.chromiumOutput(); out != "" {
				t.Logf("chromium's output:\n%s", out)
			}
		}
	})
	return ctx
}

func (s *session) problem(p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, re := range s.allowed {
		if re.MatchString(p) {
			return
		}
	}
	s.problems = append(s.problems, p)
}

func (s *session) chromiumOutput() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keep []string
	for _, line := range strings.Split(s.output.String(), "\n") {
		if !strings.Contains(line, "dbus") { // chromium's complaints about the missing desktop bus are noise
			keep = append(keep, line)
		}
	}
	out := strings.Join(keep, "\n")
	if len(out) > 8000 {
		out = "…" + out[len(out)-8000:]
	}
	return strings.TrimSpace(out)
}

// Allow stops console messages matching pattern (a regular expression) from
// failing the test, for a test that provokes an error on purpose. It applies
// to messages from now on.
func Allow(ctx context.Context, pattern string) {
	s := from(ctx)
	re := regexp.MustCompile(pattern)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.allowed = append(s.allowed, re)
}

// Problems returns the console errors, uncaught exceptions and CSP violations
// seen so far. Messages arrive asynchronously: one logged just now may not
// be there yet.
func Problems(ctx context.Context) []string {
	s := from(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.problems...)
}

// Dialogs returns the JavaScript dialogs (alert, confirm, prompt) the pages
// opened so far, each as "type: message"; every one was accepted.
func Dialogs(ctx context.Context) []string {
	s := from(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.dialogs...)
}

// Do runs the steps in the test's tab, failing the test if they do not
// finish within timeout.
func Do(t testing.TB, ctx context.Context, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		t.Fatalf("in the browser (at %s): %v", location(ctx), explain(err, timeout))
	}
}

// Run runs an action that returns a value in the test's tab, failing the
// test if it does not finish within timeout.
func Run[T any](t testing.TB, ctx context.Context, timeout time.Duration, action chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, err := chromedp.Run(tctx, action)
	if err != nil {
		t.Fatalf("in the browser (at %s): %v", location(ctx), explain(err, timeout))
	}
	return v
}

// WaitForPage runs steps that load a page, such as a click on a link or a
// submit button, waits until the page has loaded (after any redirects), and
// returns the response of its HTML document. It fails the test unless the
// page loads with a status below 400 within timeout.
func WaitForPage(t testing.TB, ctx context.Context, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) *network.Response {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := chromedp.RunResponse(tctx, steps...)
	if err != nil {
		t.Fatalf("in the browser (at %s), waiting for a page to load: %v", location(ctx), explain(err, timeout))
	}
	if resp == nil || resp.Status >= 400 {
		status := "no response"
		if resp != nil {
			status = fmt.Sprintf("%d %s", resp.Status, resp.StatusText)
		}
		t.Fatalf("in the browser, the page %s loaded with %s", location(ctx), status)
	}
	return resp
}

func explain(err error, timeout time.Duration) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("not done within %s: %w", timeout, err)
	}
	return err
}

// location is the tab's URL, for error messages.
func location(ctx context.Context) string {
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	u, err := chromedp.Run(lctx, chromedp.Location())
	if err != nil {
		return "an unknown page"
	}
	return u
}

// Screenshot saves the whole page as a PNG, with its HTML beside it, in
// $DEVPORT_ARTIFACTS (or a directory under the system's temporary directory
// that outlives the test), logs where, and returns the PNG's path.
func Screenshot(t testing.TB, ctx context.Context, name string) string {
	t.Helper()
	s := from(ctx)
	dir, err := s.artifactDir()
	if err != nil {
		t.Logf("no screenshot: %v", err)
		return ""
	}
	base := filepath.Join(dir, fileName(t.Name()+"-"+name))
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("no screenshot: %v", err)
		return ""
	}
	if err := os.WriteFile(base+".png", png, 0o644); err != nil {
		t.Logf("no screenshot: %v", err)
		return ""
	}
	if html, err := chromedp.Run(sctx, chromedp.OuterHTML(chromedp.CSS("html"))); err == nil {
		_ = os.WriteFile(base+".html", []byte(html), 0o644)
	}
	t.Logf("screenshot of %s: %s.png (HTML in %s.html)", location(ctx), base, base)
	return base + ".png"
}

func (s *session) artifactDir() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.artifacts != "" {
		return s.artifacts, nil
	}
	if dir := os.Getenv("DEVPORT_ARTIFACTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		s.artifacts = dir
		return dir, nil
	}
	// Not t.TempDir: that is removed when the test ends, with the evidence.
	dir, err := os.MkdirTemp("", "devport-browser-")
	if err != nil {
		return "", err
	}
	s.artifacts = dir
	return dir, nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func fileName(s string) string {
	return strings.Trim(unsafeName.ReplaceAllString(s, "_"), "_")
}

// lockedWriter lets chromium's output goroutine and the test share a buffer.
type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w.Len() > 1<<20 {
		return len(p), nil // enough to diagnose a crash; keep memory bounded
	}
	return l.w.Write(p)
}
