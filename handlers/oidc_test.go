package handlers_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
	"github.com/devport/devport/web"
)

// The provider in these tests is zitadel's OpenID Provider (pkg/op) with its
// example storage and login form, on loopback. The browser is one cookie jar
// that follows no redirects, so each hop between portal and provider is
// visible. Cookies do not tell ports apart, so the portal's session cookie
// also travels to the provider, as it would in a real browser on 127.0.0.1.

const (
	adminGroup    = "devport-admins"
	reviewerGroup = "devport-reviewers"
)

// providerPerson is someone who can sign in at the provider.
type providerPerson struct {
	username, password, email string
	groups                    []string
	// unverified makes the provider say email_verified: false, explicitly
	// (zitadel's own claims leave a false out).
	unverified bool
	// userinfoAbout makes the provider's userinfo answer for this person's
	// access token describe someone else (by username), as a broken or
	// hostile provider might.
	userinfoAbout string
}

var (
	providerAda = providerPerson{username: "ada", password: "ada-password", email: "ada@example.com", groups: []string{"staff", adminGroup}}
	providerBob = providerPerson{username: "bob", password: "bob-password", email: "bob@example.com", groups: []string{"staff"}}
	providerEve = providerPerson{username: "eve", password: "eve-password", email: "eve@example.com", groups: []string{adminGroup}, unverified: true}
	providerMal = providerPerson{username: "mal", password: "mal-password", email: "mal@example.com", groups: []string{"staff"}, userinfoAbout: "ada"}
)

// providerPeople is the provider's user directory (storage.UserStore).
type providerPeople map[string]*storage.User

func (p providerPeople) GetUserByID(id string) *storage.User { return p[id] }

func (p providerPeople) GetUserByUsername(username string) *storage.User {
	for _, u := range p {
		if u.Username == username {
			return u
		}
	}
	return nil
}

func (providerPeople) ExampleClientID() string { return storage.ServiceUserID }

// groupsStorage is the example storage plus a "groups" scope: clients may ask
// for it, and the ID token then carries the person's groups. It also makes
// the userinfo answer what providerPerson asks for.
type groupsStorage struct {
	*storage.Storage
	people  providerPeople
	persons map[string]providerPerson // by user ID
}

func (s *groupsStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return groupsClient{c}, nil
}

func (s *groupsStorage) SetUserinfoFromRequest(ctx context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, ui, req, scopes); err != nil {
		return err
	}
	if slices.Contains(scopes, "groups") {
		ui.AppendClaims("groups", s.persons[req.GetSubject()].groups)
	}
	return nil
}

func (s *groupsStorage) SetUserinfoFromToken(ctx context.Context, ui *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, ui, tokenID, subject, origin); err != nil {
		return err
	}
	who := s.persons[subject]
	if who.userinfoAbout != "" {
		u := s.people[who.userinfoAbout]
		ui.Subject, ui.Email, ui.EmailVerified = u.ID, u.Email, oidc.Bool(u.EmailVerified)
		who = s.persons[who.userinfoAbout]
	}
	if who.unverified {
		ui.AppendClaims("email_verified", false)
	}
	return nil
}

type groupsClient struct{ op.Client }

func (c groupsClient) IsScopeAllowed(scope string) bool {
	return scope == "groups" || c.Client.IsScopeAllowed(scope)
}

// openIDProvider is a running provider and what its token endpoint answered.
type openIDProvider struct {
	*httptest.Server

	mu             sync.Mutex
	tokenResponses []int
}

// tokenStatuses returns the statuses of the token endpoint's answers so far.
func (p *openIDProvider) tokenStatuses() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.tokenResponses)
}

type tokenStatusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *tokenStatusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

// oidcPortal is a portal that signs people in only through a provider.
type oidcPortal struct {
	*handlertest.Server
	provider *openIDProvider
}

