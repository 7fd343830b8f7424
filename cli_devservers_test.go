package main

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// loginAs signs the rig's CLI in as a new person and returns their token.
func loginAs(r *cliRig, email string, roles ...string) string {
	r.t.Helper()
	tok := r.Token(email, roles...)
	if _, stderr, err := r.Run("login", "--portal", r.Portal.URL, "--token", tok); err != nil {
		r.t.Fatalf("login: %v (%s)", err, stderr)
	}
	return tok
}

// cliDevserver is a devserver as the CLI's --json shows it.
type cliDevserver struct {
	Name, State, Flavor, Region, Host, Relation, Owner string
	Progress                                           int
	Lease                                              struct {
		Kind  string     `json:"kind"`
		Until *time.Time `json:"until"`
	}
	Shares []struct {
		Email string `json:"email"`
	}
	Connection *struct {
		SSHCommand string `json:"ssh_command"`
		SSHHost    string `json:"ssh_host"`
		SSHPort    int    `json:"ssh_port"`
		User       string `json:"user"`
	}
}

// reservedName is the devserver name a reserve printed ("NAME is ready").
func reservedName(t *testing.T, stdout string) string {
	t.Helper()
	name, _, ok := strings.Cut(stdout, " is ready")
	if !ok || strings.ContainsAny(name, " \n") {
		t.Fatalf("reserve printed no \"NAME is ready\": %q", stdout)
	}
	return name
}

