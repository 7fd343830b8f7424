package sshgateway_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
	"github.com/devport/devport/web/sshgateway"
)

// The OpenSSH client runs commands in a devserver through the gateway and
// gets their output and exit status; each session is audited when it opens
// and when it closes.
func TestOpenSSHRunsCommands(t *testing.T) {
	openSSH(t)
	g := newGateway(t)
	owner := g.person(t, "owner@example.com")
	name := g.reserve(t, owner, store.StateReady)

	r := g.ssh(t, owner, name, "exit 3", "")
	if r.code != 3 {
		t.Fatalf("ssh 'exit 3' exited %d, want 3; stderr:\n%s", r.code, r.stderr)
	}
	r = g.ssh(t, owner, name, "echo hello; exit 7", "")
	if r.code != 7 || r.stdout != "hello\n" {
		t.Fatalf("ssh 'echo hello; exit 7' = %d %q, want 7 \"hello\\n\"; stderr:\n%s", r.code, r.stdout, r.stderr)
	}
	// The command runs in the devserver: a file written is there to read.
	if r = g.ssh(t, owner, name, "write notes.txt remembered", ""); r.code != 0 {
		t.Fatalf("write: %d %s", r.code, r.stderr)
	}
	if r = g.ssh(t, owner, name, "cat notes.txt", ""); r.code != 0 || r.stdout != "remembered\n" {
		t.Fatalf("cat notes.txt = %d %q; stderr:\n%s", r.code, r.stdout, r.stderr)
	}
	// A failing command's error output arrives on stderr, and its status.
	r = g.ssh(t, owner, name, "cat missing.txt", "")
	if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "missing.txt: No such file or directory") {
		t.Fatalf("cat missing.txt = %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	// Without a command and without a terminal, the shell reads its input.
	r = g.ssh(t, owner, name, "", "echo piped\nexit 5\n", "-T")
	if r.code != 5 || !strings.Contains(r.stdout, "piped\n") {
		t.Fatalf("piped shell = %d %q; stderr:\n%s", r.code, r.stdout, r.stderr)
	}
	// The end of the input ends the shell, with the last status.
	r = g.ssh(t, owner, name, "", "false\n", "-T")
	if r.code != 1 {
		t.Fatalf("shell ending at EOF after false = %d, want 1; stderr:\n%s", r.code, r.stderr)
	}

	events := g.sshEvents(t, name)
	if len(events) != 14 {
		t.Fatalf("%d ssh audit events, want 14 (open and close of 7 sessions): %+v", len(events), events)
	}
	open, closed := events[0], events[1]
	if open.Action != "ssh.session.open" || closed.Action != "ssh.session.close" {
		t.Fatalf("actions = %s, %s", open.Action, closed.Action)
	}
	u, err := g.srv.Store.UserByEmail(context.Background(), owner.email)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []store.AuditEvent{open, closed} {
		if e.Actor != owner.email || e.ActorID == nil || *e.ActorID != u.ID || !strings.HasPrefix(e.RemoteAddr, "127.0.0.1:") || !strings.HasPrefix(e.RequestID, "ssh-") {
			t.Errorf("event %s: actor %s (%v), from %q, request %q", e.Action, e.Actor, e.ActorID, e.RemoteAddr, e.RequestID)
		}
	}
	od, cd := detail(t, open), detail(t, closed)
	if od["command"] != "exit 3" || od["tty"] != false || od["host"] == "" {
		t.Errorf("open detail = %v", od)
	}
	if fp := ssh.FingerprintSHA256(owner.signer.PublicKey()); od["key"] != fp {
		t.Errorf("open detail key = %v, want %s", od["key"], fp)
	}
	if cd["command"] != "exit 3" || cd["exit_status"] != float64(3) || cd["ended"] != "exited" || cd["duration"] == nil || cd["session"] != od["session"] {
		t.Errorf("close detail = %v (open %v)", cd, od)
	}
	if d := detail(t, events[11]); events[10].Action != "ssh.session.open" || d["command"] != "shell" || d["exit_status"] != float64(5) {
		t.Errorf("piped shell close detail = %v", d)
	}
	// Every fleet session the gateway opened was closed.
	g.rec.mu.Lock()
	for i, s := range g.rec.sessions {
		if !s.closed {
			t.Errorf("fleet session %d (%v) was not closed", i, s.spec.Cmd)
		}
	}
	g.rec.mu.Unlock()
}

// Only the owner and the people a devserver is shared with get in; an admin
// who is neither, a stranger, a key on no profile and a devserver that does
// not exist are refused alike, and a devserver that is not ready says so.
func TestOpenSSHWhoGetsIn(t *testing.T) {
	openSSH(t)
	g := newGateway(t)
	owner := g.person(t, "owner@example.com")
	sharee := g.person(t, "sharee@example.com")
	stranger := g.person(t, "stranger@example.com")
	admin := g.person(t, "admin@example.com", store.RoleAdmin)
	name := g.reserve(t, owner, store.StateReady)
	g.share(t, owner, name, sharee.email)

	if r := g.ssh(t, sharee, name, "echo shared", ""); r.code != 0 || r.stdout != "shared\n" {
		t.Fatalf("sharee: %d %q; stderr:\n%s", r.code, r.stdout, r.stderr)
	}
	// ssh tries a person's keys in turn: one not on the profile, then one
	// that is. They get in, told once about the first.
	other, _ := newKey(t)
	twoKeys := owner
	twoKeys.keyFile = other
	r := g.ssh(t, twoKeys, name, "echo second key", "", "-i", owner.keyFile)
	if r.code != 0 || r.stdout != "second key\n" || strings.Count(r.stderr, "devport:") > 1 {
		t.Fatalf("owner with an unregistered key first: %d %q; stderr:\n%s", r.code, r.stdout, r.stderr)
	}
	refused := func(who string, p person, devserver string) {
		t.Helper()
		r := g.ssh(t, p, devserver, "echo in", "")
		t.Logf("%s is told:\n%s", who, r.stderr)
		if r.code != 255 || r.stdout != "" {
			t.Errorf("%s: exit %d, stdout %q; want refused (255, no output)", who, r.code, r.stdout)
		}
		if !strings.Contains(r.stderr, "Permission denied (publickey)") || !strings.Contains(r.stderr, "may not open devserver") {
			t.Errorf("%s: stderr does not explain the refusal:\n%s", who, r.stderr)
		}
	}
	refused("stranger", stranger, name)
	refused("admin who is neither owner nor sharee", admin, name)
	refused("owner asking for a devserver that does not exist", owner, "nosuch-1")
	nobody := person{email: "nobody", keyFile: filepath.Join(t.TempDir(), "id_ed25519")}
	if err := os.Link(stranger.keyFile, nobody.keyFile); err != nil {
		t.Fatal(err)
	}
	// The stranger's key, now removed from their profile, is on no profile.
	keys, err := g.srv.Store.SSHKeys(context.Background(), mustUser(t, g, stranger.email).ID)
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys %v %v", keys, err)
	}
	if resp, body := g.srv.Do(t, nil, handlertest.Request{Method: "DELETE", Path: "/api/v1/me/keys/" + strconv.FormatInt(keys[0].ID, 10), Token: stranger.token}); resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete key: %d %s", resp.StatusCode, body)
	}
	refused("a key on no profile", nobody, name)

	// Unsharing takes effect on the next connection.
	if resp, body := g.srv.Do(t, nil, handlertest.Request{Method: "DELETE", Path: "/api/v1/devservers/" + name + "/shares/" + sharee.email, Token: owner.token}); resp.StatusCode >= 300 {
		t.Fatalf("unshare: %d %s", resp.StatusCode, body)
	}
	refused("former sharee", sharee, name)

	// A devserver being released is not ready: the owner is told so.
	if resp, body := g.srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + name + "/release", Token: owner.token}); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("release: %d %s", resp.StatusCode, body)
	}
	g.srv.WaitState(t, name, store.StateReleased)
	r = g.ssh(t, owner, name, "echo in", "")
	if r.code != 255 || r.stdout != "" || !strings.Contains(r.stderr, "devserver "+name+" is released, not ready") {
		t.Errorf("released devserver: exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
	}

	// Only the sharee's and the owner's sessions were opened and audited.
	if n := g.rec.count(); n != 2 {
		t.Errorf("%d fleet sessions opened, want 2 (the sharee's and the owner's)", n)
	}
	events := g.sshEvents(t, name)
	if len(events) != 4 || events[0].Actor != sharee.email || events[1].Actor != sharee.email || events[2].Actor != owner.email {
		t.Errorf("ssh audit events = %+v, want the sharee's and the owner's open and close", events)
	}
}

