package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	t.Run("logout forgets the token", func(t *testing.T) {
		stdout, _, err := r.Run("logout")
		if err != nil || !strings.Contains(stdout, "Signed out") {
			t.Fatalf("logout: %q %v", stdout, err)
		}
		if _, _, err := r.Run("whoami"); err == nil || !strings.Contains(err.Error(), "devport login") {
			t.Errorf("whoami after logout: %v", err)
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
