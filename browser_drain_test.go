package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/devport/devport/views"
	"github.com/devport/devport/web/browsertest"
)

// TestBrowserDrain: an engineer has devservers in prn; an admin finds the
// drains page, looks at the plan first, drains prn one devserver at a time
// and watches the progress bar climb to 100% without reloading the page.
func TestBrowserDrain(t *testing.T) {
	p := startPortal(t, "--sim-latency", "400ms", "--pool-interval", "0s")
	ctx := browsertest.New(t)
	const ada = "ada@example.com"
	var names []string

	step(t, "an engineer reserves three VMs in prn", func(t *testing.T) {
		signInAs(t, ctx, p.URL, ada)
		for range 3 {
			browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Navigate(p.URL+views.ReserveURL))
			browsertest.Do(t, ctx, 10*time.Second,
				chromedp.Click(chromedp.CSS(`#reserve-form input[name=flavor][value="vm.small"]`)),
				chromedp.WaitVisible(chromedp.CSS("#reserve-regions .free")),
				chromedp.Click(chromedp.CSS(`#reserve-form input[name=region][value="prn"]`)))
			browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`#reserve-form button[type=submit]`)))
			loc := location(t, ctx)
			name := loc[strings.LastIndex(loc, "/")+1:]
			waitFor(t, ctx, 20*time.Second, fmt.Sprintf(`section[id=%q] span.state[data-state="ready"]`, views.DevserverStatusID(name)))
			names = append(names, name)
		}
	})

	step(t, "an admin finds the drain page of prn and looks at the plan", func(t *testing.T) {
		browsertest.Do(t, ctx, 10*time.Second, chromedp.Navigate(p.URL+"/login"))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)))
		browsertest.Do(t, ctx, 10*time.Second,
			chromedp.SendKeys(chromedp.ID("login-email"), "ops@example.com"),
			chromedp.Click(chromedp.CSS(`input[name=roles][value=admin]`)))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`form[action="/login/dev"] button[type=submit]`)))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Navigate(p.URL+views.AdminURL))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`main a[href="`+views.AdminDrainsURL+`"]`)))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`tr[data-region="prn"] a`)))
		browsertest.Do(t, ctx, 5*time.Second,
			chromedp.SendKeys(chromedp.ID("drain-reason"), "rack swap exercise"),
			chromedp.SetValue(chromedp.ID("drain-parallel"), "1"))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.ID("drain-plan")))
		for _, n := range names {
			waitFor(t, ctx, 5*time.Second, fmt.Sprintf(`#drain-plan-result tr[data-devserver=%q][data-method="live"]`, n))
		}
		if got := text(t, ctx, "#region-status"); got != "active" {
			t.Errorf("after the dry run the region is %q", got)
		}
	})

	step(t, "the admin drains prn and watches the progress bar reach 100%", func(t *testing.T) {
		// The form kept what was entered.
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.ID("drain-start")))
		waitFor(t, ctx, 10*time.Second, "#"+views.DrainProgressID)
		markDocument(t, ctx)
		seen := map[int]bool{}
		deadline := time.Now().Add(60 * time.Second)
		for {
			v := browsertest.Run(t, ctx, 5*time.Second, chromedp.Evaluate[string](`document.getElementById("drain-bar").getAttribute("value")`))
			n, _ := strconv.Atoi(v)
			seen[n] = true
			if n == 100 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the progress bar is at %d%% after 60 s", n)
			}
			time.Sleep(100 * time.Millisecond)
		}
		waitFor(t, ctx, 10*time.Second, `#`+views.DrainProgressID+`[data-state="done"]`)
		if got := text(t, ctx, "#drain-done"); got != "3" {
			t.Errorf("done %q, want 3", got)
		}
		if got := text(t, ctx, "#drain-remaining"); got != "0" {
			t.Errorf("remaining %q, want 0", got)
		}
		if len(seen) < 2 {
			t.Errorf("the bar went straight to 100%% (values seen %v); it should have climbed", seen)
		}
		// HTMX refreshed the panel: the page itself was not reloaded.
		if !browsertest.Run(t, ctx, 5*time.Second, chromedp.Evaluate[bool](`window.__devportMarker === true`)) {
			t.Errorf("the page reloaded instead of refreshing the panel")
		}
	})
}
