package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/docker"
	"github.com/devport/devport/fleet/docker/dockertest"
	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// terminal is a websocket to a devserver's shell, as the page's script opens it.
type terminal struct {
	t      *testing.T
	c      *websocket.Conn
	output strings.Builder
}

// dialTerminal opens the devserver's (or container's) terminal with the browser's cookie from
// origin ("" sends none); it returns the handshake's response on failure.
func dialTerminal(t *testing.T, srv *handlertest.Server, browser *http.Client, name, origin, query string) (*terminal, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	kind := "/devservers/"
	if store.IsContainerName(name) {
		kind = "/containers/"
	}
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + kind + name + "/terminal/ws" + query
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: browser, HTTPHeader: h})
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	return &terminal{t: t, c: c}, resp, nil
}

// openTerminal dials from the portal's own origin and fails the test if refused.
func openTerminal(t *testing.T, srv *handlertest.Server, browser *http.Client, name string) *terminal {
	t.Helper()
	term, resp, err := dialTerminal(t, srv, browser, name, srv.URL, "")
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("open terminal on %s: %v (status %d)", name, err, status)
	}
	return term
}

func (term *terminal) send(text string) {
	term.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := term.c.Write(ctx, websocket.MessageBinary, []byte(text)); err != nil {
		term.t.Fatalf("type %q: %v", text, err)
	}
}

func (term *terminal) control(msg string) {
	term.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := term.c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		term.t.Fatalf("control %s: %v", msg, err)
	}
}

// waitFor reads the terminal until its output holds want; it returns the
// error that ended the connection if it ended first.
func (term *terminal) waitFor(want string) error {
	term.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for !strings.Contains(term.output.String(), want) {
		typ, data, err := term.c.Read(ctx)
		if err != nil {
			return err
		}
		if typ != websocket.MessageBinary {
			term.t.Fatalf("the server sent a text message: %q", data)
		}
		term.output.Write(data)
	}
	return nil
}

func (term *terminal) mustSee(want string) {
	term.t.Helper()
	if err := term.waitFor(want); err != nil {
		term.t.Fatalf("waiting for %q: %v; the terminal shows %q", want, err, term.output.String())
	}
}

// closeStatus reads until the server closes the connection and returns how.
func (term *terminal) closeStatus() (websocket.StatusCode, string) {
	term.t.Helper()
	err := term.waitFor("\x00never")
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		term.t.Fatalf("the connection ended without a close frame: %v", err)
	}
	return ce.Code, ce.Reason
}

func terminalEvents(t *testing.T, srv *handlertest.Server, name string) []map[string]any {
	t.Helper()
	kind := "devserver"
	if store.IsContainerName(name) {
		kind = "container"
	}
	es, err := srv.Store.AuditEvents(context.Background(), kind, name)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, e := range es {
		if !strings.HasPrefix(e.Action, "terminal.session.") {
			continue
		}
		var d map[string]any
		if err := json.Unmarshal([]byte(e.Detail), &d); err != nil {
			t.Fatal(err)
		}
		d["actor"], d["action"] = e.Actor, e.Action
		out = append(out, d)
	}
	return out
}

