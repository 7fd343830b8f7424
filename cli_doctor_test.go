package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/devport/devport/store"
)

// rigSSHKey writes a new ed25519 key pair to $HOME/.ssh as ssh-keygen
// would, and returns the public key line.
func rigSSHKey(t *testing.T, home string) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "ada@laptop")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := ssh.NewSignerFromKey(priv)
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " ada@laptop"
	dir := filepath.Join(home, ".ssh")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "id_ed25519"), pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "id_ed25519.pub"), []byte(pub+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return pub
}

type rigKey struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
}

func rigKeys(t *testing.T, r *cliRig, token string) []rigKey {
	t.Helper()
	code, body := rigAPI(t, r, token, "GET", "/api/v1/me/keys", "")
	var out struct{ Items []rigKey }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &out) != nil {
		t.Fatalf("GET /me/keys: %d %s", code, body)
	}
	return out.Items
}

type rigHealth struct {
	Health      string `json:"health"`
	Remediation *struct {
		ID    int64  `json:"id"`
		State string `json:"state"`
	} `json:"remediation"`
}

func rigHealthOf(t *testing.T, r *cliRig, token, name string) rigHealth {
	t.Helper()
	code, body := rigAPI(t, r, token, "GET", "/api/v1/devservers/"+name+"/health", "")
	var h rigHealth
	if code != http.StatusOK || json.Unmarshal([]byte(body), &h) != nil {
		t.Fatalf("GET health of %s: %d %s", name, code, body)
	}
	return h
}

