package sshgateway_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/docker"
	"github.com/devport/devport/fleet/docker/dockertest"
	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
)

// forwardTo opens a direct-tcpip channel (what ssh -L asks for) to host:port
// with the Go client, which lets the test name any host without resolving it.
func forwardTo(c *ssh.Client, host string, port int) (ssh.Channel, error) {
	payload := ssh.Marshal(struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}{host, uint32(port), "127.0.0.1", 40000})
	ch, reqs, err := c.OpenChannel("direct-tcpip", payload)
	if err != nil {
		return nil, err
	}
	go ssh.DiscardRequests(reqs)
	return ch, nil
}

// openFailure returns the reason of a refused channel ("" if it was not
// refused that way).
func openFailure(t *testing.T, err error) (ssh.RejectionReason, string) {
	t.Helper()
	var oe *ssh.OpenChannelError
	if !errors.As(err, &oe) {
		t.Fatalf("channel open error = %v, want a refusal", err)
	}
	return oe.Reason, oe.Message
}

// Forwarding is refused with a reason: to other hosts, where the driver
// cannot dial (the simulated fleet runs no processes), to someone whose
// share was removed since they connected, and for remote, agent and X11
// forwarding; a stranger does not get in at all. Nothing is audited as a
// forward, because none opened.
func TestForwardRefusals(t *testing.T) {
	g := newGateway(t)
	owner := g.person(t, "owner@example.com")
	sharee := g.person(t, "sharee@example.com")
	stranger := g.person(t, "stranger@example.com")
	name := g.reserve(t, owner, store.StateReady)
	g.share(t, owner, name, sharee.email)

	c, _, err := g.client(t, name, ssh.PublicKeys(owner.signer))
	if err != nil {
		t.Fatal(err)
	}
	_, err = forwardTo(c, "127.0.0.1", 8080)
	if reason, msg := openFailure(t, err); reason != ssh.Prohibited || msg != "devserver "+name+" cannot forward ports: the simulated fleet runs no processes, so nothing can listen on port 8080 in "+name+": not supported by this driver" {
		t.Errorf("forward on the simulated fleet: %v %q", reason, msg)
	}
	for _, h := range []string{"10.0.0.1", "example.com", "127.0.0.2", "169.254.169.254"} {
		_, err = forwardTo(c, h, 80)
		if reason, msg := openFailure(t, err); reason != ssh.Prohibited || msg != "devport forwards only to ports on the environment itself (localhost, 127.0.0.1 or ::1), not to \""+h+"\"" {
			t.Errorf("forward to %s: %v %q", h, reason, msg)
		}
	}
	if _, err = forwardTo(c, "localhost", 0); err == nil {
		t.Error("forward to port 0 opened")
	}
	if _, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
		t.Error("remote forwarding (tcpip-forward) accepted")
	}
	for _, kind := range []string{"x11", "auth-agent@openssh.com", "forwarded-tcpip", "direct-streamlocal@openssh.com"} {
		if _, _, err := c.OpenChannel(kind, nil); err == nil {
			t.Errorf("%s channel opened", kind)
		} else if reason, msg := openFailure(t, err); reason != ssh.Prohibited || !strings.Contains(msg, kind+" channels are not allowed") {
			t.Errorf("%s channel: %v %q", kind, reason, msg)
		}
	}

	// Each forward is authorized when it opens: unsharing takes effect on a
	// connection made before.
	sc, _, err := g.client(t, name, ssh.PublicKeys(sharee.signer))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := forwardTo(sc, "127.0.0.1", 8080); !strings.Contains(err.Error(), "cannot forward ports") {
		t.Errorf("sharee's forward: %v, want the driver's refusal", err)
	}
	if resp, body := g.srv.Do(t, nil, handlertest.Request{Method: "DELETE", Path: "/api/v1/devservers/" + name + "/shares/" + sharee.email, Token: owner.token}); resp.StatusCode >= 300 {
		t.Fatalf("unshare: %d %s", resp.StatusCode, body)
	}
	_, err = forwardTo(sc, "127.0.0.1", 8080)
	if reason, msg := openFailure(t, err); reason != ssh.Prohibited || !strings.Contains(msg, "you may no longer open devserver "+name) {
		t.Errorf("former sharee's forward: %v %q", reason, msg)
	}
	// A stranger does not get a connection to forward on.
	if _, _, err := g.client(t, name, ssh.PublicKeys(stranger.signer)); err == nil {
		t.Error("a stranger connected")
	}

	// A container says the same about itself.
	ct := g.requestContainer(t, owner, store.ContainerReady)
	cc, _, err := g.client(t, ct.Name, ssh.PublicKeys(owner.signer))
	if err != nil {
		t.Fatal(err)
	}
	_, err = forwardTo(cc, "::1", 3000)
	if reason, msg := openFailure(t, err); reason != ssh.Prohibited || !strings.HasPrefix(msg, "container "+ct.Name+" cannot forward ports: the simulated fleet runs no processes") {
		t.Errorf("forward in a container: %v %q", reason, msg)
	}
	if es := g.sshEvents(t, name); len(es) != 0 {
		t.Errorf("audit events after refused forwards: %+v", es)
	}
	if es := g.containerEvents(t, ct.Name); len(es) != 0 {
		t.Errorf("container audit events after refused forwards: %+v", es)
	}
}