func TestCLIDevservers(t *testing.T) {
	r := newCLIRig(t)
	tok := loginAs(r, "ada@example.com")
	r.Token("grace@example.com") // a colleague to share with

	t.Run("with no devservers, ls says how to reserve one, and --json prints []", func(t *testing.T) {
		stdout, _, err := r.Run("ls")
		if err != nil || stdout != "No devservers. Reserve one with \"devport reserve --flavor vm.small\".\n" {
			t.Errorf("ls: %q %v", stdout, err)
		}
		stdout, _, err = r.Run("ls", "--json")
		if err != nil || strings.TrimSpace(stdout) != "[]" {
			t.Errorf("ls --json: %q %v", stdout, err)
		}
	})

	var name string
	t.Run("reserve follows the devserver until it is ready and says how to connect", func(t *testing.T) {
		stdout, stderr, err := r.Run("reserve", "--flavor", "vm.small", "--region", "prn")
		if err != nil {
			t.Fatalf("reserve: %v (stderr %q)", err, stderr)
		}
		name = reservedName(t, stdout)
		if !strings.Contains(stdout, "Connect: devport ssh "+name) || !strings.Contains(stdout, "ssh -p ") {
			t.Errorf("reserve does not say how to connect: %q", stdout)
		}
		if !strings.Contains(stderr, "reserve "+name+": ready 100%") {
			t.Errorf("reserve showed no progress ending at ready: %q", stderr)
		}
		var d cliDevserver
		r.JSON(&d, "show", name)
		if d.State != "ready" || d.Flavor != "vm.small" || d.Region != "prn" || d.Owner != "ada@example.com" {
			t.Errorf("the portal holds %+v", d)
		}
	})

	t.Run("ls shows the devserver in a table, and --json as a JSON array", func(t *testing.T) {
		stdout, _, err := r.Run("ls")
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "NAME STATE PROGRESS FLAVOR REGION HOST LEASE-UNTIL ROLE" {
			t.Fatalf("ls printed %q", stdout)
		}
		f := strings.Fields(lines[1])
		if f[0] != name || f[1] != "ready" || f[2] != "100%" || f[3] != "vm.small" || f[4] != "prn" || f[len(f)-1] != "owner" {
			t.Errorf("ls row = %q", lines[1])
		}
		var ds []cliDevserver
		r.JSON(&ds, "ls")
		if len(ds) != 1 || ds[0].Name != name || ds[0].Relation != "owner" {
			t.Errorf("ls --json = %+v", ds)
		}
		r.JSON(&ds, "ls", "--state", "provisioning")
		if len(ds) != 0 {
			t.Errorf("ls --state provisioning = %+v", ds)
		}
		if _, _, err := r.Run("ls", "--all"); err == nil || !strings.Contains(err.Error(), "only administrators") {
			t.Errorf("ls --all by a non-admin: %v", err)
		}
	})

	t.Run("show prints the devserver's details and its SSH command", func(t *testing.T) {
		stdout, _, err := r.Run("show", name)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"Name:", name, "State:", "ready", "Flavor:", "vm.small (vm)", "Region:", "prn",
			"Lease:", "short, until", "SSH:", "ssh -p ", name + "@127.0.0.1", "Connect:", "devport ssh " + name} {
			if !strings.Contains(stdout, want) {
				t.Errorf("show lacks %q:\n%s", want, stdout)
			}
		}
	})

	t.Run("reserve --json prints the ready devserver, with the lease asked for", func(t *testing.T) {
		var d cliDevserver
		r.JSON(&d, "reserve", "--flavor", "vm.small", "--for", "3d")
		if d.State != "ready" || d.Connection == nil || d.Lease.Until == nil {
			t.Fatalf("reserve --json = %+v", d)
		}
		if got := time.Until(*d.Lease.Until); got < 71*time.Hour || got > 73*time.Hour {
			t.Errorf("the lease ends in %s, want 3 days", got)
		}
		if _, _, err := r.Run("release", d.Name, "--yes"); err != nil {
			t.Errorf("release %s: %v", d.Name, err)
		}
	})

	t.Run("reserve without a flavour lists them, and reserves nothing", func(t *testing.T) {
		_, _, err := r.Run("reserve")
		if err == nil || !strings.Contains(err.Error(), "one of: vm.small, vm.medium") {
			t.Errorf("reserve without --flavor: %v", err)
		}
		var ds []cliDevserver
		r.JSON(&ds, "ls")
		if len(ds) != 1 {
			t.Errorf("after a refused reserve there are %d devservers", len(ds))
		}
	})

	t.Run("reserve refuses malformed lease flags, and reserves nothing", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"--for", "nonsense"}, `--for "nonsense" is not a duration`},
			{[]string{"--for", "-3d"}, `--for "-3d" is not a duration`},
			{[]string{"--until", "next tuesday"}, `--until "next tuesday" is not a time`},
			{[]string{"--until", "2026-12-31", "--for", "3d"}, "give --until or --for, not both"},
			{[]string{"--lease", "forever"}, `--lease "forever": it is short or permanent`},
			{[]string{"--lease", "permanent", "--for", "3d"}, "a permanent lease has no end"},
		} {
			_, _, err := r.Run(append([]string{"reserve", "--flavor", "vm.small"}, c.args...)...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("reserve %s: %v, want %q", strings.Join(c.args, " "), err, c.want)
			}
		}
		var ds []cliDevserver
		r.JSON(&ds, "ls")
		if len(ds) != 1 {
			t.Errorf("after refused reserves there are %d devservers", len(ds))
		}
	})

	t.Run("extend moves the lease's end", func(t *testing.T) {
		stdout, _, err := r.Run("extend", name, "--for", "20d")
		if err != nil || !strings.Contains(stdout, "The lease of "+name+" now ends") {
			t.Fatalf("extend: %q %v", stdout, err)
		}
		var d cliDevserver
		r.JSON(&d, "show", name)
		if got := time.Until(*d.Lease.Until); got < 19*24*time.Hour || got > 21*24*time.Hour {
			t.Errorf("after extend --for 20d the lease ends in %s", got)
		}
		before := *d.Lease.Until
		if _, _, err := r.Run("extend", name, "--for", "400d"); err == nil {
			t.Error("extend beyond the lease policy succeeded")
		}
		if _, _, err := r.Run("extend", name, "--for", "soon"); err == nil || !strings.Contains(err.Error(), "7d") {
			t.Errorf("extend --for soon: %v", err)
		}
		if _, _, err := r.Run("extend", name); err == nil || !strings.Contains(err.Error(), "--until") {
			t.Errorf("extend without a time: %v", err)
		}
		if _, _, err := r.Run("extend", name, "--until", "nonsense"); err == nil || !strings.Contains(err.Error(), `--until "nonsense" is not a time`) {
			t.Errorf("extend --until nonsense: %v", err)
		}
		if _, _, err := r.Run("extend", name, "--until", "2020-01-01"); err == nil || !strings.Contains(err.Error(), "is in the past") {
			t.Errorf("extend --until in the past: %v", err)
		}
		if _, _, err := r.Run("extend", name, "--until", "2026-12-31", "--for", "3d"); err == nil || !strings.Contains(err.Error(), "not both") {
			t.Errorf("extend with --until and --for: %v", err)
		}
		r.JSON(&d, "show", name)
		if !d.Lease.Until.Equal(before) {
			t.Errorf("a refused extend changed the lease from %s to %s", before, d.Lease.Until)
		}
	})

	t.Run("share adds, lists and removes people", func(t *testing.T) {
		stdout, _, err := r.Run("share", name, "grace@example.com")
		if err != nil || !strings.Contains(stdout, "Shared "+name+" with grace@example.com.") {
			t.Fatalf("share: %q %v", stdout, err)
		}
		stdout, _, err = r.Run("share", name)
		if err != nil || !strings.Contains(stdout, "EMAIL") || !strings.Contains(stdout, "grace@example.com") {
			t.Errorf("share list: %q %v", stdout, err)
		}
		var d cliDevserver
		r.JSON(&d, "show", name)
		if len(d.Shares) != 1 || d.Shares[0].Email != "grace@example.com" {
			t.Errorf("the portal holds shares %+v", d.Shares)
		}
		if _, _, err := r.Run("share", name, "nobody@example.com"); err == nil {
			t.Error("sharing with someone who never signed in succeeded")
		}
		stdout, _, err = r.Run("share", name, "--remove", "grace@example.com")
		if err != nil || !strings.Contains(stdout, "no longer shared with grace@example.com") {
			t.Fatalf("share --remove: %q %v", stdout, err)
		}
		stdout, _, _ = r.Run("share", name)
		if !strings.Contains(stdout, "shared with nobody") {
			t.Errorf("share list after removing: %q", stdout)
		}
		if _, _, err := r.Run("share", name, "--remove", "grace@example.com"); err == nil || !strings.Contains(err.Error(), "is not shared with") {
			t.Errorf("removing a person twice: %v", err)
		}
	})

	var backupID int64
	t.Run("backup takes one and follows it; --list lists it", func(t *testing.T) {
		stdout, _, err := r.Run("backup", name)
		if err != nil || !strings.Contains(stdout, "Backed up "+name+": backup ") {
			t.Fatalf("backup: %q %v", stdout, err)
		}
		rest := strings.TrimPrefix(stdout[strings.Index(stdout, "backup ")+len("backup "):], "")
		backupID, _ = strconv.ParseInt(rest[:strings.Index(rest, ",")], 10, 64)
		stdout, _, err = r.Run("backup", name, "--list")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stdout, "ID") || !strings.Contains(stdout, "STATE") || !strings.Contains(stdout, "SIZE") {
			t.Errorf("backup --list header: %q", stdout)
		}
		found := false
		for _, l := range strings.Split(stdout, "\n") {
			f := strings.Fields(l)
			if len(f) > 0 && f[0] == strconv.FormatInt(backupID, 10) {
				found = strings.Contains(l, "done") && strings.Contains(l, "manual")
			}
		}
		if !found {
			t.Errorf("backup --list lacks backup %d done manual:\n%s", backupID, stdout)
		}
		var bs []struct {
			ID    int64  `json:"id"`
			State string `json:"state"`
		}
		r.JSON(&bs, "backup", name, "--list")
		if len(bs) == 0 || bs[0].ID != backupID || bs[0].State != "done" {
			t.Errorf("backup --list --json = %+v", bs)
		}
	})

	t.Run("restore asks first, refuses without a terminal, and restores with --yes", func(t *testing.T) {
		restores := func() int {
			code, body := rigAPI(t, r, tok, "GET", "/api/v1/devservers/"+name+"/restores", "")
			var p struct{ Items []struct{ State string } }
			if code != http.StatusOK || json.Unmarshal([]byte(body), &p) != nil {
				t.Fatalf("restores: %d %s", code, body)
			}
			return len(p.Items)
		}
		_, _, err := r.Run("restore", name, "--backup", strconv.FormatInt(backupID, 10))
		if err == nil || !strings.Contains(err.Error(), "--yes") || !strings.Contains(err.Error(), "overwrites the home") {
			t.Errorf("restore without --yes and no terminal: %v", err)
		}
		if _, _, err := r.Run("restore", name, "--backup", "notanumber", "--yes"); err == nil || !strings.Contains(err.Error(), `invalid argument "notanumber" for "--backup"`) {
			t.Errorf("restore --backup notanumber: %v", err)
		}
		if _, _, err := r.Run("restore", name, "--yes"); err == nil || !strings.Contains(err.Error(), "which backup? add --backup ID") {
			t.Errorf("restore without --backup: %v", err)
		}
		if n := restores(); n != 0 {
			t.Errorf("a refused restore left %d restores", n)
		}
		stdout, _, err := r.Run("restore", name, "--backup", strconv.FormatInt(backupID, 10), "--yes")
		if err != nil || !strings.Contains(stdout, "Restored backup "+strconv.FormatInt(backupID, 10)+" onto "+name) {
			t.Fatalf("restore: %q %v", stdout, err)
		}
		if n := restores(); n != 1 {
			t.Errorf("after restore the portal holds %d restores", n)
		}
		if _, _, err := r.Run("restore", name, "--backup", "999999", "--yes"); err == nil {
			t.Error("restoring an unknown backup succeeded")
		}
	})

	t.Run("migrate moves the devserver to another region", func(t *testing.T) {
		stdout, stderr, err := r.Run("migrate", name, "--region", "lla")
		if err != nil || !strings.Contains(stdout, "Migrated "+name+" to vm.small in lla") {
			t.Fatalf("migrate: %q %v (stderr %q)", stdout, err, stderr)
		}
		if !strings.Contains(stderr, "migrate "+name+": done 100%") {
			t.Errorf("migrate progress: %q", stderr)
		}
		var d cliDevserver
		r.JSON(&d, "show", name)
		if d.Region != "lla" || d.State != "ready" {
			t.Errorf("after migrate the portal holds %+v", d)
		}
		if _, _, err := r.Run("migrate", name); err == nil || !strings.Contains(err.Error(), "--region") {
			t.Errorf("migrate without a target: %v", err)
		}
	})

	t.Run("unknown devserver names are a clear error", func(t *testing.T) {
		for _, args := range [][]string{{"show", "nosuch-vm-1"}, {"extend", "nosuch-vm-1", "--for", "1d"}, {"release", "nosuch-vm-1", "--yes"},
			{"migrate", "nosuch-vm-1", "--region", "lla"}, {"share", "nosuch-vm-1"}, {"backup", "nosuch-vm-1", "--list"},
			{"restore", "nosuch-vm-1", "--backup", "1", "--yes"}} {
			_, _, err := r.Run(args...)
			if err == nil || err.Error() != "no devserver nosuch-vm-1 that you can see (devport ls lists yours)" {
				t.Errorf("devport %s: %v", strings.Join(args, " "), err)
			}
		}
	})

	t.Run("release refuses without --yes and no terminal, and releases with it", func(t *testing.T) {
		_, _, err := r.Run("release", name)
		if err == nil || !strings.Contains(err.Error(), "add --yes to confirm") {
			t.Errorf("release without --yes: %v", err)
		}
		var d cliDevserver
		r.JSON(&d, "show", name)
		if d.State != "ready" {
			t.Fatalf("a refused release left %s %s", name, d.State)
		}
		stdout, stderr, err := r.Run("release", name, "--yes")
		if err != nil || !strings.Contains(stdout, "Released "+name+".") {
			t.Fatalf("release: %q %v (%s)", stdout, err, stderr)
		}
		r.JSON(&d, "show", name)
		if d.State != "released" {
			t.Errorf("after release the portal holds %s", d.State)
		}
	})

	t.Run("a read-only token may not reserve", func(t *testing.T) {
		code, body := rigAPI(t, r, tok, "POST", "/api/v1/me/tokens", `{"name":"look only","scope":"read"}`)
		if code != http.StatusCreated {
			t.Fatalf("create a read-only token: %d %s", code, body)
		}
		var out struct{ Secret string }
		_ = json.Unmarshal([]byte(body), &out)
		var before []cliDevserver
		r.JSON(&before, "ls")
		_, _, err := r.Run("reserve", "--flavor", "vm.small", "--token", out.Secret)
		if err == nil || !strings.Contains(err.Error(), "read-only") || !strings.Contains(err.Error(), "devport login") {
			t.Errorf("reserve with a read-only token: %v", err)
		}
		if stdout, _, err := r.Run("whoami", "--token", out.Secret); err != nil || !strings.Contains(stdout, "ada@example.com") {
			t.Errorf("whoami with a read-only token: %q %v", stdout, err)
		}
		var after []cliDevserver
		r.JSON(&after, "ls")
		if len(after) != len(before) {
			t.Errorf("a refused reserve changed the devservers from %d to %d", len(before), len(after))
		}
	})
}

