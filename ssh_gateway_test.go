package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// serve starts the SSH gateway beside the web server: the OpenSSH client
// reaches a devserver reserved through the API, with the host key the
// portal generated in its data directory; DEVPORT_SSH_ADDR=off turns it off.
func TestServeSSHGateway(t *testing.T) {
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		if os.Getenv("DEVPORT_REQUIRE_ALL") == "1" {
			t.Fatal("SSH GATEWAY TEST FAILS: the OpenSSH client (ssh) is not installed and DEVPORT_REQUIRE_ALL=1 forbids skipping; install Debian's openssh-client package")
		}
		t.Skip("SKIPPING OPENSSH TEST: the OpenSSH client (ssh) is not installed; install Debian's openssh-client package (apt-get install openssh-client); DEVPORT_REQUIRE_ALL=1 turns this into a failure")
	}
	p := startPortal(t, "--sim-latency", "0s")
	var sshAddr string
	for wait := time.Now().Add(10 * time.Second); sshAddr == "" && time.Now().Before(wait); time.Sleep(20 * time.Millisecond) {
		p.mu.Lock()
		for _, l := range p.logs {
			if rest, ok := strings.CutPrefix(l, "devport SSH gateway on "); ok {
				sshAddr, _, _ = strings.Cut(rest, " ")
			}
		}
		p.mu.Unlock()
	}
	if sshAddr == "" {
		t.Fatal(`the portal did not print "devport SSH gateway on ADDR" within 10 s`)
	}
	_, port, _ := net.SplitHostPort(sshAddr)

	keyPath := filepath.Join(p.DataDir, "secrets", "ssh_host_ed25519_key")
	fi, err := os.Stat(keyPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("host key %s: %v %v", keyPath, fi, err)
	}
	b, _ := os.ReadFile(keyPath)
	hostKey, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(knownHosts, fmt.Appendf(nil, "[127.0.0.1]:%s %s", port, ssh.MarshalAuthorizedKey(hostKey.PublicKey())), 0o600)

	var out bytes.Buffer
	if err := run(context.Background(), []string{"devport", "token", "create", "--user", "dev@example.com", "--data-dir", p.DataDir}, env(nil), &out); err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(out.String())
	api := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, p.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		rb, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(rb)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, _ := ssh.MarshalPrivateKey(priv, "dev@example.com")
	idFile := filepath.Join(t.TempDir(), "id_ed25519")
	os.WriteFile(idFile, pem.EncodeToMemory(block), 0o600)
	signer, _ := ssh.NewSignerFromKey(priv)
	kb, _ := json.Marshal(map[string]string{"public_key": string(ssh.MarshalAuthorizedKey(signer.PublicKey()))})
	if code, body := api("POST", "/api/v1/me/keys", string(kb)); code != http.StatusCreated {
		t.Fatalf("add key: %d %s", code, body)
	}
	code, body := api("POST", "/api/v1/devservers", `{"flavor":"vm.small"}`)
	if code != http.StatusAccepted {
		t.Fatalf("reserve: %d %s", code, body)
	}
	var d struct {
		Name, State, Hostname string
		Connection            struct {
			SSHCommand string `json:"ssh_command"`
			SSHConfig  string `json:"ssh_config"`
		}
	}
	json.Unmarshal([]byte(body), &d)
	deadline := time.Now().Add(30 * time.Second)
	for d.State != "ready" {
		if time.Now().After(deadline) {
			t.Fatalf("%s is %s after 30 s", d.Name, d.State)
		}
		time.Sleep(50 * time.Millisecond)
		_, body := api("GET", "/api/v1/devservers/"+d.Name, "")
		json.Unmarshal([]byte(body), &d)
	}
	// The connection details name the gateway, and their ssh config entry is
	// all OpenSSH needs (with the person's own key and known hosts).
	if want := "ssh -p " + port + " " + d.Name + "@127.0.0.1"; d.Connection.SSHCommand != want {
		t.Errorf("the connection details say %q, want %q", d.Connection.SSHCommand, want)
	}
	sshConfig := filepath.Join(t.TempDir(), "config")
	os.WriteFile(sshConfig, []byte(d.Connection.SSHConfig), 0o600)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sshBin, "-F", sshConfig, "-i", idFile,
		"-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+knownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
		d.Hostname, "echo hello; exit 7")
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 7 || stdout.String() != "hello\n" {
		t.Fatalf("ssh 'echo hello; exit 7' = %v, stdout %q; stderr:\n%s", err, stdout.String(), stderr.String())
	}

	// The gateway stops with the portal: run returns nil and the port is free.
	if err := p.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if ln, err := net.Listen("tcp", sshAddr); err != nil {
		t.Errorf("the SSH port %s is still taken after shutdown: %v", sshAddr, err)
	} else {
		ln.Close()
	}
}

func TestSSHGatewayOff(t *testing.T) {
	p := startPortal(t, "--ssh-addr", "off")
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.logs {
		if strings.HasPrefix(l, "devport SSH gateway on ") {
			t.Errorf("the gateway started with --ssh-addr off: %s", l)
		}
	}
	if _, err := os.Stat(filepath.Join(p.DataDir, "secrets", "ssh_host_ed25519_key")); err == nil {
		t.Error("a host key was generated for a gateway that is off")
	}
}

func TestSSHAddrSetting(t *testing.T) {
	for _, tc := range []struct {
		env, want string
	}{
		{"", "127.0.0.1:2222"},
		{"off", ""},
		{"OFF", ""},
		{"0.0.0.0:22", "0.0.0.0:22"},
		{"localhost:0", "localhost:0"},
	} {
		c, err := parseConfig("serve", nil, env(map[string]string{"DEVPORT_SSH_ADDR": tc.env}), io.Discard, nil)
		if err != nil || c.SSHAddr != tc.want {
			t.Errorf("DEVPORT_SSH_ADDR=%q: %q, %v; want %q", tc.env, c.SSHAddr, err, tc.want)
		}
	}
	if c, err := parseConfig("serve", []string{"--ssh-addr", ""}, env(nil), io.Discard, nil); err != nil || c.SSHAddr != "" {
		t.Errorf("--ssh-addr '': %q, %v; want off", c.SSHAddr, err)
	}
	for _, bad := range []string{"2222", "example.com:2222", "127.0.0.1:99999", "127.0.0.1:ssh"} {
		_, err := parseConfig("serve", nil, env(map[string]string{"DEVPORT_SSH_ADDR": bad}), io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), "DEVPORT_SSH_ADDR") {
			t.Errorf("DEVPORT_SSH_ADDR=%q: %v, want an error naming the setting", bad, err)
		}
	}
	c, _ := parseConfig("serve", []string{"--data-dir", "/var/lib/devport"}, env(nil), io.Discard, nil)
	if c.SSHHostKeyPath() != "/var/lib/devport/secrets/ssh_host_ed25519_key" {
		t.Errorf("host key path = %s", c.SSHHostKeyPath())
	}
}
