package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devport/devport/store"
)

// cliRig runs the CLI in-process, as a person would from a terminal,
// against a real portal (run("serve")) started for the test.
type cliRig struct {
	t      *testing.T
	Portal *portal
	// Home is the person's home directory: the CLI's configuration and
	// cache live under it.
	Home string
	// Vars are the environment the CLI sees besides HOME.
	Vars map[string]string
	// Browser is what "opening a URL in the browser" does (default: fail).
	Browser func(url string) error
	// Exec records the program devport ssh would become.
	Exec func(path string, argv []string) error
	// Stdin is what the CLI reads.
	Stdin string
}

// newCLIRig starts a portal with the given extra serve flags (an instant
// simulated fleet by default) and gives a CLI with an empty home.
func newCLIRig(t *testing.T, flags ...string) *cliRig {
	t.Helper()
	p := startPortal(t, append([]string{"--sim-latency", "0s", "--pool-interval", "0s"}, flags...)...)
	return &cliRig{t: t, Portal: p, Home: t.TempDir(), Vars: map[string]string{}}
}

// Token creates a user with the roles and a full token for them on the
// server host, as an administrator would with "devport token create".
func (r *cliRig) Token(email string, roles ...string) string {
	r.t.Helper()
	args := []string{"devport", "token", "create", "--user", email, "--data-dir", r.Portal.DataDir, "--name", "test"}
	for _, role := range roles {
		args = append(args, "--role", role)
	}
	var out bytes.Buffer
	if err := run(context.Background(), args, func(string) string { return "" }, &out); err != nil {
		r.t.Fatalf("token create: %v", err)
	}
	for _, f := range strings.Fields(out.String()) {
		if strings.HasPrefix(f, "dpt_") {
			return f
		}
	}
	r.t.Fatalf("token create printed no token: %q", out.String())
	return ""
}

// Login signs the CLI in with a new token for email.
func (r *cliRig) Login(email string, roles ...string) {
	r.t.Helper()
	tok := r.Token(email, roles...)
	if _, stderr, err := r.Run("login", "--portal", r.Portal.URL, "--token", tok); err != nil {
		r.t.Fatalf("login: %v (%s)", err, stderr)
	}
}

// Run runs one CLI command line and returns what it printed on stdout and
// stderr, and its error (what the person sees after "devport: ").
func (r *cliRig) Run(args ...string) (string, string, error) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return r.RunContext(ctx, args...)
}

// RunContext is Run with the caller's context.
func (r *cliRig) RunContext(ctx context.Context, args ...string) (string, string, error) {
	var stdout, stderr bytes.Buffer
	env := cliEnv{
		Stdin: strings.NewReader(r.Stdin), Stdout: &stdout, Stderr: &stderr,
		Getenv: func(k string) string {
			if k == "HOME" {
				return r.Home
			}
			return r.Vars[k]
		},
		OpenBrowser: r.Browser,
		Exec:        r.Exec,
		Now:         time.Now,
	}
	if env.OpenBrowser == nil {
		env.OpenBrowser = func(string) error { return errors.New("no browser in this test") }
	}
	if env.Exec == nil {
		env.Exec = func(string, []string) error { return errors.New("no exec in this test") }
	}
	err := runCLI(ctx, env, args)
	return stdout.String(), stderr.String(), err
}

// JSON runs a command with --json and decodes what it printed into out.
func (r *cliRig) JSON(out any, args ...string) {
	r.t.Helper()
	stdout, stderr, err := r.Run(append(args, "--json")...)
	if err != nil {
		r.t.Fatalf("devport %s: %v (stderr %q)", strings.Join(args, " "), err, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), out); err != nil {
		r.t.Fatalf("devport %s --json printed what is not JSON: %v\n%s", strings.Join(args, " "), err, stdout)
	}
}

