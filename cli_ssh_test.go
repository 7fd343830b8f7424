package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/store"
	"golang.org/x/crypto/ssh"
)

// gatewayPort is the port the portal's SSH gateway listens on, from its log.
func gatewayPort(t *testing.T, p *portal) string {
	t.Helper()
	for wait := time.Now().Add(10 * time.Second); time.Now().Before(wait); time.Sleep(20 * time.Millisecond) {
		p.mu.Lock()
		for _, l := range p.logs {
			if rest, ok := strings.CutPrefix(l, "devport SSH gateway on "); ok {
				addr, _, _ := strings.Cut(rest, " ")
				p.mu.Unlock()
				_, port, _ := net.SplitHostPort(addr)
				return port
			}
		}
		p.mu.Unlock()
	}
	t.Fatal(`the portal did not print "devport SSH gateway on ADDR" within 10 s`)
	return ""
}

func TestCLISSHArgv(t *testing.T) {
	cases := []struct {
		cn    store.Connection
		extra []string
		want  []string
	}{
		{store.Connection{User: "ada-vm", SSHHost: "127.0.0.1", SSHPort: 2222}, nil, []string{"ssh", "-p", "2222", "ada-vm@127.0.0.1"}},
		{store.Connection{User: "ada", SSHHost: "10.0.0.7", SSHPort: 22}, []string{"-L", "8080:localhost:8080"}, []string{"ssh", "ada@10.0.0.7", "-L", "8080:localhost:8080"}},
	}
	for _, tc := range cases {
		if got := sshArgv(tc.cn, tc.extra); !slices.Equal(got, tc.want) {
			t.Errorf("sshArgv(%+v, %q) = %q, want %q", tc.cn, tc.extra, got, tc.want)
		}
	}
}

func TestCLISSHCommand(t *testing.T) {
	r := newCLIRig(t)
	tok := loginAs(r, "ada@example.com")
	port := gatewayPort(t, r.Portal)
	var gotPath string
	var gotArgv []string
	r.Exec = func(path string, argv []string) error {
		gotPath, gotArgv = path, argv
		return nil
	}
	stdout, _, err := r.Run("reserve", "--flavor", "vm.small")
	if err != nil {
		t.Fatal(err)
	}
	name := reservedName(t, stdout)

	t.Run("ssh runs OpenSSH through the gateway with the person's arguments", func(t *testing.T) {
		if _, _, err := r.Run("ssh", name, "--", "-L", "8080:localhost:8080", "uname", "-a"); err != nil {
			t.Fatal(err)
		}
		want := []string{"ssh", "-p", port, name + "@127.0.0.1", "-L", "8080:localhost:8080", "uname", "-a"}
		if !slices.Equal(gotArgv, want) || filepath.Base(gotPath) != "ssh" {
			t.Errorf("devport ssh runs %s %q, want %q", gotPath, gotArgv, want)
		}
		// Without "--" the arguments after the name are ssh's too.
		if _, _, err := r.Run("ssh", name, "-v"); err != nil || !slices.Equal(gotArgv, []string{"ssh", "-p", port, name + "@127.0.0.1", "-v"}) {
			t.Errorf("devport ssh NAME -v runs %q (%v)", gotArgv, err)
		}
	})

	t.Run("the command devport ssh runs gets in with the person's key", func(t *testing.T) {
		if _, err := exec.LookPath("ssh"); err != nil {
			t.Skip("SKIPPING: the OpenSSH client (ssh) is not installed (apt-get install openssh-client)")
		}
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		block, _ := ssh.MarshalPrivateKey(priv, "ada@example.com")
		idFile := filepath.Join(t.TempDir(), "id_ed25519")
		if err := os.WriteFile(idFile, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		signer, _ := ssh.NewSignerFromKey(priv)
		kb, _ := json.Marshal(map[string]string{"public_key": string(ssh.MarshalAuthorizedKey(signer.PublicKey()))})
		if code, body := rigAPI(t, r, tok, "POST", "/api/v1/me/keys", string(kb)); code != http.StatusCreated {
			t.Fatalf("add key: %d %s", code, body)
		}
		if _, _, err := r.Run("ssh", name, "--", "-i", idFile, "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "echo hi"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, gotPath, gotArgv[1:]...)
		cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil || out.String() != "hi\n" {
			t.Fatalf("%q = %v, stdout %q; stderr:\n%s", gotArgv, err, out.String(), errb.String())
		}
	})

	t.Run("ssh into a container by its ID", func(t *testing.T) {
		stdout, _, err := r.Run("containers", "request", "--type", "web", "--profile", "small")
		if err != nil {
			t.Fatal(err)
		}
		id := requestedID(t, stdout)
		if _, _, err := r.Run("ssh", id); err != nil {
			t.Fatal(err)
		}
		if want := []string{"ssh", "-p", port, id + "@127.0.0.1"}; !slices.Equal(gotArgv, want) {
			t.Errorf("devport ssh %s runs %q, want %q", id, gotArgv, want)
		}
	})

	t.Run("ssh refuses what is not ready or not there, and runs nothing", func(t *testing.T) {
		gotArgv = nil
		if _, _, err := r.Run("ssh", "nosuch-vm-1"); err == nil || err.Error() != "no devserver nosuch-vm-1 that you can see (devport ls lists yours)" {
			t.Errorf("ssh nosuch-vm-1: %v", err)
		}
		if _, _, err := r.Run("ssh", "odaaaaaaaa"); err == nil || !strings.Contains(err.Error(), "no container odaaaaaaaa") {
			t.Errorf("ssh odaaaaaaaa: %v", err)
		}
		if _, _, err := r.Run("release", name, "--yes"); err != nil {
			t.Fatal(err)
		}
		_, _, err := r.Run("ssh", name)
		if err == nil || !strings.Contains(err.Error(), name+" is released, not ready") {
			t.Errorf("ssh into a released devserver: %v", err)
		}
		if gotArgv != nil {
			t.Errorf("a refused ssh ran %q", gotArgv)
		}
	})

	t.Run("without the ssh program the error says to install it", func(t *testing.T) {
		other, _, err := r.Run("reserve", "--flavor", "vm.small")
		if err != nil {
			t.Fatal(err)
		}
		defer func(lp func(string) (string, error)) { lookPath = lp }(lookPath)
		lookPath = func(string) (string, error) { return "", errors.New("not found") }
		if _, _, err := r.Run("ssh", reservedName(t, other)); err == nil || !strings.Contains(err.Error(), "openssh-client") {
			t.Errorf("ssh without ssh: %v", err)
		}
	})
}