// With a fleet that takes its time, reserve shows a line per step when no
// terminal is attached.
func TestCLIDevserverProgress(t *testing.T) {
	r := newCLIRig(t, "--sim-latency", "300ms")
	loginAs(r, "ada@example.com")
	stdout, stderr, err := r.Run("reserve", "--flavor", "vm.small")
	if err != nil {
		t.Fatalf("reserve: %v %q", err, stderr)
	}
	name := reservedName(t, stdout)
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if strings.HasPrefix(l, "reserve "+name+": ") {
			lines = append(lines, l)
		}
	}
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "reserve "+name+": provisioning") || lines[len(lines)-1] != "reserve "+name+": ready 100%" {
		t.Errorf("progress lines:\n%s", stderr)
	}
	// --no-wait returns at once, before the devserver is ready.
	stdout, _, err = r.Run("reserve", "--flavor", "vm.small", "--no-wait")
	if err != nil || !strings.Contains(stdout, "it is provisioning") {
		t.Errorf("reserve --no-wait: %q %v", stdout, err)
	}
}

// A fleet that fails every creation: reserve ends with the devserver's own
// reason, not a hang.
func TestCLIDevserverFailure(t *testing.T) {
	r := newCLIRig(t, "--sim-failures", "create=1")
	loginAs(r, "ada@example.com")
	start := time.Now()
	_, stderr, err := r.Run("reserve", "--flavor", "vm.small")
	if err == nil || !strings.Contains(err.Error(), "ended failed") {
		t.Fatalf("reserve on a failing fleet: %v (stderr %q)", err, stderr)
	}
	t.Logf("reserve failed after %s: %v", time.Since(start), err)
}

// A fleet that fails every restore: a migration rolls back, says why, and
// the devserver stays as it was.
func TestCLIDevserverRollback(t *testing.T) {
	r := newCLIRig(t, "--sim-failures", "restore=1")
	loginAs(r, "ada@example.com")
	stdout, _, err := r.Run("reserve", "--flavor", "vm.small", "--region", "prn")
	if err != nil {
		t.Fatal(err)
	}
	name := reservedName(t, stdout)
	start := time.Now()
	_, stderr, err := r.Run("migrate", name, "--region", "lla")
	if err == nil || !strings.Contains(err.Error(), "the migration of "+name+" rolled back, "+name+" is as it was: ") || !strings.Contains(err.Error(), "simulated failure") {
		t.Fatalf("migrate on a fleet that fails restores: %v (stderr %q)", err, stderr)
	}
	t.Logf("the migration rolled back after %s", time.Since(start))
	var d cliDevserver
	r.JSON(&d, "show", name)
	if d.Region != "prn" || d.State != "ready" {
		t.Errorf("after a rolled back migration the portal holds %+v", d)
	}
}