// newOIDCPortal starts a provider that knows Ada, Bob, Eve and Mal, and a portal
// registered with it as a confidential client.
func newOIDCPortal(t *testing.T, opts handlertest.Options) *oidcPortal {
	t.Helper()
	st := &groupsStorage{people: providerPeople{}, persons: map[string]providerPerson{}}
	for _, p := range []providerPerson{providerAda, providerBob, providerEve, providerMal} {
		st.people[p.username] = &storage.User{
			ID: p.username, Username: p.username, Password: p.password, Email: p.email, EmailVerified: !p.unverified,
			FirstName: strings.ToUpper(p.username[:1]) + p.username[1:], LastName: "Tester", PreferredLanguage: language.English,
		}
		st.persons[p.username] = p
	}
	clients := map[string]*storage.Client{}
	st.Storage = storage.NewStorageWithClients(st.people, clients)

	// The issuer must be known before the provider is built, and the portal's
	// callback before the client is registered, so the provider listens first
	// and serves once both exist.
	p := &openIDProvider{Server: httptest.NewUnstartedServer(nil)}
	t.Cleanup(p.Close)
	issuer := "http://" + p.Listener.Addr().String()
	router := exampleop.SetupServer(issuer, st, slog.New(slog.DiscardHandler), false)
	tokenPath := op.DefaultEndpoints.Token.Relative()
	p.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &tokenStatusRecorder{ResponseWriter: w, status: http.StatusOK}
		router.ServeHTTP(rec, r)
		if r.URL.Path == tokenPath {
			p.mu.Lock()
			p.tokenResponses = append(p.tokenResponses, rec.status)
			p.mu.Unlock()
		}
	})

	opts.NoDevLogin = true
	opts.NoJobs = true // nothing runs in the background while a test moves the store's clock
	opts.OIDC = &web.OIDCConfig{
		Issuer: issuer, ClientID: "devport", ClientSecret: "devport-secret",
		AdminGroups: []string{adminGroup}, ReviewerGroups: []string{reviewerGroup},
	}
	srv := handlertest.New(t, opts)
	clients["devport"] = storage.WebClient("devport", "devport-secret", srv.URL+"/auth/oidc/callback")
	p.Start()
	return &oidcPortal{Server: srv, provider: p}
}

// browseURL sends a GET to an absolute URL and returns the response with its body read.
func browseURL(t *testing.T, b *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := b.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", u, err)
	}
	return resp, string(body)
}

// redirectTarget is where a redirect response sends the browser.
func redirectTarget(t *testing.T, resp *http.Response) *url.URL {
	t.Helper()
	if resp.StatusCode < 300 || resp.StatusCode > 399 {
		t.Fatalf("%s %s: status %d, want a redirect", resp.Request.Method, resp.Request.URL, resp.StatusCode)
	}
	loc, err := resp.Location()
	if err != nil {
		t.Fatalf("%s %s: %v", resp.Request.Method, resp.Request.URL, err)
	}
	return loc
}

// startSignIn asks the portal to start a sign-in and returns the
// authorization request it sends the browser to.
func (p *oidcPortal) startSignIn(t *testing.T, b *http.Client, next string) *url.URL {
	t.Helper()
	resp, _ := p.Do(t, b, handlertest.Request{Path: "/auth/oidc/start?next=" + url.QueryEscape(next)})
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("start sign-in: status %d, want 302", resp.StatusCode)
	}
	authURL := redirectTarget(t, resp)
	if !strings.HasPrefix(authURL.String(), p.provider.URL+"/") {
		t.Fatalf("start sign-in sends the browser to %s, not to the provider %s", authURL, p.provider.URL)
	}
	return authURL
}

// authorize takes the browser through the provider: the authorization
// request, the login form filled in as who, and the provider's redirect back,
// which it returns without following.
func (p *oidcPortal) authorize(t *testing.T, b *http.Client, authURL *url.URL, who providerPerson) *url.URL {
	t.Helper()
	resp, _ := browseURL(t, b, authURL.String())
	loginURL := resp.Request.URL.ResolveReference(redirectTarget(t, resp))
	resp, body := browseURL(t, b, loginURL.String())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("provider login page: status %d", resp.StatusCode)
	}
	form := handlertest.Doc(t, body).Find("form")
	action, ok := form.Attr("action")
	if !ok || form.Find(`input[name="username"]`).Length() != 1 || form.Find(`input[name="password"]`).Length() != 1 {
		t.Fatalf("provider login page has no username and password form:\n%s", body)
	}
	id, _ := form.Find(`input[name="id"]`).Attr("value")
	ref, err := url.Parse(action)
	if err != nil {
		t.Fatalf("provider login form action %q: %v", action, err)
	}
	actionURL := loginURL.ResolveReference(ref)
	resp, err = b.PostForm(actionURL.String(), url.Values{"id": {id}, "username": {who.username}, "password": {who.password}})
	if err != nil {
		t.Fatalf("post provider login: %v", err)
	}
	resp.Body.Close()
	doneURL := actionURL.ResolveReference(redirectTarget(t, resp))
	resp, _ = browseURL(t, b, doneURL.String())
	callback := doneURL.ResolveReference(redirectTarget(t, resp))
	if want := p.URL + "/auth/oidc/callback"; callback.Scheme+"://"+callback.Host+callback.Path != want {
		t.Fatalf("the provider sends the browser back to %s, want %s", callback, want)
	}
	return callback
}

