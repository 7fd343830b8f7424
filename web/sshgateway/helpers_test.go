package sshgateway_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/sim"
	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
	"github.com/devport/devport/web/sshgateway"
)

// openSSH returns the path of the OpenSSH client, skipping the test loudly
// without it (failing under DEVPORT_REQUIRE_ALL=1).
func openSSH(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("ssh")
	if err == nil {
		return path
	}
	if os.Getenv("DEVPORT_REQUIRE_ALL") == "1" {
		t.Fatal("SSH GATEWAY TEST FAILS: the OpenSSH client (ssh) is not installed and DEVPORT_REQUIRE_ALL=1 forbids skipping; " +
			"install Debian's openssh-client package (apt-get install openssh-client)")
	}
	t.Skip("SKIPPING OPENSSH TEST: the OpenSSH client (ssh) is not installed; install Debian's openssh-client package " +
		"(apt-get install openssh-client); DEVPORT_REQUIRE_ALL=1 turns this into a failure")
	return ""
}

// recorder is the simulated fleet with the gateway's sessions recorded: the
// spec each was opened with, the sizes it was given, whether it was closed.
type recorder struct {
	*sim.Driver
	mu       sync.Mutex
	sessions []*recSession
}

type recSession struct {
	fleet.Session
	r       *recorder
	spec    fleet.SessionSpec
	resizes [][2]uint16
	closed  bool
}

func (r *recorder) OpenSession(ctx context.Context, id string, spec fleet.SessionSpec) (fleet.Session, error) {
	fs, err := r.Driver.OpenSession(ctx, id, spec)
	if err != nil {
		return nil, err
	}
	rs := &recSession{Session: fs, r: r, spec: spec}
	r.mu.Lock()
	r.sessions = append(r.sessions, rs)
	r.mu.Unlock()
	return rs, nil
}

func (s *recSession) Resize(ctx context.Context, rows, cols uint16) error {
	s.r.mu.Lock()
	s.resizes = append(s.resizes, [2]uint16{rows, cols})
	s.r.mu.Unlock()
	return s.Session.Resize(ctx, rows, cols)
}

func (s *recSession) Close() error {
	s.r.mu.Lock()
	s.closed = true
	s.r.mu.Unlock()
	return s.Session.Close()
}

// last returns a copy of the last session opened.
func (r *recorder) last(t *testing.T) recSession {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sessions) == 0 {
		t.Fatal("no session was opened in the fleet")
	}
	return *r.sessions[len(r.sessions)-1]
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

// gateway is a portal (handlertest) with an SSH gateway in front of its
// simulated fleet.
type gateway struct {
	srv        *handlertest.Server
	gw         *sshgateway.Server
	rec        *recorder
	addr, port string
	hostKey    ssh.PublicKey
	knownHosts string
	home       string
	drv        fleet.Driver // the Docker driver, in Docker tests
}

func newGateway(t *testing.T, opts ...handlertest.Options) *gateway {
	t.Helper()
	srv := handlertest.New(t, opts...)
	rec := &recorder{Driver: srv.Sim}
	g := serveGateway(t, srv, fleet.New(rec))
	g.rec = rec
	return g
}

// serveGateway starts a gateway for the portal srv in front of the fleet fl.
func serveGateway(t *testing.T, srv *handlertest.Server, fl *fleet.Fleet) *gateway {
	t.Helper()
	dir := t.TempDir()
	signer, err := sshgateway.HostKey(filepath.Join(dir, "secrets", "ssh_host_ed25519_key"))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := sshgateway.New(sshgateway.Options{Store: srv.Store, Fleet: fl, HostKey: signer})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- gw.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := gw.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, sshgateway.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	g := &gateway{srv: srv, gw: gw, addr: ln.Addr().String(), port: port, hostKey: signer.PublicKey(), home: t.TempDir()}
	g.knownHosts = filepath.Join(dir, "known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%s %s", port, ssh.MarshalAuthorizedKey(signer.PublicKey()))
	if err := os.WriteFile(g.knownHosts, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return g
}

// person is a devport user with an SSH key on their profile.
type person struct {
	email   string
	token   string
	keyFile string
	signer  ssh.Signer
}

// person creates a user with roles and an ed25519 key (the private key in an
// OpenSSH file, mode 0600), registered on the profile through the API.
func (g *gateway) person(t *testing.T, email string, roles ...string) person {
	t.Helper()
	p := person{email: email, token: g.srv.Token(t, email, roles...)}
	p.keyFile, p.signer = newKey(t)
	g.addKey(t, p, p.signer.PublicKey())
	return p
}

// newKey makes an ed25519 key, its private half in an OpenSSH file (0600).
func newKey(t *testing.T) (string, ssh.Signer) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return path, signer
}

