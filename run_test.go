package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/devport/devport/migrations"
)

func TestRunSubcommands(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	getenv := env(map[string]string{"DEVPORT_DATA_DIR": dir})

	t.Run("version prints the version", func(t *testing.T) {
		var out bytes.Buffer
		if err := run(ctx, []string{"devport", "version"}, getenv, &out); err != nil || !strings.HasPrefix(out.String(), "devport ") {
			t.Errorf("version: %q %v", out.String(), err)
		}
	})
	t.Run("help and --help list the server's and the CLI's commands", func(t *testing.T) {
		for _, args := range [][]string{{"devport", "help"}, {"devport", "--help"}, {"devport", "-h"}} {
			var out bytes.Buffer
			if err := run(ctx, args, getenv, &out); err != nil {
				t.Errorf("%v: %v", args, err)
			}
			for _, want := range []string{"serve", "login", "reserve", "ssh-config", "doctor", "completion", "token"} {
				if !strings.Contains(out.String(), "  "+want+" ") {
					t.Errorf("%v does not list %s:\n%s", args, want, out.String())
				}
			}
		}
	})
	t.Run("migrate without a devserver name is the database's; with one, the CLI's", func(t *testing.T) {
		err := run(ctx, []string{"devport", "migrate", "ada-x7k2p", "--region", "ftw"}, env(map[string]string{"HOME": t.TempDir()}), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "devport login") {
			t.Errorf("migrate NAME without a sign-in: %v; want the CLI asking to log in", err)
		}
	})
	t.Run("an unknown command is refused with the usage", func(t *testing.T) {
		err := run(ctx, []string{"devport", "frobnicate"}, getenv, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "devport token create") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("migrate creates the database with private files", func(t *testing.T) {
		var out bytes.Buffer
		if err := run(ctx, []string{"devport", "migrate"}, getenv, &out); err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`schema version (\d+) of (\d+)\n`).MatchString(out.String()) || !strings.Contains(out.String(), fmt.Sprintf("version %d of %d", latestSchema(t), latestSchema(t))) {
			t.Errorf("migrate said %q", out.String())
		}
		fi, err := os.Stat(filepath.Join(dir, "devport.db"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("database file mode = %v, %v", fi.Mode(), err)
		}
	})
	t.Run("token create refuses a bad email or role and writes nothing", func(t *testing.T) {
		for _, args := range [][]string{
			{"devport", "token", "create"},
			{"devport", "token", "create", "--user", "not-an-email"},
			{"devport", "token", "create", "--user", "a@example.com", "--role", "king"},
			{"devport", "token", "create", "--user", "a@example.com", "--expires", "soon"},
			{"devport", "token", "list"},
		} {
			var out bytes.Buffer
			if err := run(ctx, args, getenv, &out); err == nil || out.Len() != 0 {
				t.Errorf("%v: err %v, printed %q", args, err, out.String())
			}
		}
	})
	t.Run("serve refuses an invalid setting, naming it", func(t *testing.T) {
		err := run(ctx, []string{"devport", "serve"}, env(map[string]string{"DEVPORT_DATA_DIR": dir, "DEVPORT_SIM_LATENCY": "soon"}), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "DEVPORT_SIM_LATENCY") || !strings.Contains(err.Error(), "--sim-latency") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("serve refuses to start with no way to sign in", func(t *testing.T) {
		err := run(ctx, []string{"devport", "serve", "--addr", "127.0.0.1:0", "--dev-login", "0"}, getenv, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "no way to sign in") {
			t.Errorf("err = %v", err)
		}
	})
}

// latestSchema is the newest migration's version.
func latestSchema(t *testing.T) int {
	t.Helper()
	entries, err := migrations.SQLite.ReadDir("sqlite")
	if err != nil || len(entries) == 0 {
		t.Fatal(err)
	}
	var v int
	fmt.Sscanf(entries[len(entries)-1].Name(), "%d_", &v)
	return v
}

func TestRunServes(t *testing.T) {
	p := startPortal(t, "--sim-latency", "0s", "--log-level", "warn")
	url, dir := p.URL, p.DataDir

	get := func(path, token string) (int, string) {
		req, _ := http.NewRequest("GET", url+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz", ""); code != 200 || !strings.Contains(body, "ready") {
		t.Errorf("/readyz = %d %s", code, body)
	}
	if code, _ := get("/healthz", ""); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	t.Run("the session key is generated once, private", func(t *testing.T) {
		fi, err := os.Stat(filepath.Join(dir, "secrets", "session-key"))
		if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 64 {
			t.Errorf("session key = %v, %v", fi, err)
		}
	})
	t.Run("a token made by token create works against the running portal", func(t *testing.T) {
		var out bytes.Buffer
		err := run(context.Background(), []string{"devport", "token", "create", "--user", "Ops@Example.com", "--role", "admin", "--data-dir", dir}, env(nil), &out)
		if err != nil {
			t.Fatal(err)
		}
		token := strings.TrimSpace(out.String())
		if !strings.HasPrefix(token, "dpt_") {
			t.Fatalf("printed %q", token)
		}
		code, body := get("/api/v1/me", token)
		if code != 200 || !strings.Contains(body, `"ops@example.com"`) || !strings.Contains(body, `"admin"`) {
			t.Errorf("/api/v1/me = %d %s", code, body)
		}
		if code, _ := get("/api/v1/devservers?all=1", token); code != 200 {
			t.Errorf("an admin token cannot list all devservers: %d", code)
		}
	})
	t.Run("metrics cover HTTP and jobs", func(t *testing.T) {
		_, body := get("/metrics", "")
		for _, want := range []string{"devport_http_requests_total", `route="/readyz"`, "devport_jobs_total", "go_goroutines"} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})
	t.Run("pages carry a CSP with no inline script", func(t *testing.T) {
		resp, err := http.Get(url + "/login")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("CSP = %q", csp)
		}
	})
}

func TestServeHoldsTheDataDirectory(t *testing.T) {
	p := startPortal(t, "--sim-latency", "0s", "--pool-interval", "0s")
	var out strings.Builder
	err := run(context.Background(), []string{"devport", "serve", "--addr", "127.0.0.1:0", "--ssh-addr", "off", "--data-dir", p.DataDir},
		func(string) string { return "" }, &out)
	if err == nil || !strings.Contains(err.Error(), "another devport is serving from the data directory "+p.DataDir) {
		t.Fatalf("a second serve on the same data directory: %v", err)
	}
	// The first one still serves.
	resp, err := http.Get(p.URL + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the first portal after the refused second: %v", err)
	}
	resp.Body.Close()
}
