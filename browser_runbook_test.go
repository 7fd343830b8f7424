package main

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/devport/devport/views"
	"github.com/devport/devport/web/browsertest"
)

// TestBrowserRunbook runs the exercise checklist as an admin does: a dry run
// first, then a run whose page updates itself while people mark the manual
// steps done, with the chart of durations drawn by the server.
func TestBrowserRunbook(t *testing.T) {
	p := startPortal(t, "--sim-latency", "0s", "--pool-interval", "0s")
	ctx := browsertest.New(t)

	step(t, "an admin signs in and finds the runbooks", func(t *testing.T) {
		browsertest.Do(t, ctx, 10*time.Second, chromedp.Navigate(p.URL+"/login"))
		browsertest.Do(t, ctx, 10*time.Second,
			chromedp.SendKeys(chromedp.ID("login-email"), "ops@example.com"),
			chromedp.Click(chromedp.CSS(`input[name=roles][value=admin]`)))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`form[action="/login/dev"] button[type=submit]`)))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Navigate(p.URL+views.AdminURL))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`main a[href="`+views.AdminRunbooksURL+`"]`)))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`tr[data-runbook="exercise-checklist"] a`)))
	})

	step(t, "the dry run lists the plan, nested runbook included", func(t *testing.T) {
		browsertest.Do(t, ctx, 5*time.Second, chromedp.SetValue(chromedp.ID("param-region"), "prn"))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`#runbook-start button[formmethod=get]`)))
		if got := text(t, ctx, "#"+views.RunbookPlanID); !strings.Contains(got, "nothing was changed") || !strings.Contains(got, "Run backup-region version 1") {
			t.Errorf("the plan says %q", got)
		}
	})

	step(t, "a run starts and its page follows it while people complete the manual steps", func(t *testing.T) {
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`#runbook-start button:not([formmethod])`)))
		waitFor(t, ctx, 10*time.Second, `tr[data-step="check dashboards"][data-state="waiting"] button`)
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`tr[data-step="check dashboards"] button`)))
		waitFor(t, ctx, 10*time.Second, `tr[data-step="check pagers"][data-state="waiting"] button`)
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`tr[data-step="check pagers"] button`)))
		// The barrier and the nested run finish on their own; the page
		// refreshes itself until the last manual step waits.
		waitFor(t, ctx, 20*time.Second, `tr[data-step="sign off"][data-state="waiting"] button`)
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`tr[data-step="sign off"] button`)))
		waitFor(t, ctx, 10*time.Second, `#`+views.RunLiveID+`[data-state="succeeded"]`)
		if n := browsertest.Run(t, ctx, 5*time.Second, chromedp.Evaluate[int](`document.querySelectorAll(".run-gantt svg rect").length`)); n != 6 {
			t.Errorf("the chart has %d bars, want 6", n)
		}
	})
}