// finishSignIn hands the provider's answer to the portal's callback.
func (p *oidcPortal) finishSignIn(t *testing.T, b *http.Client, callback *url.URL) (*http.Response, string) {
	t.Helper()
	return p.Do(t, b, handlertest.Request{Path: callback.RequestURI()})
}

// signIn runs a whole sign-in as who and fails unless it lands on next.
func (p *oidcPortal) signIn(t *testing.T, who providerPerson, next string) *http.Client {
	t.Helper()
	b := p.Browser(t)
	callback := p.authorize(t, b, p.startSignIn(t, b, next), who)
	resp, body := p.finishSignIn(t, b, callback)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in callback: status %d, want 303:\n%s", resp.StatusCode, body)
	}
	if loc := redirectTarget(t, resp); loc.String() != p.URL+next {
		t.Fatalf("sign-in lands on %s, want %s", loc, p.URL+next)
	}
	return b
}

// sessionCookie is the portal's session cookie in the browser's jar.
func (p *oidcPortal) sessionCookie(t *testing.T, b *http.Client) string {
	t.Helper()
	u, _ := url.Parse(p.URL)
	for _, c := range b.Jar.Cookies(u) {
		if c.Name == web.SessionCookie {
			return c.Value
		}
	}
	return ""
}

// withCookie is a fresh browser that holds only the given session cookie.
func (p *oidcPortal) withCookie(t *testing.T, value string) *http.Client {
	t.Helper()
	b := p.Browser(t)
	u, _ := url.Parse(p.URL)
	b.Jar.SetCookies(u, []*http.Cookie{{Name: web.SessionCookie, Value: value, Path: "/"}})
	return b
}

// oidcMe is who GET /api/v1/me says the browser is signed in as.
type oidcMe struct {
	Email string   `json:"email"`
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
}

func (p *oidcPortal) me(t *testing.T, b *http.Client) (oidcMe, int) {
	t.Helper()
	resp, body := p.Do(t, b, handlertest.Request{Path: "/api/v1/me", Headers: map[string]string{"Accept": "application/json"}})
	var m oidcMe
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatalf("GET /api/v1/me: %v:\n%s", err, body)
		}
	}
	return m, resp.StatusCode
}

// requireSignedOut fails unless the browser is sent to the sign-in page.
func (p *oidcPortal) requireSignedOut(t *testing.T, b *http.Client) {
	t.Helper()
	resp, _ := p.Do(t, b, handlertest.Request{Path: "/devservers"})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("GET /devservers: status %d, want 303 to the sign-in page", resp.StatusCode)
	}
	if loc := redirectTarget(t, resp); loc.Path != "/login" {
		t.Fatalf("GET /devservers redirects to %s, want /login", loc)
	}
}

// userSessionRows counts the user's rows in the sessions table.
func userSessionRows(t *testing.T, s *store.Store, email string) int {
	t.Helper()
	var n int
	err := s.WriteDB().QueryRow(`SELECT COUNT(*) FROM sessions JOIN users ON users.id = sessions.user_id WHERE users.email = ?`, email).Scan(&n)
	if err != nil {
		t.Fatalf("count sessions: %v", err)
	}
	return n
}

