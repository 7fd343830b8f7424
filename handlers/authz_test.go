package handlers_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
)

// TestAuthorizationMatrix holds every route against every kind of caller:
// anonymous, the owner of the object, a stranger, an admin and a reviewer.
// A cell is the status the caller gets; "" means the route is not tried for
// that caller (a second caller would change the state the next one sees).
func TestAuthorizationMatrix(t *testing.T) {
	srv := handlertest.New(t)
	tokens := map[string]string{
		"owner":    srv.Token(t, "owner@example.com"),
		"stranger": srv.Token(t, "stranger@example.com"),
		"admin":    srv.Token(t, "admin@example.com", store.RoleAdmin),
		"reviewer": srv.Token(t, "reviewer@example.com", store.RoleReviewer),
	}
	browsers := map[string]*http.Client{
		"owner":    srv.SignIn(t, "owner@example.com"),
		"stranger": srv.SignIn(t, "stranger@example.com"),
		"admin":    srv.SignIn(t, "admin@example.com", store.RoleAdmin),
		"reviewer": srv.SignIn(t, "reviewer@example.com", store.RoleReviewer),
	}
	reserve := func() string {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: tokens["owner"], Body: `{"flavor":"vm.small"}`})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("reserve: %d %s", resp.StatusCode, body)
		}
		name := decode[devserverJSON](t, body).Name
		srv.WaitState(t, name, store.StateReady)
		return name
	}
	ds := reserve()
	callers := []string{"anonymous", "owner", "stranger", "admin", "reviewer"}

	api := []struct {
		method, path, body string
		want               map[string]int
	}{
		{"GET", "/api/v1/me", "", map[string]int{"anonymous": 401, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/api/v1/regions", "", map[string]int{"anonymous": 401, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/api/v1/flavors", "", map[string]int{"anonymous": 401, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/api/v1/features", "", map[string]int{"anonymous": 401, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/api/v1/devservers", "", map[string]int{"anonymous": 401, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/api/v1/devservers?all=1", "", map[string]int{"anonymous": 401, "owner": 403, "stranger": 403, "admin": 200, "reviewer": 403}},
		{"POST", "/api/v1/devservers", `{"flavor":"nope"}`, map[string]int{"anonymous": 401, "owner": 422, "stranger": 422, "admin": 422, "reviewer": 422}},
		{"GET", "/api/v1/devservers/" + ds, "", map[string]int{"anonymous": 401, "owner": 200, "stranger": 404, "admin": 200, "reviewer": 404}},
		{"POST", "/api/v1/devservers/" + ds + "/release", "", map[string]int{"anonymous": 401, "stranger": 404, "reviewer": 404}},
	}
	for _, r := range api {
		for _, who := range callers {
			want, ok := r.want[who]
			if !ok {
				continue
			}
			t.Run(who+" "+r.method+" "+r.path, func(t *testing.T) {
				resp, body := srv.Do(t, nil, handlertest.Request{Method: r.method, Path: r.path, Token: tokens[who], Body: r.body})
				if resp.StatusCode != want {
					t.Errorf("status %d, want %d: %.300s", resp.StatusCode, want, body)
				}
			})
		}
	}

	html := []struct {
		method, path string
		form         url.Values
		want         map[string]int
	}{
		{"GET", "/", nil, map[string]int{"anonymous": 303, "owner": 303, "stranger": 303, "admin": 303, "reviewer": 303}},
		{"GET", "/login", nil, map[string]int{"anonymous": 200, "owner": 303, "stranger": 303, "admin": 303, "reviewer": 303}},
		{"GET", "/devservers", nil, map[string]int{"anonymous": 303, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/devservers/new", nil, map[string]int{"anonymous": 303, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"GET", "/devservers/new/regions?flavor=vm.small", nil, map[string]int{"anonymous": 303, "owner": 200, "stranger": 200, "admin": 200, "reviewer": 200}},
		{"POST", "/devservers", url.Values{"flavor": {"nope"}}, map[string]int{"anonymous": 303, "owner": 422, "stranger": 422, "admin": 422, "reviewer": 422}},
		{"GET", "/devservers/" + ds, nil, map[string]int{"anonymous": 303, "owner": 200, "stranger": 404, "admin": 200, "reviewer": 404}},
		{"POST", "/devservers/" + ds + "/release", url.Values{}, map[string]int{"anonymous": 303, "stranger": 404, "reviewer": 404}},
		{"GET", "/healthz", nil, map[string]int{"anonymous": 200, "owner": 200}},
		{"GET", "/readyz", nil, map[string]int{"anonymous": 200, "owner": 200}},
		{"GET", "/metrics", nil, map[string]int{"anonymous": 200, "owner": 200}},
	}
	for _, r := range html {
		for _, who := range callers {
			want, ok := r.want[who]
			if !ok {
				continue
			}
			t.Run(who+" page "+r.method+" "+r.path, func(t *testing.T) {
				resp, body := srv.Do(t, browsers[who], handlertest.Request{Method: r.method, Path: r.path, Form: r.form})
				if resp.StatusCode != want {
					t.Errorf("status %d, want %d: %.300s", resp.StatusCode, want, body)
				}
				if who == "anonymous" && want == 303 && r.path != "/" && !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
					t.Errorf("anonymous sent to %q, want the sign-in page", resp.Header.Get("Location"))
				}
			})
		}
	}

	t.Run("every route is in the matrix", func(t *testing.T) {
		covered := map[string]bool{"GET /static/*": true, "POST /login/dev": true, "POST /logout": true}
		pattern := func(method, path string) string {
			path, _, _ = strings.Cut(path, "?")
			return method + " " + strings.ReplaceAll(path, ds, "{name}")
		}
		for _, r := range api {
			covered[pattern(r.method, r.path)] = true
		}
		for _, r := range html {
			covered[pattern(r.method, r.path)] = true
		}
		err := chi.Walk(srv.Config.Handler.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
			route = strings.TrimSuffix(strings.ReplaceAll(route, "/*/", "/"), "/")
			if method != "HEAD" && !covered[method+" "+route] && !covered[method+" "+route+"/"] && route != "" {
				t.Errorf("route %s %s is not in the authorization matrix", method, route)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	// The state-changing cells: each on its own devserver.
	for _, who := range []string{"owner", "admin"} {
		t.Run(who+" may release the owner's devserver", func(t *testing.T) {
			name := reserve()
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + name + "/release", Token: tokens[who]})
			if resp.StatusCode != http.StatusAccepted {
				t.Errorf("status %d: %s", resp.StatusCode, body)
			}
		})
		t.Run(who+" may release the owner's devserver from the page", func(t *testing.T) {
			name := reserve()
			resp, _ := srv.Do(t, browsers[who], handlertest.Request{Method: "POST", Path: "/devservers/" + name + "/release", Form: url.Values{}})
			if resp.StatusCode != http.StatusSeeOther {
				t.Errorf("status %d", resp.StatusCode)
			}
		})
	}
}

func TestPolicies(t *testing.T) {
	owner := store.User{ID: 1, Roles: []string{"engineer"}}
	stranger := store.User{ID: 2, Roles: []string{"engineer"}}
	admin := store.User{ID: 3, Roles: []string{"engineer", "admin"}}
	reviewer := store.User{ID: 4, Roles: []string{"engineer", "reviewer"}}
	d := store.Devserver{OwnerID: 1}
	for _, c := range []struct {
		who                       string
		u                         store.User
		see, release, listAllWant bool
	}{
		{"owner", owner, true, true, false},
		{"stranger", stranger, false, false, false},
		{"admin", admin, true, true, true},
		{"reviewer", reviewer, false, false, false},
	} {
		if store.CanSeeDevserver(c.u, d) != c.see || store.CanManageDevserver(c.u, d) != c.release || store.CanListAllDevservers(c.u) != c.listAllWant {
			t.Errorf("%s: see %v release %v list all %v", c.who, store.CanSeeDevserver(c.u, d), store.CanManageDevserver(c.u, d), store.CanListAllDevservers(c.u))
		}
	}
}
