package main

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/devport/devport/views"
	"github.com/devport/devport/web/browsertest"
)

// TestBrowserFollowup files a critical follow-up from a SEV's page as a
// reviewer, finds it on the board across SEVs, filters the board with its
// form, and marks it in progress from there.
func TestBrowserFollowup(t *testing.T) {
	p := startPortal(t, "--sim-latency", "0s", "--pool-interval", "0s")
	ctx := browsertest.New(t)
	due := time.Now().UTC().AddDate(0, 0, 7).Format("2006-01-02")

	step(t, "a reviewer signs in and opens a SEV", func(t *testing.T) {
		browsertest.Do(t, ctx, 10*time.Second, chromedp.Navigate(p.URL+"/login"))
		browsertest.Do(t, ctx, 10*time.Second,
			chromedp.SendKeys(chromedp.ID("login-email"), "rita@example.com"),
			chromedp.Click(chromedp.CSS(`input[name=roles][value=reviewer]`)))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`form[action="/login/dev"] button[type=submit]`)))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Navigate(p.URL+views.NewSevURL))
		browsertest.Do(t, ctx, 5*time.Second,
			chromedp.SendKeys(chromedp.ID("sev-new-title"), "ftw switch flapped"),
			chromedp.SetValue(chromedp.ID("sev-new-severity"), "2"))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`#sev-new-form button[type=submit]`)))
		waitFor(t, ctx, 5*time.Second, "#"+views.SevFollowupsID+" form")
	})

	step(t, "the reviewer files a critical follow-up from the SEV's page", func(t *testing.T) {
		browsertest.Do(t, ctx, 5*time.Second,
			chromedp.SetValue(chromedp.ID("followup-new-1-kind"), "critical"),
			chromedp.SendKeys(chromedp.ID("followup-new-1-title"), "Pin the switch firmware"),
			chromedp.SendKeys(chromedp.ID("followup-new-1-owner"), "rita@example.com"))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`#followup-new-1-form button[type=submit]`)))
		got := text(t, ctx, "#"+views.SevFollowupsID+" tbody tr[data-kind=critical]")
		if !strings.Contains(got, "Pin the switch firmware") || !strings.Contains(got, due) || !strings.Contains(got, "open") {
			t.Errorf("the SEV's follow-ups say %q, want the title, open, due %s", got, due)
		}
	})

	step(t, "the board lists it across SEVs and filters with its form", func(t *testing.T) {
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`nav a[href="`+views.FollowupsURL+`"]`)))
		got := text(t, ctx, "#"+views.FollowupBoardID+" tbody tr[data-kind=critical]")
		if !strings.Contains(got, "SEV-1") || !strings.Contains(got, "Pin the switch firmware") || !strings.Contains(got, "rita@example.com") {
			t.Errorf("the board says %q", got)
		}
		browsertest.Do(t, ctx, 5*time.Second, chromedp.SetValue(chromedp.ID("followup-filter-kind"), "medium"))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`#followup-filters button[type=submit]`)))
		if got := text(t, ctx, "#"+views.FollowupBoardID+" tbody"); !strings.Contains(got, "No follow-ups match") {
			t.Errorf("medium follow-ups: %q", got)
		}
		browsertest.Do(t, ctx, 5*time.Second, chromedp.SetValue(chromedp.ID("followup-filter-kind"), "critical"))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`#followup-filters button[type=submit]`)))
		waitFor(t, ctx, 5*time.Second, "#"+views.FollowupBoardID+" tbody tr[data-kind=critical]")
	})

	step(t, "its status changes from the board", func(t *testing.T) {
		row := "#" + views.FollowupRowID(1)
		browsertest.Do(t, ctx, 5*time.Second, chromedp.SetValue(chromedp.CSS(row+" select[name=status]"), "in_progress"))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(row+" form.followup-status button")))
		if got := text(t, ctx, row+" [data-status]"); got != "in progress" {
			t.Errorf("the status says %q", got)
		}
		if got := browsertest.Run(t, ctx, 5*time.Second, chromedp.Evaluate[string](`document.getElementById("followup-filter-kind").value`)); got != "critical" {
			t.Errorf("the board forgot its filter: %q", got)
		}
	})

	step(t, "the metrics page draws its charts", func(t *testing.T) {
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Navigate(p.URL+views.SevMetricsURL))
		if n := browsertest.Run(t, ctx, 5*time.Second, chromedp.Evaluate[int](`document.querySelectorAll("figure.sev-chart svg").length`)); n != 5 {
			t.Errorf("%d charts, want 5 (no exercises yet)", n)
		}
	})
}
