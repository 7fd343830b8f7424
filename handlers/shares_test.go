package handlers_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
)

type shareJSON struct {
	Email     string `json:"email"`
	CreatedBy string `json:"created_by"`
}

type connectionJSON struct {
	Hostname  string `json:"hostname"`
	Address   string `json:"address"`
	User      string `json:"user"`
	SSHConfig string `json:"ssh_config"`
	VSCodeURL string `json:"vscode_url"`
}

type sharedDevserverJSON struct {
	devserverJSON
	Relation   string          `json:"relation"`
	Shares     []shareJSON     `json:"shares"`
	Connection *connectionJSON `json:"connection"`
}

// reserveReady reserves a vm.small with the token and waits until it is ready.
func reserveReady(t *testing.T, srv *handlertest.Server, token string) store.Devserver {
	t.Helper()
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: token, Body: `{"flavor":"vm.small"}`})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("reserve: %d %s", resp.StatusCode, body)
	}
	return srv.WaitState(t, decode[devserverJSON](t, body).Name, store.StateReady)
}

// authorizedKeys is the file on the devserver, read through the simulated fleet.
func authorizedKeys(t *testing.T, srv *handlertest.Server, name string) string {
	t.Helper()
	d, err := srv.Store.Devserver(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	res, err := srv.Sim.Exec(context.Background(), d.InstanceID, []string{"cat", jobs.AuthorizedKeysPath})
	if err != nil {
		t.Fatal(err)
	}
	return res.Output
}

// sharingState is what a failed share must leave as it was.
func sharingState(t *testing.T, srv *handlertest.Server, name string) string {
	t.Helper()
	ctx := context.Background()
	d, err := srv.Store.Devserver(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	shares, _ := srv.Store.Shares(ctx, d.ID)
	events, _ := srv.Store.AuditEvents(ctx, "devserver", name)
	var b strings.Builder
	for _, s := range shares {
		b.WriteString(s.Email + ";")
	}
	b.WriteString(" events:" + strconv.Itoa(len(events)))
	return b.String()
}

func TestSharing(t *testing.T) {
	srv := handlertest.New(t)
	owner := srv.Token(t, "owner@example.com")
	bob := srv.Token(t, "bob@example.com")
	stranger := srv.Token(t, "stranger@example.com")
	d := reserveReady(t, srv, owner)
	sharesPath := "/api/v1/devservers/" + d.Name + "/shares"

	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/me/keys", Token: bob, Body: `{"name":"bob laptop","public_key":"` + newKey(t, "bob@laptop") + `"}`})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("bob's key: %d %s", resp.StatusCode, body)
	}
	bobKey := decode[keyJSON](t, body).PublicKey

	resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: sharesPath, Token: owner, Body: `{"email":"Bob@Example.com"}`})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("share: %d %s", resp.StatusCode, body)
	}
	if sh := decode[shareJSON](t, body); sh.Email != "bob@example.com" || sh.CreatedBy != "owner@example.com" {
		t.Errorf("share = %s", body)
	}

	t.Run("the sharee's keys are put on the devserver", func(t *testing.T) {
		handlertest.Eventually(t, 20*time.Second, "bob's key on the devserver", func() bool {
			return strings.Contains(authorizedKeys(t, srv, d.Name), bobKey+" bob@example.com\n")
		})
	})

	t.Run("a key the sharee adds later reaches the devserver", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/me/keys", Token: bob, Body: `{"public_key":"` + newKey(t, "bob@desktop") + `"}`})
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		second := decode[keyJSON](t, body)
		handlertest.Eventually(t, 20*time.Second, "bob's second key on the devserver", func() bool {
			return strings.Contains(authorizedKeys(t, srv, d.Name), second.PublicKey)
		})
		resp, _ = srv.Do(t, nil, handlertest.Request{Method: "DELETE", Path: "/api/v1/me/keys/" + strconv.FormatInt(second.ID, 10), Token: bob})
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("delete key: %d", resp.StatusCode)
		}
		handlertest.Eventually(t, 20*time.Second, "bob's deleted key gone from the devserver", func() bool {
			return !strings.Contains(authorizedKeys(t, srv, d.Name), second.PublicKey)
		})
	})

	t.Run("the sharee sees it in the list, marked as shared", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/devservers", Token: bob})
		list := decode[struct{ Items []sharedDevserverJSON }](t, body)
		if resp.StatusCode != 200 || len(list.Items) != 1 || list.Items[0].Name != d.Name || list.Items[0].Relation != "sharee" {
			t.Errorf("bob's list = %d %s", resp.StatusCode, body)
		}
		_, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/devservers", Token: owner})
		list = decode[struct{ Items []sharedDevserverJSON }](t, body)
		if len(list.Items) != 1 || list.Items[0].Relation != "owner" {
			t.Errorf("owner's list = %s", body)
		}
		_, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/devservers", Token: stranger})
		if list := decode[struct{ Items []sharedDevserverJSON }](t, body); len(list.Items) != 0 {
			t.Errorf("stranger's list = %s", body)
		}
	})

	t.Run("the sharee sees its connection details with their own user", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/devservers/" + d.Name, Token: bob})
		got := decode[sharedDevserverJSON](t, body)
		if resp.StatusCode != 200 || got.Relation != "sharee" || got.Connection == nil {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		wantConfig := "Host " + d.Hostname + "\n    HostName " + d.Address + "\n    User bob\n"
		if got.Connection.SSHConfig != wantConfig || got.Connection.VSCodeURL != "vscode://vscode-remote/ssh-remote+"+d.Hostname+"/home/bob" {
			t.Errorf("connection = %+v", got.Connection)
		}
		if len(got.Shares) != 1 || got.Shares[0].Email != "bob@example.com" {
			t.Errorf("shares = %+v", got.Shares)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Path: sharesPath, Token: bob})
		if list := decode[struct{ Items []shareJSON }](t, body); resp.StatusCode != 200 || len(list.Items) != 1 {
			t.Errorf("bob reads shares: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("the sharee may look but not change", func(t *testing.T) {
		before := sharingState(t, srv, d.Name)
		for _, r := range []handlertest.Request{
			{Method: "POST", Path: "/api/v1/devservers/" + d.Name + "/release"},
			{Method: "POST", Path: sharesPath, Body: `{"email":"stranger@example.com"}`},
			{Method: "DELETE", Path: sharesPath + "/bob@example.com"},
		} {
			r.Token = bob
			if resp, body := srv.Do(t, nil, r); resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s: %d %s", r.Method, r.Path, resp.StatusCode, body)
			}
		}
		if after := sharingState(t, srv, d.Name); after != before {
			t.Errorf("changed: %s → %s", before, after)
		}
		if got, _ := srv.Store.Devserver(context.Background(), d.Name); got.State != store.StateReady {
			t.Errorf("state = %s", got.State)
		}
	})

	t.Run("bad input changes nothing", func(t *testing.T) {
		for _, c := range []struct {
			name, method, path, body string
			status                   int
			code, field, message     string
		}{
			{"an unknown email", "POST", sharesPath, `{"email":"nobody@example.com"}`, 422, "invalid", "email", "sign in to devport once"},
			{"oneself", "POST", sharesPath, `{"email":"owner@example.com"}`, 422, "invalid", "email", "yourself"},
			{"not an email", "POST", sharesPath, `{"email":"bob"}`, 422, "invalid", "email", "not an email address"},
			{"no email", "POST", sharesPath, `{}`, 422, "invalid", "email", "is required"},
			{"someone it is shared with already", "POST", sharesPath, `{"email":"bob@example.com"}`, 409, "already_shared", "", "already"},
			{"malformed JSON", "POST", sharesPath, `{"email":`, 400, "malformed_json", "", ""},
			{"an unknown field", "POST", sharesPath, `{"mail":"bob@example.com"}`, 400, "malformed_json", "", ""},
			{"removing someone it is not shared with", "DELETE", sharesPath + "/stranger@example.com", "", 404, "not_shared", "", "not shared with stranger@example.com"},
			{"a devserver that does not exist", "POST", "/api/v1/devservers/nope/shares", `{"email":"bob@example.com"}`, 404, "not_found", "", ""},
		} {
			t.Run(c.name, func(t *testing.T) {
				before := sharingState(t, srv, d.Name)
				resp, body := srv.Do(t, nil, handlertest.Request{Method: c.method, Path: c.path, Token: owner, Body: c.body})
				e := decode[apiError](t, body)
				if resp.StatusCode != c.status || e.Error.Code != c.code {
					t.Errorf("%d %s, want %d %s", resp.StatusCode, body, c.status, c.code)
				}
				if c.field != "" && !strings.Contains(e.Error.Fields[c.field], c.message) {
					t.Errorf("fields = %v, want %s to say %q", e.Error.Fields, c.field, c.message)
				}
				if c.field == "" && !strings.Contains(e.Error.Message, c.message) {
					t.Errorf("message = %q, want %q", e.Error.Message, c.message)
				}
				if after := sharingState(t, srv, d.Name); after != before {
					t.Errorf("changed: %s → %s", before, after)
				}
			})
		}
	})

	t.Run("unsharing takes the sharee's keys off and hides it", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "DELETE", Path: sharesPath + "/bob@example.com", Token: owner})
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		handlertest.Eventually(t, 20*time.Second, "bob's key gone from the devserver", func() bool {
			return !strings.Contains(authorizedKeys(t, srv, d.Name), bobKey)
		})
		if resp, _ := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/devservers/" + d.Name, Token: bob}); resp.StatusCode != http.StatusNotFound {
			t.Errorf("bob after unsharing: %d", resp.StatusCode)
		}
		events, _ := srv.Store.AuditEvents(context.Background(), "devserver", d.Name)
		var actions []string
		for _, e := range events {
			actions = append(actions, e.Action)
		}
		if got := strings.Join(actions, ","); !strings.Contains(got, "devserver.share,") || !strings.Contains(got, "devserver.unshare") {
			t.Errorf("audit = %s", got)
		}
	})
}

