package main

import (
	"strings"
	"testing"
)

// cliContainer is a container as the CLI's --json shows it.
type cliContainer struct {
	ID, State, Type, Profile, Region, ReplacedBy string
	Access                                       *struct {
		SSH *struct {
			SSHCommand string `json:"ssh_command"`
		} `json:"ssh"`
	}
}

// requestedID is the container ID a request printed ("Container ID is ready").
func requestedID(t *testing.T, stdout string) string {
	t.Helper()
	_, rest, ok := strings.Cut(stdout, "Container ")
	id, _, ok2 := strings.Cut(rest, " is ready")
	if !ok || !ok2 || len(id) != 10 {
		t.Fatalf("containers request printed no \"Container ID is ready\": %q", stdout)
	}
	return id
}

func TestCLIContainers(t *testing.T) {
	r := newCLIRig(t)
	loginAs(r, "ada@example.com")

	t.Run("types lists the types and the profiles", func(t *testing.T) {
		stdout, _, err := r.Run("containers", "types")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"TYPE", "PROFILES", "web", "small,medium,large", "jupyter", "PROFILE", "CPUS", "gpu"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("containers types lacks %q:\n%s", want, stdout)
			}
		}
	})

	t.Run("with no containers, ls says how to find what to request, and --json prints []", func(t *testing.T) {
		stdout, _, err := r.Run("containers", "ls")
		if err != nil || !strings.Contains(stdout, `No containers. "devport containers types" lists what you can request.`) {
			t.Errorf("containers ls: %q %v", stdout, err)
		}
		stdout, _, err = r.Run("containers", "ls", "--json")
		if err != nil || strings.TrimSpace(stdout) != "[]" {
			t.Errorf("containers ls --json: %q %v", stdout, err)
		}
	})

	var id string
	t.Run("request follows the container until it is ready and says how to connect", func(t *testing.T) {
		stdout, stderr, err := r.Run("containers", "request", "--type", "web", "--profile", "small")
		if err != nil {
			t.Fatalf("request: %v (%s)", err, stderr)
		}
		id = requestedID(t, stdout)
		if !strings.Contains(stdout, "it ends ") || !strings.Contains(stdout, "Connect: devport ssh "+id) || !strings.Contains(stdout, "ssh -p ") {
			t.Errorf("request output: %q", stdout)
		}
		var c cliContainer
		r.JSON(&c, "containers", "show", id)
		if c.ID != id || c.State != "ready" || c.Type != "web" || c.Profile != "small" || c.Access == nil || c.Access.SSH == nil {
			t.Errorf("the portal holds %+v", c)
		}
	})

	t.Run("ls (and plain containers) list it; show prints its details", func(t *testing.T) {
		for _, args := range [][]string{{"containers"}, {"containers", "ls"}} {
			stdout, _, err := r.Run(args...)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(stdout), "\n")
			if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "ID STATE PROGRESS TYPE PROFILE REGION ENDS-AT" {
				t.Fatalf("devport %s printed %q", strings.Join(args, " "), stdout)
			}
			if f := strings.Fields(lines[1]); f[0] != id || f[1] != "ready" || f[3] != "web" || f[4] != "small" {
				t.Errorf("row %q", lines[1])
			}
		}
		stdout, _, err := r.Run("containers", "show", id)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"ID:", id, "State:", "ready", "Profile:", "small: 2 CPUs", "Ends:", "SSH:", id + "@127.0.0.1"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("containers show lacks %q:\n%s", want, stdout)
			}
		}
	})

	t.Run("a bad request is refused and creates nothing", func(t *testing.T) {
		_, _, err := r.Run("containers", "request", "--type", "web", "--profile", "gpu")
		if err == nil {
			t.Error("web on gpu was accepted")
		}
		if _, _, err := r.Run("containers", "request", "--type", "web"); err == nil || !strings.Contains(err.Error(), "--profile") {
			t.Errorf("request without a profile: %v", err)
		}
		var cs []cliContainer
		r.JSON(&cs, "containers")
		if len(cs) != 1 {
			t.Errorf("after refused requests there are %d containers", len(cs))
		}
	})

	t.Run("fresh replaces a container by a new one like it", func(t *testing.T) {
		stdout, _, err := r.Run("containers", "fresh", id)
		if err != nil || !strings.Contains(stdout, "replaces "+id) {
			t.Fatalf("fresh: %q %v", stdout, err)
		}
		fresh := requestedID(t, stdout[strings.Index(stdout, "\n")+1:])
		var c cliContainer
		r.JSON(&c, "containers", "show", fresh)
		if c.State != "ready" || c.Type != "web" || c.Profile != "small" {
			t.Errorf("the fresh one is %+v", c)
		}
		id = fresh
	})

	t.Run("end asks first, refuses without a terminal, and ends with --yes", func(t *testing.T) {
		_, _, err := r.Run("containers", "end", id)
		if err == nil || !strings.Contains(err.Error(), "add --yes to confirm") {
			t.Errorf("end without --yes: %v", err)
		}
		var c cliContainer
		r.JSON(&c, "containers", "show", id)
		if c.State != "ready" {
			t.Fatalf("a refused end left it %s", c.State)
		}
		stdout, _, err := r.Run("containers", "end", id, "--yes")
		if err != nil || !strings.Contains(stdout, "Ended container "+id+".") {
			t.Fatalf("end: %q %v", stdout, err)
		}
		r.JSON(&c, "containers", "show", id)
		if c.State != "ended" {
			t.Errorf("after end the portal holds %s", c.State)
		}
		stdout, _, _ = r.Run("containers", "ls", "--ended")
		if !strings.Contains(stdout, id) {
			t.Errorf("containers ls --ended lacks %s: %q", id, stdout)
		}
	})

	t.Run("unknown container IDs are a clear error", func(t *testing.T) {
		for _, args := range [][]string{{"containers", "show", "odaaaaaaaa"}, {"containers", "end", "odaaaaaaaa", "--yes"}, {"containers", "fresh", "odaaaaaaaa"}} {
			_, _, err := r.Run(args...)
			if err == nil || err.Error() != "no container odaaaaaaaa that you can see (devport containers lists yours)" {
				t.Errorf("devport %s: %v", strings.Join(args, " "), err)
			}
		}
	})
}
