package sshgateway_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
)

// requestContainer requests a web container for p as the request handler
// does (the request and its jobs in one transaction) and, unless wait is
// empty, waits for that state.
func (g *gateway) requestContainer(t *testing.T, p person, wait string) store.Container {
	t.Helper()
	ctx := context.Background()
	u := mustUser(t, g, p.email)
	var c store.Container
	err := g.srv.Store.InTx(ctx, func(tx *store.Tx) error {
		var err error
		c, err = tx.RequestContainer(ctx, store.UserActor(u, "127.0.0.1", "test"), store.ContainerRequest{Owner: u, Type: "web", Profile: "medium"})
		if err != nil {
			return err
		}
		for _, a := range jobs.ContainerWork(c) {
			if err := g.srv.Runner.Enqueue(ctx, tx, a); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("request container: %v", err)
	}
	if wait != "" {
		c = g.waitContainer(t, c.Name, wait)
	}
	return c
}

func (g *gateway) waitContainer(t *testing.T, name, state string) store.Container {
	t.Helper()
	var c store.Container
	handlertest.Eventually(t, 20*time.Second, "container "+name+" to be "+state, func() bool {
		var err error
		c, err = g.srv.Store.Container(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		return c.State == state
	})
	return c
}

// containerEvents returns the SSH audit events about a container.
func (g *gateway) containerEvents(t *testing.T, name string) []store.AuditEvent {
	t.Helper()
	es, err := g.srv.Store.AuditEvents(context.Background(), "container", name)
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

// The owner of an On Demand container opens it by its ID through the
// gateway: commands run in the container (its stack manifest is there), a
// terminal shows its prompt, and the sessions are audited on the container.
func TestOpenSSHContainer(t *testing.T) {
	openSSH(t)
	g := newGateway(t)
	owner := g.person(t, "owner@example.com")
	c := g.requestContainer(t, owner, store.ContainerReady)
	if !store.IsContainerName(c.Name) {
		t.Fatalf("container ID %q does not have a container's shape", c.Name)
	}

	r := g.ssh(t, owner, c.Name, "cat "+jobs.StackManifestPath, "")
	if r.code != 0 {
		t.Fatalf("cat %s = %d %q; stderr:\n%s", jobs.StackManifestPath, r.code, r.stdout, r.stderr)
	}
	var manifest map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &manifest); err != nil || manifest["type"] != "web" {
		t.Fatalf("stack manifest = %q (%v), want the web type", r.stdout, err)
	}
	if r = g.ssh(t, owner, c.Name, "echo in the container; exit 6", ""); r.code != 6 || r.stdout != "in the container\n" {
		t.Fatalf("echo; exit 6 = %d %q; stderr:\n%s", r.code, r.stdout, r.stderr)
	}
	// The session ran in the container's instance, on its host's driver.
	if spec := g.rec.last(t).spec; strings.Join(spec.Cmd, " ") != "sh -c echo in the container; exit 6" {
		t.Errorf("fleet session command = %q", spec.Cmd)
	}

	// A terminal with the Go client: the prompt names the container.
	cl, _, err := g.client(t, c.Name, ssh.PublicKeys(owner.signer))
	if err != nil {
		t.Fatal(err)
	}
	sess, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.Output("ls .devport")
	if err != nil || !strings.Contains(string(out), "stack.json") {
		t.Errorf("ls .devport = %q, %v", out, err)
	}

	es := g.containerEvents(t, c.Name)
	if len(es) != 6 {
		t.Fatalf("%d ssh audit events on the container, want 6 (open and close of 3 sessions): %+v", len(es), es)
	}
	if es[0].Action != "ssh.session.open" || es[0].Actor != owner.email || es[0].ObjectType != "container" || es[0].ObjectID != c.Name {
		t.Errorf("first event = %+v", es[0])
	}
	if d := detail(t, es[0]); d["host"] != c.Host || d["command"] != "cat "+jobs.StackManifestPath {
		t.Errorf("open detail = %v, want host %s", d, c.Host)
	}
	if d := detail(t, es[3]); d["exit_status"] != float64(6) {
		t.Errorf("close detail = %v, want exit status 6", d)
	}
	if es := g.sshEvents(t, c.Name); len(es) != 0 {
		t.Errorf("container sessions audited as a devserver's: %+v", es)
	}
}

// Only the owner opens a container: a stranger, an admin who is not the
// owner, and anyone asking for a container that does not exist are told
// the same thing; a container that is ending or ended says so.
func TestOpenSSHContainerWhoGetsIn(t *testing.T) {
	openSSH(t)
	g := newGateway(t)
	owner := g.person(t, "owner@example.com")
	stranger := g.person(t, "stranger@example.com")
	admin := g.person(t, "admin@example.com", store.RoleAdmin)
	c := g.requestContainer(t, owner, store.ContainerReady)
	// A container of the stranger's own does not let them into the owner's.
	g.requestContainer(t, stranger, store.ContainerReady)

	refusal := func(who string, p person, name string) string {
		t.Helper()
		r := g.ssh(t, p, name, "echo in", "")
		t.Logf("%s is told:\n%s", who, r.stderr)
		if r.code != 255 || r.stdout != "" {
			t.Errorf("%s: exit %d, stdout %q; want refused (255, no output)", who, r.code, r.stdout)
		}
		if !strings.Contains(r.stderr, "Permission denied (publickey)") || !strings.Contains(r.stderr, "may not open container") || strings.Contains(r.stderr, "devserver") {
			t.Errorf("%s: stderr does not explain the refusal in a container's words:\n%s", who, r.stderr)
		}
		// The message, with the name asked for taken out, is the same for
		// everyone: it does not tell whether the container exists.
		msg := strings.ReplaceAll(r.stderr, name, "NAME")
		return msg[strings.Index(msg, "devport:"):strings.Index(msg, "Permission denied")]
	}
	unknown := "od" + strings.Repeat("a", 8)
	if unknown == c.Name {
		unknown = "od" + strings.Repeat("b", 8)
	}
	// Fingerprints differ between people; compare what follows them.
	tail := func(s string) string { return s[strings.Index(s, " may not open"):] }
	want := tail(refusal("the owner asking for a container that does not exist", owner, unknown))
	for _, p := range []struct {
		who string
		p   person
	}{{"a stranger", stranger}, {"an admin who is not the owner", admin}} {
		if got := tail(refusal(p.who, p.p, c.Name)); got != want {
			t.Errorf("%s is told\n%s\nbut someone asking for an unknown container\n%s", p.who, got, want)
		}
	}
	if got := tail(refusal("a stranger asking for an unknown container", stranger, unknown)); got != want {
		t.Errorf("stranger asking for an unknown container: %s, want %s", got, want)
	}
	if n := g.rec.count(); n != 0 {
		t.Errorf("%d fleet sessions opened for refused people, want none", n)
	}
	if es := g.containerEvents(t, c.Name); len(es) != 0 {
		t.Errorf("audit events for refused sessions: %+v", es)
	}

	// The owner gets in.
	if r := g.ssh(t, owner, c.Name, "echo mine", ""); r.code != 0 || r.stdout != "mine\n" {
		t.Fatalf("owner: %d %q; stderr:\n%s", r.code, r.stdout, r.stderr)
	}

	// Ending: the container's end has begun (its destroy job not yet run).
	ctx := context.Background()
	u := mustUser(t, g, owner.email)
	err := g.srv.Store.InTx(ctx, func(tx *store.Tx) error {
		_, _, err := tx.EndContainer(ctx, store.UserActor(u, "127.0.0.1", "test"), c, store.EndByOwner)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	r := g.ssh(t, owner, c.Name, "echo in", "")
	t.Logf("the owner of an ending container is told:\n%s", r.stderr)
	if r.code != 255 || r.stdout != "" || !strings.Contains(r.stderr, "container "+c.Name+" is ending (ended by "+owner.email+") and opens no more shells; request a new container") {
		t.Errorf("ending container: exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
	}
	// Ended: the fleet destroyed it.
	err = g.srv.Store.InTx(ctx, func(tx *store.Tx) error {
		return g.srv.Runner.Enqueue(ctx, tx, jobs.EndContainerArgs{ContainerID: c.ID})
	})
	if err != nil {
		t.Fatal(err)
	}
	g.waitContainer(t, c.Name, store.ContainerEnded)
	r = g.ssh(t, owner, c.Name, "echo in", "")
	t.Logf("the owner of an ended container is told:\n%s", r.stderr)
	if r.code != 255 || r.stdout != "" || !strings.Contains(r.stderr, "container "+c.Name+" is ended (ended by "+owner.email+") and opens no more shells; request a new container") {
		t.Errorf("ended container: exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if n := g.rec.count(); n != 1 {
		t.Errorf("%d fleet sessions opened, want 1 (the owner's while it was ready)", n)
	}
	if es := g.containerEvents(t, c.Name); len(es) != 2 || es[0].Actor != owner.email {
		t.Errorf("ssh audit events = %+v, want the owner's open and close", es)
	}
}

// A container still being built refuses sessions with a message that says so.
func TestOpenSSHContainerNotReady(t *testing.T) {
	g := newGateway(t, handlertest.Options{NoJobs: true})
	owner := g.person(t, "owner@example.com")
	c := g.requestContainer(t, owner, "")
	cl, _, err := g.client(t, c.Name, ssh.PublicKeys(owner.signer))
	if err != nil {
		t.Fatal(err)
	}
	_, err = cl.NewSession()
	if err == nil || !strings.Contains(err.Error(), "container "+c.Name+" is provisioning, not ready: a shell opens once devport shows it ready") {
		t.Errorf("session in a provisioning container: %v", err)
	}
}
