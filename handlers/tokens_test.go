package handlers_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

type tokenJSON struct {
	ID         int64      `json:"id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	Scope      string     `json:"scope"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

type createdTokenJSON struct {
	Token  tokenJSON `json:"token"`
	Secret string    `json:"secret"`
}

// rowCounts counts the rows of every table in the database.
func rowCounts(t *testing.T, s *store.Store) map[string]int {
	t.Helper()
	ctx := context.Background()
	db := s.WriteDB()
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, table := range tables {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM "`+table+`"`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		counts[table] = n
	}
	if len(counts) < 10 {
		t.Fatalf("only %d tables: %v", len(counts), tables)
	}
	return counts
}

// sameCounts reports the tables whose row counts differ.
func sameCounts(t *testing.T, what string, before, after map[string]int) {
	t.Helper()
	var diff []string
	for table, n := range after {
		if before[table] != n {
			diff = append(diff, table+": "+strconv.Itoa(before[table])+" → "+strconv.Itoa(n))
		}
	}
	sort.Strings(diff)
	if len(diff) > 0 {
		t.Errorf("%s changed the database: %s", what, strings.Join(diff, ", "))
	}
}

// expireToken moves a token's expiry into the past, as time would.
func expireToken(t *testing.T, srv *handlertest.Server, secret string) {
	t.Helper()
	tok, err := srv.Store.TokenBySecret(context.Background(), secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Store.WriteDB().Exec(`UPDATE tokens SET expires_at = ? WHERE id = ?`, time.Now().UTC().Add(-time.Minute), tok.ID); err != nil {
		t.Fatal(err)
	}
}

func TestTokensAPI(t *testing.T) {
	srv := handlertest.New(t, handlertest.Options{NoJobs: true})
	ann := srv.Token(t, "ann@example.com")
	bob := srv.Token(t, "bob@example.com")
	create := func(token, body string) (*http.Response, string) {
		return srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/me/tokens", Token: token, Body: body})
	}

	var laptop createdTokenJSON
	t.Run("creates a token that expires in 90 days by default and shows its secret once", func(t *testing.T) {
		resp, body := create(ann, `{"name":"laptop","scope":"read"}`)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		laptop = decode[createdTokenJSON](t, body)
		tk := laptop.Token
		if tk.Name != "laptop" || tk.Scope != "read" || !strings.HasPrefix(laptop.Secret, "dpt_") || !strings.HasPrefix(laptop.Secret, tk.Prefix) || len(tk.Prefix) < 6 {
			t.Errorf("created %+v", laptop)
		}
		if tk.ExpiresAt == nil || tk.ExpiresAt.Sub(time.Now()) < 89*24*time.Hour || tk.ExpiresAt.Sub(time.Now()) > 91*24*time.Hour {
			t.Errorf("expires at %v, want in 90 days", tk.ExpiresAt)
		}
		if strings.Contains(body, "last_used_at") || strings.Contains(body, "revoked") || strings.Contains(body, "hash") {
			t.Errorf("answer shows more than a token: %s", body)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/me", Token: laptop.Secret})
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "ann@example.com") {
			t.Errorf("GET /me with the new token: %d %s", resp.StatusCode, body)
		}
		// The secret is kept nowhere: not in the tokens table, the audit log
		// or the idempotency store.
		for _, table := range []string{"tokens", "audit_events", "idempotency_keys", "sessions"} {
			var n int
			err := srv.Store.WriteDB().QueryRow(`SELECT COUNT(*) FROM "`+table+`" WHERE CAST(`+anyColumn(t, srv, table)+` AS TEXT) LIKE ?`, "%"+laptop.Secret[4:]+"%").Scan(&n)
			if err != nil {
				t.Fatalf("%s: %v", table, err)
			}
			if n != 0 {
				t.Errorf("the secret is in %d rows of %s", n, table)
			}
		}
	})

	t.Run("an Idempotency-Key does not keep the secret for a replay, and a repeat creates nothing", func(t *testing.T) {
		reqBody := `{"name":"ci","scope":"full","expires_at":"` + time.Now().Add(30*24*time.Hour).UTC().Format(time.RFC3339) + `"}`
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/me/tokens", Token: ann, Body: reqBody,
			Headers: map[string]string{"Idempotency-Key": "token-1"}})
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		secret := decode[createdTokenJSON](t, body).Secret
		var n int
		if err := srv.Store.WriteDB().QueryRow(`SELECT COUNT(*) FROM idempotency_keys WHERE `+anyColumn(t, srv, "idempotency_keys")+` LIKE ?`, "%"+secret[4:]+"%").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("the secret is kept for replays")
		}
		var before int
		if err := srv.Store.WriteDB().QueryRow(`SELECT COUNT(*) FROM tokens`).Scan(&before); err != nil {
			t.Fatal(err)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/me/tokens", Token: ann, Body: reqBody,
			Headers: map[string]string{"Idempotency-Key": "token-1"}})
		if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "secret_not_replayed") || strings.Contains(body, secret) {
			t.Errorf("the repeat answered %d %s; want 409 secret_not_replayed without the secret", resp.StatusCode, body)
		}
		var after int
		if err := srv.Store.WriteDB().QueryRow(`SELECT COUNT(*) FROM tokens`).Scan(&after); err != nil {
			t.Fatal(err)
		}
		if after != before {
			t.Errorf("the repeat made %d more tokens; want none", after-before)
		}
	})

	t.Run("lists own tokens newest first, a page at a time", func(t *testing.T) {
		if resp, body := create(bob, `{"name":"bob's","scope":"full"}`); resp.StatusCode != http.StatusCreated {
			t.Fatalf("bob creates: %d %s", resp.StatusCode, body)
		}
		resp, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/me/tokens", Token: ann})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		p := decode[page[tokenJSON]](t, body)
		var names []string
		for _, tk := range p.Items {
			names = append(names, tk.Name)
		}
		// ann's test token (no expiry), laptop, ci; bob's is not there.
		if strings.Join(names, ",") != "ci,laptop,test" || p.NextCursor != "" {
			t.Errorf("tokens %v (next %q)", names, p.NextCursor)
		}
		if p.Items[1].LastUsedAt == nil {
			t.Errorf("laptop was used but has no last use")
		}
		_, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/me/tokens?limit=2", Token: ann})
		first := decode[page[tokenJSON]](t, body)
		if len(first.Items) != 2 || first.NextCursor == "" {
			t.Fatalf("first page %s", body)
		}
		_, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/me/tokens?limit=2&cursor=" + url.QueryEscape(first.NextCursor), Token: ann})
		if second := decode[page[tokenJSON]](t, body); len(second.Items) != 1 || second.Items[0].Name != "test" || second.NextCursor != "" {
			t.Errorf("second page %s", body)
		}
	})

	t.Run("refuses bad input clearly and changes nothing", func(t *testing.T) {
		bobs := decode[page[tokenJSON]](t, func() string {
			_, b := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/me/tokens", Token: bob})
			return b
		}()).Items[0].ID
		soon := func(d time.Duration) string { return time.Now().Add(d).UTC().Format(time.RFC3339) }
		for _, c := range []struct {
			what, method, path, body string
			status                   int
			code, field              string
		}{
			{"malformed JSON", "POST", "/api/v1/me/tokens", `{"name":`, 400, "malformed_json", ""},
			{"not an object", "POST", "/api/v1/me/tokens", `["x"]`, 400, "malformed_json", ""},
			{"an unknown field", "POST", "/api/v1/me/tokens", `{"name":"x","scope":"read","admin":true}`, 400, "malformed_json", ""},
			{"a number for a name", "POST", "/api/v1/me/tokens", `{"name":5,"scope":"read"}`, 400, "malformed_json", ""},
			{"no name", "POST", "/api/v1/me/tokens", `{"scope":"read"}`, 422, "invalid", "name"},
			{"a blank name", "POST", "/api/v1/me/tokens", `{"name":"  ","scope":"read"}`, 422, "invalid", "name"},
			{"a name too long", "POST", "/api/v1/me/tokens", `{"name":"` + strings.Repeat("n", 101) + `","scope":"read"}`, 422, "invalid", "name"},
			{"no scope", "POST", "/api/v1/me/tokens", `{"name":"x"}`, 422, "invalid", "scope"},
			{"a scope other than read or full", "POST", "/api/v1/me/tokens", `{"name":"x","scope":"admin"}`, 422, "invalid", "scope"},
			{"an expiry in the past", "POST", "/api/v1/me/tokens", `{"name":"x","scope":"read","expires_at":"` + soon(-time.Hour) + `"}`, 422, "invalid", "expires_at"},
			{"an expiry over 366 days away", "POST", "/api/v1/me/tokens", `{"name":"x","scope":"read","expires_at":"` + soon(367*24*time.Hour) + `"}`, 422, "invalid", "expires_at"},
			{"an expiry that is not a time", "POST", "/api/v1/me/tokens", `{"name":"x","scope":"read","expires_at":"next week"}`, 422, "invalid", "expires_at"},
			{"a non-numeric id", "DELETE", "/api/v1/me/tokens/abc", "", 404, "not_found", ""},
			{"an unknown id", "DELETE", "/api/v1/me/tokens/999999", "", 404, "not_found", ""},
			{"someone else's token", "DELETE", "/api/v1/me/tokens/" + strconv.FormatInt(bobs, 10), "", 404, "not_found", ""},
		} {
			before := rowCounts(t, srv.Store)
			resp, body := srv.Do(t, nil, handlertest.Request{Method: c.method, Path: c.path, Token: ann, Body: c.body})
			e := decode[apiError](t, body)
			if resp.StatusCode != c.status || e.Error.Code != c.code || e.Error.Message == "" || (c.field != "" && e.Error.Fields[c.field] == "") {
				t.Errorf("%s: %d %s, want %d %s (%s)", c.what, resp.StatusCode, body, c.status, c.code, c.field)
			}
			sameCounts(t, c.what, before, rowCounts(t, srv.Store))
		}
		if _, err := srv.Store.TokenBySecret(context.Background(), bob); err != nil {
			t.Errorf("bob's token after ann tried to revoke one of his: %v", err)
		}
	})

	t.Run("revokes a token at once", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "DELETE", Path: "/api/v1/me/tokens/" + strconv.FormatInt(laptop.Token.ID, 10), Token: ann})
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/devservers", Token: laptop.Secret})
		if e := decode[apiError](t, body); resp.StatusCode != http.StatusUnauthorized || e.Error.Code != "invalid_token" || !strings.Contains(e.Error.Message, "revoked") {
			t.Errorf("the revoked token: %d %s", resp.StatusCode, body)
		}
		_, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/me/tokens", Token: ann})
		if strings.Contains(body, `"laptop"`) {
			t.Errorf("the revoked token is still listed: %s", body)
		}
		if resp, _ := srv.Do(t, nil, handlertest.Request{Method: "DELETE", Path: "/api/v1/me/tokens/" + strconv.FormatInt(laptop.Token.ID, 10), Token: ann}); resp.StatusCode != http.StatusNotFound {
			t.Errorf("revoking twice: %d, want 404", resp.StatusCode)
		}
	})

	t.Run("an expired token is refused with a clear message and listed as expired", func(t *testing.T) {
		resp, body := create(ann, `{"name":"brief","scope":"full"}`)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		brief := decode[createdTokenJSON](t, body)
		expireToken(t, srv, brief.Secret)
		resp, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/devservers", Token: brief.Secret})
		if e := decode[apiError](t, body); resp.StatusCode != http.StatusUnauthorized || e.Error.Code != "invalid_token" || !strings.Contains(e.Error.Message, "expired") {
			t.Errorf("the expired token: %d %s", resp.StatusCode, body)
		}
		_, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/me/tokens", Token: ann})
		if p := decode[page[tokenJSON]](t, body); len(p.Items) == 0 || p.Items[0].Name != "brief" || p.Items[0].ExpiresAt == nil || p.Items[0].ExpiresAt.After(time.Now()) {
			t.Errorf("expired token not listed with its expiry: %s", body)
		}
	})

	t.Run("no token, no list", func(t *testing.T) {
		for _, r := range []handlertest.Request{{Path: "/api/v1/me/tokens"}, {Method: "POST", Path: "/api/v1/me/tokens", Body: `{"name":"x","scope":"full"}`}} {
			if resp, body := srv.Do(t, nil, r); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"code"`) {
				t.Errorf("%s %s anonymously: %d %s", r.Method, r.Path, resp.StatusCode, body)
			}
		}
	})
}

