package handlers_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
)

type keyJSON struct {
	ID          int64  `json:"id"`
	Name        string `json:"name"`
	Type        string `json:"type"`
	PublicKey   string `json:"public_key"`
	Fingerprint string `json:"fingerprint"`
	CreatedAt   string `json:"created_at"`
}

// newKey returns a fresh ed25519 public key in authorized_keys form.
func newKey(t *testing.T, comment string) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := ssh.NewPublicKey(pub)
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
	if comment != "" {
		line += " " + comment
	}
	return line
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// keysState is what a refused key change must leave as it was.
func keysState(t *testing.T, srv *handlertest.Server, email string) string {
	t.Helper()
	ctx := context.Background()
	u, err := srv.Store.UserByEmail(ctx, email)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := srv.Store.SSHKeys(ctx, u.ID)
	events, _ := srv.Store.AuditEvents(ctx, "user", email)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k.Fingerprint + ";")
	}
	b.WriteString(" events:" + strconv.Itoa(len(events)))
	return b.String()
}

func TestKeysAPI(t *testing.T) {
	srv := handlertest.New(t)
	alice := srv.Token(t, "alice@example.com")
	bob := srv.Token(t, "bob@example.com")
	key := newKey(t, "alice@laptop")

	resp, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/me/keys", Token: alice})
	if resp.StatusCode != 200 || strings.TrimSpace(body) != "{\n  \"items\": []\n}" {
		t.Errorf("empty list = %d %s", resp.StatusCode, body)
	}
	resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/me/keys", Token: alice, Body: `{"public_key":` + jsonString(key) + `}`})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("add: %d %s", resp.StatusCode, body)
	}
	k := decode[keyJSON](t, body)
	if k.Name != "alice@laptop" || k.Type != "ssh-ed25519" || !strings.HasPrefix(k.Fingerprint, "SHA256:") || !strings.HasPrefix(key, k.PublicKey+" ") || k.CreatedAt == "" {
		t.Errorf("added = %s", body)
	}
	resp, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/me/keys", Token: alice})
	if list := decode[struct{ Items []keyJSON }](t, body); len(list.Items) != 1 || list.Items[0].ID != k.ID {
		t.Errorf("list = %s", body)
	}
	if _, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/me/keys", Token: bob}); strings.Contains(body, k.Fingerprint) {
		t.Errorf("bob sees alice's key: %s", body)
	}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, _ := ssh.NewPublicKey(&rsaKey.PublicKey)
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	privBlock, _ := ssh.MarshalPrivateKey(edPriv, "")

	t.Run("bad keys change nothing", func(t *testing.T) {
		for _, c := range []struct {
			name, body string
			status     int
			code       string
			field      string
			message    string
		}{
			{"the same key again", `{"public_key":` + jsonString(key) + `}`, 409, "key_exists", "", "already on your profile"},
			{"garbage", `{"public_key":"not a key"}`, 422, "invalid", "public_key", "not an OpenSSH public key"},
			{"no key", `{"name":"x"}`, 422, "invalid", "public_key", "is required"},
			{"a private key", `{"public_key":` + jsonString(string(pem.EncodeToMemory(privBlock))) + `}`, 422, "invalid", "public_key", "private key"},
			{"a weak RSA key", `{"public_key":` + jsonString(string(ssh.MarshalAuthorizedKey(rsaPub))) + `}`, 422, "invalid", "public_key", "1024 bits"},
			{"a DSA key", `{"public_key":"ssh-dss AAAAB3NzaC1kc3MAAACBAP old"}`, 422, "invalid", "public_key", "ssh-dss"},
			{"oversized input", `{"public_key":` + jsonString(key+" "+strings.Repeat("a", store.MaxPublicKeyBytes)) + `}`, 422, "invalid", "public_key", "longer than"},
			{"a name too long", `{"name":` + jsonString(strings.Repeat("n", 101)) + `,"public_key":` + jsonString(newKey(t, "")) + `}`, 422, "invalid", "name", "longer than 100"},
			{"malformed JSON", `{"public_key":`, 400, "malformed_json", "", ""},
			{"a wrong type", `{"public_key":42}`, 400, "malformed_json", "", ""},
			{"an unknown field", `{"key":"x"}`, 400, "malformed_json", "", ""},
		} {
			t.Run(c.name, func(t *testing.T) {
				before := keysState(t, srv, "alice@example.com")
				resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/me/keys", Token: alice, Body: c.body})
				e := decode[apiError](t, body)
				if resp.StatusCode != c.status || e.Error.Code != c.code {
					t.Errorf("%d %.300s, want %d %s", resp.StatusCode, body, c.status, c.code)
				}
				if c.field != "" && !strings.Contains(e.Error.Fields[c.field], c.message) {
					t.Errorf("fields = %v, want %s to say %q", e.Error.Fields, c.field, c.message)
				}
				if c.field == "" && !strings.Contains(e.Error.Message, c.message) {
					t.Errorf("message = %q, want %q", e.Error.Message, c.message)
				}
				if after := keysState(t, srv, "alice@example.com"); after != before {
					t.Errorf("changed: %s → %s", before, after)
				}
			})
		}
	})

	t.Run("nobody deletes someone else's key", func(t *testing.T) {
		before := keysState(t, srv, "alice@example.com")
		for _, id := range []string{strconv.FormatInt(k.ID, 10), "999999", "abc", "-1"} {
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "DELETE", Path: "/api/v1/me/keys/" + id, Token: bob})
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("bob deletes %s: %d %s", id, resp.StatusCode, body)
			}
		}
		if after := keysState(t, srv, "alice@example.com"); after != before {
			t.Errorf("changed: %s → %s", before, after)
		}
	})

	t.Run("the owner deletes their key", func(t *testing.T) {
		resp, _ := srv.Do(t, nil, handlertest.Request{Method: "DELETE", Path: "/api/v1/me/keys/" + strconv.FormatInt(k.ID, 10), Token: alice})
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("%d", resp.StatusCode)
		}
		resp, _ = srv.Do(t, nil, handlertest.Request{Method: "DELETE", Path: "/api/v1/me/keys/" + strconv.FormatInt(k.ID, 10), Token: alice})
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("deleting twice: %d", resp.StatusCode)
		}
		events, _ := srv.Store.AuditEvents(context.Background(), "user", "alice@example.com")
		if len(events) != 2 || events[0].Action != "ssh_key.add" || events[1].Action != "ssh_key.delete" {
			t.Errorf("audit = %+v", events)
		}
	})
}