func TestOIDCSignIn(t *testing.T) {
	p := newOIDCPortal(t, handlertest.Options{})
	ctx := context.Background()

	t.Run("signs in through the provider and maps groups to roles", func(t *testing.T) {
		b := p.Browser(t)
		authURL := p.startSignIn(t, b, "/devservers")
		q := authURL.Query()
		for _, param := range []string{"state", "nonce", "code_challenge"} {
			if q.Get(param) == "" {
				t.Errorf("the authorization request has no %s: %s", param, authURL)
			}
		}
		if q.Get("code_challenge_method") != "S256" {
			t.Errorf("code_challenge_method = %q, want S256", q.Get("code_challenge_method"))
		}
		before := p.sessionCookie(t, b)
		if before == "" {
			t.Fatal("starting a sign-in set no session cookie to keep the challenge in")
		}

		callback := p.authorize(t, b, authURL, providerAda)
		resp, body := p.finishSignIn(t, b, callback)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("callback: status %d, want 303:\n%s", resp.StatusCode, body)
		}
		if loc := redirectTarget(t, resp); loc.String() != p.URL+"/devservers" {
			t.Fatalf("callback redirects to %s, want /devservers", loc)
		}

		resp, body = p.Do(t, b, handlertest.Request{Path: "/devservers"})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /devservers after sign-in: status %d", resp.StatusCode)
		}
		if who := handlertest.Doc(t, body).Find("header .who").Text(); who != providerAda.email {
			t.Errorf("page header shows %q, want %q", who, providerAda.email)
		}
		m, status := p.me(t, b)
		if status != http.StatusOK || m.Email != providerAda.email || !slices.Equal(m.Roles, []string{store.RoleEngineer, store.RoleAdmin}) {
			t.Errorf("GET /api/v1/me = %d %+v, want ada@example.com with roles engineer and admin", status, m)
		}

		u, err := p.Store.UserByEmail(ctx, providerAda.email)
		if err != nil {
			t.Fatalf("user row: %v", err)
		}
		if u.Name != "Ada Tester" || u.LastLoginAt == nil || !slices.Equal(u.Roles, []string{store.RoleEngineer, store.RoleAdmin}) {
			t.Errorf("user row = %+v, want name Ada Tester, a login time and roles engineer and admin", u)
		}
		events, err := p.Store.AuditEvents(ctx, "user", providerAda.email)
		if err != nil {
			t.Fatal(err)
		}
		var logins int
		for _, e := range events {
			var d struct{ Method, Subject string }
			_ = json.Unmarshal([]byte(e.Detail), &d)
			if e.Action == "user.login" && d.Method == "oidc" && d.Subject == providerAda.username && e.Actor == providerAda.email {
				logins++
			}
		}
		if logins != 1 {
			t.Errorf("audit events for %s = %+v, want one user.login by oidc with subject %q", providerAda.email, events, providerAda.username)
		}

		after := p.sessionCookie(t, b)
		if after == "" || after == before {
			t.Fatal("signing in kept the session ID of the visit that started it")
		}
		// Whoever planted or saw the pre-sign-in cookie gets nothing from it.
		if m, status := p.me(t, p.withCookie(t, before)); status != http.StatusUnauthorized {
			t.Errorf("the pre-sign-in session cookie answers GET /api/v1/me with %d %+v, want 401", status, m)
		}
		if n := userSessionRows(t, p.Store, providerAda.email); n != 1 {
			t.Errorf("ada has %d sessions, want 1", n)
		}
	})

	t.Run("gives someone outside the admin and reviewer groups only the engineer role", func(t *testing.T) {
		b := p.signIn(t, providerBob, "/devservers/new")
		m, status := p.me(t, b)
		if status != http.StatusOK || m.Email != providerBob.email || !slices.Equal(m.Roles, []string{store.RoleEngineer}) {
			t.Errorf("GET /api/v1/me = %d %+v, want bob@example.com with only the engineer role", status, m)
		}
		u, err := p.Store.UserByEmail(ctx, providerBob.email)
		if err != nil {
			t.Fatalf("user row: %v", err)
		}
		if !slices.Equal(u.Roles, []string{store.RoleEngineer}) {
			t.Errorf("bob's roles in the database = %v, want [engineer]", u.Roles)
		}
	})
}