func TestTerminal(t *testing.T) {
	srv := handlertest.New(t)
	ownerToken := srv.Token(t, "owner@example.com")
	d := reserveReady(t, srv, ownerToken)
	owner := srv.SignIn(t, "owner@example.com")

	t.Run("gives the owner a shell that answers echo hello", func(t *testing.T) {
		term := openTerminal(t, srv, owner, d.Name)
		term.mustSee("dev@" + d.Name + ":~$ ")
		term.send("echo hello\r")
		term.mustSee("echo hello\r\nhello\r\n")
		term.control(`{"type":"resize","rows":40,"cols":120}`)
		term.send("ls\r")
		term.mustSee("ls\r\n")
		term.send("exit 3\r")
		code, reason := term.closeStatus()
		if code != websocket.StatusNormalClosure || reason != "exit 3" {
			t.Errorf("close = %d %q, want 1000 \"exit 3\"", code, reason)
		}
		handlertest.Eventually(t, 5*time.Second, "the session's close to be audited", func() bool {
			return len(terminalEvents(t, srv, d.Name)) == 2
		})
		es := terminalEvents(t, srv, d.Name)
		if es[0]["action"] != "terminal.session.open" || es[0]["actor"] != "owner@example.com" || es[0]["rows"] != float64(24) {
			t.Errorf("first event = %v, want the owner opening a 24-row session", es[0])
		}
		if es[1]["action"] != "terminal.session.close" || es[1]["ended"] != "exited" || es[1]["exit_status"] != float64(3) || es[1]["duration"] == nil {
			t.Errorf("second event = %v, want the session closed with exit 3", es[1])
		}
	})

	t.Run("ends the shell when the browser closes the connection", func(t *testing.T) {
		before := len(terminalEvents(t, srv, d.Name))
		term := openTerminal(t, srv, owner, d.Name)
		term.mustSee(":~$ ")
		if err := term.c.Close(websocket.StatusNormalClosure, "closed in the page"); err != nil {
			t.Fatalf("close: %v", err)
		}
		handlertest.Eventually(t, 5*time.Second, "the session's close to be audited", func() bool {
			return len(terminalEvents(t, srv, d.Name)) == before+2
		})
		if last := terminalEvents(t, srv, d.Name)[before+1]; last["ended"] != "browser disconnected" || last["exit_status"] != nil {
			t.Errorf("close event = %v, want the browser's disconnection without an exit status", last)
		}
	})

	t.Run("lets someone the devserver is shared with in", func(t *testing.T) {
		srv.Token(t, "sharee@example.com")
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + d.Name + "/shares", Token: ownerToken, Body: `{"email":"sharee@example.com"}`})
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("share: %d %s", resp.StatusCode, body)
		}
		term := openTerminal(t, srv, srv.SignIn(t, "sharee@example.com"), d.Name)
		term.send("echo from the sharee\r")
		term.mustSee("\r\nfrom the sharee\r\n")
		es := terminalEvents(t, srv, d.Name)
		if es[len(es)-1]["actor"] != "sharee@example.com" {
			t.Errorf("last event = %v, want the sharee's session", es[len(es)-1])
		}
	})

	refusals := []struct {
		name    string
		browser *http.Client
		origin  string
		query   string
		status  int
		message string
	}{
		{"refuses a stranger as if the devserver did not exist", srv.SignIn(t, "stranger@example.com"), srv.URL, "", http.StatusNotFound, ""},
		{"refuses an admin who may see the devserver but is not in it", srv.SignIn(t, "admin@example.com", store.RoleAdmin), srv.URL, "", http.StatusForbidden, ""},
		{"refuses a websocket from another origin", owner, "https://evil.example", "", http.StatusForbidden, "only from devport's own pages"},
		{"refuses a terminal size no screen has", owner, srv.URL, "?rows=0&cols=80", http.StatusBadRequest, "rows must be a whole number"},
		{"refuses someone signed out", srv.Browser(t), srv.URL, "", http.StatusSeeOther, ""},
	}
	for _, c := range refusals {
		t.Run(c.name, func(t *testing.T) {
			before := len(terminalEvents(t, srv, d.Name))
			_, resp, err := dialTerminal(t, srv, c.browser, d.Name, c.origin, c.query)
			if err == nil {
				t.Fatal("the websocket opened")
			}
			if resp == nil || resp.StatusCode != c.status {
				t.Fatalf("handshake = %v (%v), want status %d", resp, err, c.status)
			}
			if c.message != "" {
				_, body := srv.Do(t, c.browser, handlertest.Request{Path: "/devservers/" + d.Name + "/terminal/ws" + c.query,
					Headers: map[string]string{"Origin": c.origin, "Accept": "application/json"}})
				if !strings.Contains(body, c.message) {
					t.Errorf("body = %s, want %q", body, c.message)
				}
			}
			if n := len(terminalEvents(t, srv, d.Name)); n != before {
				t.Errorf("%d terminal events recorded, want none", n-before)
			}
		})
	}

	t.Run("closes the session on a control message it does not know", func(t *testing.T) {
		for _, msg := range []string{`{"type":"shout"}`, `{"type":"resize","rows":0,"cols":80}`, `resize`} {
			term := openTerminal(t, srv, owner, d.Name)
			term.mustSee(":~$ ")
			term.control(msg)
			if code, reason := term.closeStatus(); code != websocket.StatusUnsupportedData || reason == "" {
				t.Errorf("%s: close = %d %q, want 1003 with a reason", msg, code, reason)
			}
		}
	})

	t.Run("answers a plain GET with 426 and what the address is", func(t *testing.T) {
		resp, body := srv.Do(t, owner, handlertest.Request{Path: "/devservers/" + d.Name + "/terminal/ws", Headers: map[string]string{"Accept": "application/json"}})
		if resp.StatusCode != http.StatusUpgradeRequired || !strings.Contains(body, "upgrade_required") {
			t.Errorf("plain GET = %d %s", resp.StatusCode, body)
		}
	})

	t.Run("shows the owner a Terminal section with the button", func(t *testing.T) {
		_, body := srv.Do(t, owner, handlertest.Request{Path: "/devservers/" + d.Name})
		doc := handlertest.Doc(t, body)
		b := doc.Find("#devserver-terminal button[data-terminal-socket]")
		if b.Text() != "Open terminal" || b.AttrOr("data-terminal-socket", "") != "/devservers/"+d.Name+"/terminal/ws" {
			t.Errorf("terminal button = %q %q", b.Text(), b.AttrOr("data-terminal-socket", ""))
		}
		if doc.Find("#devserver-terminal-screen").Length() != 1 {
			t.Error("no terminal screen")
		}
		_, body = srv.Do(t, srv.SignIn(t, "admin@example.com", store.RoleAdmin), handlertest.Request{Path: "/devservers/" + d.Name})
		if n := handlertest.Doc(t, body).Find("#devserver-terminal").Length(); n != 0 {
			t.Error("an admin who is not in the devserver sees its Terminal section")
		}
	})

	// Last: after it the portal opens no terminal.
	t.Run("ends open terminals at shutdown, says why, and opens no more", func(t *testing.T) {
		before := len(terminalEvents(t, srv, d.Name))
		term := openTerminal(t, srv, owner, d.Name)
		term.mustSee(":~$ ")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Terminals.Shutdown(ctx); err != nil {
			t.Fatalf("shutdown: %v", err)
		}
		if code, reason := term.closeStatus(); code != websocket.StatusGoingAway || reason != "devport is shutting down" {
			t.Errorf("close = %d %q, want 1001 \"devport is shutting down\"", code, reason)
		}
		// Shutdown returned after the end was recorded.
		if es := terminalEvents(t, srv, d.Name); len(es) != before+2 || es[before+1]["ended"] != "portal shut down" {
			t.Errorf("events after shutdown = %v", es[before:])
		}
		_, resp, err := dialTerminal(t, srv, owner, d.Name, srv.URL, "")
		if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("a terminal after shutdown: %v %v, want 503", resp, err)
		}
	})
}

