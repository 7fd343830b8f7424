package store_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// authorizedKey returns the public key of k in authorized_keys form, with comment.
func authorizedKey(t testing.TB, k any, comment string) string {
	t.Helper()
	pk, err := ssh.NewPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
	if comment != "" {
		line += " " + comment
	}
	return line
}

func ed25519Key(t testing.TB, comment string) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return authorizedKey(t, pub, comment)
}

func TestParsePublicKey(t *testing.T) {
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ed := authorizedKey(t, edPub, "alice@laptop")
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	privPEM, err := ssh.MarshalPrivateKey(edPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := ssh.NewSignerFromKey(edPriv)
	certKey, _ := ssh.NewPublicKey(edPub)
	cert := &ssh.Certificate{Key: certKey, CertType: ssh.UserCert, ValidPrincipals: []string{"alice"}, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, signer); err != nil {
		t.Fatal(err)
	}
	_, edBlob, _ := strings.Cut(ed, " ")
	edBlob, _, _ = strings.Cut(edBlob, " ")
	// A DSA key as ssh-keygen -t dsa wrote them: the type and a blob.
	dss := "ssh-dss " + base64.StdEncoding.EncodeToString([]byte("\x00\x00\x00\x07ssh-dss\x00\x00\x00\x01\x01")) + " old@box"

	for _, c := range []struct {
		name, in  string
		wantType  string
		wantError string // a fragment of the problem; "" means accepted
	}{
		{"an ed25519 key", ed, "ssh-ed25519", ""},
		{"an ed25519 key with spaces and a trailing newline", "  " + ed + "\n", "ssh-ed25519", ""},
		{"an ed25519 key with CRLF", ed + "\r\n", "ssh-ed25519", ""},
		{"an ecdsa key", authorizedKey(t, &ec.PublicKey, ""), "ecdsa-sha2-nistp256", ""},
		{"an RSA key of 2048 bits", authorizedKey(t, &rsa2048.PublicKey, "rsa@box"), "ssh-rsa", ""},
		{"empty", "", "", "is required"},
		{"only blanks", " \n\t\n", "", "is required"},
		{"only a comment", "# my key\n", "", "is required"},
		{"garbage", "hello world", "", "not an OpenSSH public key"},
		{"one word", "AAAAC3NzaC1lZDI1NTE5AAAAI", "", "not an OpenSSH public key"},
		{"a truncated key", ed[:40], "", "not an OpenSSH public key"},
		{"a key with the wrong type name", "ssh-rsa " + edBlob, "", "not an OpenSSH public key"},
		{"an OpenSSH private key", string(pem.EncodeToMemory(privPEM)), "", "private key"},
		{"a PEM RSA private key", "-----BEGIN RSA PRIVATE KEY-----\nMIIEow...\n-----END RSA PRIVATE KEY-----", "", "private key"},
		{"an RSA key of 1024 bits", authorizedKey(t, &rsa1024.PublicKey, ""), "", "1024 bits"},
		{"a DSA key", dss, "", "ssh-dss"},
		{"a certificate", strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert))), "", "certificate"},
		{"two keys", ed + "\n" + ed25519Key(t, "second"), "", "single key"},
		{"a key with options", `command="rm -rf /" ` + ed, "", "options"},
		{"a key with restrict", "restrict " + ed, "", "options"},
		{"oversized", ed + " " + strings.Repeat("x", store.MaxPublicKeyBytes), "", "longer than"},
		{"control characters", ed + "\x00", "", "not an OpenSSH public key"},
		{"invalid UTF-8", ed + " \xff\xfe", "", "not an OpenSSH public key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			k, problem := store.ParsePublicKey(c.in)
			if c.wantError == "" {
				if problem != "" {
					t.Fatalf("refused: %s", problem)
				}
				if k.Type != c.wantType || !strings.HasPrefix(k.Fingerprint, "SHA256:") || !strings.HasPrefix(k.PublicKey, c.wantType+" ") || strings.Contains(k.PublicKey, "\n") {
					t.Errorf("parsed = %+v", k)
				}
				return
			}
			if !strings.Contains(problem, c.wantError) {
				t.Errorf("problem = %q, want it to mention %q", problem, c.wantError)
			}
		})
	}

	t.Run("keeps the comment apart from the key", func(t *testing.T) {
		k, _ := store.ParsePublicKey(ed)
		if k.Comment != "alice@laptop" || strings.Contains(k.PublicKey, "alice") {
			t.Errorf("parsed = %+v", k)
		}
	})
}

func FuzzParsePublicKey(f *testing.F) {
	f.Add(ed25519Key(f, "a@b"))
	f.Add("ssh-rsa AAAA")
	f.Add("ssh-dss AAAAB3NzaC1kc3MAAACBAP")
	f.Add(`command="x" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbpF4SxHh0ekSa5m3MVbT9kv9gr0PCkSN4Fpw4TwUvy x`)
	f.Add("-----BEGIN OPENSSH PRIVATE KEY-----")
	f.Add("\n\n# c\n")
	f.Fuzz(func(t *testing.T, in string) {
		k, problem := store.ParsePublicKey(in)
		if problem != "" {
			if k != (store.ParsedKey{}) {
				t.Errorf("refused input gave a key: %+v", k)
			}
			return
		}
		// What is accepted is one clean line that parses again to itself.
		if strings.ContainsAny(k.PublicKey, "\r\n") || !strings.HasPrefix(k.Fingerprint, "SHA256:") {
			t.Fatalf("accepted %q as %+v", in, k)
		}
		again, problem := store.ParsePublicKey(k.PublicKey)
		if problem != "" || again.Fingerprint != k.Fingerprint || again.PublicKey != k.PublicKey {
			t.Fatalf("%q does not parse to itself: %q %+v", k.PublicKey, problem, again)
		}
		if len(in) > store.MaxPublicKeyBytes {
			t.Fatalf("accepted %d bytes", len(in))
		}
	})
}