func TestOIDCRefusals(t *testing.T) {
	p := newOIDCPortal(t, handlertest.Options{})

	t.Run("refuses a callback whose state does not match", func(t *testing.T) {
		b := p.Browser(t)
		callback := p.authorize(t, b, p.startSignIn(t, b, "/devservers"), providerAda)
		q := callback.Query()
		q.Set("state", "a-state-this-browser-never-sent")
		callback.RawQuery = q.Encode()

		resp, body := p.finishSignIn(t, b, callback)
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("callback with a foreign state: status %d, want 400", resp.StatusCode)
		}
		if !strings.Contains(handlertest.Doc(t, body).Find("main").Text(), "does not match the sign-in that was started") {
			t.Errorf("the error page does not say why:\n%s", body)
		}
		p.requireSignedOut(t, b)
	})

	t.Run("refuses a code issued to another sign-in", func(t *testing.T) {
		a := p.Browser(t)
		codeForA := p.authorize(t, a, p.startSignIn(t, a, "/devservers"), providerAda).Query().Get("code")

		b := p.Browser(t)
		authB := p.startSignIn(t, b, "/devservers")
		injected := p.URL + "/auth/oidc/callback?" + url.Values{"code": {codeForA}, "state": {authB.Query().Get("state")}}.Encode()
		u, _ := url.Parse(injected)
		seen := len(p.provider.tokenStatuses())

		resp, body := p.finishSignIn(t, b, u)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("callback with another sign-in's code: status %d, want 401:\n%s", resp.StatusCode, body)
		}
		// A's code is bound to A's PKCE challenge, so the provider itself
		// refuses to exchange it for B's verifier and the nonce is never
		// reached. (The oauth2 client tries a second way to send its secret
		// after a refusal, hence possibly more than one answer.)
		got := p.provider.tokenStatuses()[seen:]
		if len(got) == 0 || slices.ContainsFunc(got, func(s int) bool { return s != http.StatusBadRequest }) {
			t.Errorf("token endpoint answered %v, want only 400s (PKCE verifier mismatch)", got)
		}
		p.requireSignedOut(t, b)
	})

	t.Run("refuses an ID token whose nonce does not match", func(t *testing.T) {
		a := p.Browser(t)
		nonceForA := p.startSignIn(t, a, "/devservers").Query().Get("nonce")

		// B's authorization request, replayed with A's nonce: the code is
		// bound to B's PKCE challenge and state, so the exchange succeeds and
		// only the ID token's nonce tells the two sign-ins apart.
		b := p.Browser(t)
		authB := p.startSignIn(t, b, "/devservers")
		q := authB.Query()
		if q.Get("nonce") == nonceForA {
			t.Fatal("two sign-ins got the same nonce")
		}
		q.Set("nonce", nonceForA)
		authB.RawQuery = q.Encode()
		callback := p.authorize(t, b, authB, providerAda)
		seen := len(p.provider.tokenStatuses())

		resp, body := p.finishSignIn(t, b, callback)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("callback with a foreign nonce: status %d, want 401:\n%s", resp.StatusCode, body)
		}
		if got := p.provider.tokenStatuses()[seen:]; !slices.Equal(got, []int{http.StatusOK}) {
			t.Errorf("token endpoint answered %v, want one 200: the portal, not the provider, must refuse", got)
		}
		if !strings.Contains(handlertest.Doc(t, body).Find("main").Text(), "could not be verified") {
			t.Errorf("the error page does not say the sign-in could not be verified:\n%s", body)
		}
		p.requireSignedOut(t, b)
	})

	t.Run("refuses an email address the provider has not verified", func(t *testing.T) {
		b := p.Browser(t)
		resp, body := p.finishSignIn(t, b, p.authorize(t, b, p.startSignIn(t, b, "/devservers"), providerEve))
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("sign-in with an unverified email: status %d, want 401:\n%s", resp.StatusCode, body)
		}
		p.requireSignedOut(t, b)
		if _, err := p.Store.UserByEmail(context.Background(), providerEve.email); err == nil {
			t.Error("a refused sign-in created the user")
		}
	})

	t.Run("ignores a userinfo answer about someone else", func(t *testing.T) {
		// Mal's ID token has no email, and the provider's userinfo answer for
		// Mal's access token claims to be Ada's: it must not make Mal Ada.
		b := p.Browser(t)
		resp, body := p.finishSignIn(t, b, p.authorize(t, b, p.startSignIn(t, b, "/devservers"), providerMal))
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("sign-in with userinfo about another subject: status %d, want 401:\n%s", resp.StatusCode, body)
		}
		if m, status := p.me(t, b); status != http.StatusUnauthorized {
			t.Errorf("GET /api/v1/me = %d %+v, want 401", status, m)
		}
		if _, err := p.Store.UserByEmail(context.Background(), providerAda.email); err == nil {
			t.Error("Mal's sign-in created or signed in Ada's account")
		}
	})

	t.Run("refuses a callback without a started sign-in", func(t *testing.T) {
		b := p.Browser(t)
		callback := p.authorize(t, b, p.startSignIn(t, b, "/devservers"), providerBob)

		stranger := p.Browser(t)
		resp, body := p.finishSignIn(t, stranger, callback)
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("callback in a browser that started no sign-in: status %d, want 400:\n%s", resp.StatusCode, body)
		}
		p.requireSignedOut(t, stranger)
		if _, err := p.Store.UserByEmail(context.Background(), providerBob.email); err == nil {
			t.Error("a refused sign-in created the user")
		}
	})

	t.Run("refuses a callback replayed after the sign-in finished", func(t *testing.T) {
		b := p.Browser(t)
		callback := p.authorize(t, b, p.startSignIn(t, b, "/devservers"), providerBob)
		if resp, _ := p.finishSignIn(t, b, callback); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("first callback: status %d, want 303", resp.StatusCode)
		}
		if resp, _ := p.finishSignIn(t, b, callback); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("replayed callback: status %d, want 400", resp.StatusCode)
		}
	})
}

