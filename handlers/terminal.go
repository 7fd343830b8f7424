package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// The web terminal: a websocket bridged to a shell with a pseudo-terminal in
// the devserver. Binary messages carry the bytes typed and the bytes shown;
// text messages are control messages from the browser, such as
// {"type":"resize","rows":24,"cols":80}.

// Terminal sizes outside these bounds are refused: no real screen has them.
const (
	terminalMaxRows = 500
	terminalMaxCols = 1000
	// terminalReadLimit bounds one message from the browser (a large paste).
	terminalReadLimit = 1 << 20
	// terminalPingInterval is how often the connection is checked.
	terminalPingInterval = 30 * time.Second
)

var (
	errTerminalOrigin = &web.RequestError{Status: http.StatusForbidden, Code: "cross_origin",
		Message: "A terminal opens only from devport's own pages."}
	errTerminalSize = &web.RequestError{Status: http.StatusBadRequest, Code: "bad_terminal_size",
		Message: fmt.Sprintf("rows must be a whole number from 1 to %d, and cols from 1 to %d.", terminalMaxRows, terminalMaxCols)}
	errTerminalUpgrade = &web.RequestError{Status: http.StatusUpgradeRequired, Code: "upgrade_required",
		Message: "This address is the terminal's websocket; open the terminal from its page."}
	errTerminalShutdown = &web.RequestError{Status: http.StatusServiceUnavailable, Code: "shutting_down",
		Message: "devport is shutting down; open the terminal again in a moment."}
	errTerminalReadOnly = &web.RequestError{Status: http.StatusForbidden, Code: "read_only_token",
		Message: "This token is read-only; a terminal needs a token that may change things."}
	errTerminalHost = &web.RequestError{Status: http.StatusBadGateway, Code: "host_unavailable",
		Message: "The host did not open a shell; try again in a moment."}
)

// terminalSection shows the Terminal section alone (HTMX, when the devserver
// settles) or on its own page.
func terminalSection(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := web.User(r)
		d, err := visibleDevserver(r.Context(), s, *u, chi.URLParam(r, "name"))
		if err == nil && !store.CanShellDevserver(*u, d) {
			err = web.ErrForbidden
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.TerminalPage(views.DevserverView{Devserver: d}), views.TerminalControls(d))
	}
}

// shellTarget is what a terminal opens a shell in: a devserver or a
// container, once the caller may and it is ready.
type shellTarget struct {
	kind, name, instanceID string // kind is the audit object type: devserver, container
	shells                 fleet.Interactive
}

// shellChecks are the checks every terminal makes before its target's own:
// a read-only token opens no shell.
func shellChecks(r *http.Request) error {
	if p := web.PrincipalOf(r); p != nil && p.Scope == "read" {
		// A shell changes what it likes: not for a read-only token.
		return errTerminalReadOnly
	}
	return nil
}

// interactive is the driver of a ready environment's host, if it opens shells.
func interactive(f *fleet.Fleet, kind, name, host, driver string) (fleet.Interactive, error) {
	if f == nil {
		return nil, errTerminalHost
	}
	drv, err := f.Driver(driver)
	if err != nil {
		return nil, fmt.Errorf("terminal on %s: %w", name, err)
	}
	shells, ok := drv.(fleet.Interactive)
	if !ok {
		return nil, store.Conflict("no_terminal", fmt.Sprintf("%s %s runs on %s, whose %s driver cannot open a shell.", kind, name, host, driver))
	}
	return shells, nil
}

// devserverShell is the devserver a websocket asks for, once the caller may
// open a shell in it and it is ready.
func devserverShell(s *store.Store, f *fleet.Fleet) func(*http.Request) (shellTarget, error) {
	return func(r *http.Request) (shellTarget, error) {
		ctx := r.Context()
		if err := shellChecks(r); err != nil {
			return shellTarget{}, err
		}
		u := web.User(r)
		d, err := visibleDevserver(ctx, s, *u, chi.URLParam(r, "name"))
		if err != nil {
			return shellTarget{}, err
		}
		if !store.CanShellDevserver(*u, d) {
			return shellTarget{}, web.ErrForbidden
		}
		if d.State != store.StateReady || d.InstanceID == "" {
			return shellTarget{}, store.Conflict("not_ready", fmt.Sprintf("Devserver %s is %s; a terminal opens once it is ready.", d.Name, d.State))
		}
		if !sameOrigin(r) {
			return shellTarget{}, errTerminalOrigin
		}
		host, err := s.Host(ctx, d.HostID)
		if err != nil {
			return shellTarget{}, err
		}
		shells, err := interactive(f, "Devserver", d.Name, host.Name, host.Driver)
		return shellTarget{kind: "devserver", name: d.Name, instanceID: d.InstanceID, shells: shells}, err
	}
}

