package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/devport/devport/views"
	"github.com/devport/devport/web/browsertest"
)

// signInAs signs out whoever is signed in and signs in as email.
func signInAs(t *testing.T, ctx context.Context, base, email string) {
	t.Helper()
	browsertest.Do(t, ctx, 10*time.Second, chromedp.Navigate(base+"/login"))
	if browsertest.Run(t, ctx, 5*time.Second, chromedp.Evaluate[bool](`document.querySelector('form[action="/logout"] button') !== null`)) {
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)))
	}
	browsertest.Do(t, ctx, 10*time.Second, chromedp.SendKeys(chromedp.ID("login-email"), email))
	browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`form[action="/login/dev"] button[type=submit]`)))
	if got := text(t, ctx, "header .who"); got != email {
		t.Fatalf("signed in as %q, want %q", got, email)
	}
}

// waitFor waits until a CSS selector matches something visible.
func waitFor(t *testing.T, ctx context.Context, timeout time.Duration, css string) {
	t.Helper()
	browsertest.Do(t, ctx, timeout, chromedp.WaitVisible(chromedp.CSS(css)))
}

// waitProcessed waits until HTMX has taken over the form matched by css, as a
// person's click always finds it.
func waitProcessed(t *testing.T, ctx context.Context, css string) {
	t.Helper()
	browsertest.Do(t, ctx, 5*time.Second, chromedp.Poll[chromedp.Void](fmt.Sprintf(
		`!!(document.querySelector(%q) || {})['htmx-internal-data']`, css)))
}

func TestBrowserDevserverLife(t *testing.T) {
	p := startPortal(t, "--sim-latency", "300ms", "--pool-interval", "0s")
	ctx := browsertest.New(t)
	const ada, bob = "ada@example.com", "bob@example.com"
	var name string

	step(t, "a collaborator has signed in once, so that they can be named", func(t *testing.T) {
		signInAs(t, ctx, p.URL, bob)
	})

	step(t, "an engineer reserves a devserver with a feature and sees it installed", func(t *testing.T) {
		signInAs(t, ctx, p.URL, ada)
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Navigate(p.URL+views.ReserveURL))
		browsertest.Do(t, ctx, 10*time.Second,
			chromedp.Click(chromedp.CSS(`#reserve-form input[name=flavor][value="vm.large"]`)),
			chromedp.WaitVisible(chromedp.CSS("#reserve-regions .free")),
			chromedp.Click(chromedp.CSS(`#reserve-features input[value="git"]`)))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`#reserve-form button[type=submit]`)))
		loc := location(t, ctx)
		name = loc[strings.LastIndex(loc, "/")+1:]
		if !strings.HasPrefix(name, "ada-") {
			t.Fatalf("after reserving the browser is at %s", loc)
		}
		waitFor(t, ctx, 20*time.Second, fmt.Sprintf(`section[id=%q] span.state[data-state="ready"]`, views.DevserverStatusID(name)))
		waitFor(t, ctx, 20*time.Second, `#devserver-features tr[data-feature="git"][data-state="installed"]`)
	})

	step(t, "the owner shares it and takes a backup", func(t *testing.T) {
		browsertest.Do(t, ctx, 5*time.Second, chromedp.SendKeys(chromedp.ID("share-email"), bob))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`form.share button[type=submit]`)))
		waitFor(t, ctx, 10*time.Second, fmt.Sprintf(`tr[data-sharee=%q]`, bob))
		// The schedule's first run (at the portal's start) backs up a new
		// devserver too; while that backup is being taken, "Back up now" is
		// refused with a message, and the owner asks again once it is done.
		const manualDone = `#devserver-backups tr[data-kind="manual"][data-state="done"]`
		for attempt := 1; ; attempt++ {
			browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`form.backup-now button[type=submit]`)))
			deadline := time.Now().Add(10 * time.Second)
			found := false
			for !found && time.Now().Before(deadline) {
				found = browsertest.Run(t, ctx, 5*time.Second, chromedp.Evaluate[bool](fmt.Sprintf(`!!document.querySelector(%q)`, manualDone)))
				if !found {
					time.Sleep(200 * time.Millisecond)
				}
			}
			if found {
				break
			}
			if attempt == 3 {
				t.Fatalf("no manual backup is done after %d tries; the page says %q", attempt, text(t, ctx, "main"))
			}
			waitFor(t, ctx, 20*time.Second, `#devserver-backups tr[data-state="done"]`)
		}
	})

	step(t, "the collaborator sees it among their environments, and can look but not manage", func(t *testing.T) {
		signInAs(t, ctx, p.URL, bob)
		row := fmt.Sprintf(`tr[data-devserver=%q][data-relation="sharee"]`, name)
		waitFor(t, ctx, 10*time.Second, row)
		if got := text(t, ctx, row); !strings.Contains(got, "shared by "+ada) {
			t.Errorf("the row says %q, want it shared by %s", got, ada)
		}
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Navigate(p.URL+views.DevserverURL(name)))
		waitFor(t, ctx, 10*time.Second, fmt.Sprintf(`section[id=%q] span.state[data-state="ready"]`, views.DevserverStatusID(name)))
		forms := browsertest.Run(t, ctx, 5*time.Second, chromedp.Evaluate[int](`document.querySelectorAll("main form").length`))
		if forms != 0 {
			t.Errorf("the collaborator's page has %d forms, want none (release, migrate, share and restore are the owner's)", forms)
		}
	})

	step(t, "the owner migrates it to another region and watches it move", func(t *testing.T) {
		signInAs(t, ctx, p.URL, ada)
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Navigate(p.URL+views.DevserverURL(name)))
		waitProcessed(t, ctx, "form.migrate")
		browsertest.Do(t, ctx, 5*time.Second, chromedp.SetValue(chromedp.ID("migrate-region"), "ftw"))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`form.migrate button[type=submit]`)))
		if dialogs := browsertest.Dialogs(ctx); len(dialogs) == 0 || !strings.Contains(dialogs[len(dialogs)-1], "Migrate "+name) {
			t.Errorf("no confirmation before migrating: %q", dialogs)
		}
		waitFor(t, ctx, 30*time.Second, `#devserver-migration [data-migration-state="done"]`)
		got := readPanel(t, ctx, name)
		if got.State != "ready" || got.Facts["Region"] != "ftw" || !strings.HasPrefix(got.Facts["Hostname"], name+".ftw.") {
			t.Errorf("after the migration the panel shows %+v", got)
		}
	})

	step(t, "the owner restores the backup onto it", func(t *testing.T) {
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Navigate(p.URL+views.DevserverURL(name)))
		form := `#devserver-backups tr[data-kind="manual"] form.restore`
		waitProcessed(t, ctx, form)
		// The answer sends the browser to the backups section of the same page.
		browsertest.Do(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(form+` button[type=submit]`)))
		waitFor(t, ctx, 30*time.Second, `article.restore-status[data-state="done"]`)
		if dialogs := browsertest.Dialogs(ctx); !strings.Contains(dialogs[len(dialogs)-1], "Restore backup") {
			t.Errorf("no confirmation before restoring: %q", dialogs)
		}
	})
}