func TestOIDCSessions(t *testing.T) {
	const idle, maxAge = time.Hour, 3 * time.Hour
	p := newOIDCPortal(t, handlertest.Options{SessionIdle: idle, SessionMaxAge: maxAge})
	setClock := func(offset time.Duration) {
		p.Store.Now = func() time.Time { return time.Now().UTC().Add(offset) }
	}
	t.Cleanup(func() { p.Store.Now = func() time.Time { return time.Now().UTC() } })

	t.Run("an idle session is refused", func(t *testing.T) {
		setClock(0)
		b := p.signIn(t, providerAda, "/devservers")
		if resp, _ := p.Do(t, b, handlertest.Request{Path: "/devservers"}); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /devservers right after sign-in: status %d", resp.StatusCode)
		}

		setClock(idle + time.Minute)
		p.requireSignedOut(t, b)
		resp, body := p.Do(t, b, handlertest.Request{Path: "/login"})
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Your session has ended") {
			t.Errorf("the sign-in page after an idle session: status %d, does not say the session ended:\n%s", resp.StatusCode, body)
		}
	})

	t.Run("a session past its absolute age is refused even while in use", func(t *testing.T) {
		setClock(0)
		b := p.signIn(t, providerAda, "/devservers")
		// Never idle for long, so only the absolute age can end it.
		for _, at := range []time.Duration{50 * time.Minute, 100 * time.Minute, 150 * time.Minute} {
			setClock(at)
			if resp, _ := p.Do(t, b, handlertest.Request{Path: "/devservers"}); resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /devservers %s after sign-in: status %d, want 200", at, resp.StatusCode)
			}
		}
		setClock(maxAge + time.Minute)
		p.requireSignedOut(t, b)
	})

	t.Run("logout ends the session", func(t *testing.T) {
		setClock(0)
		b := p.signIn(t, providerBob, "/devservers")
		cookie := p.sessionCookie(t, b)
		if n := userSessionRows(t, p.Store, providerBob.email); n != 1 {
			t.Fatalf("bob has %d sessions after sign-in, want 1", n)
		}

		resp, _ := p.Do(t, b, handlertest.Request{Method: http.MethodPost, Path: "/logout"})
		if resp.StatusCode != http.StatusSeeOther || redirectTarget(t, resp).Path != "/login" {
			t.Fatalf("POST /logout: status %d to %q, want 303 to /login", resp.StatusCode, resp.Header.Get("Location"))
		}
		p.requireSignedOut(t, b)
		p.requireSignedOut(t, p.withCookie(t, cookie))
		if _, status := p.me(t, p.withCookie(t, cookie)); status != http.StatusUnauthorized {
			t.Errorf("the signed-out cookie answers GET /api/v1/me with %d, want 401", status)
		}
		if n := userSessionRows(t, p.Store, providerBob.email); n != 0 {
			t.Errorf("bob has %d sessions after logout, want 0", n)
		}
	})
}