// echoServer and greeter are Perl programs (perl-base is in the image)
// listening on 127.0.0.1:$ARGV[0]: one sends back what it is sent, the
// other says hello and closes.
const (
	echoServer = `use IO::Socket::INET;
my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0], Listen => 5, ReuseAddr => 1) or die "listen: $!";
while (my $c = $s->accept) { while (sysread($c, my $b, 65536)) { syswrite($c, $b) } close $c }`
	greeter = `use IO::Socket::INET;
my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0], Listen => 5, ReuseAddr => 1) or die "listen: $!";
while (my $c = $s->accept) { print $c "hello from port $ARGV[0]\n"; close $c }`
)

// listenIn starts a Perl server in the devserver's container and waits
// until its port takes connections.
func (g *gateway) listenIn(t *testing.T, instanceID, program string, port int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := strconv.Itoa(port)
	res, err := g.drv.Exec(ctx, instanceID, []string{"sh", "-c", `nohup perl -e "$1" "$2" >/tmp/listener-$2.log 2>&1 &`, "sh", program, p})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("start listener: %v %+v", err, res)
	}
	handlertest.Eventually(t, 20*time.Second, "port "+p+" to listen in the container", func() bool {
		res, err := g.drv.Exec(ctx, instanceID, []string{"bash", "-c", `exec 3<>/dev/tcp/127.0.0.1/$1`, "bash", p})
		return err == nil && res.ExitCode == 0
	})
}