// anyColumn is every column of table joined as text, for a LIKE over the whole row.
func anyColumn(t *testing.T, srv *handlertest.Server, table string) string {
	t.Helper()
	rows, err := srv.Store.WriteDB().Query(`SELECT name FROM pragma_table_info(?)`, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, `COALESCE(CAST("`+c+`" AS TEXT), '')`)
	}
	if len(cols) == 0 {
		t.Fatalf("table %s has no columns", table)
	}
	return strings.Join(cols, " || ' ' || ")
}

func TestProfileTokens(t *testing.T) {
	srv := handlertest.New(t, handlertest.Options{NoJobs: true})
	browser := srv.SignIn(t, "pat@example.com")
	profile := func() string {
		resp, body := srv.Do(t, browser, handlertest.Request{Path: "/profile"})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("profile: %d", resp.StatusCode)
		}
		return body
	}

	t.Run("the section explains scopes and offers lifetimes, 90 days first", func(t *testing.T) {
		doc := handlertest.Doc(t, profile())
		sec := doc.Find("section#tokens")
		if sec.Find("h2").Text() != "Personal access tokens" || !strings.Contains(sec.Text(), "You have no personal access tokens") {
			t.Errorf("section: %q", sec.Text())
		}
		for _, id := range []string{"token-name", "token-scope-read", "token-scope-full", "token-days"} {
			if sec.Find(`label[for="`+id+`"]`).Length() != 1 {
				t.Errorf("input %s has no label", id)
			}
		}
		if !strings.Contains(sec.Find(`label[for="token-scope-read"]`).Text(), "cannot change anything") {
			t.Errorf("read-only is not explained")
		}
		var days []string
		sec.Find("#token-days option").Each(func(_ int, o *goquery.Selection) { days = append(days, o.AttrOr("value", "")) })
		if strings.Join(days, ",") != "7,30,90,365" || sec.Find("#token-days option[selected]").AttrOr("value", "") != "90" {
			t.Errorf("lifetimes %v, selected %q", days, sec.Find("#token-days option[selected]").AttrOr("value", ""))
		}
	})

	var secret string
	t.Run("creating a token shows its secret once, with how to use it", func(t *testing.T) {
		resp, body := srv.Do(t, browser, handlertest.Request{Method: "POST", Path: "/profile/tokens", Form: url.Values{"name": {"laptop CLI"}, "scope": {"read"}, "expires_in_days": {"30"}}})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		doc := handlertest.Doc(t, body)
		secret = doc.Find("#new-token-secret").Text()
		if !regexp.MustCompile(`^dpt_[a-z2-7]{32}$`).MatchString(secret) {
			t.Fatalf("secret %q", secret)
		}
		note := doc.Find("#new-token").Text()
		if !strings.Contains(note, "Copy it now, it will not be shown again") {
			t.Errorf("no one-time note: %q", note)
		}
		if login := doc.Find("#new-token-login").Text(); login != "devport login --portal "+srv.URL+" --token "+secret {
			t.Errorf("login command %q", login)
		}
		if curl := doc.Find("#new-token-curl").Text(); !strings.Contains(curl, `-H "Authorization: Bearer `+secret+`"`) {
			t.Errorf("curl %q", curl)
		}
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("the page with the secret may be cached: %q", resp.Header.Get("Cache-Control"))
		}
		row := doc.Find("section#tokens tbody tr")
		if row.Length() != 1 || row.Find(".token-name").Text() != "laptop CLI" || row.Find(".token-scope").Text() != "read-only" ||
			row.Find(".token-prefix").Text() != secret[:8]+"…" || row.Find(".token-last-used").Text() != "never" || row.Find("button").Text() != "Revoke laptop CLI" {
			t.Errorf("row %q", row.Text())
		}
		if resp, _ := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/devservers", Token: secret}); resp.StatusCode != http.StatusOK {
			t.Errorf("the new read-only token cannot read: %d", resp.StatusCode)
		}
	})

	t.Run("the secret is not shown again nor kept in the session", func(t *testing.T) {
		body := profile()
		if strings.Contains(body, secret) || strings.Contains(body, "new-token-secret") {
			t.Errorf("the profile shows the secret again")
		}
		var n int
		if err := srv.Store.WriteDB().QueryRow(`SELECT COUNT(*) FROM sessions WHERE data LIKE ?`, "%"+secret[4:]+"%").Scan(&n); err != nil || n != 0 {
			t.Errorf("the secret is in %d sessions (%v)", n, err)
		}
		row := handlertest.Doc(t, body).Find("section#tokens tbody tr")
		exp := row.Find(".token-expires").Text()
		if want := time.Now().UTC().Add(30 * 24 * time.Hour).Format("2006-01-02"); !strings.HasPrefix(exp, want) {
			t.Errorf("expires %q, want %s", exp, want)
		}
		if row.Find(".token-last-used").Text() == "never" {
			t.Errorf("the token was used, yet last used says never")
		}
	})

	t.Run("bad input shows what is wrong and creates nothing", func(t *testing.T) {
		for _, c := range []struct {
			form  url.Values
			field string
		}{
			{url.Values{"name": {""}, "scope": {"read"}, "expires_in_days": {"90"}}, "name"},
			{url.Values{"name": {strings.Repeat("x", 101)}, "scope": {"full"}, "expires_in_days": {"90"}}, "name"},
			{url.Values{"name": {"x"}, "scope": {"root"}, "expires_in_days": {"90"}}, "scope"},
			{url.Values{"name": {"x"}, "scope": {"full"}, "expires_in_days": {"12"}}, "expires_in_days"},
			{url.Values{"name": {"x"}, "scope": {"full"}, "expires_in_days": {"forever"}}, "expires_in_days"},
		} {
			before := rowCounts(t, srv.Store)
			resp, body := srv.Do(t, browser, handlertest.Request{Method: "POST", Path: "/profile/tokens", Form: c.form})
			doc := handlertest.Doc(t, body)
			if resp.StatusCode != http.StatusUnprocessableEntity || doc.Find("#error-"+c.field).Text() == "" || doc.Find("#new-token").Length() != 0 {
				t.Errorf("%v: %d, error for %s %q", c.form, resp.StatusCode, c.field, doc.Find("#error-"+c.field).Text())
			}
			if doc.Find("#token-name").AttrOr("value", "") != c.form.Get("name") {
				t.Errorf("%v: the form lost the name", c.form)
			}
			sameCounts(t, "the form "+c.form.Encode(), before, rowCounts(t, srv.Store))
		}
	})

	t.Run("revoking from the page", func(t *testing.T) {
		other := srv.Token(t, "other@example.com")
		_, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/me/tokens", Token: other})
		othersID := decode[page[tokenJSON]](t, body).Items[0].ID
		for _, path := range []string{"/profile/tokens/" + strconv.FormatInt(othersID, 10) + "/revoke", "/profile/tokens/abc/revoke", "/profile/tokens/999999/revoke"} {
			before := rowCounts(t, srv.Store)
			if resp, _ := srv.Do(t, browser, handlertest.Request{Method: "POST", Path: path, Form: url.Values{}}); resp.StatusCode != http.StatusNotFound {
				t.Errorf("POST %s: %d, want 404", path, resp.StatusCode)
			}
			sameCounts(t, path, before, rowCounts(t, srv.Store))
		}
		if resp, _ := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/me", Token: other}); resp.StatusCode != http.StatusOK {
			t.Errorf("someone else's token stopped working: %d", resp.StatusCode)
		}
		doc := handlertest.Doc(t, profile())
		action := doc.Find("section#tokens form.revoke-token").AttrOr("action", "")
		resp, _ := srv.Do(t, browser, handlertest.Request{Method: "POST", Path: action, Form: url.Values{}})
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/profile") {
			t.Fatalf("revoke: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		body = profile()
		if !strings.Contains(body, "Revoked the token laptop CLI") || !strings.Contains(body, "You have no personal access tokens") {
			t.Errorf("after revoking: %q", handlertest.Doc(t, body).Find("main").Text())
		}
		if resp, _ := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/devservers", Token: secret}); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("the revoked token still works: %d", resp.StatusCode)
		}
		var n int
		if err := srv.Store.WriteDB().QueryRow(`SELECT COUNT(*) FROM audit_events WHERE action IN ('token.create', 'token.revoke') AND actor = 'pat@example.com'`).Scan(&n); err != nil || n != 2 {
			t.Errorf("%d audit events (%v), want a creation and a revocation", n, err)
		}
	})

	t.Run("an expired token says expired", func(t *testing.T) {
		resp, body := srv.Do(t, browser, handlertest.Request{Method: "POST", Path: "/profile/tokens", Form: url.Values{"name": {"old"}, "scope": {"full"}, "expires_in_days": {"7"}}})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		expireToken(t, srv, handlertest.Doc(t, body).Find("#new-token-secret").Text())
		row := handlertest.Doc(t, profile()).Find("section#tokens tbody tr")
		if row.Find(".token-expires").Text() != "expired" || row.AttrOr("data-expired", "no") == "no" {
			t.Errorf("row %q", row.Text())
		}
	})
}

