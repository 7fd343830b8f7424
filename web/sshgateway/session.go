package sshgateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/store"
)

// Limits on what a client may ask of a session.
const (
	maxCommandBytes = 64 << 10
	maxEnvVars      = 32
	maxEnvValue     = 1024
	// outputGrace is how long the output may keep flowing after the command
	// ended before the exit status is sent.
	outputGrace = 2 * time.Second
)

// acceptedEnv tells whether a client's environment variable is passed on:
// the locale and the terminal's kind, nothing that changes how programs run.
func acceptedEnv(name string) bool {
	switch name {
	case "LANG", "LANGUAGE", "TERM", "COLORTERM", "TZ":
		return true
	}
	return strings.HasPrefix(name, "LC_") && len(name) < 32
}

// Payloads of the session requests (RFC 4254, section 6).
type (
	ptyReq struct {
		Term          string
		Cols, Rows    uint32
		Width, Height uint32
		Modes         string
	}
	windowChange struct {
		Cols, Rows    uint32
		Width, Height uint32
	}
	envReq       struct{ Name, Value string }
	execReq      struct{ Command string }
	subsystemReq struct{ Name string }
	exitStatus   struct{ Status uint32 }
)

// dim turns a terminal dimension into the driver's size, within bounds.
func dim(n uint32) uint16 { return uint16(min(n, 10000)) }

// session is one session channel: the requests that set it up, then the
// command bridged to the devserver or container.
type session struct {
	cn  *conn
	a   access
	ch  ssh.Channel
	id  string
	log func(msg string, args ...any)

	env        []string
	tty        bool
	term       string
	rows, cols uint16

	mu      sync.Mutex
	fs      fleet.Session // set once the shell or command started
	started bool
}

func (cn *conn) session(a access, ch ssh.Channel, reqs <-chan *ssh.Request) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	s := &session{cn: cn, a: a, ch: ch, id: "ssh-" + hex.EncodeToString(b)}
	s.log = func(msg string, args ...any) { cn.log.Info(msg, append(args, "session", s.id)...) }
	// ctx ends when the client closes the channel or the connection, or the
	// server shuts down.
	ctx, cancel := context.WithCancel(cn.s.ctx)
	defer cancel()
	var running sync.WaitGroup
	defer running.Wait()
	for req := range reqs {
		ok := false
		switch req.Type {
		case "env":
			var e envReq
			if ssh.Unmarshal(req.Payload, &e) == nil && acceptedEnv(e.Name) && len(e.Value) <= maxEnvValue &&
				!strings.ContainsRune(e.Value, 0) && !s.isStarted() && len(s.env) < maxEnvVars {
				s.env = append(s.env, e.Name+"="+e.Value)
				ok = true
			}
		case "pty-req":
			var p ptyReq
			if ssh.Unmarshal(req.Payload, &p) == nil && !s.isStarted() {
				s.tty, s.term, s.cols, s.rows = true, p.Term, dim(p.Cols), dim(p.Rows)
				ok = true
			}
		case "window-change":
			var w windowChange
			if ssh.Unmarshal(req.Payload, &w) == nil {
				ok = s.resize(ctx, dim(w.Rows), dim(w.Cols))
			}
		case "shell", "exec":
			var cmd string
			if req.Type == "exec" {
				var e execReq
				if ssh.Unmarshal(req.Payload, &e) != nil || len(e.Command) > maxCommandBytes {
					break
				}
				cmd = e.Command
			}
			s.mu.Lock()
			again := s.started
			s.started = true
			s.mu.Unlock()
			if again {
				break
			}
			ok = true
			_ = req.Reply(true, nil)
			req.WantReply = false
			running.Go(func() {
				s.run(ctx, cmd)
				cancel()
			})
		case "subsystem":
			// Refused as a session that ends at once with a reason: a plain
			// "no" leaves OpenSSH no time to show the reason.
			var sub subsystemReq
			_ = ssh.Unmarshal(req.Payload, &sub)
			s.mu.Lock()
			again := s.started
			s.started = true
			s.mu.Unlock()
			if again {
				break
			}
			s.log("SSH subsystem refused", "subsystem", sub.Name)
			ok = true
			_ = req.Reply(true, nil)
			req.WantReply = false
			s.fail(fmt.Sprintf("the %s subsystem is not available; copy files through a command instead, such as ssh … 'cat > file' < file", strconv.Quote(clip(sub.Name))))
			_ = s.exit(255)
			_ = s.ch.Close()
		default:
			// x11-req, auth-agent-req@openssh.com, signal, break: not offered.
		}
		if req.WantReply {
			_ = req.Reply(ok, nil)
		}
	}
	// The client closed the channel or went away: end what still runs.
	cancel()
}

func (s *session) isStarted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

// resize changes the terminal's size, or remembers it for the command
// about to start.
func (s *session) resize(ctx context.Context, rows, cols uint16) bool {
	s.mu.Lock()
	fs := s.fs
	if fs == nil {
		s.rows, s.cols = rows, cols
	}
	s.mu.Unlock()
	if fs == nil {
		return true
	}
	if err := fs.Resize(ctx, rows, cols); err != nil {
		s.log("SSH resize failed", "error", err)
		return false
	}
	return true
}