// The sftp subsystem (scp's default too) is refused with a way out.
func TestOpenSSHNoSFTP(t *testing.T) {
	openSSH(t)
	g := newGateway(t)
	owner := g.person(t, "owner@example.com")
	name := g.reserve(t, owner, store.StateReady)
	r := g.ssh(t, owner, name, "sftp", "", "-s")
	t.Logf("ssh -s sftp: %d\n%s", r.code, r.stderr)
	if r.code != 255 || !strings.Contains(r.stderr, `devport: the "sftp" subsystem is not available`) {
		t.Errorf("ssh -s sftp: exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

// A devserver still provisioning refuses sessions with a message that says so.
func TestOpenSSHDevserverNotReady(t *testing.T) {
	openSSH(t)
	g := newGateway(t, handlertest.Options{NoJobs: true})
	owner := g.person(t, "owner@example.com")
	name := g.reserve(t, owner, "")
	r := g.ssh(t, owner, name, "echo in", "")
	t.Logf("the owner is told:\n%s", r.stderr)
	if r.code != 255 || r.stdout != "" || !strings.Contains(r.stderr, "devserver "+name+" is provisioning, not ready: a shell opens once devport shows it ready") {
		t.Errorf("provisioning devserver: exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if n := g.rec.count(); n != 0 {
		t.Errorf("%d fleet sessions opened, want none", n)
	}
	if es := g.sshEvents(t, name); len(es) != 0 {
		t.Errorf("audit events for a refused session: %+v", es)
	}
}

// A terminal session: the pty's size and terminal type reach the devserver,
// a window change resizes it, the shell echoes what is typed, and exit ends
// the session with its status.
func TestTerminalSession(t *testing.T) {
	g := newGateway(t)
	owner := g.person(t, "owner@example.com")
	name := g.reserve(t, owner, store.StateReady)
	c, _, err := g.client(t, name, ssh.PublicKeys(owner.signer))
	if err != nil {
		t.Fatal(err)
	}
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.Setenv("LANG", "C.UTF-8"); err != nil {
		t.Errorf("LANG refused: %v", err)
	}
	if err := sess.Setenv("LD_PRELOAD", "/tmp/evil.so"); err == nil {
		t.Error("LD_PRELOAD accepted")
	}
	if err := sess.RequestPty("xterm-256color", 40, 100, ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
		t.Fatal(err)
	}
	stdin, _ := sess.StdinPipe()
	stdout, _ := sess.StdoutPipe()
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	out := bufio.NewReader(stdout)
	prompt := "dev@" + name + ":~$ "
	readUntil(t, out, prompt)
	spec := g.rec.last(t).spec
	if !spec.TTY || spec.Rows != 40 || spec.Cols != 100 || len(spec.Cmd) != 0 {
		t.Errorf("spec = %+v, want a TTY of 40x100 and a login shell", spec)
	}
	if strings.Join(spec.Env, " ") != "LANG=C.UTF-8 TERM=xterm-256color" {
		t.Errorf("env = %q", spec.Env)
	}

	if err := sess.WindowChange(50, 132); err != nil {
		t.Fatal(err)
	}
	handlertest.Eventually(t, 5*time.Second, "the resize to reach the devserver", func() bool {
		g.rec.mu.Lock()
		defer g.rec.mu.Unlock()
		rs := g.rec.sessions[len(g.rec.sessions)-1].resizes
		return len(rs) == 1 && rs[0] == [2]uint16{50, 132}
	})

	io.WriteString(stdin, "echo hi there\r")
	// The terminal echoes the line, then the answer comes.
	readUntil(t, out, "echo hi there\r\nhi there\r\n"+prompt)
	io.WriteString(stdin, "exit 4\r")
	err = sess.Wait()
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 4 {
		t.Fatalf("wait = %v, want exit status 4", err)
	}
	handlertest.Eventually(t, 5*time.Second, "the session's close to be audited", func() bool {
		es := g.sshEvents(t, name)
		return len(es) == 2 && detail(t, es[1])["exit_status"] == float64(4) && detail(t, es[0])["tty"] == true
	})
}

// A client that goes away mid-session ends the devserver's session, and the
// end is audited as a disconnect.
func TestClientDisconnect(t *testing.T) {
	g := newGateway(t)
	owner := g.person(t, "owner@example.com")
	name := g.reserve(t, owner, store.StateReady)
	c, _, err := g.client(t, name, ssh.PublicKeys(owner.signer))
	if err != nil {
		t.Fatal(err)
	}
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	stdout, _ := sess.StdoutPipe()
	if _, err := sess.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	readUntil(t, bufio.NewReader(stdout), "dev@"+name+":~$ ")
	c.Close()
	handlertest.Eventually(t, 5*time.Second, "the fleet session to close and the end to be audited", func() bool {
		g.rec.mu.Lock()
		closed := len(g.rec.sessions) == 1 && g.rec.sessions[0].closed
		g.rec.mu.Unlock()
		es := g.sshEvents(t, name)
		return closed && len(es) == 2 && detail(t, es[1])["ended"] == "client disconnected"
	})
}

// What the gateway does not do is refused: passwords, keys of unsupported
// types, port forwarding, subsystems such as sftp, a second command on one
// channel.
func TestRefusals(t *testing.T) {
	g := newGateway(t)
	owner := g.person(t, "owner@example.com")
	name := g.reserve(t, owner, store.StateReady)

	if _, _, err := g.client(t, name, ssh.Password("secret")); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("password: %v, want refused", err)
	}
	if _, _, err := g.client(t, name, ssh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) { return nil, nil })); err == nil {
		t.Error("keyboard-interactive accepted")
	}
	// RSA keys of 1024 bits are too weak: the client is told why.
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ws, _ := ssh.NewSignerFromKey(weak)
	_, banners, err := g.client(t, name, ssh.PublicKeys(ws))
	if err == nil {
		t.Fatal("a 1024-bit RSA key was accepted")
	}
	if b := strings.Join(banners, ""); !strings.Contains(b, "is an RSA key of 1024 bits; RSA keys must have at least 2048 bits") {
		t.Errorf("banner = %q", b)
	}

	c, _, err := g.client(t, name, ssh.PublicKeys(owner.signer))
	if err != nil {
		t.Fatal(err)
	}
	// Local forwarding is for ports on the environment (forward_test.go);
	// the simulated fleet has none.
	if _, err := c.Dial("tcp", "127.0.0.1:80"); err == nil || !strings.Contains(err.Error(), "the simulated fleet runs no processes") {
		t.Errorf("local forwarding: %v, want refused", err)
	}
	if _, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
		t.Error("remote forwarding accepted")
	}
	// A subsystem (sftp) ends at once with a reason and exit status 255.
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := ch.SendRequest("subsystem", true, ssh.Marshal(struct{ Name string }{"sftp"})); err != nil || !ok {
		t.Fatalf("subsystem request: %v %v", ok, err)
	}
	status := make(chan uint32, 1)
	go func() {
		for r := range reqs {
			if r.Type == "exit-status" && len(r.Payload) == 4 {
				status <- uint32(r.Payload[0])<<24 | uint32(r.Payload[1])<<16 | uint32(r.Payload[2])<<8 | uint32(r.Payload[3])
			}
		}
		close(status)
	}()
	stderr, _ := io.ReadAll(ch.Stderr())
	if !strings.Contains(string(stderr), `devport: the "sftp" subsystem is not available`) {
		t.Errorf("sftp stderr = %q", stderr)
	}
	if st := <-status; st != 255 {
		t.Errorf("sftp exit status = %d, want 255", st)
	}
	ch.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	sess.Close()
	// The connection still works after the refusals.
	sess, err = c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.Output("echo still here")
	if err != nil || string(out) != "still here\n" {
		t.Errorf("echo after refusals = %q, %v", out, err)
	}
	if n := g.rec.count(); n != 1 {
		t.Errorf("%d fleet sessions, want 1", n)
	}
	// Ten sessions at once on one connection, not eleven.
	for i := range 11 {
		sess, err := c.NewSession()
		if i == 10 {
			if err == nil || !strings.Contains(err.Error(), "at most 10 sessions") {
				t.Errorf("11th session: %v", err)
			}
			break
		}
		if err != nil {
			t.Fatalf("session %d: %v", i+1, err)
		}
		defer sess.Close()
		if _, err := sess.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		if err := sess.Shell(); err != nil {
			t.Fatal(err)
		}
	}
}

