package handlers_test

import (
	"net/url"
	"testing"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/web"
)

// FuzzReserveAPI sends arbitrary bodies to the reservation endpoint: whatever
// arrives, the answer is a clear 2xx or 4xx, never a server error.
func FuzzReserveAPI(f *testing.F) {
	for _, seed := range []string{
		`{"flavor":"vm.small"}`, `{"flavor":"vm.small","region":"ftw","lease":{"kind":"short","until":"2030-01-01T00:00:00Z"}}`,
		`{"flavor":"vm.small","lease":{"kind":"permanent"}}`, `{"lease":null}`, `[]`, `null`, `{"flavor":"\u0000"}`,
		`{"flavor":"vm.small","region":"` + "\xff\xfe" + `"}`, `{"features":[1,2]}`, `{"lease":{"until":"1970-01-01T00:00:00Z"}}`,
	} {
		f.Add(seed)
	}
	srv := handlertest.New(f, handlertest.Options{NoJobs: true})
	tok := srv.Token(f, "fuzz@example.com")
	f.Fuzz(func(t *testing.T, body string) {
		resp, out := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: tok, Body: body})
		if resp.StatusCode >= 500 {
			t.Fatalf("body %q: status %d %s", body, resp.StatusCode, out)
		}
	})
}

// FuzzReserveForm does the same for the reservation form.
func FuzzReserveForm(f *testing.F) {
	f.Add("vm.small", "prn", "short", "2026-12-31")
	f.Add("", "", "permanent", "")
	f.Add("vm.small", "mars", "short", "99999-01-01")
	srv := handlertest.New(f, handlertest.Options{NoJobs: true})
	c := srv.SignIn(f, "fuzz@example.com")
	f.Fuzz(func(t *testing.T, flavor, region, kind, until string) {
		resp, out := srv.Do(t, c, handlertest.Request{Method: "POST", Path: "/devservers", Form: url.Values{
			"flavor": {flavor}, "region": {region}, "lease_kind": {kind}, "lease_until": {until},
		}})
		if resp.StatusCode >= 500 {
			t.Fatalf("form %q %q %q %q: status %d %.300s", flavor, region, kind, until, resp.StatusCode, out)
		}
	})
}

// FuzzSafeNext holds that a post-sign-in redirect never leaves the site.
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/devservers", "//evil.example", "https://evil.example", "/\\evil", "/ok?x=1", "\n/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, next string) {
		got := web.SafeNext(next)
		u, err := url.Parse(got)
		if err != nil || u.Host != "" || u.Scheme != "" || got[0] != '/' || (len(got) > 1 && (got[1] == '/' || got[1] == '\\')) {
			t.Errorf("SafeNext(%q) = %q", next, got)
		}
	})
}