func TestTerminalNotReady(t *testing.T) {
	srv := handlertest.New(t, handlertest.Options{NoJobs: true})
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: srv.Token(t, "owner@example.com"), Body: `{"flavor":"vm.small"}`})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("reserve: %d %s", resp.StatusCode, body)
	}
	name := decode[devserverJSON](t, body).Name
	owner := srv.SignIn(t, "owner@example.com")

	_, resp, err := dialTerminal(t, srv, owner, name, srv.URL, "")
	if err == nil || resp == nil || resp.StatusCode != http.StatusConflict {
		t.Fatalf("terminal on a provisioning devserver: %v %v, want 409", resp, err)
	}
	_, body = srv.Do(t, owner, handlertest.Request{Path: "/devservers/" + name + "/terminal/ws", Headers: map[string]string{"Accept": "application/json"}})
	if !strings.Contains(body, "is provisioning; a terminal opens once it is ready") {
		t.Errorf("body = %s", body)
	}
	_, body = srv.Do(t, owner, handlertest.Request{Path: "/devservers/" + name})
	doc := handlertest.Doc(t, body)
	if doc.Find("#devserver-terminal button").Length() != 0 || !strings.Contains(doc.Find("#devserver-terminal").Text(), "The terminal opens once "+name+" is ready") {
		t.Errorf("terminal section of a provisioning devserver: %q", doc.Find("#devserver-terminal").Text())
	}
	if es := terminalEvents(t, srv, name); len(es) != 0 {
		t.Errorf("terminal events = %v, want none", es)
	}
}

// TestTerminalDocker opens the web terminal on a devserver that is a real
// container: a login shell on a pseudo-terminal, resized by the browser.
func TestTerminalDocker(t *testing.T) {
	endpoint := dockertest.Require(t)
	label := "terminal-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	dockertest.Cleanup(t, endpoint, "devport.test", label)
	drv, err := docker.New(docker.Options{Engines: map[string]string{"tst-hv01": endpoint}, Labels: map[string]string{"devport.test": label}})
	if err != nil {
		t.Fatal(err)
	}
	inv := storetest.SmallRegion(2)
	for i := range inv.Hosts {
		if inv.Hosts[i].Name == "tst-hv01" {
			inv.Hosts[i].Driver = "docker"
		}
	}
	srv := handlertest.New(t, handlertest.Options{Inventory: &inv, Drivers: []fleet.Driver{drv}})
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: srv.Token(t, "owner@example.com"), Body: `{"flavor":"vm.small","region":"tst"}`})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("reserve: %d %s", resp.StatusCode, body)
	}
	d := srv.WaitState(t, decode[devserverJSON](t, body).Name, store.StateReady)

	term := openTerminal(t, srv, srv.SignIn(t, "owner@example.com"), d.Name)
	// The quotes keep the typed command, which the terminal echoes, from
	// reading like the answer.
	term.send("echo hel''lo\r")
	term.mustSee("hello\r\n")
	term.control(`{"type":"resize","rows":40,"cols":100}`)
	term.send("stty size; whoami; pwd\r")
	term.mustSee("40 100\r\ndev\r\n/home/dev\r\n")
	term.send("exit 3\r")
	if code, reason := term.closeStatus(); code != websocket.StatusNormalClosure || reason != "exit 3" {
		t.Errorf("close = %d %q, want 1000 \"exit 3\"", code, reason)
	}
	handlertest.Eventually(t, 10*time.Second, "the session's close to be audited", func() bool {
		es := terminalEvents(t, srv, d.Name)
		return len(es) == 2 && es[1]["exit_status"] == float64(3)
	})
}
