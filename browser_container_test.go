package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/devport/devport/views"
	"github.com/devport/devport/web/browsertest"
)

// TestBrowserContainer requests On Demand containers as an engineer does:
// one built on request, which becomes ready while its page is open and
// takes commands in its terminal, and one served at once from a pool.
func TestBrowserContainer(t *testing.T) {
	p := startPortal(t, "--sim-latency", "300ms", "--pool-interval", "1s")
	ctx := browsertest.New(t)
	screen := "#" + views.ContainerTerminalScreenID
	var id string

	step(t, "an engineer picks a type, and the form offers that type's profiles", func(t *testing.T) {
		signInAs(t, ctx, p.URL, "grace@example.com")
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Navigate(p.URL+views.ContainersURL))
		if got := text(t, ctx, ".ephemeral"); !strings.Contains(got, "no backups") {
			t.Errorf("the list says %q", got)
		}
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`main a[href="`+views.ContainerRequestURL+`"]`)))
		browsertest.Do(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`input[name=type][value=android]`)))
		// HTMX swaps in android's profiles: medium and large.
		browsertest.Do(t, ctx, 10*time.Second, chromedp.Poll[chromedp.Void](
			`Array.from(document.querySelectorAll("#container-profile option"), o => o.value).join(" ") === "medium large"`))
		browsertest.Do(t, ctx, 5*time.Second, chromedp.SetValue(chromedp.CSS("#container-profile"), "large"))
	})

	step(t, "nothing waits in a pool for it, so it is built while its page is open", func(t *testing.T) {
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`form.container-request button[type=submit]`)))
		loc := location(t, ctx)
		id = loc[strings.LastIndex(loc, "/")+1:]
		if !strings.HasPrefix(id, "od") {
			t.Fatalf("after requesting the browser is at %s", loc)
		}
		if got := text(t, ctx, ".flash-success"); !strings.HasPrefix(got, "Building "+id+" (android, large)") {
			t.Errorf("the flash says %q", got)
		}
		if got := text(t, ctx, "#"+views.ContainerAccessID); !strings.Contains(got, "Access opens once "+id+" is ready") {
			t.Errorf("the Access section of a provisioning container says %q", got)
		}
	})

	step(t, "once ready, the page counts down and the terminal opens in it", func(t *testing.T) {
		waitFor(t, ctx, 20*time.Second, fmt.Sprintf(`section[id=%q] span.state[data-state="ready"]`, views.ContainerStatusID(id)))
		// The countdown ticks in the browser: hours, minutes and seconds left.
		browsertest.Do(t, ctx, 5*time.Second, chromedp.Poll[chromedp.Void](
			`/^3[56] h \d\d min \d\d s left$/.test(document.querySelector(".countdown").textContent)`))
		waitFor(t, ctx, 10*time.Second, `#`+views.ContainerAccessID+` button[data-terminal-socket]`)
		browsertest.Do(t, ctx, 5*time.Second, chromedp.Click(chromedp.CSS(`#`+views.ContainerAccessID+` button[data-terminal-socket]`)))
		waitFor(t, ctx, 10*time.Second, screen+`[data-terminal-state="open"] .xterm-rows`)
		browsertest.Do(t, ctx, 10*time.Second, chromedp.Poll[chromedp.Void](
			`document.querySelector("`+screen+` .xterm-rows").textContent.includes("dev@`+id+`:~$")`))
		browsertest.Do(t, ctx, 5*time.Second, typeText("cat .devport/stack.json\r"))

		browsertest.Do(t, ctx, 10*time.Second, chromedp.Poll[chromedp.Void](
			`document.querySelector("`+screen+` .xterm-rows").textContent.includes('"name": "android-apps"')`))
	})

	step(t, "a second request is served from the pool at once", func(t *testing.T) {
		// The portal fills its pools every second; the form says when web/medium has one ready.
		browsertest.Do(t, ctx, 30*time.Second, chromedp.Poll[chromedp.Void](`fetch("/containers/new/options?type=web&profile=medium", {headers: {"HX-Request": "true"}})
			.then(r => r.text()).then(t => t.includes("ready in its pool"))`, chromedp.WithPollingInterval(500*time.Millisecond)))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Navigate(p.URL+views.ContainerRequestURL+"?type=web&profile=medium"))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`form.container-request button[type=submit]`)))
		if got := text(t, ctx, ".flash-success"); !strings.Contains(got, "(web, medium) is ready in prn: it came from the pool") {
			t.Errorf("the flash says %q", got)
		}
		if got := text(t, ctx, "dd.placement"); !strings.HasPrefix(got, "from the pool in prn") {
			t.Errorf("the page says it was served %q", got)
		}
		waitFor(t, ctx, 5*time.Second, `#`+views.ContainerAccessID+` button[data-terminal-socket]`)
	})

	step(t, "the list shows both", func(t *testing.T) {
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Navigate(p.URL+views.ContainersURL))
		if n := browsertest.Run(t, ctx, 5*time.Second, chromedp.Evaluate[int](`document.querySelectorAll("#container-rows tr[data-container]").length`)); n != 2 {
			t.Errorf("%d containers listed, want 2", n)
		}
	})
}