// The host key is generated once, private (0600), and the same on every start.
func TestHostKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets", "ssh_host_ed25519_key")
	k1, err := sshgateway.HostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi.Mode(), err)
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Errorf("secrets directory mode %v", di.Mode().Perm())
	}
	k2, err := sshgateway.HostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if k1.PublicKey().Type() != ssh.KeyAlgoED25519 || ssh.FingerprintSHA256(k1.PublicKey()) != ssh.FingerprintSHA256(k2.PublicKey()) {
		t.Errorf("keys differ or are not ed25519: %s %s", ssh.FingerprintSHA256(k1.PublicKey()), ssh.FingerprintSHA256(k2.PublicKey()))
	}
	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sshgateway.HostKey(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("a damaged key file: %v", err)
	}
}

func readUntil(t *testing.T, r *bufio.Reader, want string) {
	t.Helper()
	got := make(chan string, 1)
	var mu sync.Mutex
	var b strings.Builder
	go func() {
		for {
			c, err := r.ReadByte()
			mu.Lock()
			if err == nil {
				b.WriteByte(c)
			}
			s := b.String()
			mu.Unlock()
			if err != nil || strings.HasSuffix(s, want) {
				got <- s
				return
			}
		}
	}()
	select {
	case s := <-got:
		if !strings.HasSuffix(s, want) {
			t.Fatalf("output ended before %q; got %q", want, s)
		}
	case <-time.After(10 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("no %q within 10 s; got %q", want, b.String())
	}
}

func mustUser(t *testing.T, g *gateway, email string) store.User {
	t.Helper()
	u, err := g.srv.Store.UserByEmail(context.Background(), email)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// Shutting the gateway down ends open sessions with a message and exit
// status 255, audits their end, and closes the connections.
func TestShutdownEndsSessions(t *testing.T) {
	g := newGateway(t)
	owner := g.person(t, "owner@example.com")
	name := g.reserve(t, owner, store.StateReady)
	c, _, err := g.client(t, name, ssh.PublicKeys(owner.signer))
	if err != nil {
		t.Fatal(err)
	}
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	stdout, _ := sess.StdoutPipe()
	stderr, _ := sess.StderrPipe()
	if _, err := sess.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	readUntil(t, bufio.NewReader(stdout), "dev@"+name+":~$ ")
	errOut := make(chan string, 1)
	go func() { b, _ := io.ReadAll(stderr); errOut <- string(b) }()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	begun := time.Now()
	if err := g.gw.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if took := time.Since(begun); took > 3*time.Second {
		t.Errorf("shutdown took %s", took)
	}
	var ee *ssh.ExitError
	if err := sess.Wait(); !errors.As(err, &ee) || ee.ExitStatus() != 255 {
		t.Errorf("wait = %v, want exit status 255", err)
	}
	if e := <-errOut; !strings.Contains(e, "devport: the portal is shutting down; this session ends") {
		t.Errorf("stderr = %q", e)
	}
	if err := c.Wait(); err == nil {
		t.Error("the connection stayed open")
	}
	es := g.sshEvents(t, name)
	if len(es) != 2 || detail(t, es[1])["ended"] != "portal shut down" {
		t.Errorf("audit events = %+v", es)
	}
	if _, _, err := g.client(t, name, ssh.PublicKeys(owner.signer)); err == nil {
		t.Error("a new connection was accepted after shutdown")
	}
}