func TestCLILogin(t *testing.T) {
	r := newCLIRig(t)
	tok := r.Token("ada@example.com")

	t.Run("login with a token keeps it in a private configuration file", func(t *testing.T) {
		stdout, _, err := r.Run("login", "--portal", r.Portal.URL, "--token", tok)
		if err != nil || !strings.Contains(stdout, "Signed in to "+r.Portal.URL+" as ada@example.com") {
			t.Fatalf("login: %q %v", stdout, err)
		}
		path := filepath.Join(r.Home, ".config", "devport", "config.json")
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("config file mode = %v, %v; want 0600", fi.Mode(), err)
		}
		b, _ := os.ReadFile(path)
		if !strings.Contains(string(b), tok) || !strings.Contains(string(b), r.Portal.URL) {
			t.Errorf("config holds %s", b)
		}
		stdout, _, err = r.Run("whoami")
		if err != nil || !strings.Contains(stdout, "ada@example.com") {
			t.Errorf("whoami: %q %v", stdout, err)
		}
	})
	t.Run("login refuses an unknown token and keeps the configuration", func(t *testing.T) {
		_, _, err := r.Run("login", "--portal", r.Portal.URL, "--token", "dpt_notatoken")
		if err == nil || !strings.Contains(err.Error(), "does not accept this token") {
			t.Errorf("err = %v", err)
		}
		if stdout, _, err := r.Run("whoami"); err != nil || !strings.Contains(stdout, "ada@example.com") {
			t.Errorf("whoami after a refused login: %q %v", stdout, err)
		}
	})
	t.Run("login reads a token from standard input", func(t *testing.T) {
		r.Stdin = tok + "\n"
		defer func() { r.Stdin = "" }()
		if _, _, err := r.Run("login", "--with-token"); err != nil {
			t.Errorf("login --with-token: %v", err)
		}
	})
	t.Run("a corrupt configuration file is a clear error", func(t *testing.T) {
		path := filepath.Join(r.Home, ".config", "devport", "config.json")
		good, _ := os.ReadFile(path)
		defer os.WriteFile(path, good, 0o600)
		if err := os.WriteFile(path, []byte(`{"portal": "http://x", "tok`), 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err := r.Run("whoami")
		if err == nil || !strings.Contains(err.Error(), "is corrupt") || !strings.Contains(err.Error(), "devport login") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("without a token the CLI says to log in", func(t *testing.T) {
		other := &cliRig{t: t, Portal: r.Portal, Home: t.TempDir(), Vars: map[string]string{"DEVPORT_PORTAL": r.Portal.URL}}
		_, _, err := other.Run("whoami")
		if err == nil || !strings.Contains(err.Error(), "devport login") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("a portal that does not answer is a clear error within seconds", func(t *testing.T) {
		other := &cliRig{t: t, Portal: r.Portal, Home: t.TempDir(), Vars: map[string]string{
			// A listener that accepts and never answers.
			"DEVPORT_PORTAL": silentServer(t), "DEVPORT_TOKEN": tok}}
		start := time.Now()
		_, _, err := other.Run("whoami", "--timeout", "2s")
		if err == nil || !strings.Contains(err.Error(), "does not answer") {
			t.Errorf("err = %v", err)
		}
		if took := time.Since(start); took > 20*time.Second {
			t.Errorf("the CLI waited %s for a silent portal", took)
		}
	})
	t.Run("the stored token is never sent to another portal", func(t *testing.T) {
		var seen []string
		var mu sync.Mutex
		other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.Header.Get("Authorization"))
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"email":"mallory@example.com","items":[]}`))
		}))
		defer other.Close()
		for _, args := range [][]string{{"whoami", "--portal", other.URL}, {"ls", "--portal", other.URL}, {"doctor", "--no-fix", "--portal", other.URL}} {
			_, _, err := r.Run(args...)
			if err == nil || !strings.Contains(err.Error(), "stored token is for "+r.Portal.URL) && args[0] != "doctor" {
				t.Errorf("%s: err = %v, want that the stored token is for %s", args[0], err, r.Portal.URL)
			}
		}
		r.Vars["DEVPORT_PORTAL"] = other.URL
		_, _, err := r.Run("whoami")
		delete(r.Vars, "DEVPORT_PORTAL")
		if err == nil {
			t.Error("whoami with $DEVPORT_PORTAL of another portal used the stored token")
		}
		mu.Lock()
		for _, h := range seen {
			if strings.Contains(h, tok) {
				t.Errorf("the stored token of %s was sent to %s", r.Portal.URL, other.URL)
			}
		}
		mu.Unlock()
		// The stored portal, however it is written, is the same portal.
		path := filepath.Join(r.Home, ".config", "devport", "config.json")
		good, _ := os.ReadFile(path)
		defer os.WriteFile(path, good, 0o600)
		if err := os.WriteFile(path, []byte(`{"portal":"`+r.Portal.URL+`/","token":"`+tok+`"}`), 0o600); err != nil {
			t.Fatal(err)
		}
		if stdout, _, err := r.Run("whoami"); err != nil || !strings.Contains(stdout, "ada@example.com") {
			t.Errorf("whoami with the portal written with a trailing slash: %q %v", stdout, err)
		}
		// A token given for the call goes where the call goes.
		if stdout, _, err := r.Run("whoami", "--portal", other.URL, "--token", "dpt_given"); err != nil || !strings.Contains(stdout, "mallory@example.com") {
			t.Errorf("whoami with --token: %q %v", stdout, err)
		}
	})
	t.Run("logout revokes the token and forgets it", func(t *testing.T) {
		stdout, _, err := r.Run("logout")
		if err != nil || !strings.Contains(stdout, "the token is revoked on "+r.Portal.URL) {
			t.Fatalf("logout: %q %v", stdout, err)
		}
		if _, _, err := r.Run("whoami"); err == nil || !strings.Contains(err.Error(), "devport login") {
			t.Errorf("whoami after logout: %v", err)
		}
		if _, _, err := r.Run("whoami", "--portal", r.Portal.URL, "--token", tok); err == nil || !strings.Contains(err.Error(), "revoked") {
			t.Errorf("the logged-out token still works, or says something else: %v", err)
		}
	})
	t.Run("logout --keep-token forgets the token without revoking it", func(t *testing.T) {
		other := r.Token("ada@example.com")
		if _, _, err := r.Run("login", "--portal", r.Portal.URL, "--token", other); err != nil {
			t.Fatal(err)
		}
		if stdout, _, err := r.Run("logout", "--keep-token"); err != nil || !strings.Contains(stdout, "stays valid") {
			t.Fatalf("logout --keep-token: %q %v", stdout, err)
		}
		if _, _, err := r.Run("whoami", "--portal", r.Portal.URL, "--token", other); err != nil {
			t.Errorf("the kept token no longer works: %v", err)
		}
	})
}

// silentServer is the URL of a listener that accepts connections and never
// answers, as a hung portal does.
func silentServer(t *testing.T) string {
	t.Helper()
	block := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-block })}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { close(block); srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestCLILoginNamesTheHost: the browser sign-in names this machine once,
// so the token is "devport CLI on HOST" rather than "devport CLI on devport
// CLI on HOST".
func TestCLILoginNamesTheHost(t *testing.T) {
	r := newCLIRig(t)
	opened := make(chan string, 1)
	r.Browser = func(u string) error { opened <- u; return nil }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, _, err := r.RunContext(ctx, "login", "--portal", r.Portal.URL)
		done <- err
	}()
	var raw string
	select {
	case raw = <-opened:
	case err := <-done:
		t.Fatalf("login ended before opening the browser: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("login opened no browser")
	}
	cancel()
	<-done
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "this machine"
	}
	if got := u.Query().Get("name"); got != host {
		t.Errorf("the CLI named itself %q, want the host %q (the portal adds \"devport CLI on\")", got, host)
	}
}

// TestCLILoginDenied: a sign-in denied in the browser ends devport login at
// once with a clear error (the portal sends the browser back to the CLI
// with no code), rather than after the five minutes it waits.
func TestCLILoginDenied(t *testing.T) {
	r := newCLIRig(t)
	r.Browser = func(raw string) error {
		u, err := url.Parse(raw)
		if err != nil {
			return err
		}
		q := u.Query()
		// What the browser does after Deny: it follows the portal's redirect.
		go func() {
			resp, err := http.Get("http://127.0.0.1:" + q.Get("port") + "/callback?" + url.Values{"error": {"access_denied"}, "state": {q.Get("state")}}.Encode())
			if err == nil {
				resp.Body.Close()
			}
		}()
		return nil
	}
	start := time.Now()
	_, _, err := r.Run("login", "--portal", r.Portal.URL)
	if err == nil || !strings.Contains(err.Error(), "not approved") {
		t.Errorf("err = %v", err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("login took %s after the denial", took)
	}
}

// TestCLILogHidesTokens: the CLI log, which devport doctor --rage sends to
// the platform team, never holds a token, wherever it was typed.
func TestCLILogHidesTokens(t *testing.T) {
	r := newCLIRig(t)
	const secret = "dpt_abcdefghijklmnopqrstuvwxyz234567"
	for _, args := range [][]string{
		{"whoami", "--portal", r.Portal.URL, "--token", secret},
		{"whoami", "--portal", r.Portal.URL, "--token=" + secret},
		{"login", "--portal", r.Portal.URL, secret},
	} {
		_, _, _ = r.Run(args...)
	}
	b, err := os.ReadFile(filepath.Join(r.Home, ".cache", "devport", "cli.log"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "abcdefghijklmnop") {
		t.Errorf("the CLI log holds the token:\n%s", b)
	}
	if strings.Count(string(b), "command devport") != 3 {
		t.Errorf("the CLI log does not hold the three commands:\n%s", b)
	}
}

func TestCLIInvocation(t *testing.T) {
	for _, tc := range []struct {
		args []string
		cli  bool
	}{
		{[]string{}, false},
		{[]string{"serve", "--addr", "127.0.0.1:0"}, false},
		{[]string{"--addr", "127.0.0.1:0"}, false},
		{[]string{"migrate"}, false},
		{[]string{"migrate", "--data-dir", "/tmp/x"}, false},
		{[]string{"migrate", "--database-url", "postgres://h/db"}, false},
		{[]string{"token", "create", "--user", "a@example.com"}, false},
		{[]string{"version"}, false},
		{[]string{"ls"}, true},
		{[]string{"--json", "ls"}, true},
		{[]string{"--portal", "http://x", "ls"}, true},
		{[]string{"--portal=http://x", "--timeout", "2s", "reserve", "--flavor", "vm.small"}, true},
		{[]string{"--json", "help"}, true},
		{[]string{"migrate", "ada-x7k2p", "--region", "lla"}, true},
		{[]string{"migrate", "--region", "lla", "ada-x7k2p"}, true},
		{[]string{"migrate", "--flavor=vm.large", "ada-x7k2p"}, true},
		{[]string{"--json", "migrate", "ada-x7k2p", "--region", "lla"}, true},
	} {
		if got := cliInvocation(tc.args); got != tc.cli {
			t.Errorf("cliInvocation(%q) = %v, want %v", tc.args, got, tc.cli)
		}
	}
}

// rigAPI calls the portal's API with a token, as a script would.
func rigAPI(t *testing.T, r *cliRig, token, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, r.Portal.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestCLIListing: an empty list says so to a person and is [] to a program.
func TestCLIListing(t *testing.T) {
	var stdout, stderr bytes.Buffer
	c := &cli{env: cliEnv{Stdout: &stdout, Stderr: &stderr, Now: time.Now}}
	header := []string{"ID", "STATE"}

	t.Run("an empty list is the line for the person, or [] under --json", func(t *testing.T) {
		stdout.Reset()
		if err := c.listing([]store.Backup{}, "vm-1 has no backups yet.", header, nil); err != nil || stdout.String() != "vm-1 has no backups yet.\n" {
			t.Errorf("listing: %q %v", stdout.String(), err)
		}
		stdout.Reset()
		c.json = true
		defer func() { c.json = false }()
		if err := c.listing([]store.Backup{}, "vm-1 has no backups yet.", header, nil); err != nil || stdout.String() != "[]\n" {
			t.Errorf("listing --json: %q %v", stdout.String(), err)
		}
	})

	t.Run("a list with rows is a table under the header", func(t *testing.T) {
		stdout.Reset()
		err := c.listing([]store.Backup{{ID: 7, State: "done"}}, "vm-1 has no backups yet.", header, [][]string{{"7", "done"}})
		if got := strings.Fields(stdout.String()); err != nil || strings.Join(got, " ") != "ID STATE 7 done" {
			t.Errorf("listing: %q %v", stdout.String(), err)
		}
	})
}
