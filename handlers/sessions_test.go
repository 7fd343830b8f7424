package handlers_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
)

func sessionCookie(c *http.Client, base string) string {
	u, _ := url.Parse(base)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "devport_session" {
			return ck.Value
		}
	}
	return ""
}

func sessionRows(t *testing.T, s *store.Store) int {
	t.Helper()
	var n int
	err := s.InTx(context.Background(), func(tx *store.Tx) error {
		return tx.GetContext(context.Background(), &n, `SELECT COUNT(*) FROM sessions WHERE user_id IS NOT NULL`)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSessions(t *testing.T) {
	srv := handlertest.New(t, handlertest.Options{SessionIdle: time.Hour, SessionMaxAge: 24 * time.Hour})

	t.Run("signing in gives a new session ID, even over a planted one", func(t *testing.T) {
		c := srv.Browser(t)
		// An anonymous session exists once something is stored in it (a flash here).
		srv.Do(t, c, handlertest.Request{Method: "POST", Path: "/login/dev", Form: url.Values{"email": {"bad"}}})
		resp, _ := srv.Do(t, c, handlertest.Request{Path: "/devservers"})
		before := sessionCookie(c, srv.URL)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("anonymous /devservers = %d", resp.StatusCode)
		}
		srv.Do(t, c, handlertest.Request{Method: "POST", Path: "/login/dev", Form: url.Values{"email": {"carol@example.com"}}})
		after := sessionCookie(c, srv.URL)
		if after == "" || after == before {
			t.Errorf("session cookie not renewed at sign-in")
		}
		resp, body := srv.Do(t, c, handlertest.Request{Path: "/devservers"})
		if resp.StatusCode != 200 || !strings.Contains(handlertest.Doc(t, body).Find(".who").Text(), "carol@example.com") {
			t.Errorf("signed-in page = %d", resp.StatusCode)
		}
	})

	t.Run("the cookie is HttpOnly and SameSite=Lax", func(t *testing.T) {
		resp, _ := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/login/dev", Form: url.Values{"email": {"dave@example.com"}}})
		sc := resp.Header.Get("Set-Cookie")
		if !strings.Contains(sc, "HttpOnly") || !strings.Contains(sc, "SameSite=Lax") {
			t.Errorf("Set-Cookie = %q", sc)
		}
	})

	t.Run("an idle session ends and the user is asked to sign in again", func(t *testing.T) {
		c := srv.SignIn(t, "erin@example.com")
		real := srv.Store.Now
		defer func() { srv.Store.Now = real }()
		srv.Store.Now = func() time.Time { return real().Add(61 * time.Minute) }
		resp, _ := srv.Do(t, c, handlertest.Request{Path: "/devservers"})
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
			t.Fatalf("idle session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		_, body := srv.Do(t, c, handlertest.Request{Path: "/login"})
		if !strings.Contains(handlertest.Doc(t, body).Find(".flash").Text(), "session has ended") {
			t.Error("no message that the session ended")
		}
	})

	t.Run("a used session still ends at its absolute age", func(t *testing.T) {
		c := srv.SignIn(t, "frank@example.com")
		real := srv.Store.Now
		defer func() { srv.Store.Now = real }()
		for h := 1; h <= 25; h++ {
			offset := time.Duration(h) * 55 * time.Minute
			srv.Store.Now = func() time.Time { return real().Add(offset) }
			resp, _ := srv.Do(t, c, handlertest.Request{Path: "/devservers"})
			if offset < 24*time.Hour && resp.StatusCode != 200 {
				t.Fatalf("after %s the active session ended: %d", offset, resp.StatusCode)
			}
			if offset > 24*time.Hour && resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("after %s the session is still alive", offset)
			}
		}
	})

	t.Run("sign-out ends the session for good", func(t *testing.T) {
		c := srv.SignIn(t, "gina@example.com")
		old := sessionCookie(c, srv.URL)
		n := sessionRows(t, srv.Store)
		resp, _ := srv.Do(t, c, handlertest.Request{Method: "POST", Path: "/logout"})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("logout = %d", resp.StatusCode)
		}
		if events, _ := srv.Store.AuditEvents(context.Background(), "user", "gina@example.com"); len(events) != 2 || events[1].Action != "user.logout" {
			t.Errorf("audit events = %+v, want the login and the logout", events)
		}
		if got := sessionRows(t, srv.Store); got != n-1 {
			t.Errorf("%d signed-in sessions after logout, want %d", got, n-1)
		}
		replay := srv.Browser(t)
		u, _ := url.Parse(srv.URL)
		replay.Jar.SetCookies(u, []*http.Cookie{{Name: "devport_session", Value: old}})
		resp, _ = srv.Do(t, replay, handlertest.Request{Path: "/devservers"})
		if resp.StatusCode != http.StatusSeeOther {
			t.Errorf("the old cookie still works after logout: %d", resp.StatusCode)
		}
	})

	t.Run("a revoked session stops working at once", func(t *testing.T) {
		c := srv.SignIn(t, "hank@example.com")
		u, _ := srv.Store.UserByEmail(context.Background(), "hank@example.com")
		err := srv.Store.InTx(context.Background(), func(tx *store.Tx) error {
			n, err := tx.RevokeUserSessions(context.Background(), u.ID)
			if n != 1 {
				t.Errorf("revoked %d sessions, want 1", n)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		resp, _ := srv.Do(t, c, handlertest.Request{Path: "/devservers"})
		if resp.StatusCode != http.StatusSeeOther {
			t.Errorf("a revoked session still works: %d", resp.StatusCode)
		}
	})

	t.Run("a tampered cookie is no session", func(t *testing.T) {
		c := srv.Browser(t)
		u, _ := url.Parse(srv.URL)
		c.Jar.SetCookies(u, []*http.Cookie{{Name: "devport_session", Value: "forged"}})
		resp, _ := srv.Do(t, c, handlertest.Request{Path: "/devservers"})
		if resp.StatusCode != http.StatusSeeOther {
			t.Errorf("forged cookie: %d", resp.StatusCode)
		}
	})
}

func TestTokens(t *testing.T) {
	srv := handlertest.New(t)
	ctx := context.Background()
	tok := srv.Token(t, "ivy@example.com")
	t.Run("tokens are stored hashed", func(t *testing.T) {
		var hashes []string
		err := srv.Store.InTx(ctx, func(tx *store.Tx) error {
			return tx.SelectContext(ctx, &hashes, `SELECT hash FROM tokens`)
		})
		if err != nil || len(hashes) != 1 || hashes[0] == tok || strings.Contains(hashes[0], tok[4:]) || hashes[0] != store.HashSecret(tok) {
			t.Errorf("stored %v", hashes)
		}
	})
	t.Run("an expired token is refused", func(t *testing.T) {
		real := srv.Store.Now
		defer func() { srv.Store.Now = real }()
		var secret string
		err := srv.Store.InTx(ctx, func(tx *store.Tx) error {
			u, err := tx.UpsertUser(ctx, "jo@example.com", "", false)
			if err != nil {
				return err
			}
			exp := real().Add(time.Hour)
			_, secret, err = tx.CreateToken(ctx, u.ID, "short", "full", &exp)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if resp, _ := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/me", Token: secret}); resp.StatusCode != 200 {
			t.Fatalf("fresh token: %d", resp.StatusCode)
		}
		srv.Store.Now = func() time.Time { return real().Add(2 * time.Hour) }
		resp, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/me", Token: secret})
		if resp.StatusCode != 401 || !strings.Contains(body, "invalid_token") {
			t.Errorf("expired token: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("a read-only token cannot change anything", func(t *testing.T) {
		var secret string
		err := srv.Store.InTx(ctx, func(tx *store.Tx) error {
			u, err := tx.UpsertUser(ctx, "kim@example.com", "", false)
			if err != nil {
				return err
			}
			_, secret, err = tx.CreateToken(ctx, u.ID, "ro", "read", nil)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if resp, _ := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/devservers", Token: secret}); resp.StatusCode != 200 {
			t.Errorf("read with a read-only token: %d", resp.StatusCode)
		}
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: secret, Body: `{"flavor":"vm.small"}`})
		if resp.StatusCode != 403 || !strings.Contains(body, "read_only_token") {
			t.Errorf("write with a read-only token: %d %s", resp.StatusCode, body)
		}
	})
}

func TestFrame(t *testing.T) {
	srv := handlertest.New(t)
	t.Run("static assets are served from the embedded files", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Path: "/static/css/app.css"})
		if resp.StatusCode != 200 || !strings.Contains(body, ".badge-dev") {
			t.Errorf("app.css = %d", resp.StatusCode)
		}
	})
	t.Run("the login page has no inline script and says dev login", func(t *testing.T) {
		_, body := srv.Do(t, nil, handlertest.Request{Path: "/login"})
		doc := handlertest.Doc(t, body)
		doc.Find("script").Each(func(_ int, s *goquery.Selection) {
			if src, ok := s.Attr("src"); !ok || src == "" {
				t.Error("an inline script on the login page")
			}
		})
		if doc.Find(".badge-dev").Length() != 1 || doc.Find(`label[for=login-email]`).Length() != 1 {
			t.Error("login page lacks the dev login badge or a labelled email input")
		}
	})
	t.Run("without the dev login there is no dev login", func(t *testing.T) {
		srv := handlertest.New(t, handlertest.Options{NoDevLogin: true})
		resp, _ := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/login/dev", Form: url.Values{"email": {"x@example.com"}}})
		if resp.StatusCode != 404 {
			t.Errorf("POST /login/dev = %d", resp.StatusCode)
		}
		_, body := srv.Do(t, nil, handlertest.Request{Path: "/login"})
		if strings.Contains(body, "dev login") || strings.Contains(body, "login-email") {
			t.Error("the login page offers a dev login that is off")
		}
	})
}
