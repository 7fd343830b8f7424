package main

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/devport/devport/web/browsertest"
)

// TestBrowserCLILogin is "devport login" without a token, as a person does
// it: the CLI opens the portal in the browser, the person signs in and
// approves, and the CLI ends up with a token of its own.
func TestBrowserCLILogin(t *testing.T) {
	r := newCLIRig(t)
	ctx := browsertest.New(t)
	const email = "grace.hopper@example.com"

	opened := make(chan string, 1)
	r.Browser = func(url string) error { opened <- url; return nil }
	type result struct {
		stdout, stderr string
		err            error
	}
	done := make(chan result, 1)
	go func() {
		stdout, stderr, err := r.Run("login", "--portal", r.Portal.URL)
		done <- result{stdout, stderr, err}
	}()
	var url string
	select {
	case url = <-opened:
	case res := <-done:
		t.Fatalf("login ended before opening the browser: %v\n%s", res.err, res.stderr)
	}
	if !strings.HasPrefix(url, r.Portal.URL+"/cli/login?") {
		t.Fatalf("the CLI opened %s, want the portal's /cli/login", url)
	}
	// Not signed in yet: the portal asks first, then comes back to the approval.
	browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Navigate(url))
	browsertest.Do(t, ctx, 10*time.Second, chromedp.SendKeys(chromedp.ID("login-email"), email))
	browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`form[action="/login/dev"] button[type=submit]`)))
	if got := text(t, ctx, "main"); !strings.Contains(got, "devport CLI on") {
		t.Errorf("the approval page says %q", got)
	}
	browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`form[action="/cli/login"] button[type=submit]`)))
	callbackText := text(t, ctx, "body")
	var res result
	select {
	case res = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("login did not end after the approval")
	}
	stdout, stderr := res.stdout, res.stderr
	if res.err != nil {
		t.Fatalf("login: %v\n%s", res.err, stderr)
	}
	if !strings.Contains(stdout, "Signed in to "+r.Portal.URL+" as "+email) {
		t.Errorf("login printed %q", stdout)
	}
	if !strings.Contains(callbackText, "signed in") {
		t.Errorf("the browser's last page says %q, want that the CLI is signed in", callbackText)
	}
	if !strings.Contains(stderr, "/cli/login?") {
		t.Errorf("login did not print the URL to visit for a browser that does not open: %q", stderr)
	}
	out, _, err := r.Run("whoami")
	if err != nil || !strings.Contains(out, email) {
		t.Errorf("whoami with the token the browser approved: %q %v", out, err)
	}
}
