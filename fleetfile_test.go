package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/devport/devport/fleet/docker"
	"github.com/devport/devport/fleet/docker/dockertest"
	"github.com/devport/devport/store"
)

func writeFleetFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fleet.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRunRefusesABadFleetFile: a malformed fleet file, or one that would strand
// devservers, stops the start with the file's line and reason, and changes nothing.
func TestRunRefusesABadFleetFile(t *testing.T) {
	ctx := context.Background()
	t.Run("names the setting, the line and the reason", func(t *testing.T) {
		dir := t.TempDir()
		path := writeFleetFile(t, "regions:\n  - code: prn\nhosts:\n  - name: prn-ct01\n    region: prn\n    kind: container\n    driver: kvm\n    cpus: 4\n    memory_gb: 8\n    disk_gb: 50\n")
		err := run(ctx, []string{"devport", "serve", "--addr", "127.0.0.1:0", "--ssh-addr", "off", "--data-dir", dir, "--fleet", path}, env(nil), io.Discard)
		want := path + `:7: host "prn-ct01": driver "kvm" is not a driver this devport has (sim, docker)`
		if err == nil || !strings.Contains(err.Error(), "DEVPORT_FLEET") || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v; want DEVPORT_FLEET and %q", err, want)
		}
	})
	t.Run("a missing file", func(t *testing.T) {
		err := run(ctx, []string{"devport", "serve", "--addr", "127.0.0.1:0", "--ssh-addr", "off", "--data-dir", t.TempDir(), "--fleet", "/nonexistent/fleet.yaml"}, env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "DEVPORT_FLEET") || !strings.Contains(err.Error(), "/nonexistent/fleet.yaml") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestRunOnDocker starts the real binary on a fleet file whose hosts are run
// by the Docker driver, and takes a container devserver through its life
// through the API: reserve, ready, a feature installed in the container,
// release, container gone.
func TestRunOnDocker(t *testing.T) {
	endpoint := dockertest.Require(t)
	path := writeFleetFile(t, fmt.Sprintf(`regions:
  - code: prn
    name: Prineville, Oregon
  - code: ftw
hosts:
  - name: prn-ct01
    region: prn
    kind: container
    driver: docker
    endpoint: %[1]s
    cpus: 8
    memory_gb: 16
    disk_gb: 100
  - name: ftw-ct01
    region: ftw
    kind: container
    driver: docker
    endpoint: %[1]s
    cpus: 8
    memory_gb: 16
    disk_gb: 100
`, endpoint))
	p := startPortal(t, "--fleet", path, "--log-level", "warn", "--pool-interval", "0s")
	id, err := os.ReadFile(filepath.Join(p.DataDir, "portal-id"))
	if err != nil {
		t.Fatal(err)
	}
	portal := strings.TrimSpace(string(id))
	dockertest.Cleanup(t, endpoint, portalLabel, portal)

	var out bytes.Buffer
	if err := run(context.Background(), []string{"devport", "token", "create", "--user", "ada@example.com", "--data-dir", p.DataDir}, env(nil), &out); err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(out.String())
	call := func(method, path, body string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, p.URL+path, strings.NewReader(body))
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
		return resp.StatusCode, b
	}
	type devserver struct {
		Name       string `json:"name"`
		State      string `json:"state"`
		Host       string `json:"host"`
		Region     string `json:"region"`
		StatusNote string `json:"status_note"`
	}
	get := func(name string) devserver {
		t.Helper()
		code, body := call("GET", "/api/v1/devservers/"+name, "")
		var d devserver
		if code != 200 || json.Unmarshal(body, &d) != nil {
			t.Fatalf("GET %s = %d %s", name, code, body)
		}
		return d
	}
	waitFor := func(what string, timeout time.Duration, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not happen within %s", what, timeout)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	engine, err := client.NewClientWithOpts(client.WithHost(endpoint), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	containersOf := func(name string) []container.Summary {
		t.Helper()
		list, err := engine.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(
			filters.Arg("label", portalLabel+"="+portal), filters.Arg("label", docker.LabelName+"="+name))})
		if err != nil {
			t.Fatal(err)
		}
		return list
	}

	t.Run("the frame does not call a docker fleet simulated", func(t *testing.T) {
		req, _ := http.NewRequest("GET", p.URL+"/login", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), "badge-dev") {
			t.Fatalf("the login page has no frame with badges: %s", b)
		}
		if strings.Contains(string(b), "badge-sim") {
			t.Error("a page of a portal on Docker shows the simulated fleet badge")
		}
	})

	var name string
	step(t, "reserves container.medium through the API", func(t *testing.T) {
		code, body := call("POST", "/api/v1/devservers", `{"flavor":"container.medium","region":"ftw","lease":{"kind":"short"},"features":["git"]}`)
		if code != http.StatusAccepted {
			t.Fatalf("reserve = %d %s", code, body)
		}
		var d devserver
		_ = json.Unmarshal(body, &d)
		name = d.Name
		if d.Host != "ftw-ct01" || d.Region != "ftw" {
			t.Errorf("placed on %s in %s", d.Host, d.Region)
		}
	})
	step(t, "it becomes ready in a running container on the engine", func(t *testing.T) {
		waitFor("ready", 2*time.Minute, func() bool {
			d := get(name)
			if d.State == "failed" {
				t.Fatalf("provisioning failed: %s", d.StatusNote)
			}
			return d.State == "ready"
		})
		list := containersOf(name)
		if len(list) != 1 || list[0].State != "running" || list[0].Labels[docker.LabelHost] != "ftw-ct01" {
			t.Fatalf("containers of %s = %+v", name, list)
		}
	})
	step(t, "the feature is installed in the container's home", func(t *testing.T) {
		waitFor("git installed", time.Minute, func() bool {
			_, body := call("GET", "/api/v1/devservers/"+name+"/features", "")
			var fs struct {
				Items []struct{ Feature, State, Error string }
			}
			_ = json.Unmarshal(body, &fs)
			for _, f := range fs.Items {
				if f.Feature == "git" && f.State == "failed" {
					t.Fatalf("the feature failed: %s", f.Error)
				}
				if f.Feature == "git" && f.State == "installed" {
					return true
				}
			}
			return false
		})
		ctx := context.Background()
		exec, err := engine.ContainerExecCreate(ctx, containersOf(name)[0].ID, container.ExecOptions{
			Cmd: []string{"cat", docker.Home + "/.devport/features/git"}, User: docker.User, AttachStdout: true, AttachStderr: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		att, err := engine.ContainerExecAttach(ctx, exec.ID, container.ExecAttachOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		_, _ = stdcopy.StdCopy(&stdout, &stderr, att.Reader)
		att.Close()
		if !strings.HasPrefix(stdout.String(), "git ") {
			t.Errorf("~/.devport/features/git in the container = %q (stderr %q)", stdout.String(), stderr.String())
		}
	})
	step(t, "release removes the container", func(t *testing.T) {
		if code, body := call("POST", "/api/v1/devservers/"+name+"/release", ""); code != http.StatusAccepted && code != http.StatusOK {
			t.Fatalf("release = %d %s", code, body)
		}
		waitFor("released", time.Minute, func() bool { return get(name).State == "released" })
		if list := containersOf(name); len(list) != 0 {
			t.Errorf("containers left after release: %+v", list)
		}
	})
}

// TestRunReconcilesTheFleetFile: a portal on a fleet file of simulated hosts
// says so, and a later start whose file drops a host that holds a devserver
// is refused, naming both, with the inventory unchanged.
func TestRunReconcilesTheFleetFile(t *testing.T) {
	const hosts = `regions:
  - code: prn
hosts:
  - name: prn-ct01
    region: prn
    kind: container
    driver: sim
    cpus: 8
    memory_gb: 16
    disk_gb: 100
`
	const second = `  - name: prn-ct02
    region: prn
    kind: container
    driver: sim
    state: maintenance
    cpus: 8
    memory_gb: 16
    disk_gb: 100
`
	path := writeFleetFile(t, hosts+second)
	p := startPortal(t, "--fleet", path, "--sim-latency", "0s", "--log-level", "warn", "--pool-interval", "0s")
	resp, err := http.Get(p.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `class="badge badge-sim"`) || !strings.Contains(string(page), "simulated fleet") {
		t.Error("a portal on simulated hosts does not say so")
	}

	var out bytes.Buffer
	if err := run(context.Background(), []string{"devport", "token", "create", "--user", "ada@example.com", "--data-dir", p.DataDir}, env(nil), &out); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", p.URL+"/api/v1/devservers", strings.NewReader(`{"flavor":"container.medium","region":"prn"}`))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(out.String()))
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Name string `json:"name"`
		Host string `json:"host"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&d)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || d.Host != "prn-ct01" {
		t.Fatalf("reserve = %d, placed on %q", resp.StatusCode, d.Host)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}

	t.Run("removing the host that holds the devserver is refused", func(t *testing.T) {
		err := run(context.Background(), []string{"devport", "serve", "--addr", "127.0.0.1:0", "--ssh-addr", "off", "--data-dir", p.DataDir,
			"--fleet", writeFleetFile(t, strings.Replace(hosts, "prn-ct01", "prn-ct03", 1))}, env(nil), io.Discard)
		want := "host prn-ct01 has 1 devserver (" + d.Name + "): move or release them before removing it from the fleet file"
		if err == nil || !strings.Contains(err.Error(), "DEVPORT_FLEET") || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v; want %q", err, want)
		}
	})
	t.Run("nothing changed", func(t *testing.T) {
		s, err := store.Open(context.Background(), store.Options{Path: filepath.Join(p.DataDir, "devport.db"), Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		hs, err := s.Hosts(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, h := range hs {
			names = append(names, h.Name+":"+h.State)
		}
		if got := strings.Join(names, ","); got != "prn-ct01:ready,prn-ct02:maintenance" {
			t.Errorf("hosts after a refused start = %s", got)
		}
		ev, _ := s.AuditEvents(context.Background(), "host", "prn-ct03")
		if len(ev) != 0 {
			t.Errorf("the refused host was audited: %+v", ev)
		}
	})
}
