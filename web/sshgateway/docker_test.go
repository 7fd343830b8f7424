package sshgateway_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/fleet/docker"
	"github.com/devport/devport/fleet/docker/dockertest"
	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
)

// dockerDevserver starts a portal whose hosts run on the Docker engine and
// a gateway in front of it, and reserves a devserver for a new person. The
// devserver's container is made and started as the provision job would, and
// the devserver marked ready with it.
func dockerDevserver(t *testing.T) (*gateway, person, string) {
	t.Helper()
	endpoint := dockertest.Require(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	run := "sshgateway-" + hex.EncodeToString(b)
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
	// No jobs: the test provisions the one devserver itself.
	srv := handlertest.New(t, handlertest.Options{Inventory: &inv, NoJobs: true})
	g := serveGateway(t, srv, fleet.New(drv))
	owner := g.person(t, "owner@example.com")
	name := g.reserve(t, owner, "")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := srv.Store.Devserver(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	in, err := drv.Create(ctx, fleet.Spec{Key: "provision:devserver:" + run, Name: d.Name, Host: d.Host, CPUs: 1, MemoryGB: 1})
	if err != nil {
		t.Fatal(err)
	}
	if in, err = drv.Start(ctx, in.ID); err != nil {
		t.Fatal(err)
	}
	err = srv.Store.InTx(ctx, func(tx *store.Tx) error {
		ok, err := tx.MarkReady(ctx, d.ID, in.ID, in.Address)
		if err == nil && !ok {
			err = errors.New("not marked ready")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	g.drv = drv
	return g, owner, name
}

// The OpenSSH client runs a command in a container through the gateway and
// gets its output and exit status.
func TestOpenSSHDocker(t *testing.T) {
	openSSH(t)
	g, owner, name := dockerDevserver(t)
	r := g.ssh(t, owner, name, "echo hello; exit 7", "")
	if r.code != 7 || r.stdout != "hello\n" {
		t.Fatalf("ssh 'echo hello; exit 7' = %d %q, want 7 \"hello\\n\"; stderr:\n%s", r.code, r.stdout, r.stderr)
	}
	r = g.ssh(t, owner, name, `echo "$USER $PWD"; echo oops >&2`, "")
	if r.code != 0 || r.stdout != "dev /home/dev\n" || r.stderr != "oops\n" {
		t.Fatalf("user, directory and stderr = %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	// Piped input reaches the command, and its end ends it.
	r = g.ssh(t, owner, name, "wc -l", "one\ntwo\nthree\n")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "3" {
		t.Fatalf("wc -l = %d %q; stderr:\n%s", r.code, r.stdout, r.stderr)
	}
	// Binary input and output pass byte for byte.
	blob := make([]byte, 1<<20)
	_, _ = rand.Read(blob)
	sum := sha256.Sum256(blob)
	r = g.ssh(t, owner, name, "cat > blob && sha256sum blob && cat blob", string(blob))
	if r.code != 0 || !strings.HasPrefix(r.stdout, hex.EncodeToString(sum[:])+"  blob\n") || !strings.HasSuffix(r.stdout, string(blob)) {
		t.Fatalf("blob through ssh: exit %d, %d bytes out (want %d); stderr:\n%s", r.code, len(r.stdout), len(blob)+len("  blob\n")+64, r.stderr)
	}
	es := g.sshEvents(t, name)
	if len(es) != 8 || detail(t, es[1])["exit_status"] != float64(7) {
		t.Errorf("audit events = %+v", es)
	}
}

// A terminal in a container takes the client's size and its changes.
func TestTerminalDocker(t *testing.T) {
	g, owner, name := dockerDevserver(t)
	c, _, err := g.client(t, name, ssh.PublicKeys(owner.signer))
	if err != nil {
		t.Fatal(err)
	}
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.RequestPty("xterm", 30, 90, ssh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	stdin, _ := sess.StdinPipe()
	stdout, _ := sess.StdoutPipe()
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	out := bufio.NewReader(stdout)
	io.WriteString(stdin, "stty size; echo term=$TERM\n")
	readUntil(t, out, "30 90\r\nterm=xterm\r\n")
	if err := sess.WindowChange(40, 120); err != nil {
		t.Fatal(err)
	}
	// The resize travels beside the typed input, so the shell polls for it.
	io.WriteString(stdin, `for i in $(seq 100); do s=$(stty size); [ "$s" = "40 120" ] && break; sleep 0.1; done; echo "size=$s"`+"\n")
	readUntil(t, out, "size=40 120\r\n")
	io.WriteString(stdin, "exit 3\n")
	var ee *ssh.ExitError
	if err := sess.Wait(); !errors.As(err, &ee) || ee.ExitStatus() != 3 {
		t.Fatalf("wait = %v, want exit status 3", err)
	}
}

// A client that goes away ends the command in the container.
func TestClientDisconnectDocker(t *testing.T) {
	g, owner, name := dockerDevserver(t)
	c, _, err := g.client(t, name, ssh.PublicKeys(owner.signer))
	if err != nil {
		t.Fatal(err)
	}
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	stdout, _ := sess.StdoutPipe()
	if err := sess.Start("echo started; exec sleep 600"); err != nil {
		t.Fatal(err)
	}
	readUntil(t, bufio.NewReader(stdout), "started\n")
	c.Close()
	d, err := g.srv.Store.Devserver(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	handlertest.Eventually(t, 20*time.Second, "the command to end and the session's end to be audited", func() bool {
		es := g.sshEvents(t, name)
		if len(es) != 2 || detail(t, es[1])["ended"] != "client disconnected" {
			return false
		}
		res, err := g.drv.Exec(context.Background(), d.InstanceID, []string{"sh", "-c", "ps -eo args | grep -c '^sleep 600' || true"})
		return err == nil && strings.TrimSpace(res.Output) == "0"
	})
}