// makeUnhealthy records a failed health check of the devserver, as the
// periodic check does when the driver finds its instance stopped.
func makeUnhealthy(t *testing.T, r *cliRig, name string) {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, store.Options{Path: filepath.Join(r.Portal.DataDir, "devport.db"), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d, err := s.Devserver(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	err = s.InTx(ctx, func(tx *store.Tx) error {
		return tx.AddHealthCheck(ctx, store.HealthResult{DevserverID: d.ID, Cause: store.CauseInstanceStopped, Detail: "instance is stopped", At: time.Now()}, "test")
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkLine is the line doctor printed for a check.
func checkLine(stdout, name string) string {
	for line := range strings.Lines(stdout) {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(strings.TrimSpace(line[len(f[0]):]), name+" ") {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

func TestCLIDoctor(t *testing.T) {
	r := newCLIRig(t)
	ada := r.Token("ada@example.com")
	if _, stderr, err := r.Run("login", "--portal", r.Portal.URL, "--token", ada); err != nil {
		t.Fatalf("login: %v %s", err, stderr)
	}
	pub := rigSSHKey(t, r.Home)

	t.Run("--no-fix reports the missing key and adds nothing", func(t *testing.T) {
		stdout, _, err := r.Run("doctor", "--no-fix")
		if err == nil || !strings.Contains(err.Error(), "1 check still fails") {
			t.Errorf("err = %v", err)
		}
		if l := checkLine(stdout, "ssh key"); !strings.HasPrefix(l, "FAIL") || !strings.Contains(l, "without --no-fix") {
			t.Errorf("ssh key line = %q\n%s", l, stdout)
		}
		if strings.Contains(stdout, "Fixed:") {
			t.Errorf("--no-fix fixed something:\n%s", stdout)
		}
		if ks := rigKeys(t, r, ada); len(ks) != 0 {
			t.Errorf("keys after --no-fix: %+v", ks)
		}
	})
	t.Run("doctor adds the local public key", func(t *testing.T) {
		stdout, _, err := r.Run("doctor")
		if err != nil {
			t.Errorf("doctor: %v\n%s", err, stdout)
		}
		if !strings.Contains(stdout, "Fixed:\n  - added ~/.ssh/id_ed25519.pub to your profile as ") {
			t.Errorf("stdout:\n%s", stdout)
		}
		ks := rigKeys(t, r, ada)
		host, _ := os.Hostname()
		if len(ks) != 1 || ks[0].Name != host+" (devport doctor)" || !strings.HasPrefix(pub, ks[0].PublicKey+" ") {
			t.Errorf("keys = %+v; want the local key as %q", ks, host+" (devport doctor)")
		}
	})
	t.Run("all checks pass for a signed-in person with a key", func(t *testing.T) {
		stdout, _, err := r.Run("doctor")
		if err != nil || !strings.Contains(stdout, "All checks pass.") {
			t.Fatalf("doctor: %v\n%s", err, stdout)
		}
		for _, want := range []string{"configuration", "dns", "portal", "token", "ssh key", "ssh client", "devservers"} {
			l := checkLine(stdout, want)
			if !strings.HasPrefix(l, "ok") && !(want == "ssh client" && strings.HasPrefix(l, "warn")) {
				t.Errorf("%s: %q", want, l)
			}
		}
		if l := checkLine(stdout, "token"); !strings.Contains(l, "signed in as ada@example.com") || strings.Contains(l, ada) {
			t.Errorf("token line = %q", l)
		}
		if l := checkLine(stdout, "dns"); !strings.Contains(l, "127.0.0.1 is an IP address") {
			t.Errorf("dns line = %q", l)
		}
		var out struct {
			Checks []checkResult `json:"checks"`
		}
		r.JSON(&out, "doctor")
		if len(out.Checks) != 7 || out.Checks[3].Name != "token" || out.Checks[3].Status != "ok" {
			t.Errorf("doctor --json = %+v", out)
		}
	})

	name, _ := rigDevserver(t, r, ada)
	t.Run("an unhealthy devserver: --no-fix reports it, doctor restarts it", func(t *testing.T) {
		makeUnhealthy(t, r, name)
		if h := rigHealthOf(t, r, ada, name); h.Health != "unhealthy" || h.Remediation != nil {
			t.Fatalf("health before = %+v", h)
		}
		stdout, _, err := r.Run("doctor", "--no-fix")
		if l := checkLine(stdout, "devserver "+name); err == nil || !strings.HasPrefix(l, "FAIL") || !strings.Contains(l, "unhealthy (instance is stopped)") {
			t.Errorf("--no-fix: %v %q\n%s", err, l, stdout)
		}
		if h := rigHealthOf(t, r, ada, name); h.Remediation != nil {
			t.Errorf("--no-fix opened a remediation: %+v", h.Remediation)
		}
		stdout, _, err = r.Run("doctor")
		if err != nil {
			t.Errorf("doctor: %v\n%s", err, stdout)
		}
		h := rigHealthOf(t, r, ada, name)
		if h.Remediation == nil {
			t.Fatalf("no remediation after doctor:\n%s", stdout)
		}
		want := "asked the portal to restart " + name + ": remediation " + strconv.FormatInt(h.Remediation.ID, 10)
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	})
	t.Run("a sharee's unhealthy devserver is reported, not restarted", func(t *testing.T) {
		bob := r.Token("bob@example.com")
		theirs, _ := rigDevserver(t, r, bob)
		if code, body := rigAPI(t, r, bob, "POST", "/api/v1/devservers/"+theirs+"/shares", `{"email":"ada@example.com"}`); code >= 300 {
			t.Fatalf("share: %d %s", code, body)
		}
		makeUnhealthy(t, r, theirs)
		stdout, _, err := r.Run("doctor")
		l := checkLine(stdout, "devserver "+theirs)
		if err == nil || !strings.HasPrefix(l, "FAIL") || !strings.Contains(l, "shared with you by bob@example.com") || !strings.Contains(l, "only its owner can restart it") {
			t.Errorf("doctor: %v %q\n%s", err, l, stdout)
		}
		if h := rigHealthOf(t, r, bob, theirs); h.Remediation != nil {
			t.Errorf("a sharee's doctor restarted it: %+v", h.Remediation)
		}
		// Leave it shared but healthy for what follows: bob removes the share.
		rigAPI(t, r, bob, "DELETE", "/api/v1/devservers/"+theirs+"/shares/ada@example.com", "")
	})
	t.Run("a read-only token: doctor warns that it cannot change anything", func(t *testing.T) {
		code, body := rigAPI(t, r, ada, "POST", "/api/v1/me/tokens", `{"name":"read","scope":"read"}`)
		var out struct{ Secret string }
		if code != http.StatusCreated || json.Unmarshal([]byte(body), &out) != nil {
			t.Fatalf("create a read-only token: %d %s", code, body)
		}
		r.Vars["DEVPORT_TOKEN"] = out.Secret
		defer delete(r.Vars, "DEVPORT_TOKEN")
		stdout, _, _ := r.Run("doctor")
		if l := checkLine(stdout, "token"); !strings.HasPrefix(l, "warn") || !strings.Contains(l, "read-only token") || !strings.Contains(l, "cannot change anything") {
			t.Errorf("token line = %q\n%s", l, stdout)
		}
	})
	t.Run("a revoked token is said to be expired or revoked; later checks are skipped", func(t *testing.T) {
		code, body := rigAPI(t, r, ada, "POST", "/api/v1/me/tokens", `{"name":"gone","scope":"full"}`)
		var out struct {
			Secret string
			Token  struct{ ID int64 }
		}
		if code != http.StatusCreated || json.Unmarshal([]byte(body), &out) != nil {
			t.Fatalf("create a token: %d %s", code, body)
		}
		if code, body := rigAPI(t, r, ada, "DELETE", "/api/v1/me/tokens/"+strconv.FormatInt(out.Token.ID, 10), ""); code != http.StatusNoContent {
			t.Fatalf("revoke: %d %s", code, body)
		}
		r.Vars["DEVPORT_TOKEN"] = out.Secret
		defer delete(r.Vars, "DEVPORT_TOKEN")
		stdout, _, err := r.Run("doctor")
		if err == nil {
			t.Error("doctor passed with a revoked token")
		}
		if l := checkLine(stdout, "token"); !strings.HasPrefix(l, "FAIL") || !strings.Contains(l, "expired or revoked") || !strings.Contains(l, "devport login") {
			t.Errorf("token line = %q", l)
		}
		if l := checkLine(stdout, "ssh key"); !strings.HasPrefix(l, "skip") || !strings.Contains(l, "expired or revoked") {
			t.Errorf("ssh key line = %q", l)
		}
	})
	t.Run("a portal that does not answer fails within seconds; later checks are skipped", func(t *testing.T) {
		r.Vars["DEVPORT_PORTAL"] = silentServer(t)
		defer delete(r.Vars, "DEVPORT_PORTAL")
		start := time.Now()
		stdout, _, err := r.Run("doctor")
		if took := time.Since(start); took > 15*time.Second {
			t.Errorf("doctor took %s against a silent portal", took)
		}
		if err == nil {
			t.Error("doctor passed without a portal")
		}
		if l := checkLine(stdout, "portal"); !strings.HasPrefix(l, "FAIL") || !strings.Contains(l, "does not answer") {
			t.Errorf("portal line = %q\n%s", l, stdout)
		}
		for _, name := range []string{"token", "ssh key", "devservers"} {
			if l := checkLine(stdout, name); !strings.HasPrefix(l, "skip") || !strings.Contains(l, "skipped: the portal does not answer") {
				t.Errorf("%s line = %q", name, l)
			}
		}
	})
	t.Run("the portal's name is looked up; a name that does not resolve skips the rest", func(t *testing.T) {
		u := strings.Replace(r.Portal.URL, "127.0.0.1", "localhost", 1)
		r.Vars["DEVPORT_PORTAL"] = u
		// Another name is another portal to the CLI: the stored token is not sent to it.
		r.Vars["DEVPORT_TOKEN"] = ada
		defer delete(r.Vars, "DEVPORT_TOKEN")
		stdout, _, err := r.Run("doctor")
		if l := checkLine(stdout, "dns"); err != nil || !strings.HasPrefix(l, "ok") || !strings.Contains(l, "localhost resolves to ") {
			t.Errorf("localhost: %v %q\n%s", err, l, stdout)
		}
		r.Vars["DEVPORT_PORTAL"] = "http://no-such-portal.invalid"
		defer delete(r.Vars, "DEVPORT_PORTAL")
		start := time.Now()
		stdout, _, err = r.Run("doctor")
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("took %s", took)
		}
		if l := checkLine(stdout, "dns"); err == nil || !strings.HasPrefix(l, "FAIL") || !strings.Contains(l, "no-such-portal.invalid does not resolve") {
			t.Errorf("dns line = %q (%v)", l, err)
		}
		for _, name := range []string{"portal", "token", "devservers"} {
			if l := checkLine(stdout, name); !strings.HasPrefix(l, "skip") || !strings.Contains(l, "does not resolve") {
				t.Errorf("%s line = %q", name, l)
			}
		}
	})
	t.Run("no ssh client is a warning only", func(t *testing.T) {
		saved := lookPath
		lookPath = func(string) (string, error) { return "", exec.ErrNotFound }
		defer func() { lookPath = saved }()
		stdout, _, err := r.Run("doctor")
		if l := checkLine(stdout, "ssh client"); err != nil || !strings.HasPrefix(l, "warn") || !strings.Contains(l, "install OpenSSH") {
			t.Errorf("ssh client: %v %q\n%s", err, l, stdout)
		}
	})
	t.Run("a corrupt configuration file fails with how to fix it", func(t *testing.T) {
		other := &cliRig{t: t, Portal: r.Portal, Home: t.TempDir(), Vars: map[string]string{}}
		p := filepath.Join(other.Home, ".config", "devport", "config.json")
		_ = os.MkdirAll(filepath.Dir(p), 0o700)
		_ = os.WriteFile(p, []byte(`{"portal": "http://x", "tok`), 0o600)
		stdout, _, err := other.Run("doctor")
		if l := checkLine(stdout, "configuration"); err == nil || !strings.HasPrefix(l, "FAIL") || !strings.Contains(l, "is corrupt") || !strings.Contains(l, "devport login") {
			t.Errorf("configuration line = %q (%v)\n%s", l, err, stdout)
		}
	})
	t.Run("--rage sends a bundle an admin then sees", func(t *testing.T) {
		stdout, _, err := r.Run("doctor", "--rage", "--note", "ssh to my devserver hangs", "--devserver", name)
		if err != nil {
			t.Fatalf("doctor --rage: %v\n%s", err, stdout)
		}
		i := strings.Index(stdout, "Sent diagnostic bundle ")
		if i < 0 || !strings.Contains(stdout, "a support task was opened") {
			t.Fatalf("stdout:\n%s", stdout)
		}
		id, _, _ := strings.Cut(stdout[i+len("Sent diagnostic bundle "):], " ")
		admin := r.Token("root@example.com", "admin")
		code, body := rigAPI(t, r, admin, "GET", "/api/v1/support", "")
		var list struct {
			Items []struct {
				ID     int64  `json:"id"`
				Source string `json:"source"`
				Note   string `json:"note"`
			} `json:"items"`
		}
		if code != http.StatusOK || json.Unmarshal([]byte(body), &list) != nil || len(list.Items) == 0 ||
			strconv.FormatInt(list.Items[0].ID, 10) != id || list.Items[0].Source != "cli" || list.Items[0].Note != "ssh to my devserver hangs" {
			t.Fatalf("GET /support: %d %s", code, body)
		}
		code, body = rigAPI(t, r, admin, "GET", "/api/v1/support/"+id, "")
		var b struct {
			Bundle map[string]any `json:"bundle"`
			Parts  struct {
				CLILog   []string          `json:"cli_log"`
				Config   map[string]string `json:"config"`
				Versions map[string]string `json:"versions"`
				Checks   struct {
					Checks []checkResult `json:"checks"`
				} `json:"checks"`
			} `json:"parts"`
		}
		if code != http.StatusOK || json.Unmarshal([]byte(body), &b) != nil {
			t.Fatalf("GET /support/%s: %d %s", id, code, body)
		}
		if len(b.Parts.CLILog) == 0 || !strings.Contains(strings.Join(b.Parts.CLILog, "\n"), "command devport doctor") {
			t.Errorf("cli_log part = %q", b.Parts.CLILog)
		}
		if strings.Contains(body, ada) {
			t.Error("the bundle holds the token")
		}
		if b.Parts.Config["token"] != ada[:8]+"…" || b.Parts.Versions["cli"] == "" || len(b.Parts.Checks.Checks) < 7 {
			t.Errorf("parts = %+v", b.Parts)
		}
		if b.Bundle["devserver"] != name {
			t.Errorf("bundle = %+v", b.Bundle)
		}
	})
	t.Run("--rage without a portal saves the bundle to send later", func(t *testing.T) {
		r.Vars["DEVPORT_PORTAL"] = closedPortal(t)
		defer delete(r.Vars, "DEVPORT_PORTAL")
		_, _, err := r.Run("doctor", "--rage", "--note", "nothing works")
		if err == nil || !strings.Contains(err.Error(), "saved in ") {
			t.Fatalf("err = %v", err)
		}
		saved := strings.Fields(err.Error()[strings.Index(err.Error(), "saved in ")+len("saved in "):])[0]
		saved = strings.TrimSuffix(saved, ":")
		b, rerr := os.ReadFile(saved)
		if rerr != nil || !strings.Contains(string(b), "nothing works") || !strings.Contains(string(b), "cli_log") || strings.Contains(string(b), ada) {
			t.Errorf("saved bundle %s: %v\n%s", saved, rerr, b)
		}
		if !strings.HasPrefix(saved, filepath.Join(r.Home, ".cache", "devport")) {
			t.Errorf("saved in %s, not the cache dir", saved)
		}
	})
}