func TestProfilePage(t *testing.T) {
	srv := handlertest.New(t)
	alice := srv.SignIn(t, "alice@example.com")
	key := newKey(t, "")

	resp, body := srv.Do(t, alice, handlertest.Request{Path: "/profile"})
	doc := handlertest.Doc(t, body)
	if resp.StatusCode != 200 || !strings.Contains(doc.Find("#ssh-keys").Text(), "You have no SSH keys yet") {
		t.Fatalf("empty profile: %d", resp.StatusCode)
	}
	for _, id := range []string{"key-public", "key-name"} {
		if doc.Find("label[for="+id+"]").Length() != 1 {
			t.Errorf("#%s has no label", id)
		}
	}
	if doc.Find(`nav a[href="/profile"]`).Length() != 1 {
		t.Error("no Profile link in the navigation")
	}

	t.Run("adds a key from the form", func(t *testing.T) {
		resp, _ := srv.Do(t, alice, handlertest.Request{Method: "POST", Path: "/profile/keys", Form: url.Values{"name": {"work laptop"}, "public_key": {key}}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/profile" {
			t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		_, body := srv.Do(t, alice, handlertest.Request{Path: "/profile"})
		doc := handlertest.Doc(t, body)
		row := doc.Find("table.keys tbody tr")
		if row.Length() != 1 || !strings.Contains(row.Text(), "work laptop") || !strings.Contains(row.Text(), "ssh-ed25519") || !strings.HasPrefix(row.Find(".fingerprint").Text(), "SHA256:") {
			t.Errorf("keys table = %q", row.Text())
		}
		if !strings.Contains(doc.Find(".flash-success").Text(), "Added the key work laptop") {
			t.Errorf("flash = %q", doc.Find(".flash").Text())
		}
	})

	t.Run("a bad key shows the form again with the problem and changes nothing", func(t *testing.T) {
		before := keysState(t, srv, "alice@example.com")
		for _, c := range []struct {
			key, problem string
			status       int
		}{
			{"ssh-ed25519 nonsense", "not an OpenSSH public key", 422},
			{"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----", "private key", 422},
			{key, "already on your profile", 409},
		} {
			resp, body := srv.Do(t, alice, handlertest.Request{Method: "POST", Path: "/profile/keys", Form: url.Values{"name": {"again"}, "public_key": {c.key}}})
			doc := handlertest.Doc(t, body)
			if resp.StatusCode != c.status || !strings.Contains(doc.Find("#ssh-keys").Text(), c.problem) {
				t.Errorf("%d %q", resp.StatusCode, doc.Find("#ssh-keys").Text())
			}
			if got := doc.Find("#key-public").Text(); got != c.key {
				t.Errorf("the form lost the key: %q", got)
			}
		}
		if after := keysState(t, srv, "alice@example.com"); after != before {
			t.Errorf("changed: %s → %s", before, after)
		}
	})

	t.Run("deletes a key from the page", func(t *testing.T) {
		_, body := srv.Do(t, alice, handlertest.Request{Path: "/profile"})
		action, ok := handlertest.Doc(t, body).Find("form.delete-key").Attr("action")
		if !ok {
			t.Fatal("no delete form")
		}
		bob := srv.SignIn(t, "bob@example.com")
		if resp, _ := srv.Do(t, bob, handlertest.Request{Method: "POST", Path: action, Form: url.Values{}}); resp.StatusCode != http.StatusNotFound {
			t.Errorf("bob deletes alice's key: %d", resp.StatusCode)
		}
		resp, _ := srv.Do(t, alice, handlertest.Request{Method: "POST", Path: action, Form: url.Values{}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%d", resp.StatusCode)
		}
		_, body = srv.Do(t, alice, handlertest.Request{Path: "/profile"})
		if handlertest.Doc(t, body).Find("table.keys tbody tr").Length() != 0 {
			t.Error("the key is still listed")
		}
	})
}

func TestKeysReachAPooledDevserver(t *testing.T) {
	ctx := context.Background()
	srv := handlertest.New(t)
	alice := srv.Token(t, "alice@example.com")
	u, err := srv.Store.UserByEmail(ctx, "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/me/keys", Token: alice, Body: `{"public_key":"` + newKey(t, "") + `"}`})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("add key: %d %s", resp.StatusCode, body)
	}
	key := decode[keyJSON](t, body).PublicKey

	err = srv.Store.InTx(ctx, func(tx *store.Tx) error {
		return tx.SetPoolTargets(ctx, store.System, []store.PoolTarget{{Region: u.HomeRegion, Flavor: "vm.small", Target: 1}})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jobs.RefillPools(ctx, srv.Store, srv.Runner, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	handlertest.Eventually(t, 20*time.Second, "a ready pooled devserver", func() bool {
		ready, err := srv.Store.PoolReady(ctx)
		return err == nil && ready[u.HomeRegion]["vm.small"] == 1
	})

	resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: alice, Body: `{"flavor":"vm.small"}`})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("reserve: %d %s", resp.StatusCode, body)
	}
	d, err := srv.Store.Devserver(ctx, decode[devserverJSON](t, body).Name)
	if err != nil || !d.FromPool() || d.State != store.StateReady {
		t.Fatalf("not served from the pool: %+v %v", d, err)
	}
	handlertest.Eventually(t, 20*time.Second, "alice's key on the pooled devserver", func() bool {
		return strings.Contains(authorizedKeys(t, srv, d.Name), key+" alice@example.com\n")
	})
}
