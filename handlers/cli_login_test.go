package handlers_test

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
)

func newVerifier(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

type cliTokenJSON struct {
	Token struct {
		ID        int64      `json:"id"`
		Name      string     `json:"name"`
		Scope     string     `json:"scope"`
		Prefix    string     `json:"prefix"`
		ExpiresAt *time.Time `json:"expires_at"`
	} `json:"token"`
	Secret string `json:"secret"`
	User   struct {
		Email string `json:"email"`
	} `json:"user"`
}

func cliLoginPath(port int, state, challenge, name string) string {
	return views.CLILoginURL + "?" + url.Values{"port": {strconv.Itoa(port)}, "state": {state}, "challenge": {challenge}, "name": {name}}.Encode()
}

// approveCLI shows the sign-in page to browser, sends its Approve form and
// returns where the portal sent the browser.
func approveCLI(t *testing.T, srv *handlertest.Server, browser *http.Client, port int, state, challenge string) *url.URL {
	t.Helper()
	resp, body := srv.Do(t, browser, handlertest.Request{Path: cliLoginPath(port, state, challenge, "laptop")})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the sign-in page: %d %.300s", resp.StatusCode, body)
	}
	form := url.Values{}
	handlertest.Doc(t, body).Find("#cli-login-approve input[type=hidden]").Each(func(_ int, s *goquery.Selection) {
		form.Set(s.AttrOr("name", ""), s.AttrOr("value", ""))
	})
	resp, body = srv.Do(t, browser, handlertest.Request{Method: "POST", Path: views.CLILoginURL, Form: form})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("approve: %d %.300s", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func exchange(t *testing.T, srv *handlertest.Server, code, verifier string) (*http.Response, string) {
	t.Helper()
	return srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/cli/token", Body: `{"code":"` + code + `","verifier":"` + verifier + `"}`})
}

// The whole browser sign-in, as `devport login` goes through it: the page,
// Approve, the redirect to the CLI's listener on 127.0.0.1, the exchange of
// the code, and the token at work.
func TestCLILoginEndToEnd(t *testing.T) {
	srv := handlertest.New(t)
	browser := srv.SignIn(t, "dev@example.com")
	verifier := newVerifier(t)
	challenge := store.S256(verifier)

	// The CLI's callback listener.
	got := make(chan url.Values, 1)
	cli := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		got <- r.URL.Query()
		_, _ = w.Write([]byte("You are signed in; go back to your terminal."))
	}))
	defer cli.Close()
	port, err := strconv.Atoi(strings.TrimPrefix(cli.URL, "http://127.0.0.1:"))
	if err != nil {
		t.Fatalf("the listener is not on 127.0.0.1: %s", cli.URL)
	}

	resp, body := srv.Do(t, browser, handlertest.Request{Path: cliLoginPath(port, "st4te", challenge, "laptop")})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %.300s", resp.StatusCode, body)
	}
	doc := handlertest.Doc(t, body)
	if h := strings.TrimSpace(doc.Find("#cli-login h1").Text()); h != "Sign in the devport CLI on laptop?" {
		t.Errorf("heading %q", h)
	}
	if text := doc.Find("#cli-login").Text(); !strings.Contains(text, "full access") || !strings.Contains(text, "90 days") || !strings.Contains(text, "dev@example.com") {
		t.Errorf("the page does not say what approving does: %s", text)
	}
	if doc.Find("#cli-login-approve button").Length() != 1 || doc.Find("#cli-login-deny button").Length() != 1 {
		t.Error("no Approve and Deny buttons")
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' http://127.0.0.1:"+strconv.Itoa(port)) {
		t.Errorf("the page's CSP would block the redirect to the CLI: %s", csp)
	}

	loc := approveCLI(t, srv, browser, port, "st4te", challenge)
	if loc.Scheme != "http" || loc.Host != "127.0.0.1:"+strconv.Itoa(port) || loc.Path != "/callback" || loc.Query().Get("state") != "st4te" {
		t.Fatalf("sent to %s", loc)
	}
	cb, err := http.Get(loc.String())
	if err != nil {
		t.Fatal(err)
	}
	cb.Body.Close()
	q := <-got
	code := q.Get("code")
	if code == "" || q.Get("state") != "st4te" {
		t.Fatalf("the callback got %v", q)
	}

	// The code is kept hashed only.
	if n := countIn(t, srv, `SELECT COUNT(*) FROM cli_login_codes WHERE code_hash = ?`, code); n != 0 {
		t.Error("the code is stored in clear")
	}
	resp, body = exchange(t, srv, code, verifier)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("exchange: %d %s", resp.StatusCode, body)
	}
	tok := decode[cliTokenJSON](t, body)
	if tok.User.Email != "dev@example.com" || tok.Token.Name != "devport CLI on laptop" || tok.Token.Scope != "full" || !strings.HasPrefix(tok.Secret, store.TokenPrefix) {
		t.Errorf("%s", body)
	}
	if tok.Token.ExpiresAt == nil || tok.Token.ExpiresAt.Sub(time.Now()) < 89*24*time.Hour || tok.Token.ExpiresAt.Sub(time.Now()) > 91*24*time.Hour {
		t.Errorf("expires %v, want in 90 days", tok.Token.ExpiresAt)
	}
	if n := countIn(t, srv, `SELECT COUNT(*) FROM audit_events WHERE action = 'token.create' AND actor = 'dev@example.com' AND detail LIKE '%"via":"cli_login"%'`); n != 1 {
		t.Errorf("%d audit events of the token", n)
	}

	resp, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/me", Token: tok.Secret})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "dev@example.com") {
		t.Errorf("the token does not work: %d %s", resp.StatusCode, body)
	}

	// The code is used: a second exchange gets nothing.
	resp, body = exchange(t, srv, code, verifier)
	if resp.StatusCode != http.StatusBadRequest || errorCode(body) != "invalid_grant" {
		t.Errorf("a second exchange: %d %s", resp.StatusCode, body)
	}
}

