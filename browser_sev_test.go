package main

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web/browsertest"
)

// TestBrowserSevReview follows a SEV from opening to a signed-off review as
// a reviewer does: open it with its times, mitigate and close it, find it in
// the review queue, record the review meeting and sign it off.
func TestBrowserSevReview(t *testing.T) {
	p := startPortal(t, "--sim-latency", "0s", "--pool-interval", "0s")
	ctx := browsertest.New(t)

	step(t, "a reviewer signs in and opens a SEV with its times", func(t *testing.T) {
		browsertest.Do(t, ctx, 10*time.Second, chromedp.Navigate(p.URL+"/login"))
		browsertest.Do(t, ctx, 10*time.Second,
			chromedp.SendKeys(chromedp.ID("login-email"), "rita@example.com"),
			chromedp.Click(chromedp.CSS(`input[name=roles][value=reviewer]`)))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`form[action="/login/dev"] button[type=submit]`)))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`nav a[href="`+views.SevsURL+`"]`)))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`main a[href="`+views.NewSevURL+`"]`)))
		now := time.Now().UTC()
		browsertest.Do(t, ctx, 5*time.Second,
			chromedp.SendKeys(chromedp.ID("sev-new-title"), "prn hypervisors lost power"),
			chromedp.SetValue(chromedp.ID("sev-new-severity"), "1"),
			chromedp.Click(chromedp.ID("sev-new-region-prn")),
			chromedp.SetValue(chromedp.ID("sev-new-impact_started_at"), now.Add(-3*time.Hour).Format(views.SevFormTime)),
			chromedp.SetValue(chromedp.ID("sev-new-detected_at"), now.Add(-2*time.Hour).Format(views.SevFormTime)))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`#sev-new-form button[type=submit]`)))
		if got := text(t, ctx, "#sev-severity-definition"); !strings.Contains(got, store.SeverityDefinitions[1]) {
			t.Errorf("the SEV page says %q about its severity", got)
		}
	})

	step(t, "the reviewer mitigates and closes it; the report is started", func(t *testing.T) {
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.ID("sev-to-mitigated")))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.ID("sev-to-closed")))
		waitFor(t, ctx, 5*time.Second, `#`+views.SevStateID+`[data-state="closed"]`)
		if got := text(t, ctx, "#report-impact"); !strings.Contains(got, "Users affected") {
			t.Errorf("the impact section says %q", got)
		}
	})

	step(t, "the review queue lists it with its due date", func(t *testing.T) {
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`nav a[href="`+views.ReviewsURL+`"]`)))
		due := time.Now().UTC().AddDate(0, 0, 3).Format("2006-01-02")
		if got := text(t, ctx, "#"+views.ReviewRowID(1)); !strings.Contains(got, "prn hypervisors lost power") || !strings.Contains(got, due) {
			t.Errorf("the queue row says %q, want the title and due %s", got, due)
		}
	})

	step(t, "the reviewer records the meeting, then signs it off", func(t *testing.T) {
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`#`+views.ReviewRowID(1)+` a[href="`+views.SevReviewURL(1)+`"]`)))
		browsertest.Do(t, ctx, 5*time.Second,
			chromedp.SendKeys(chromedp.ID("review-attendees"), "rita@example.com"),
			chromedp.SendKeys(chromedp.ID("review-notes-input"), "Power came back after 40 minutes."))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.ID("review-save")))
		waitFor(t, ctx, 5*time.Second, `#`+views.SevStateID+`[data-state="in_review"]`)

		// The review finds a root cause: the reviewer files a critical
		// follow-up from the SEV's page before signing off.
		browsertest.Do(t, ctx, 5*time.Second,
			chromedp.SetValue(chromedp.ID("followup-new-1-kind"), "critical"),
			chromedp.SendKeys(chromedp.ID("followup-new-1-title"), "Put prn's hypervisors on two power feeds"),
			chromedp.SendKeys(chromedp.ID("followup-new-1-owner"), "rita@example.com"))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`#followup-new-1-form button[type=submit]`)))
		if got := text(t, ctx, "#"+views.SevFollowupsID+" tbody tr[data-kind=critical]"); !strings.Contains(got, "two power feeds") || !strings.Contains(got, "open") {
			t.Errorf("the SEV's follow-ups say %q", got)
		}

		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.ID("sev-review-open")))
		for i := range store.ReviewCriteria {
			browsertest.Do(t, ctx, 5*time.Second, chromedp.Click(chromedp.ID(views.ReviewCheckID(i))))
		}
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.ID("review-sign-off")))
		waitFor(t, ctx, 5*time.Second, `#`+views.SevStateID+`[data-state="reviewed"]`)
		if got := text(t, ctx, "#review-signed-off"); !strings.Contains(got, "rita@example.com") {
			t.Errorf("the sign-off says %q", got)
		}
		if got := text(t, ctx, "#"+views.SevFollowupsID+" h2"); got != "Follow-ups" {
			t.Errorf("the follow-ups section heading is %q", got)
		}
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Navigate(p.URL+views.ReviewsURL))
		if got := text(t, ctx, "#"+views.ReviewQueueID); !strings.Contains(got, "No SEVs wait for review") {
			t.Errorf("the queue still says %q", got)
		}
	})

	step(t, "the critical follow-up is on the board", func(t *testing.T) {
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`nav a[href="`+views.FollowupsURL+`"]`)))
		got := text(t, ctx, "#"+views.FollowupBoardID+" tbody tr[data-kind=critical]")
		if !strings.Contains(got, "SEV-1") || !strings.Contains(got, "two power feeds") || !strings.Contains(got, "rita@example.com") {
			t.Errorf("the board says %q", got)
		}
	})
}
