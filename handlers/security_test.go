package handlers_test

import (
	"context"
	"time"

	"github.com/coder/websocket"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
	"github.com/devport/devport/web"
)

// readOnlyToken makes a read-scope personal access token for email.
func readOnlyToken(t *testing.T, srv *handlertest.Server, email string) string {
	t.Helper()
	u := storetest.User(t, srv.Store, email)
	var secret string
	err := srv.Store.InTx(context.Background(), func(tx *store.Tx) error {
		var err error
		_, secret, err = tx.CreateToken(context.Background(), u.ID, "ro", "read", nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// A read-only token changes nothing, through the API or through the page
// routes that the same token also reaches.
func TestReadOnlyTokenOnPageRoutes(t *testing.T) {
	srv := handlertest.New(t)
	full := srv.Token(t, "ro-owner@example.com")
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: full, Body: `{"flavor":"vm.small"}`})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("reserve: %d %s", resp.StatusCode, body)
	}
	name := decode[devserverJSON](t, body).Name
	srv.WaitState(t, name, store.StateReady)
	ro := readOnlyToken(t, srv, "ro-owner@example.com")

	for _, r := range []handlertest.Request{
		{Method: "POST", Path: "/devservers/" + name + "/release", Form: url.Values{}},
		{Method: "POST", Path: "/devservers", Form: url.Values{"flavor": {"vm.small"}}},
		{Method: "POST", Path: "/profile/home-region", Form: url.Values{"home_region": {"ftw"}}},
		{Method: "POST", Path: "/devservers/" + name + "/shares", Form: url.Values{"email": {"friend@example.com"}}},
	} {
		r.Token = ro
		resp, body := srv.Do(t, nil, r)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "read-only") {
			t.Errorf("%s %s with a read-only token: %d, want 403 read-only", r.Method, r.Path, resp.StatusCode)
		}
	}
	d, err := srv.Store.Devserver(context.Background(), name)
	if err != nil || d.State != store.StateReady {
		t.Errorf("after the refused release %s is %q (%v), want ready", name, d.State, err)
	}
	if ds, _ := srv.Store.Devservers(context.Background(), store.DevserverFilter{Viewer: d.OwnerID, OwnOrShared: true, Limit: 10}); len(ds) != 1 {
		t.Errorf("the owner has %d devservers after a refused reservation, want 1", len(ds))
	}
	if shares, _ := srv.Store.Shares(context.Background(), d.ID); len(shares) != 0 {
		t.Errorf("%s is shared with %d people after a refused share", name, len(shares))
	}
	// Reading with it still works.
	if resp, _ := srv.Do(t, nil, handlertest.Request{Path: "/devservers/" + name, Token: ro}); resp.StatusCode != http.StatusOK {
		t.Errorf("GET the devserver page with a read-only token: %d", resp.StatusCode)
	}
}

// The single sign-on link keeps the whole page to return to, query and all.
func TestLoginPageKeepsNextForSingleSignOn(t *testing.T) {
	srv := handlertest.New(t, handlertest.Options{OIDC: &web.OIDCConfig{Issuer: "http://127.0.0.1:1", ClientID: "devport"}})
	for _, next := range []string{"/devservers/new?flavor=vm.small&region=prn", "/devservers/a+b", "/inbox#x"} {
		resp, body := srv.Do(t, nil, handlertest.Request{Path: "/login?next=" + url.QueryEscape(next)})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("login page: %d", resp.StatusCode)
		}
		href, ok := handlertest.Doc(t, body).Find(`a[href^="/auth/oidc/start"]`).Attr("href")
		if !ok {
			t.Fatal("no single sign-on link")
		}
		u, err := url.Parse(href)
		if err != nil || u.Query().Get("next") != next || u.Fragment != "" {
			t.Errorf("next %q: the sign-on link is %q, which returns to %q", next, href, u.Query().Get("next"))
		}
	}
}

// A body that is JSON but not an object (null, a string, a list) is refused
// with a clear 400 and changes nothing: PUT null must not wipe one-offs.
func TestJSONBodyMustBeAnObject(t *testing.T) {
	srv := handlertest.New(t, handlertest.Options{NoJobs: true})
	tok := srv.Token(t, "obj@example.com")
	put := func(body string) (*http.Response, string) {
		return srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: "/api/v1/me/oneoffs", Token: tok, Body: body})
	}
	if resp, body := put(`{"setup_script":"echo set up","env":{"EDITOR":"vim"}}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("save one-offs: %d %s", resp.StatusCode, body)
	}
	for _, body := range []string{`null`, ` null `, `"x"`, `[]`, `42`, `true`} {
		resp, out := put(body)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(out, "malformed_json") || !strings.Contains(out, "JSON object") {
			t.Errorf("PUT %s: %d %s, want 400 asking for a JSON object", body, resp.StatusCode, out)
		}
	}
	_, out := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/me/oneoffs", Token: tok})
	if !strings.Contains(out, "echo set up") || !strings.Contains(out, "vim") {
		t.Errorf("one-offs after the refused bodies: %s", out)
	}
	// A JSON object still works, with whitespace around it.
	if resp, body := put(" \n{\"setup_script\":\"echo again\"}\n"); resp.StatusCode != http.StatusOK {
		t.Errorf("save one-offs with whitespace: %d %s", resp.StatusCode, body)
	}
}

// A read-only token does not open a shell: a terminal changes whatever its
// shell changes.
func TestReadOnlyTokenOpensNoTerminal(t *testing.T) {
	srv := handlertest.New(t)
	full := srv.Token(t, "ro-shell@example.com")
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: full, Body: `{"flavor":"vm.small"}`})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("reserve: %d %s", resp.StatusCode, body)
	}
	name := decode[devserverJSON](t, body).Name
	srv.WaitState(t, name, store.StateReady)
	dial := func(token string) (*http.Response, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h := http.Header{"Authorization": {"Bearer " + token}}
		c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/devservers/"+name+"/terminal/ws", &websocket.DialOptions{HTTPHeader: h})
		if err == nil {
			_ = c.Close(websocket.StatusNormalClosure, "")
		}
		return resp, err
	}
	resp, err := dial(readOnlyToken(t, srv, "ro-shell@example.com"))
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Errorf("terminal with a read-only token: err %v, status %d; want 403", err, status)
	}
	if _, err := dial(full); err != nil {
		t.Errorf("terminal with a full token: %v", err)
	}
}

// The Location of a new share is the share's own URL, whatever characters
// the address has: DELETE on it stops the sharing.
func TestShareLocationIsEscaped(t *testing.T) {
	srv := handlertest.New(t)
	tok := srv.Token(t, "loc-owner@example.com")
	storetest.User(t, srv.Store, "q?x#y/z@example.com")
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: tok, Body: `{"flavor":"vm.small"}`})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("reserve: %d %s", resp.StatusCode, body)
	}
	name := decode[devserverJSON](t, body).Name
	srv.WaitState(t, name, store.StateReady)
	resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + name + "/shares", Token: tok, Body: `{"email":"q?x#y/z@example.com"}`})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("share: %d %s", resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	if resp, body := srv.Do(t, nil, handlertest.Request{Method: "DELETE", Path: loc, Token: tok}); resp.StatusCode != http.StatusNoContent {
		t.Errorf("DELETE %s: %d %s", loc, resp.StatusCode, body)
	}
	d, _ := srv.Store.Devserver(context.Background(), name)
	if shares, _ := srv.Store.Shares(context.Background(), d.ID); len(shares) != 0 {
		t.Errorf("still shared with %d after DELETE on the Location", len(shares))
	}
}
