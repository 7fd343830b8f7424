package handlers_test

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
)

// fuzzRoute is one route of the router, as chi lists it.
type fuzzRoute struct{ method, pattern string }

// routeParam matches a {param} of a chi pattern.
var routeParam = regexp.MustCompile(`\{[^}]+\}`)

// fuzzRoutes lists every route of the real router (but the static files),
// sorted so that a corpus entry names the same route run after run.
func fuzzRoutes(t testing.TB, srv *handlertest.Server) []fuzzRoute {
	t.Helper()
	var out []fuzzRoute
	err := chi.Walk(srv.Config.Handler.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		route = strings.TrimSuffix(strings.ReplaceAll(route, "/*/", "/"), "/")
		if method == http.MethodHead || route == "" || strings.HasPrefix(route, "/static") {
			return nil
		}
		out = append(out, fuzzRoute{method, route})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(out, func(a, b fuzzRoute) int { return strings.Compare(a.method+" "+a.pattern, b.method+" "+b.pattern) })
	return out
}

// fuzzContentTypes are the Content-Types a fuzzed request may carry.
var fuzzContentTypes = []string{"application/json", "", "application/x-www-form-urlencoded", "text/plain",
	"multipart/form-data; boundary=x", "application/json; charset=utf-8", "application/json; charset", "application/jsonx"}

// fuzzQueryKeys are the query parameters some route reads.
var fuzzQueryKeys = []string{"limit", "cursor", "all", "state", "region", "flavor", "rows", "cols", "lease_until", "lease_kind", "next"}

// validSeeds is one valid request body per route that takes one (the rest
// take none); {name} is the fuzz devserver.
var validSeeds = map[string]string{
	"PATCH /api/v1/me":                                  `{"home_region":"prn"}`,
	"PUT /api/v1/policies/latencies":                    `{"from":"prn","to":"ftw","ms":30}`,
	"PUT /api/v1/policies/leases/{flavor}":              `{"max_days":14,"permanent":"admins"}`,
	"PUT /api/v1/policies/quotas/{role}":                `{"devservers":5,"gpu_devservers":1}`,
	"POST /api/v1/devservers":                           `{"flavor":"vm.small","region":"prn"}`,
	"POST /api/v1/devservers/{name}/extend":             `{"until":"2030-01-01T00:00:00Z"}`,
	"PUT /api/v1/pools/{region}/{flavor}":               `{"target":0}`,
	"POST /api/v1/devservers/{name}/features":           `{"feature":"git"}`,
	"POST /api/v1/devservers/{name}/migrate":            `{"region":"ftw"}`,
	"PUT /api/v1/me/oneoffs":                            `{"dotfiles":[{"path":".bashrc","content":"echo hi"}],"setup_script":"true","env":{"A":"b"}}`,
	"POST /api/v1/devservers/{name}/shares":             `{"email":"friend@example.com"}`,
	"POST /api/v1/me/keys":                              `{"name":"laptop","public_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}`,
	"PUT /api/v1/features/{feature}":                    `{"version":"2.0","batch_size":2}`,
	"POST /api/v1/devservers/{name}/restore":            `{"backup_id":1}`,
	"POST /devservers":                                  "flavor=vm.small&region=prn&lease_kind=short&lease_until=2030-01-01",
	"POST /devservers/{name}/extend":                    "until=2030-01-01",
	"POST /admin/pools":                                 "target-prn%2Fvm.small=0",
	"POST /admin/policies/latencies":                    "latency-prn%2Fftw=30",
	"POST /admin/policies/leases":                       "max_days-vm.small=14&permanent-vm.small=admins",
	"POST /admin/policies/quotas":                       "devservers-engineer=5&gpu_devservers-engineer=1",
	"POST /devservers/{name}/features":                  "feature=git",
	"POST /devservers/{name}/migrate":                   "region=ftw",
	"POST /profile/oneoffs":                             "dotfile_path=.bashrc&dotfile_content=x&setup_script=true&env=A%3Db",
	"POST /admin/features/{feature}/version":            "version=2.0&batch_size=2",
	"POST /backups/{id}/restore":                        "target={name}",
	"POST /devservers/{name}/shares":                    "email=friend%40example.com",
	"POST /profile/keys":                                "name=laptop&public_key=ssh-ed25519+AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
	"POST /profile/home-region":                         "home_region=prn",
	"POST /login/dev":                                   "email=someone%40example.com&roles=engineer",
	"POST /devservers/{name}/features/{feature}/remove": "",
	"PUT /api/v1/me/preferences":                        `{"inbox":true,"email":false,"chat":false}`,
	"POST /api/v1/banners":                              `{"message":"Drill","severity":"warning","region":"prn","audience":"affected","starts_at":"2030-01-01T09:00:00Z","ends_at":"2030-01-01T17:00:00Z","sev_id":3}`,
	"PATCH /api/v1/banners/{id}":                        `{"severity":"critical","ends_at":null}`,
	"POST /profile/preferences":                         "",
	"POST /admin/banners":                               "message=Drill&severity=warning&region=prn&audience=affected&starts_at=2030-01-01T09%3A00&ends_at=2030-01-01T17%3A00&sev_id=3",
	"POST /admin/banners/{id}":                          "message=Drill&severity=info&audience=all",
}

// validParams are path parameters that name something that exists.
func validParams(ds string) map[string]string {
	return map[string]string{"{name}": ds, "{flavor}": "vm.small", "{region}": "prn", "{role}": "engineer",
		"{feature}": "git", "{email}": "friend@example.com", "{id}": "1"}
}

// FuzzRoutes sends every route of the router (the API with a token, the
// pages with a session) arbitrary path segments, query values, bodies and
// Content-Types, as the owner of a devserver, an admin or a stranger:
// whatever arrives, the answer is never a server error, and an error never
// shows SQL or the server's paths.
func FuzzRoutes(f *testing.F) {
	srv := handlertest.New(f)
	routes := fuzzRoutes(f, srv)
	tokens := []string{srv.Token(f, "fuzz-owner@example.com"), srv.Token(f, "fuzz-admin@example.com", store.RoleAdmin),
		srv.Token(f, "fuzz-stranger@example.com")}
	browsers := []*http.Client{srv.SignIn(f, "fuzz-owner@example.com"), srv.SignIn(f, "fuzz-admin@example.com", store.RoleAdmin),
		srv.SignIn(f, "fuzz-stranger@example.com")}
	resp, body := srv.Do(f, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: tokens[0], Body: `{"flavor":"vm.small"}`})
	if resp.StatusCode != http.StatusAccepted {
		f.Fatalf("reserve: %d %s", resp.StatusCode, body)
	}
	ds := decode[devserverJSON](f, body).Name
	srv.WaitState(f, ds, store.StateReady)
	params := validParams(ds)

	// One valid request per route, as each caller; then some that are not.
	for i, r := range routes {
		seed := strings.ReplaceAll(validSeeds[r.method+" "+r.pattern], "{name}", ds)
		ct := uint8(0) // JSON
		if !strings.HasPrefix(r.pattern, "/api/") {
			ct = 2 // a form
		}
		for who := range uint8(3) {
			f.Add(uint16(i), who, "", "", uint8(0), "", seed, ct, uint8(0))
		}
	}
	for i := range routes {
		f.Add(uint16(i), uint8(0), "%ff", "-1", uint8(1), "99999999999999999999", "{", uint8(3), uint8(1))
		f.Add(uint16(i), uint8(1), "\x00", "\xff\xfe", uint8(0), "\xff", `{"a":`+strings.Repeat("[", 200)+`}`, uint8(1), uint8(2))
		f.Add(uint16(i), uint8(2), "../..", "a/b", uint8(2), "aWQ6LTE", "null", uint8(4), uint8(15))
	}

	client := &http.Client{Timeout: 60 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	f.Fuzz(func(t *testing.T, route uint16, who uint8, seg1, seg2 string, queryKey uint8, query, body string, contentType, flags uint8) {
		r := routes[int(route)%len(routes)]
		who %= 3
		segs := []string{seg1, seg2}
		path := routeParam.ReplaceAllStringFunc(r.pattern, func(p string) string {
			seg := ""
			if len(segs) > 0 {
				seg, segs = segs[0], segs[1:]
			}
			if seg == "" {
				return url.PathEscape(params[p])
			}
			return url.PathEscape(seg)
		})
		if query != "" {
			path += "?" + url.Values{fuzzQueryKeys[int(queryKey)%len(fuzzQueryKeys)]: {query}}.Encode()
		}
		req, err := http.NewRequest(r.method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Skipf("not a request: %v", err)
		}
		if ct := fuzzContentTypes[int(contentType)%len(fuzzContentTypes)]; ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		c := client
		switch {
		case r.pattern == "/logout" || r.pattern == "/login/dev":
			// These would end or replace the fuzzing callers' sessions.
		case strings.HasPrefix(r.pattern, "/api/v1"):
			req.Header.Set("Authorization", "Bearer "+tokens[who])
		default:
			c = browsers[who]
			req.Header.Set("Origin", srv.URL)
		}
		// The flags: an HTMX request, one that asks for JSON, an
		// Idempotency-Key, and a request from another site.
		if flags&1 != 0 {
			req.Header.Set("HX-Request", "true")
		}
		if flags&2 != 0 {
			req.Header.Set("Accept", "application/json")
		}
		if flags&4 != 0 {
			req.Header.Set("Idempotency-Key", "fuzz-"+url.QueryEscape(seg1))
		}
		if flags&8 != 0 {
			req.Header.Set("Origin", "https://evil.example")
			req.Header.Set("Sec-Fetch-Site", "cross-site")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", r.method, path, err)
		}
		out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s (%s) body %q: status %d %.500s", r.method, path, req.Header.Get("Content-Type"), body, resp.StatusCode, out)
		}
		if resp.StatusCode >= 400 {
			low := strings.ToLower(string(out))
			for _, leak := range []string{"sqlite", "sql:", "goroutine ", ".go:", "/work/"} {
				if strings.Contains(low, leak) {
					t.Fatalf("%s %s: a %d error shows %q: %.500s", r.method, path, resp.StatusCode, leak, out)
				}
			}
		}
	})
}