// TestReadOnlyTokenOnEveryMutatingRoute walks the real router: every route
// whose method can change something refuses a read-only token with 403
// read_only_token and leaves the database as it was. A new mutating route
// is tried as soon as it exists.
func TestReadOnlyTokenOnEveryMutatingRoute(t *testing.T) {
	srv := handlertest.New(t)
	const email = "reader@example.com"
	full := srv.Token(t, email, store.RoleAdmin, store.RoleReviewer)
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: full, Body: `{"flavor":"vm.small"}`})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("reserve: %d %s", resp.StatusCode, body)
	}
	ds := decode[devserverJSON](t, body).Name
	srv.WaitState(t, ds, store.StateReady)
	ro := readOnlyToken(t, srv, email)
	var tokenID int64
	if _, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/me/tokens", Token: full}); true {
		tokenID = decode[page[tokenJSON]](t, body).Items[0].ID
	}
	// Wait for the jobs the reservation started to settle, so that the
	// counts below change only if a refused request changed them.
	handlertest.Eventually(t, 20*time.Second, "the job queue to settle", func() bool {
		var n int
		err := srv.Store.WriteDB().QueryRow(`SELECT COUNT(*) FROM river_job WHERE state NOT IN ('completed', 'discarded', 'cancelled')`).Scan(&n)
		return err == nil && n == 0
	})

	params := map[string]string{
		"name": ds, "id": strconv.FormatInt(tokenID, 10), "email": "friend@example.com", "feature": "git", "code": "prn",
		"flavor": "vm.small", "region": "prn", "type": "web", "profile": "small", "role": "engineer", "step": "1",
	}
	param := regexp.MustCompile(`\{([^}:]+)(:[^}]*)?\}`)
	// Plausible bodies: what a caller with write access would send.
	jsonBodies := map[string]string{
		"POST /api/v1/devservers":               `{"flavor":"vm.small"}`,
		"POST /api/v1/me/tokens":                `{"name":"sneaky","scope":"full"}`,
		"POST /api/v1/me/keys":                  `{"public_key":"` + newKey(t, "") + `"}`,
		"POST /api/v1/devservers/{name}/shares": `{"email":"friend@example.com"}`,
		"POST /api/v1/containers":               `{"type":"web","profile":"small"}`,
		"POST /api/v1/banners":                  `{"message":"hello","severity":"info"}`,
		"POST /api/v1/sevs":                     `{"title":"read-only outage","severity":3}`,
		"PATCH /api/v1/me":                      `{"home_region":"prn"}`,
		"POST /api/v1/devservers/{name}/extend": `{"until":"` + time.Now().Add(48*time.Hour).UTC().Format(time.RFC3339) + `"}`,
		"POST /api/v1/support/bundles":          `{"note":"x","parts":{"checks":[]}}`,
	}
	forms := map[string]url.Values{
		"POST /devservers":               {"flavor": {"vm.small"}},
		"POST /profile/tokens":           {"name": {"sneaky"}, "scope": {"full"}, "expires_in_days": {"90"}},
		"POST /profile/keys":             {"public_key": {newKey(t, "")}},
		"POST /devservers/{name}/shares": {"email": {"friend@example.com"}},
		"POST /profile/home-region":      {"home_region": {"prn"}},
		"POST /inbox/read-all":           {},
		"POST /admin/banners":            {"message": {"hello"}, "severity": {"info"}},
	}

	var tried []string
	before := rowCounts(t, srv.Store)
	err := chi.Walk(srv.Config.Handler.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		switch method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			return nil
		}
		if method == "" || method == "*" {
			method = http.MethodPost
		}
		route = strings.ReplaceAll(route, "/*/", "/")
		key := method + " " + route
		path := param.ReplaceAllStringFunc(route, func(m string) string {
			name := param.FindStringSubmatch(m)[1]
			if v, ok := params[name]; ok {
				return url.PathEscape(v)
			}
			return "1"
		})
		path = strings.TrimSuffix(path, "/*")
		tried = append(tried, key)
		t.Run(key, func(t *testing.T) {
			var reqs []handlertest.Request
			if strings.HasPrefix(route, "/api/") {
				b, ok := jsonBodies[key]
				if !ok {
					b = `{}`
				}
				reqs = append(reqs, handlertest.Request{Method: method, Path: path, Token: ro, Body: b})
			} else {
				f, ok := forms[key]
				if !ok {
					f = url.Values{}
				}
				// A browser asks for HTML; a script for JSON.
				reqs = append(reqs,
					handlertest.Request{Method: method, Path: path, Token: ro, Form: f},
					handlertest.Request{Method: method, Path: path, Token: ro, Form: f, Headers: map[string]string{"Accept": "application/json"}})
			}
			for _, r := range reqs {
				resp, body := srv.Do(t, nil, r)
				if resp.StatusCode != http.StatusForbidden {
					t.Errorf("%s %s (Accept %q) with a read-only token: %d, want 403: %.200s", method, path, r.Headers["Accept"], resp.StatusCode, body)
					continue
				}
				if strings.HasPrefix(route, "/api/") || r.Headers["Accept"] != "" {
					if e := decode[apiError](t, body); e.Error.Code != "read_only_token" {
						t.Errorf("%s %s: code %q, want read_only_token", method, path, e.Error.Code)
					}
				} else if !strings.Contains(body, "This token is read-only.") {
					t.Errorf("%s %s: the page does not say the token is read-only", method, path)
				}
			}
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sameCounts(t, "read-only requests", before, rowCounts(t, srv.Store))
	// The walk must have found the mutating routes of every area, including
	// the token routes themselves.
	for _, want := range []string{"POST /api/v1/me/tokens", "DELETE /api/v1/me/tokens/{id}", "POST /profile/tokens", "POST /profile/tokens/{id}/revoke",
		"POST /api/v1/devservers", "DELETE /api/v1/containers/{id}", "PUT /api/v1/me/oneoffs", "PATCH /api/v1/sevs/{id}", "POST /logout"} {
		found := false
		for _, k := range tried {
			found = found || k == want
		}
		if !found {
			t.Errorf("the walk did not try %s", want)
		}
	}
	if len(tried) < 80 {
		t.Errorf("the walk tried only %d mutating routes", len(tried))
	}

	t.Run("the same read-only token reads", func(t *testing.T) {
		for _, p := range []string{"/api/v1/devservers", "/api/v1/me/tokens", "/api/v1/devservers/" + ds} {
			if resp, body := srv.Do(t, nil, handlertest.Request{Path: p, Token: ro}); resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s: %d %.200s", p, resp.StatusCode, body)
			}
		}
	})
	t.Run("a full token changes things", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/me/tokens", Token: full, Body: `{"name":"another","scope":"read"}`})
		if resp.StatusCode != http.StatusCreated {
			t.Errorf("create a token: %d %s", resp.StatusCode, body)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + ds + "/shares", Token: full, Body: `{"email":"` + storetest.User(t, srv.Store, "friend@example.com").Email + `"}`})
		if resp.StatusCode != http.StatusCreated {
			t.Errorf("share: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("an expired token and a revoked one are refused", func(t *testing.T) {
		expired := readOnlyToken(t, srv, email)
		expireToken(t, srv, expired)
		resp, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/devservers", Token: expired})
		if e := decode[apiError](t, body); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(e.Error.Message, "expired") {
			t.Errorf("expired: %d %s", resp.StatusCode, body)
		}
		tk, err := srv.Store.TokenBySecret(context.Background(), ro)
		if err != nil {
			t.Fatal(err)
		}
		if resp, body := srv.Do(t, nil, handlertest.Request{Method: "DELETE", Path: "/api/v1/me/tokens/" + strconv.FormatInt(tk.ID, 10), Token: full}); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("revoke: %d %s", resp.StatusCode, body)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/devservers", Token: ro})
		if e := decode[apiError](t, body); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(e.Error.Message, "revoked") {
			t.Errorf("revoked: %d %s", resp.StatusCode, body)
		}
	})
}
