package main

import (
	"context"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/devport/devport/static"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web/browsertest"
)

// TestBrowserTerminal types into the web terminal of a devserver that became
// ready while its page was open, under devport's Content Security Policy
// (the harness fails on any violation).
func TestBrowserTerminal(t *testing.T) {
	if _, err := fs.Stat(static.FS, "vendor/xterm.js"); err != nil {
		t.Fatal("static/vendor/xterm.js is not embedded: run `make static` (or `make test`, which runs it) before the browser tests")
	}
	p := startPortal(t, "--sim-latency", "300ms", "--pool-interval", "0s")
	ctx := browsertest.New(t)
	var name string
	screen := "#" + views.TerminalScreenID

	step(t, "an engineer keeps a file of 24-bit colours among their one-offs", func(t *testing.T) {
		signInAs(t, ctx, p.URL, "ada@example.com")
		status := browsertest.Run(t, ctx, 10*time.Second, chromedp.Evaluate[int](`fetch("/api/v1/me/oneoffs", {
			method: "PUT", headers: {"Content-Type": "application/json"},
			body: JSON.stringify({dotfiles: [{path: "colors.txt", content: "\u001b[38;2;255;100;0mtruecolor\u001b[0m\n"}]}),
		}).then(r => r.status)`, chromedp.EvalAwaitPromise))
		if status != 200 {
			t.Fatalf("PUT /api/v1/me/oneoffs: status %d", status)
		}
	})

	step(t, "they reserve a devserver and see the terminal wait for it", func(t *testing.T) {
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Navigate(p.URL+views.ReserveURL))
		browsertest.Do(t, ctx, 10*time.Second,
			chromedp.Click(chromedp.CSS(`#reserve-form input[name=flavor][value="vm.small"]`)),
			chromedp.WaitVisible(chromedp.CSS("#reserve-regions .free")))
		browsertest.WaitForPage(t, ctx, 10*time.Second, chromedp.Click(chromedp.CSS(`#reserve-form button[type=submit]`)))
		loc := location(t, ctx)
		name = loc[strings.LastIndex(loc, "/")+1:]
		if !strings.HasPrefix(name, "ada-") {
			t.Fatalf("after reserving the browser is at %s", loc)
		}
		if got := text(t, ctx, "#"+views.TerminalControlsID); !strings.Contains(got, "The terminal opens once "+name+" is ready") {
			t.Errorf("the Terminal section of a provisioning devserver says %q", got)
		}
	})

	step(t, "once the devserver is ready, the section offers to open a terminal", func(t *testing.T) {
		waitFor(t, ctx, 20*time.Second, fmt.Sprintf(`section[id=%q] span.state[data-state="ready"]`, views.DevserverStatusID(name)))
		waitFor(t, ctx, 10*time.Second, `#`+views.TerminalControlsID+` button[data-terminal-socket]`)
		if got := text(t, ctx, `#`+views.TerminalControlsID+` button[data-terminal-socket]`); got != "Open terminal" {
			t.Errorf("the button says %q", got)
		}
	})

	step(t, "the terminal opens and answers echo hello", func(t *testing.T) {
		browsertest.Do(t, ctx, 5*time.Second, chromedp.Click(chromedp.CSS(`#`+views.TerminalControlsID+` button[data-terminal-socket]`)))
		waitFor(t, ctx, 10*time.Second, screen+`[data-terminal-state="open"] .xterm-rows`)
		browsertest.Do(t, ctx, 10*time.Second, chromedp.Poll[chromedp.Void](
			`document.querySelector("`+screen+` .xterm-rows").textContent.includes("dev@`+name+`:~$")`))
		browsertest.Do(t, ctx, 5*time.Second, typeText("echo hello\r"))
		// A row that is exactly "hello" is the shell's answer, not the typed command.
		browsertest.Do(t, ctx, 10*time.Second, chromedp.Poll[chromedp.Void](
			`Array.from(document.querySelectorAll("`+screen+` .xterm-rows > div"), r => r.textContent.trim()).includes("hello")`))
		if got := text(t, ctx, `#`+views.TerminalControlsID+` [data-terminal-status]`); got != "Connected." {
			t.Errorf("the terminal's status says %q", got)
		}
	})

	step(t, "a cell in 24-bit colour shows its colour", func(t *testing.T) {
		browsertest.Do(t, ctx, 5*time.Second, typeText("cat colors.txt\r"))
		color := browsertest.Run(t, ctx, 10*time.Second, chromedp.Poll[string](`(() => {
			const cell = Array.from(document.querySelectorAll("`+screen+` .xterm-rows span")).find(s => s.textContent === "truecolor");
			return cell ? getComputedStyle(cell).color : false;
		})()`))
		if color != "rgb(255, 100, 0)" {
			t.Errorf("the cell's colour is %s, want rgb(255, 100, 0)", color)
		}
	})

	step(t, "exit ends the session and the page says how", func(t *testing.T) {
		browsertest.Do(t, ctx, 5*time.Second, typeText("exit 4\r"))
		waitFor(t, ctx, 10*time.Second, screen+`[data-terminal-state="closed"]`)
		browsertest.Do(t, ctx, 5*time.Second, chromedp.Poll[chromedp.Void](
			`document.querySelector("#`+views.TerminalControlsID+` [data-terminal-status]").textContent === "The session ended: exit 4."`))
		waitFor(t, ctx, 5*time.Second, `#`+views.TerminalControlsID+` button[data-terminal-socket]`)
	})

	step(t, "a new terminal opens in its place, and Close terminal ends it", func(t *testing.T) {
		browsertest.Do(t, ctx, 5*time.Second, chromedp.Click(chromedp.CSS(`#`+views.TerminalControlsID+` button[data-terminal-socket]`)))
		waitFor(t, ctx, 10*time.Second, screen+`[data-terminal-state="open"]`)
		browsertest.Do(t, ctx, 5*time.Second, typeText("echo again\r"))
		browsertest.Do(t, ctx, 10*time.Second, chromedp.Poll[chromedp.Void](
			`Array.from(document.querySelectorAll("`+screen+` .xterm-rows > div"), r => r.textContent.trim()).includes("again")`))
		if n := browsertest.Run(t, ctx, 5*time.Second, chromedp.Evaluate[int](`document.querySelectorAll("`+screen+` .xterm").length`)); n != 1 {
			t.Errorf("%d terminals in the screen, want 1", n)
		}
		browsertest.Do(t, ctx, 5*time.Second, chromedp.Click(chromedp.CSS(`#`+views.TerminalControlsID+` button[data-terminal-close]`)))
		waitFor(t, ctx, 10*time.Second, screen+`[data-terminal-state="closed"]`)
		if got := text(t, ctx, `#`+views.TerminalControlsID+` [data-terminal-status]`); got != "You closed the terminal; its shell has ended." {
			t.Errorf("the terminal's status says %q", got)
		}
	})
}

// typeText types as a keyboard does: each keydown carries its text. xterm.js
// handles and cancels a keydown, which stops the browser's keypress; the
// separate char event chromedp's KeyEvent sends is not stopped by that, and
// xterm.js would take every key twice.
func typeText(s string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for _, r := range s {
			down := input.DispatchKeyEventParams{Type: input.DispatchKeyEventTypeKeyDown, Key: string(r), Text: string(r), UnmodifiedText: string(r)}
			if r == '\r' {
				down.Key, down.Code, down.WindowsVirtualKeyCode, down.NativeVirtualKeyCode = "Enter", "Enter", 13, 13
			}
			up := down
			up.Type, up.Text, up.UnmodifiedText = input.DispatchKeyEventTypeKeyUp, "", ""
			for _, k := range []input.DispatchKeyEventParams{down, up} {
				if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, k); err != nil {
					return fmt.Errorf("type %q: %w", r, err)
				}
			}
		}
		return nil
	})
}