// freePort returns a local TCP port nobody listens on just now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// lockedBuffer is a buffer written by a process and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The OpenSSH client forwards local ports to ports on a Docker-backed
// devserver's loopback (ssh -N -L, as VS Code Remote-SSH does): bytes pass
// both ways through the gateway and the driver, a port where nothing
// listens and another host are refused with a reason ssh shows, and each
// forward is audited on the devserver with its port and bytes.
func TestOpenSSHForwardDocker(t *testing.T) {
	bin := openSSH(t)
	g, owner, name := dockerDevserver(t)
	d, err := g.srv.Store.Devserver(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	g.listenIn(t, d.InstanceID, greeter, 8080)
	g.listenIn(t, d.InstanceID, echoServer, 8082)

	greet, echo, refused, other := freePort(t), freePort(t), freePort(t), freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin,
		"-F", "/dev/null", "-p", g.port, "-i", owner.keyFile,
		"-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+g.knownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=10", "-o", "ExitOnForwardFailure=yes",
		"-N",
		"-L", strconv.Itoa(greet)+":127.0.0.1:8080",
		"-L", strconv.Itoa(echo)+":localhost:8082",
		"-L", strconv.Itoa(refused)+":127.0.0.1:7999",
		"-L", strconv.Itoa(other)+":10.0.0.1:80",
		name+"@127.0.0.1")
	cmd.Env = []string{"HOME=" + g.home, "PATH=" + os.Getenv("PATH"), "LANG=C.UTF-8"}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	}()
	dial := func(port int) net.Conn {
		t.Helper()
		var c net.Conn
		handlertest.Eventually(t, 20*time.Second, "ssh to listen on local port "+strconv.Itoa(port), func() bool {
			select {
			case err := <-exited:
				t.Fatalf("ssh exited: %v\n%s", err, stderr.String())
			default:
			}
			var err error
			c, err = net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
			return err == nil
		})
		_ = c.SetDeadline(time.Now().Add(time.Minute))
		return c
	}

	// The greeter speaks and closes: its words arrive and the forward ends.
	c := dial(greet)
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || string(got) != "hello from port 8080\n" {
		t.Fatalf("through the forward to 8080: %q, %v; ssh said:\n%s", got, err, stderr.String())
	}

	// 256 KiB of random bytes go to the echo server and come back whole.
	c = dial(echo)
	blob := make([]byte, 256<<10)
	_, _ = rand.Read(blob)
	go func() { _, _ = c.Write(blob) }()
	back := make([]byte, len(blob))
	if _, err := io.ReadFull(c, back); err != nil || !bytes.Equal(back, blob) {
		t.Fatalf("echo through the forward: %v, equal %v; ssh said:\n%s", err, bytes.Equal(back, blob), stderr.String())
	}
	c.Close()

	// Nothing listens on 7999, and 10.0.0.1 is not the devserver: ssh
	// closes the local connections and shows devport's reasons.
	for _, p := range []int{refused, other} {
		c = dial(p)
		if n, _ := io.Copy(io.Discard, c); n != 0 {
			t.Errorf("refused forward on local port %d gave %d bytes", p, n)
		}
		c.Close()
	}
	handlertest.Eventually(t, 20*time.Second, "ssh to show why the forwards were refused", func() bool {
		s := stderr.String()
		return strings.Contains(s, "nothing listens on port 7999 in devserver "+name) &&
			strings.Contains(s, "devport forwards only to ports on the environment itself")
	})
	t.Logf("ssh said:\n%s", stderr.String())

	// Two forwards opened and closed, audited with their ports and bytes.
	var es []store.AuditEvent
	deadline := time.Now().Add(20 * time.Second)
	for es = g.sshEvents(t, name); len(es) < 4 && time.Now().Before(deadline); es = g.sshEvents(t, name) {
		time.Sleep(50 * time.Millisecond)
	}
	if len(es) != 4 {
		t.Fatalf("audit events = %+v, want two forwards opened and closed", es)
	}
	// Each forward's open precedes its close (the two may interleave).
	byPort := map[float64][]map[string]any{}
	for _, e := range es {
		m := detail(t, e)
		m["action"] = e.Action
		if e.Actor != owner.email {
			t.Errorf("%s by %s, want %s", e.Action, e.Actor, owner.email)
		}
		byPort[m["port"].(float64)] = append(byPort[m["port"].(float64)], m)
	}
	for port, n := range map[float64]float64{8080: float64(len("hello from port 8080\n")), 8082: float64(len(blob))} {
		ms := byPort[port]
		if len(ms) != 2 || ms[0]["action"] != "ssh.forward.open" || ms[1]["action"] != "ssh.forward.close" || ms[0]["forward"] != ms[1]["forward"] {
			t.Errorf("events of port %v = %v, want its open and its close", port, ms)
			continue
		}
		to := 0.0
		if port == 8082 {
			to = n
		}
		if c := ms[1]; c["bytes_to_environment"] != to || c["bytes_from_environment"] != n || c["duration"] == nil || c["ended"] != "closed by the environment" {
			t.Errorf("close of port %v = %v, want %v bytes to and %v from the devserver, ended by it", port, c, to, n)
		}
	}
	// No copier is left in the container once the forwards closed.
	handlertest.Eventually(t, 20*time.Second, "the forwards' processes to end in the container", func() bool {
		res, err := g.drv.Exec(context.Background(), d.InstanceID, []string{"sh", "-c", "ps -u dev -o comm= | grep -c '^cat$' || true"})
		return err == nil && strings.TrimSpace(res.Output) == "0"
	})
}