// run opens the shell or command in the target, bridges it to the
// channel, and sends its exit status; it audits the session's opening and
// its end.
func (s *session) run(ctx context.Context, cmd string) {
	defer s.ch.Close()
	s.mu.Lock()
	spec := fleet.SessionSpec{TTY: s.tty, Rows: s.rows, Cols: s.cols, Env: s.env}
	s.mu.Unlock()
	if s.tty && s.term != "" {
		spec.Env = append(spec.Env, "TERM="+s.term)
	}
	what := "shell"
	if cmd != "" {
		what = cmd
		spec.Cmd = []string{"sh", "-c", cmd}
	}
	t := s.a.t
	who := store.UserActor(s.a.user, s.cn.remoteAddr, s.id)
	begun := time.Now()
	open := map[string]any{"command": what, "tty": s.tty, "key": s.cn.fingerprint, "host": t.host, "session": s.id}
	if err := s.audit(ctx, who, "ssh.session.open", open); err != nil {
		s.fail("devport could not record this session, so it does not open; try again shortly")
		_ = s.exit(255)
		return
	}
	s.log("SSH session opened", "command", what, "tty", s.tty)

	fs, err := s.a.inter.OpenSession(ctx, t.instanceID, spec)
	if err != nil {
		s.log("SSH session: open failed", "error", err)
		msg := fmt.Sprintf("devport could not open a session in %s %s: %v", t.kind, t.name, err)
		if errors.Is(err, fleet.ErrUnreachable) {
			msg = fmt.Sprintf("%s %s's host %s does not answer just now; try again shortly", t.kind, t.name, t.host)
		}
		s.fail(msg)
		_ = s.exit(255)
		s.closed(who, begun, what, 255, "open failed: "+err.Error())
		return
	}
	defer fs.Close()
	s.mu.Lock()
	s.fs = fs
	rows, cols := s.rows, s.cols
	s.mu.Unlock()
	if s.tty && (rows != spec.Rows || cols != spec.Cols) {
		// The window changed while the session was opening.
		_ = fs.Resize(ctx, rows, cols)
	}

	go func() {
		// What the person types, until they close their input (Ctrl-D
		// without a TTY, the end of a piped file) or the channel ends.
		_, _ = io.Copy(fs.Stdin(), s.ch)
		_ = fs.Stdin().Close()
	}()
	var output sync.WaitGroup
	output.Go(func() { _, _ = io.Copy(s.ch, fs.Stdout()) })
	if e := fs.Stderr(); e != nil {
		output.Go(func() { _, _ = io.Copy(s.ch.Stderr(), e) })
	}
	outputDone := make(chan struct{})
	go func() { output.Wait(); close(outputDone) }()

	code, err := fs.Wait(ctx)
	ended := "exited"
	switch {
	case err == nil:
		select {
		case <-outputDone:
		case <-time.After(outputGrace):
		}
	case ctx.Err() != nil && s.cn.s.ctx.Err() != nil:
		ended, code = "portal shut down", 255
		_ = fs.Close()
		s.fail("the portal is shutting down; this session ends")
	case ctx.Err() != nil:
		ended, code = "client disconnected", -1
	default:
		ended, code = "error: "+err.Error(), 255
		s.fail(fmt.Sprintf("the session in %s %s ended with an error: %v", t.kind, t.name, err))
	}
	if code >= 0 {
		// A client that went away shows as the end of its input, which
		// ends a shell; the status then finds the channel gone.
		if err := s.exit(code); (err != nil || ctx.Err() != nil) && ended == "exited" {
			ended = "client disconnected"
		}
	}
	s.closed(who, begun, what, code, ended)
}

// fail tells the client why on its error stream; the session then ends
// with exit status 255, as OpenSSH's own errors do.
func (s *session) fail(msg string) {
	nl := "\n"
	if s.tty {
		nl = "\r\n"
	}
	_, _ = io.WriteString(s.ch.Stderr(), nl+"devport: "+msg+nl)
}

// exit sends the exit status and the end of the output.
func (s *session) exit(code int) error {
	if _, err := s.ch.SendRequest("exit-status", false, ssh.Marshal(exitStatus{uint32(code)})); err != nil {
		return err
	}
	return s.ch.CloseWrite()
}

// closed audits the end of a session.
func (s *session) closed(who store.Actor, begun time.Time, what string, code int, ended string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	took := time.Since(begun).Round(time.Millisecond)
	detail := map[string]any{"command": what, "ended": ended, "duration": took.String(), "duration_ms": took.Milliseconds(), "session": s.id}
	if code >= 0 {
		detail["exit_status"] = code
	}
	if err := s.audit(ctx, who, "ssh.session.close", detail); err != nil {
		s.cn.log.Error("SSH session: audit of its end failed", "session", s.id, "error", err)
	}
	s.log("SSH session closed", "command", what, "ended", ended, "exit_status", code, "duration", took)
}

func (s *session) audit(ctx context.Context, who store.Actor, action string, detail map[string]any) error {
	return s.cn.s.o.Store.InTx(ctx, func(tx *store.Tx) error {
		return tx.Audit(ctx, who, action, s.a.t.kind, s.a.t.name, detail)
	})
}