// sameOrigin tells whether a websocket handshake comes from devport's own
// pages. Browsers always send Origin with a websocket; a request without one
// comes from a program, which cannot carry a victim's cookie across sites.
func sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// isWebsocket tells whether the request asks to upgrade to a websocket.
func isWebsocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// terminalSize reads the first size from the query; 24×80 when absent.
func terminalSize(q url.Values) (rows, cols uint16, err error) {
	rows, cols = 24, 80
	for _, p := range []struct {
		key string
		max int
		to  *uint16
	}{{"rows", terminalMaxRows, &rows}, {"cols", terminalMaxCols, &cols}} {
		v := q.Get(p.key)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > p.max {
			return 0, 0, errTerminalSize
		}
		*p.to = uint16(n)
	}
	return rows, cols, nil
}

// Terminals keeps the web terminal's open sessions, so that a shutdown ends
// them and records their end before the store closes.
type Terminals struct {
	mu     sync.Mutex
	closed bool
	open   map[*context.CancelCauseFunc]struct{}
	wg     sync.WaitGroup
}

// NewTerminals returns an empty set of terminal sessions.
func NewTerminals() *Terminals {
	return &Terminals{open: map[*context.CancelCauseFunc]struct{}{}}
}

// errShutdown ends the terminals when the portal stops.
var errShutdown = errors.New("portal shut down")

// add counts a session in; it is refused once Shutdown has begun.
func (t *Terminals) add(cancel *context.CancelCauseFunc) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.open[cancel] = struct{}{}
	t.wg.Add(1)
	return true
}

func (t *Terminals) done(cancel *context.CancelCauseFunc) {
	t.mu.Lock()
	delete(t.open, cancel)
	t.mu.Unlock()
	t.wg.Done()
}

// Shutdown ends every open terminal, telling its browser why, and waits
// until their ends are recorded or ctx ends.
func (t *Terminals) Shutdown(ctx context.Context) error {
	t.mu.Lock()
	t.closed = true
	for cancel := range t.open {
		(*cancel)(errShutdown)
	}
	t.mu.Unlock()
	ended := make(chan struct{})
	go func() { t.wg.Wait(); close(ended) }()
	select {
	case <-ended:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("terminals still open at shutdown: %w", ctx.Err())
	}
}

// terminalSocket upgrades to a websocket bridged to a shell in the target
// that resolve finds (a devserver, for its owner and the people it is shared
// with; a container, for its owner).
func terminalSocket(log *slog.Logger, s *store.Store, terminals *Terminals, resolve func(*http.Request) (shellTarget, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := resolve(r)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		rows, cols, err := terminalSize(r.URL.Query())
		if err == nil && !isWebsocket(r) {
			// Said after the checks, so the page learns why a websocket would be refused.
			err = errTerminalUpgrade
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		// The session outlives the request (the route's timeout must not end
		// it); a shutdown ends it.
		ctx, cancel := context.WithCancelCause(context.WithoutCancel(r.Context()))
		if !terminals.add(&cancel) {
			cancel(nil)
			web.Error(w, r, log, errTerminalShutdown)
			return
		}
		opened := false
		defer func() {
			if !opened {
				cancel(nil)
				terminals.done(&cancel)
			}
		}()
		sess, err := d.shells.OpenSession(ctx, d.instanceID, fleet.SessionSpec{TTY: true, Rows: rows, Cols: cols})
		if err != nil {
			log.Warn("Terminal session refused by the fleet", d.kind, d.name, "error", err)
			web.Error(w, r, log, errTerminalHost)
			return
		}
		// The server's read and write deadlines stay on a hijacked connection.
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
		// OriginPatterns is empty: only same-origin pages (checked above too).
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			_ = sess.Close()
			log.Info("Terminal websocket refused", d.kind, d.name, "error", err)
			return
		}
		c.SetReadLimit(terminalReadLimit)
		who := web.Actor(r)
		if err := auditTerminal(s, who, d, "terminal.session.open", map[string]any{"rows": rows, "cols": cols}); err != nil {
			log.Error("Terminal audit failed", d.kind, d.name, "error", err)
			_ = c.Close(websocket.StatusInternalError, "could not record the session")
			_ = sess.Close()
			return
		}
		opened = true
		log.Info("Terminal opened", d.kind, d.name, "user", who.Name)
		// The handler returns now; the bridge owns the connection.
		go func() {
			defer terminals.done(&cancel)
			defer cancel(nil)
			begun := time.Now()
			code, ended := bridgeTerminal(ctx, log, c, sess)
			took := time.Since(begun).Round(time.Millisecond)
			detail := map[string]any{"ended": ended, "duration": took.String(), "duration_ms": took.Milliseconds()}
			if code >= 0 {
				detail["exit_status"] = code
			}
			if err := auditTerminal(s, who, d, "terminal.session.close", detail); err != nil {
				log.Error("Terminal audit failed", d.kind, d.name, "error", err)
			}
			log.Info("Terminal closed", d.kind, d.name, "user", who.Name, "ended", ended, "exit_status", code, "duration", took)
		}()
	}
}