// dockerContainer starts a Docker-backed portal and gateway (as
// dockerDevserver does) and gives a new person an On Demand container whose
// Docker container is made and started here, then marked ready.
func dockerContainer(t *testing.T) (*gateway, person, store.Container) {
	t.Helper()
	endpoint := dockertest.Require(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	run := "sshgateway-fwd-" + hex.EncodeToString(b)
	dockertest.Cleanup(t, endpoint, "devport.test", run)
	inv := store.Demo("docker")
	engines := map[string]string{}
	for _, h := range inv.Hosts {
		engines[h.Name] = endpoint
	}
	drv, err := docker.New(docker.Options{Engines: engines, Image: dockertest.Image, Labels: map[string]string{"devport.test": run}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drv.Close() })
	srv := handlertest.New(t, handlertest.Options{Inventory: &inv, NoJobs: true})
	g := serveGateway(t, srv, fleet.New(drv))
	g.drv = drv
	owner := g.person(t, "owner@example.com")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	u := mustUser(t, g, owner.email)
	var c store.Container
	err = srv.Store.InTx(ctx, func(tx *store.Tx) error {
		c, err = tx.RequestContainer(ctx, store.UserActor(u, "127.0.0.1", "test"), store.ContainerRequest{Owner: u, Type: "web", Profile: "small"})
		return err
	})
	if err != nil {
		t.Fatalf("request container: %v", err)
	}
	in, err := drv.Create(ctx, fleet.Spec{Key: "provision:container:" + run, Name: c.Name, Host: c.Host, CPUs: 1, MemoryGB: 1})
	if err != nil {
		t.Fatal(err)
	}
	if in, err = drv.Start(ctx, in.ID); err != nil {
		t.Fatal(err)
	}
	if ok, err := srv.Store.SetContainerInstance(ctx, c.ID, in.ID); err != nil || !ok {
		t.Fatalf("set instance: %v %v", ok, err)
	}
	err = srv.Store.InTx(ctx, func(tx *store.Tx) error {
		ok, err := tx.MarkContainerReady(ctx, c.ID, in.Address)
		if err == nil && !ok {
			err = errors.New("not marked ready")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if c, err = srv.Store.Container(ctx, c.Name); err != nil {
		t.Fatal(err)
	}
	return g, owner, c
}

// A forward reaches a port in a Docker-backed On Demand container too, is
// audited on the container, and ends when the portal shuts down, audited
// so.
func TestForwardContainerDocker(t *testing.T) {
	g, owner, c := dockerContainer(t)
	g.listenIn(t, c.InstanceID, greeter, 8080)
	g.listenIn(t, c.InstanceID, echoServer, 8082)
	cl, _, err := g.client(t, c.Name, ssh.PublicKeys(owner.signer))
	if err != nil {
		t.Fatal(err)
	}
	ch, err := forwardTo(cl, "127.0.0.1", 8080)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(ch)
	if err != nil || string(got) != "hello from port 8080\n" {
		t.Fatalf("through the forward: %q, %v", got, err)
	}
	_, err = forwardTo(cl, "127.0.0.1", 7999)
	if reason, msg := openFailure(t, err); reason != ssh.ConnectionFailed || msg != "nothing listens on port 7999 in container "+c.Name {
		t.Errorf("forward where nothing listens: %v %q", reason, msg)
	}

	// A forward left open ends when the gateway shuts down.
	ch, err = forwardTo(cl, "::1", 8082)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 5)
	if _, err := io.ReadFull(ch, line); err != nil || string(line) != "ping\n" {
		t.Fatalf("echo: %q %v", line, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	begun := time.Now()
	if err := g.gw.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a forward open: %v", err)
	}
	if took := time.Since(begun); took > 5*time.Second {
		t.Errorf("shutdown took %v with a forward open", took)
	}
	if _, err := io.ReadAll(ch); err != nil {
		t.Logf("read after shutdown: %v", err)
	}
	es := g.containerEvents(t, c.Name)
	if len(es) != 4 {
		t.Fatalf("container audit events = %+v, want two forwards opened and closed", es)
	}
	last := detail(t, es[3])
	if es[3].Action != "ssh.forward.close" || last["port"] != float64(8082) || last["ended"] != "portal shut down" ||
		last["bytes_to_environment"] != float64(5) || last["bytes_from_environment"] != float64(5) {
		t.Errorf("last event = %s %v, want the 8082 forward closed by the shutdown", es[3].Action, last)
	}
	if open, closed := detail(t, es[0]), detail(t, es[1]); es[0].Action != "ssh.forward.open" || es[1].Action != "ssh.forward.close" ||
		open["port"] != float64(8080) || open["to_host"] != "127.0.0.1" || open["forward"] != closed["forward"] || closed["ended"] != "closed by the environment" {
		t.Errorf("first forward's events = %+v", es[:2])
	}
	if open := detail(t, es[2]); es[2].Action != "ssh.forward.open" || open["to_host"] != "::1" || es[2].Actor != owner.email {
		t.Errorf("second forward's open = %+v", es[2])
	}
}