func TestCLILoginRefusals(t *testing.T) {
	srv := handlertest.New(t)
	browser := srv.SignIn(t, "dev@example.com")
	verifier := newVerifier(t)
	challenge := store.S256(verifier)
	nothingMade := func(t *testing.T, codes, tokens int) {
		t.Helper()
		if c, k := countRows(t, srv, "cli_login_codes"), countRows(t, srv, "tokens"); c != codes || k != tokens {
			t.Errorf("%d codes and %d tokens, want %d and %d", c, k, codes, tokens)
		}
	}

	t.Run("someone not signed in goes to the sign-in page and comes back", func(t *testing.T) {
		path := cliLoginPath(43111, "s", challenge, "laptop")
		resp, _ := srv.Do(t, nil, handlertest.Request{Path: path})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != views.LoginURL(path) {
			t.Errorf("%d to %s", resp.StatusCode, resp.Header.Get("Location"))
		}
	})

	t.Run("a bad sign-in link is a 400 page that says what is wrong, and approving it makes nothing", func(t *testing.T) {
		for name, c := range map[string]struct {
			port                   string
			state, challenge, host string
			says                   string
		}{
			"a privileged port":     {"80", "s", challenge, "laptop", "port"},
			"no port":               {"", "s", challenge, "laptop", "port"},
			"no state":              {"43111", "", challenge, "laptop", "state"},
			"no challenge":          {"43111", "s", "", "laptop", "challenge"},
			"a short challenge":     {"43111", "s", challenge[:40], "laptop", "challenge"},
			"a name too long":       {"43111", "s", challenge, strings.Repeat("h", 101), "name"},
			"a name with a newline": {"43111", "s", challenge, "lap\ntop", "name"},
		} {
			v := url.Values{"port": {c.port}, "state": {c.state}, "challenge": {c.challenge}, "name": {c.host}}
			resp, body := srv.Do(t, browser, handlertest.Request{Path: views.CLILoginURL + "?" + v.Encode()})
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "devport CLI is not valid") || !strings.Contains(body, c.says) {
				t.Errorf("%s: %d %.500s", name, resp.StatusCode, body)
			}
			resp, body = srv.Do(t, browser, handlertest.Request{Method: "POST", Path: views.CLILoginURL, Form: v})
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("approving %s: %d %.300s", name, resp.StatusCode, body)
			}
		}
		nothingMade(t, 0, 0)
	})

	t.Run("Deny sends the browser back to the CLI without a code and makes nothing", func(t *testing.T) {
		v := url.Values{"port": {"43111"}, "state": {"s"}, "challenge": {challenge}, "name": {"laptop"}}
		resp, body := srv.Do(t, browser, handlertest.Request{Method: "POST", Path: views.CLILoginDenyURL, Form: v})
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusSeeOther || loc == nil || loc.Host != "127.0.0.1:43111" || loc.Path != "/callback" ||
			loc.Query().Get("state") != "s" || loc.Query().Get("code") != "" || loc.Query().Get("error") != "access_denied" {
			t.Errorf("%d to %s: %.300s", resp.StatusCode, resp.Header.Get("Location"), body)
		}
		nothingMade(t, 0, 0)
	})
	t.Run("Deny of a bad sign-in link says the CLI was not signed in", func(t *testing.T) {
		v := url.Values{"port": {"80"}, "state": {"s"}, "challenge": {challenge}, "name": {"laptop"}}
		resp, body := srv.Do(t, browser, handlertest.Request{Method: "POST", Path: views.CLILoginDenyURL, Form: v})
		if resp.StatusCode != http.StatusOK || !strings.Contains(handlertest.Doc(t, body).Find("#cli-login-denied").Text(), "devport CLI on laptop. No token was created.") {
			t.Errorf("%d %.500s", resp.StatusCode, body)
		}
		nothingMade(t, 0, 0)
	})

	t.Run("a wrong verifier, an unknown code or a malformed exchange make no token", func(t *testing.T) {
		loc := approveCLI(t, srv, browser, 43111, "s", challenge)
		code := loc.Query().Get("code")
		for name, body := range map[string]string{
			"wrong verifier": `{"code":"` + code + `","verifier":"` + newVerifier(t) + `"}`,
			"unknown code":   `{"code":"dpc_unknown","verifier":"` + verifier + `"}`,
			"no code":        `{"verifier":"` + verifier + `"}`,
		} {
			resp, out := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/cli/token", Body: body})
			if resp.StatusCode != http.StatusBadRequest || errorCode(out) != "invalid_grant" {
				t.Errorf("%s: %d %s", name, resp.StatusCode, out)
			}
		}
		resp, out := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/cli/token", Body: `{"code":`})
		if resp.StatusCode != http.StatusBadRequest || errorCode(out) != "malformed_json" {
			t.Errorf("malformed: %d %s", resp.StatusCode, out)
		}
		nothingMade(t, 1, 0)

		// An expired code: two minutes have passed.
		if _, err := srv.Store.WriteDB().Exec(`UPDATE cli_login_codes SET expires_at = ?`, time.Now().UTC().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		if resp, out := exchange(t, srv, code, verifier); resp.StatusCode != http.StatusBadRequest || errorCode(out) != "invalid_grant" {
			t.Errorf("expired: %d %s", resp.StatusCode, out)
		}
		nothingMade(t, 1, 0)
	})

	t.Run("of two exchanges of one code at once, exactly one gets a token", func(t *testing.T) {
		code := approveCLI(t, srv, browser, 43111, "s", challenge).Query().Get("code")
		tokens := countRows(t, srv, "tokens")
		var wg sync.WaitGroup
		statuses := make([]int, 2)
		for i := range statuses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := strings.NewReader(`{"code":"` + code + `","verifier":"` + verifier + `"}`)
				resp, err := http.Post(srv.URL+"/api/v1/cli/token", "application/json", body)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				statuses[i] = resp.StatusCode
			}()
		}
		wg.Wait()
		created := 0
		for _, s := range statuses {
			if s == http.StatusCreated {
				created++
			} else if s != http.StatusBadRequest {
				t.Errorf("status %d", s)
			}
		}
		if created != 1 || countRows(t, srv, "tokens") != tokens+1 {
			t.Errorf("statuses %v, %d tokens made", statuses, countRows(t, srv, "tokens")-tokens)
		}
	})

	t.Run("a browser on another site cannot exchange a code", func(t *testing.T) {
		resp, out := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/cli/token", Body: `{"code":"dpc_x","verifier":"y"}`,
			Headers: map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%d %s", resp.StatusCode, out)
		}
	})
}