// auditTerminal records a session's start or end; on a context of its own,
// so that the end of a session cancelled by a shutdown is recorded too.
func auditTerminal(s *store.Store, who store.Actor, d shellTarget, action string, detail map[string]any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.InTx(ctx, func(tx *store.Tx) error {
		return tx.Audit(ctx, who, action, d.kind, d.name, detail)
	})
}

// terminalControl is a control message from the browser.
type terminalControl struct {
	Type string `json:"type"`
	Rows int    `json:"rows"`
	Cols int    `json:"cols"`
}

// bridgeTerminal copies the shell's output to the websocket and the
// browser's input to the shell until either side ends or the portal shuts
// down, then closes both. It returns the shell's exit status (-1 when it did
// not exit by itself) and how the session ended, as the SSH gateway says it.
func bridgeTerminal(ctx context.Context, log *slog.Logger, c *websocket.Conn, sess fleet.Session) (int, string) {
	defer sess.Close()
	outputDone := make(chan struct{})
	go func() {
		defer close(outputDone)
		buf := make([]byte, 32*1024)
		for {
			n, err := sess.Stdout().Read(buf)
			if n > 0 {
				if werr := c.Write(ctx, websocket.MessageBinary, buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	inputDone := make(chan error, 1)
	go func() { inputDone <- terminalInput(ctx, c, sess) }()
	// A browser that vanished without closing (a laptop put to sleep) would
	// hold the shell open forever: pings find out, and end the read above.
	pingCtx, stopPings := context.WithCancel(ctx)
	defer stopPings()
	go func() {
		tick := time.NewTicker(terminalPingInterval)
		defer tick.Stop()
		for {
			select {
			case <-pingCtx.Done():
				return
			case <-tick.C:
				wait, cancel := context.WithTimeout(pingCtx, terminalPingInterval/2)
				err := c.Ping(wait)
				cancel()
				if err != nil && pingCtx.Err() == nil {
					_ = c.CloseNow()
					return
				}
			}
		}
	}()

	shutDown := func() (int, string) {
		_ = c.Close(websocket.StatusGoingAway, "devport is shutting down")
		return -1, "portal shut down"
	}
	select {
	case <-ctx.Done():
		return shutDown()
	case <-outputDone:
		if ctx.Err() != nil {
			return shutDown()
		}
		// The shell ended (or the browser stopped reading): say how.
		wait, cancel := context.WithTimeout(ctx, 5*time.Second)
		code, err := sess.Wait(wait)
		cancel()
		if err != nil {
			_ = c.Close(websocket.StatusInternalError, "the shell ended unexpectedly")
			return -1, "error: " + err.Error()
		}
		_ = c.Close(websocket.StatusNormalClosure, "exit "+strconv.Itoa(code))
		return code, "exited"
	case err := <-inputDone:
		if ctx.Err() != nil {
			return shutDown()
		}
		var refused *terminalRefusal
		switch {
		case errors.As(err, &refused):
			_ = c.Close(websocket.StatusUnsupportedData, refused.reason)
			return -1, "refused: " + refused.reason
		case websocket.CloseStatus(err) == -1 && !errors.Is(err, io.EOF):
			log.Debug("Terminal connection lost", "error", err)
			_ = c.CloseNow()
			return -1, "connection lost"
		default:
			_ = c.Close(websocket.StatusNormalClosure, "")
			return -1, "browser disconnected"
		}
	}
}

// terminalRefusal is a message from the browser that ends the session.
type terminalRefusal struct{ reason string }

func (e *terminalRefusal) Error() string { return e.reason }

// terminalInput copies what the browser sends to the shell and applies its
// control messages, until the browser goes or sends something wrong.
func terminalInput(ctx context.Context, c *websocket.Conn, sess fleet.Session) error {
	stdin := sess.Stdin()
	defer stdin.Close()
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if typ == websocket.MessageBinary {
			if _, err := stdin.Write(data); err != nil {
				return err
			}
			continue
		}
		var m terminalControl
		if err := json.Unmarshal(data, &m); err != nil {
			return &terminalRefusal{"a control message must be JSON"}
		}
		switch m.Type {
		case "resize":
			if m.Rows < 1 || m.Rows > terminalMaxRows || m.Cols < 1 || m.Cols > terminalMaxCols {
				return &terminalRefusal{fmt.Sprintf("resize needs rows 1-%d and cols 1-%d", terminalMaxRows, terminalMaxCols)}
			}
			if err := sess.Resize(ctx, uint16(m.Rows), uint16(m.Cols)); err != nil {
				return err
			}
		default:
			return &terminalRefusal{fmt.Sprintf("unknown control message %q", m.Type)}
		}
	}
}