func TestSharingPages(t *testing.T) {
	srv := handlertest.New(t)
	ownerToken := srv.Token(t, "owner@example.com")
	owner := srv.SignIn(t, "owner@example.com")
	bob := srv.SignIn(t, "bob@example.com")
	d := reserveReady(t, srv, ownerToken)
	page := "/devservers/" + d.Name

	t.Run("the owner shares from the devserver page", func(t *testing.T) {
		resp, body := srv.Do(t, owner, handlertest.Request{Path: page})
		doc := handlertest.Doc(t, body)
		form := doc.Find("form.share")
		if resp.StatusCode != 200 || form.Length() != 1 || doc.Find("label[for=share-email]").Length() != 1 {
			t.Fatalf("no share form: %d", resp.StatusCode)
		}
		resp, _ = srv.Do(t, owner, handlertest.Request{Method: "POST", Path: page + "/shares", Form: url.Values{"email": {"bob@example.com"}}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != page {
			t.Fatalf("share: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		_, body = srv.Do(t, owner, handlertest.Request{Path: page})
		doc = handlertest.Doc(t, body)
		if doc.Find(`[data-sharee="bob@example.com"]`).Length() != 1 || !strings.Contains(doc.Find(".flash-success").Text(), "Shared "+d.Name+" with bob@example.com") {
			t.Errorf("sharing section: %s", doc.Find("section.sharing").Text())
		}
	})

	t.Run("a bad email shows the form again with the problem and changes nothing", func(t *testing.T) {
		before := sharingState(t, srv, d.Name)
		for _, c := range []struct {
			email   string
			status  int
			problem string
		}{
			{"nobody@example.com", 422, "not a devport user"},
			{"owner@example.com", 422, "yourself"},
			{"bob@example.com", 409, "already"},
		} {
			resp, body := srv.Do(t, owner, handlertest.Request{Method: "POST", Path: page + "/shares", Form: url.Values{"email": {c.email}}})
			doc := handlertest.Doc(t, body)
			section := doc.Find("section.sharing")
			if resp.StatusCode != c.status || !strings.Contains(section.Text(), c.problem) {
				t.Errorf("%s: %d %q", c.email, resp.StatusCode, section.Text())
			}
			if v, _ := section.Find("#share-email").Attr("value"); v != c.email {
				t.Errorf("%s: the form lost the email: %q", c.email, v)
			}
		}
		if after := sharingState(t, srv, d.Name); after != before {
			t.Errorf("changed: %s → %s", before, after)
		}
	})

	t.Run("the sharee's dashboard marks it as shared, without a release button", func(t *testing.T) {
		resp, body := srv.Do(t, bob, handlertest.Request{Path: "/devservers"})
		doc := handlertest.Doc(t, body)
		row := doc.Find(`tr[data-devserver="` + d.Name + `"]`)
		if resp.StatusCode != 200 || row.Length() != 1 {
			t.Fatalf("bob's dashboard: %d", resp.StatusCode)
		}
		if rel, _ := row.Attr("data-relation"); rel != "sharee" || !strings.Contains(row.Find(".owner").Text(), "shared by owner@example.com") {
			t.Errorf("row = %q", row.Text())
		}
		if row.Find("form.release").Length() != 0 || row.Find("a.open").Length() != 1 {
			t.Error("bob's row has a release button or no open link")
		}
		_, body = srv.Do(t, owner, handlertest.Request{Path: "/devservers"})
		row = handlertest.Doc(t, body).Find(`tr[data-devserver="` + d.Name + `"]`)
		if row.Find("form.release").Length() != 1 || strings.TrimSpace(row.Find(".owner").Text()) != "you" || !strings.Contains(row.Find(".lease").Text(), "ends in 13 days") {
			t.Errorf("owner's row = %q", row.Text())
		}
	})

	t.Run("the sharee's page shows connection details but no way to change it", func(t *testing.T) {
		resp, body := srv.Do(t, bob, handlertest.Request{Path: page})
		doc := handlertest.Doc(t, body)
		if resp.StatusCode != 200 {
			t.Fatalf("%d", resp.StatusCode)
		}
		config := doc.Find("pre.ssh-config").Text()
		if !strings.Contains(config, "HostName "+d.Address) || !strings.Contains(config, "Host "+d.Hostname) || !strings.Contains(config, "User bob") {
			t.Errorf("ssh config = %q", config)
		}
		if href, _ := doc.Find("a.vscode").Attr("href"); href != "vscode://vscode-remote/ssh-remote+"+d.Hostname+"/home/bob" {
			t.Errorf("vscode link = %q", href)
		}
		if doc.Find("button[data-copy-target]").Length() < 4 {
			t.Error("no copy buttons")
		}
		doc.Find("button[data-copy-target]").Each(func(_ int, b *goquery.Selection) {
			target, _ := b.Attr("data-copy-target")
			if doc.Find(target).Length() != 1 {
				t.Errorf("copy button names %s, which is not on the page", target)
			}
		})
		if !strings.Contains(doc.Find("section.sharing").Text(), "owner@example.com shared this devserver with you") {
			t.Errorf("sharing section = %q", doc.Find("section.sharing").Text())
		}
		// Read-only: no release, migrate, share, restore, backup or feature buttons.
		doc.Find("main form").Each(func(_ int, f *goquery.Selection) {
			action, _ := f.Attr("action")
			t.Errorf("the sharee sees a form that changes the devserver: %s %q", action, strings.TrimSpace(f.Find("button").Text()))
		})
		resp, _ = srv.Do(t, bob, handlertest.Request{Method: "POST", Path: page + "/release", Form: url.Values{}})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("bob releases from the page: %d", resp.StatusCode)
		}
	})

	t.Run("the owner stops sharing from the page", func(t *testing.T) {
		resp, _ := srv.Do(t, owner, handlertest.Request{Method: "POST", Path: page + "/shares/bob@example.com/remove", Form: url.Values{}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%d", resp.StatusCode)
		}
		if resp, _ := srv.Do(t, bob, handlertest.Request{Path: page}); resp.StatusCode != http.StatusNotFound {
			t.Errorf("bob still sees the page: %d", resp.StatusCode)
		}
		_, body := srv.Do(t, bob, handlertest.Request{Path: "/devservers"})
		if handlertest.Doc(t, body).Find(`tr[data-devserver="`+d.Name+`"]`).Length() != 0 {
			t.Error("bob's dashboard still lists it")
		}
	})
}