func (g *gateway) addKey(t *testing.T, p person, pub ssh.PublicKey) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"name": "laptop", "public_key": string(ssh.MarshalAuthorizedKey(pub))})
	resp, out := g.srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/me/keys", Token: p.token, Body: string(body)})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("add key for %s: %d %s", p.email, resp.StatusCode, out)
	}
}

// reserve reserves a devserver for p and, unless wait is empty, waits for
// that state.
func (g *gateway) reserve(t *testing.T, p person, wait string) string {
	t.Helper()
	resp, body := g.srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: p.token, Body: `{"flavor":"vm.small"}`})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("reserve: %d %s", resp.StatusCode, body)
	}
	var d struct{ Name string }
	if err := json.Unmarshal([]byte(body), &d); err != nil || d.Name == "" {
		t.Fatalf("reserve: %v %s", err, body)
	}
	if wait != "" {
		g.srv.WaitState(t, d.Name, wait)
	}
	return d.Name
}

func (g *gateway) share(t *testing.T, owner person, name, email string) {
	t.Helper()
	resp, body := g.srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + name + "/shares", Token: owner.token, Body: `{"email":"` + email + `"}`})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("share: %d %s", resp.StatusCode, body)
	}
}

// result is what the OpenSSH client did.
type result struct {
	stdout, stderr string
	code           int
}

// ssh runs the OpenSSH client as p against devserver name: the remote
// command (none: a shell) with stdin, and extra client options.
func (g *gateway) ssh(t *testing.T, p person, name, command, stdin string, opts ...string) result {
	t.Helper()
	bin := openSSH(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := []string{
		"-F", "/dev/null", "-p", g.port, "-i", p.keyFile,
		"-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + g.knownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=10",
	}
	args = append(args, opts...)
	args = append(args, name+"@127.0.0.1")
	if command != "" {
		args = append(args, command)
	}
	return g.runSSH(t, exec.CommandContext(ctx, bin, args...), stdin)
}

func (g *gateway) runSSH(t *testing.T, cmd *exec.Cmd, stdin string) result {
	t.Helper()
	cmd.Env = []string{"HOME=" + g.home, "PATH=" + os.Getenv("PATH"), "LANG=C.UTF-8"}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("ssh: %v\n%s", err, errOut.String())
	}
	return r
}

// sshEvents returns the SSH audit events about a devserver.
func (g *gateway) sshEvents(t *testing.T, name string) []store.AuditEvent {
	t.Helper()
	es, err := g.srv.Store.AuditEvents(context.Background(), "devserver", name)
	if err != nil {
		t.Fatal(err)
	}
	var out []store.AuditEvent
	for _, e := range es {
		if strings.HasPrefix(e.Action, "ssh.") {
			out = append(out, e)
		}
	}
	return out
}

func detail(t *testing.T, e store.AuditEvent) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(e.Detail), &m); err != nil {
		t.Fatalf("detail %q: %v", e.Detail, err)
	}
	return m
}

// client connects with the Go SSH client as p (nil signer: no key).
func (g *gateway) client(t *testing.T, name string, auth ...ssh.AuthMethod) (*ssh.Client, []string, error) {
	t.Helper()
	var mu sync.Mutex
	var banners []string
	c, err := ssh.Dial("tcp", g.addr, &ssh.ClientConfig{
		User:            name,
		Auth:            auth,
		HostKeyCallback: ssh.FixedHostKey(g.hostKey),
		BannerCallback: func(m string) error {
			mu.Lock()
			banners = append(banners, m)
			mu.Unlock()
			return nil
		},
		Timeout: 10 * time.Second,
	})
	if c != nil {
		t.Cleanup(func() { c.Close() })
	}
	mu.Lock()
	defer mu.Unlock()
	return c, banners, err
}