func addKey(s *store.Store, u store.User, name, key string) (store.SSHKey, error) {
	var k store.SSHKey
	err := s.InTx(context.Background(), func(tx *store.Tx) error {
		var err error
		k, err = tx.AddSSHKey(context.Background(), store.UserActor(u, "test", ""), u, name, key)
		return err
	})
	return k, err
}

func TestSSHKeys(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	alice := storetest.User(t, s, "alice@example.com")
	bob := storetest.User(t, s, "bob@example.com")
	key := ed25519Key(t, "alice@laptop")

	k, err := addKey(s, alice, "", key)
	if err != nil {
		t.Fatal(err)
	}
	if k.Name != "alice@laptop" || k.Type != "ssh-ed25519" || k.ID == 0 {
		t.Errorf("added %+v", k)
	}

	t.Run("refuses a key the person has already", func(t *testing.T) {
		_, err := addKey(s, alice, "again", key+" other-comment")
		var ce *store.ConflictError
		if !errors.As(err, &ce) || ce.Code != "key_exists" {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("another person may add the same key", func(t *testing.T) {
		if _, err := addKey(s, bob, "shared", key); err != nil {
			t.Error(err)
		}
	})
	t.Run("refuses a name that is too long or holds control characters", func(t *testing.T) {
		for _, name := range []string{strings.Repeat("n", 101), "a\nb"} {
			_, err := addKey(s, alice, name, ed25519Key(t, ""))
			var ve *store.ValidationError
			if !errors.As(err, &ve) || ve.Fields["name"] == "" {
				t.Errorf("name %q: err = %v", name, err)
			}
		}
	})
	t.Run("names a key by its type when it has no comment", func(t *testing.T) {
		k, err := addKey(s, alice, "", ed25519Key(t, ""))
		if err != nil || k.Name != "ssh-ed25519 key" {
			t.Errorf("%+v %v", k, err)
		}
	})
	t.Run("nobody deletes someone else's key", func(t *testing.T) {
		err := s.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.DeleteSSHKey(ctx, store.UserActor(bob, "", ""), bob, k.ID)
			return err
		})
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("refuses more keys than the limit", func(t *testing.T) {
		carol := storetest.User(t, s, "carol@example.com")
		for range store.MaxSSHKeys {
			if _, err := addKey(s, carol, "", ed25519Key(t, "")); err != nil {
				t.Fatal(err)
			}
		}
		_, err := addKey(s, carol, "", ed25519Key(t, ""))
		var ve *store.ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("err = %v", err)
		}
	})

	keys, err := s.SSHKeys(ctx, alice.ID)
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys = %+v %v", keys, err)
	}
	err = s.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.DeleteSSHKey(ctx, store.UserActor(alice, "", ""), alice, k.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if keys, _ := s.SSHKeys(ctx, alice.ID); len(keys) != 1 {
		t.Errorf("after delete: %+v", keys)
	}
	events, _ := s.AuditEvents(ctx, "user", "alice@example.com")
	var actions []string
	for _, e := range events {
		actions = append(actions, e.Action)
	}
	if strings.Join(actions, ",") != "ssh_key.add,ssh_key.add,ssh_key.delete" {
		t.Errorf("audit = %v", actions)
	}
}

func TestConnectionFor(t *testing.T) {
	d := store.Devserver{Name: "ann-abcde", State: store.StateReady, Hostname: "ann-abcde.ftw.devport.internal", Address: "10.1.2.3"}
	viewer := store.User{Email: "Bob.Smith+dev@example.com"}
	c := store.ConnectionFor(d, viewer, nil)
	if c == nil {
		t.Fatal("no connection for a ready devserver")
	}
	wantConfig := "Host ann-abcde.ftw.devport.internal\n    HostName 10.1.2.3\n    User bob.smith-dev\n"
	if c.SSHConfig != wantConfig {
		t.Errorf("ssh config = %q, want %q", c.SSHConfig, wantConfig)
	}
	if c.VSCodeURL != "vscode://vscode-remote/ssh-remote+ann-abcde.ftw.devport.internal/home/bob.smith-dev" {
		t.Errorf("vscode = %q", c.VSCodeURL)
	}
	for _, state := range []string{store.StateProvisioning, store.StateReleasing, store.StateReleased} {
		d.State = state
		if store.ConnectionFor(d, viewer, nil) != nil {
			t.Errorf("a connection while %s", state)
		}
	}
	t.Run("through the SSH gateway", func(t *testing.T) {
		d.State = store.StateReady
		c := store.ConnectionFor(d, viewer, &store.Gateway{Host: "192.0.2.10", Port: 2222})
		want := "Host ann-abcde.ftw.devport.internal\n    HostName 192.0.2.10\n    Port 2222\n    User ann-abcde\n"
		if c == nil || c.SSHConfig != want || c.SSHCommand != "ssh -p 2222 ann-abcde@192.0.2.10" {
			t.Errorf("connection = %+v", c)
		}
	})
	for email, want := range map[string]string{"alice@example.com": "alice", "ALICE@x.org": "alice", "@x": "dev", "a b@x": "a-b", strings.Repeat("z", 40) + "@x": strings.Repeat("z", 32)} {
		if got := store.LoginName(email); got != want {
			t.Errorf("LoginName(%q) = %q, want %q", email, got, want)
		}
	}
}
