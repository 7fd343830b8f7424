package handlers_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
)

// catalogueState is the container catalogue and pools as the database holds
// them, with the number of their audit events, to check that a refused
// change changed nothing.
func catalogueState(t *testing.T, srv *handlertest.Server) string {
	t.Helper()
	var rows []string
	err := srv.Store.InTx(context.Background(), func(tx *store.Tx) error {
		return tx.SelectContext(context.Background(), &rows, `
SELECT 'type ' || name || '=' || stack || '|' || description || '|' || images || '|' || tools || '|' || repos || '|' || lifetime_hours || '|' || sandbox_url FROM container_types
UNION ALL SELECT 'profile ' || name || '=' || cpus || '/' || memory_gb || '/' || disk_gb || '/' || gpus || '|' || description FROM container_profiles
UNION ALL SELECT 'type profile ' || type || '/' || profile FROM container_type_profiles
UNION ALL SELECT 'type feature ' || type || '/' || feature FROM container_type_features
UNION ALL SELECT 'pool ' || region || '/' || type || '/' || profile || '=' || min_ready || '/' || target || '/' || max_size FROM container_pools
UNION ALL SELECT 'catalogue audit events ' || COUNT(*) FROM audit_events
    WHERE action LIKE 'container_type.%' OR action LIKE 'container_profile.%' OR action = 'container_pool.set'
ORDER BY 1`)
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(rows, "\n")
}

// everyInputLabelled fails the test when an input of the page has no label.
func everyInputLabelled(t *testing.T, doc *goquery.Document) {
	t.Helper()
	doc.Find("main input, main select, main textarea").Each(func(_ int, s *goquery.Selection) {
		id, _ := s.Attr("id")
		if id == "" || doc.Find(`label[for="`+id+`"]`).Length() != 1 {
			t.Errorf("input %q (%s) has no label", id, s.AttrOr("name", ""))
		}
	})
}

func containerType(t *testing.T, srv *handlertest.Server, name string) store.ContainerType {
	t.Helper()
	ct, err := srv.Store.ContainerType(context.Background(), name)
	if err != nil {
		t.Fatalf("type %s: %v", name, err)
	}
	return ct
}

func containerProfile(t *testing.T, srv *handlertest.Server, name string) store.ContainerProfile {
	t.Helper()
	c, err := srv.Store.ContainerCatalogue(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p, ok := c.Profile(name)
	if !ok {
		t.Fatalf("no profile %s", name)
	}
	return p
}

// webForm is the web type's edit form as the demo seeds it, with changes.
func webForm(changes url.Values) url.Values {
	f := url.Values{
		"stack":          {"Web (Node, React, Hack)"},
		"description":    {"The web monorepo."},
		"lifetime_hours": {"36"},
		"images":         {"sim sim/od-web:2026.11\ndocker devport-base:latest"},
		"tools":          {"node 22.12.0\npnpm 9.15.0"},
		"repos":          {"www main@2026-11-24"},
		"sandbox_url":    {"https://{name}.sandbox.devport.internal/"},
		"profiles":       {"small", "medium", "large"},
		"features":       {"vscode-server"},
	}
	for k, v := range changes {
		f[k] = v
	}
	return f
}

func TestAdminContainerCatalogue(t *testing.T) {
	srv := handlertest.New(t, handlertest.Options{NoJobs: true})
	admin := srv.SignIn(t, "root@example.com", store.RoleAdmin)
	engineer := srv.SignIn(t, "eve@example.com")
	post := func(t *testing.T, path string, form url.Values) (*http.Response, *goquery.Document) {
		t.Helper()
		resp, body := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: path, Form: form})
		return resp, handlertest.Doc(t, body)
	}

	t.Run("the admin landing page links to the catalogue and the capacity page", func(t *testing.T) {
		_, body := srv.Do(t, admin, handlertest.Request{Path: "/admin"})
		doc := handlertest.Doc(t, body)
		if doc.Find(`main a[href="/admin/containers"]`).Length() != 1 || doc.Find(`main a[href="/admin/capacity"]`).Length() != 1 {
			t.Errorf("links missing: %.500s", doc.Find("main").Text())
		}
	})

	t.Run("the page shows every type and profile with forms to edit them", func(t *testing.T) {
		resp, body := srv.Do(t, admin, handlertest.Request{Path: "/admin/containers"})
		if resp.StatusCode != 200 {
			t.Fatalf("%d", resp.StatusCode)
		}
		doc := handlertest.Doc(t, body)
		for _, name := range []string{"web", "android", "ios", "jupyter", "ml-gpu"} {
			if doc.Find(`tr[data-type="`+name+`"]`).Length() != 1 || doc.Find("#ctype-form-"+name).Length() != 1 {
				t.Errorf("type %s has no row or form", name)
			}
		}
		web := doc.Find(`tr[data-type="web"]`)
		if v, _ := web.Find("[data-lifetime]").Attr("data-lifetime"); v != "36" {
			t.Errorf("web lifetime %q", v)
		}
		if !strings.Contains(web.Find("[data-tools]").Text(), "node 22.12.0") || web.Find("[data-profiles]").Text() != "small, medium, large" {
			t.Errorf("web row %q", web.Text())
		}
		if got := doc.Find("#ctype-web-tools").Text(); !strings.Contains(got, "node 22.12.0\npnpm 9.15.0") {
			t.Errorf("the tools are edited as %q", got)
		}
		if got := doc.Find("#ctype-web-images").Text(); got != "docker devport-base:latest\nsim sim/od-web:2026.11" {
			t.Errorf("the images are edited as %q", got)
		}
		if doc.Find("#ctype-web-profile-medium[checked]").Length() != 1 || doc.Find("#ctype-web-profile-gpu[checked]").Length() != 0 {
			t.Error("the profile checkboxes do not say what web runs on")
		}
		if doc.Find("#ctype-web-feature-python[checked]").Length() != 1 || doc.Find("#ctype-web-feature-git").Length() != 1 {
			t.Error("the feature checkboxes do not come from the feature catalogue")
		}
		for _, name := range []string{"small", "medium", "large", "gpu"} {
			if doc.Find(`tr[data-profile="`+name+`"]`).Length() != 1 {
				t.Errorf("profile %s has no row", name)
			}
		}
		if v, _ := doc.Find("#cprofile-gpu-gpus").Attr("value"); v != "1" {
			t.Errorf("gpu profile GPUs %q", v)
		}
		if doc.Find("#ctype-form-new button").Text() != "Add container type" || doc.Find("#cprofile-form-new button").Text() != "Add profile" {
			t.Error("no add buttons")
		}
		for sel, want := range map[string]string{
			"#ctype-form-web": "/admin/containers/types/web", "#ctype-form-new": "/admin/containers/types",
			"#cprofile-form-small": "/admin/containers/profiles/small", "#cprofile-form-new": "/admin/containers/profiles",
		} {
			if got := doc.Find(sel).AttrOr("action", ""); got != want || doc.Find(sel).AttrOr("method", "") != "post" {
				t.Errorf("%s posts to %q, want %q", sel, got, want)
			}
		}
		if doc.Find(`input[name="cpus"][form="cprofile-form-small"]`).Length() != 1 {
			t.Error("the small profile's inputs do not belong to its form")
		}
		if doc.Find(`main a[href="/admin/capacity"]`).Length() == 0 {
			t.Error("no link to the capacity page")
		}
		everyInputLabelled(t, doc)
	})

	t.Run("an admin edits a type through the form", func(t *testing.T) {
		resp, _ := post(t, "/admin/containers/types/web", webForm(url.Values{
			"lifetime_hours": {"48"}, "tools": {"node 24.1.0\n\npnpm 10.0.0\n"}, "profiles": {"small", "medium"}, "features": {"python", "docker"},
		}))
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/admin/containers") {
			t.Fatalf("save: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		web := containerType(t, srv, "web")
		if web.LifetimeHours != 48 || len(web.Tools) != 2 || web.Tools[0] != (store.Versioned{Name: "node", Version: "24.1.0"}) ||
			strings.Join(web.Profiles, " ") != "small medium" || strings.Join(web.Features, " ") != "docker python" || web.Images["docker"] != "devport-base:latest" {
			t.Errorf("web = %+v", web)
		}
		if !audited(t, srv, "container_type", "web", "container_type.update") {
			t.Error("no audit event")
		}
		_, body := srv.Do(t, admin, handlertest.Request{Path: "/admin/containers"})
		doc := handlertest.Doc(t, body)
		if !strings.Contains(doc.Find(".flash-success").Text(), "Saved the web container type") {
			t.Errorf("flash %q", doc.Find(".flash").Text())
		}
		if v, _ := doc.Find(`tr[data-type="web"] [data-lifetime]`).Attr("data-lifetime"); v != "48" {
			t.Errorf("the page shows lifetime %q", v)
		}
	})

	t.Run("an admin adds a type through the form", func(t *testing.T) {
		resp, _ := post(t, "/admin/containers/types", url.Values{
			"name": {"go"}, "stack": {"Go 1.26"}, "lifetime_hours": {"12"}, "images": {"sim sim/od-go:1"}, "tools": {"go 1.26.0"},
			"profiles": {"small"}, "features": {"git"},
		})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("add: %d", resp.StatusCode)
		}
		g := containerType(t, srv, "go")
		if g.Stack != "Go 1.26" || g.LifetimeHours != 12 || strings.Join(g.Profiles, " ") != "small" || !audited(t, srv, "container_type", "go", "container_type.create") {
			t.Errorf("go = %+v", g)
		}
	})

	for _, tc := range []struct {
		name, path string
		form       url.Values
		formID     string
		field, msg string
	}{
		{"a lifetime of 0 hours", "/admin/containers/types/web", webForm(url.Values{"lifetime_hours": {"0"}}), "ctype-form-web", "lifetime_hours", "1 to 720"},
		{"a lifetime that is not a number", "/admin/containers/types/web", webForm(url.Values{"lifetime_hours": {"a day"}}), "ctype-form-web", "lifetime_hours", "whole number"},
		{"a tool without a version", "/admin/containers/types/web", webForm(url.Values{"tools": {"node 22\npnpm"}}), "ctype-form-web", "tools", "line 2"},
		{"a tool listed twice", "/admin/containers/types/web", webForm(url.Values{"tools": {"node 22\nnode 24"}}), "ctype-form-web", "tools", "twice"},
		{"a repository with three words", "/admin/containers/types/web", webForm(url.Values{"repos": {"www main today"}}), "ctype-form-web", "repos", "line 1"},
		{"an image without a driver", "/admin/containers/types/web", webForm(url.Values{"images": {"devport-base:latest"}}), "ctype-form-web", "images", "line 1"},
		{"two images for one driver", "/admin/containers/types/web", webForm(url.Values{"images": {"sim a\nsim b"}}), "ctype-form-web", "images", "has an image already"},
		{"no profile", "/admin/containers/types/web", webForm(url.Values{"profiles": nil}), "ctype-form-web", "profiles", "at least one"},
		{"an unknown profile", "/admin/containers/types/web", webForm(url.Values{"profiles": {"huge"}}), "ctype-form-web", "profiles", `"huge" is not a profile`},
		{"an unknown feature", "/admin/containers/types/web", webForm(url.Values{"features": {"emacs"}}), "ctype-form-web", "features", `"emacs" is not a feature`},
		{"a sandbox URL that is not http", "/admin/containers/types/web", webForm(url.Values{"sandbox_url": {"ftp://{name}.example.com/"}}), "ctype-form-web", "sandbox_url", "http or https"},
		{"an empty stack", "/admin/containers/types/web", webForm(url.Values{"stack": {" "}}), "ctype-form-web", "stack", "required"},
		{"a new type with a bad name", "/admin/containers/types", webForm(url.Values{"name": {"Rust Nightly"}}), "ctype-form-new", "name", "lower-case"},
		{"a new type named like an existing one", "/admin/containers/types", webForm(url.Values{"name": {"android"}}), "ctype-form-new", "name", "exists already"},
		{"a profile with 0 CPUs", "/admin/containers/profiles/medium", url.Values{"cpus": {"0"}, "memory_gb": {"8"}, "disk_gb": {"40"}, "gpus": {"0"}}, "medium", "cpus", "1 to 256"},
		{"a profile with memory that is not a number", "/admin/containers/profiles/medium", url.Values{"cpus": {"4"}, "memory_gb": {"lots"}, "disk_gb": {"40"}, "gpus": {"0"}}, "medium", "memory_gb", "whole number"},
		{"a profile with 17 GPUs", "/admin/containers/profiles/gpu", url.Values{"cpus": {"8"}, "memory_gb": {"32"}, "disk_gb": {"100"}, "gpus": {"17"}}, "gpu", "gpus", "0 to 16"},
		{"a new profile named like an existing one", "/admin/containers/profiles", url.Values{"name": {"small"}, "cpus": {"1"}, "memory_gb": {"1"}, "disk_gb": {"1"}, "gpus": {"0"}}, "new", "name", "exists already"},
		{"a new profile with a bad name", "/admin/containers/profiles", url.Values{"name": {"X L"}, "cpus": {"1"}, "memory_gb": {"1"}, "disk_gb": {"1"}, "gpus": {"0"}}, "new", "name", "lower-case"},
	} {
		t.Run("refuses "+tc.name+", shows the problem by the field and changes nothing", func(t *testing.T) {
			before := catalogueState(t, srv)
			resp, doc := post(t, tc.path, tc.form)
			if resp.StatusCode != http.StatusUnprocessableEntity {
				t.Fatalf("status %d, want 422", resp.StatusCode)
			}
			if after := catalogueState(t, srv); after != before {
				t.Errorf("the catalogue changed:\n%s\nwant\n%s", after, before)
			}
			scope := doc.Find("#" + tc.formID)
			if strings.HasPrefix(tc.path, "/admin/containers/profiles") {
				scope = doc.Find(`tr[data-profile="` + tc.formID + `"]`)
				if tc.formID == "new" {
					scope = doc.Find(`tr[data-profile-new]`)
				}
			} else if !strings.HasSuffix(tc.formID, "-new") && doc.Find(`tr[data-type-edit] details[open]`).Length() != 1 {
				t.Error("the refused form is not open")
			}
			if msg := scope.Find(`[data-error-for="` + tc.field + `"]`).Text(); !strings.Contains(msg, tc.msg) {
				t.Errorf("error for %s: %q, want %q", tc.field, msg, tc.msg)
			}
			if doc.Find(`[role=alert]`).Length() != 1 || !strings.Contains(doc.Find(`[role=alert]`).Text(), "nothing was saved") {
				t.Errorf("alert %q", doc.Find(`[role=alert]`).Text())
			}
			// The form shows what was entered.
			for _, field := range []string{"tools", "images", "lifetime_hours", "cpus", "memory_gb"} {
				want, ok := tc.form[field]
				if !ok {
					continue
				}
				in := scope.Find(`[name="` + field + `"]`)
				if strings.HasPrefix(tc.path, "/admin/containers/profiles") {
					in = doc.Find(`[name="` + field + `"][form="cprofile-form-` + tc.formID + `"]`)
				}
				got := in.AttrOr("value", in.Text())
				if in.Is("textarea") {
					got = in.Text()
				}
				if got != strings.TrimSpace(want[0]) {
					t.Errorf("%s shows %q, want %q as entered", field, got, want[0])
				}
			}
		})
	}

	t.Run("an unknown type or profile has no edit form", func(t *testing.T) {
		for _, path := range []string{"/admin/containers/types/cobol", "/admin/containers/profiles/huge"} {
			if resp, _ := post(t, path, webForm(nil)); resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s: %d, want 404", path, resp.StatusCode)
			}
		}
	})

	t.Run("an admin edits and adds a profile through the form", func(t *testing.T) {
		resp, _ := post(t, "/admin/containers/profiles/medium", url.Values{"cpus": {"6"}, "memory_gb": {"12"}, "disk_gb": {"50"}, "gpus": {"0"}, "description": {"Builds"}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("save: %d", resp.StatusCode)
		}
		if p := containerProfile(t, srv, "medium"); p.CPUs != 6 || p.MemoryGB != 12 || p.DiskGB != 50 || p.Description != "Builds" {
			t.Errorf("medium = %+v", p)
		}
		if !audited(t, srv, "container_profile", "medium", "container_profile.update") {
			t.Error("no audit event")
		}
		resp, _ = post(t, "/admin/containers/profiles", url.Values{"name": {"xlarge"}, "cpus": {"16"}, "memory_gb": {"64"}, "disk_gb": {"200"}, "gpus": {"0"}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("add: %d", resp.StatusCode)
		}
		if p := containerProfile(t, srv, "xlarge"); p.CPUs != 16 || !audited(t, srv, "container_profile", "xlarge", "container_profile.create") {
			t.Errorf("xlarge = %+v", p)
		}
		_, body := srv.Do(t, admin, handlertest.Request{Path: "/admin/containers"})
		doc := handlertest.Doc(t, body)
		if v, _ := doc.Find("#cprofile-medium-cpus").Attr("value"); v != "6" || doc.Find(`tr[data-profile="xlarge"]`).Length() != 1 {
			t.Errorf("the page shows medium with %q CPUs", v)
		}
		if doc.Find("#ctype-web-profile-xlarge").Length() != 1 {
			t.Error("a type's form does not offer the new profile")
		}
	})

	t.Run("the API saves a type and a profile", func(t *testing.T) {
		tok := srv.Token(t, "root@example.com", store.RoleAdmin)
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: "/api/v1/containers/types/jupyter", Token: tok, Body: `{
			"stack": "Jupyter (Python 3.13)", "description": "Notebooks", "images": {"sim": "sim/od-jupyter:2026.12"},
			"tools": [{"name": "python", "version": "3.13.1"}], "repos": [], "lifetime_hours": 20,
			"sandbox_url": "https://{name}.notebooks.example.com/lab", "profiles": ["small", "gpu"], "features": ["python"]}`})
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		out := decode[store.ContainerType](t, body)
		j := containerType(t, srv, "jupyter")
		if out.Name != "jupyter" || out.LifetimeHours != 20 || j.Stack != "Jupyter (Python 3.13)" || j.Tools[0].Version != "3.13.1" || strings.Join(j.Profiles, " ") != "small gpu" {
			t.Errorf("answer %+v, database %+v", out, j)
		}
		if !audited(t, srv, "container_type", "jupyter", "container_type.update") {
			t.Error("no audit event")
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: "/api/v1/containers/types/rust", Token: tok, Body: `{"stack":"Rust","profiles":["small"]}`})
		if resp.StatusCode != 200 || containerType(t, srv, "rust").LifetimeHours != 36 {
			t.Errorf("a new type with the default lifetime: %d %s", resp.StatusCode, body)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: "/api/v1/containers/profiles/small", Token: tok, Body: `{"cpus":3,"memory_gb":6,"disk_gb":30,"description":"Scripts"}`})
		if resp.StatusCode != 200 || decode[store.ContainerProfile](t, body).CPUs != 3 || containerProfile(t, srv, "small").MemoryGB != 6 {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
		if !audited(t, srv, "container_profile", "small", "container_profile.update") {
			t.Error("no audit event")
		}
	})

	t.Run("the API refuses bad input with the field named and changes nothing", func(t *testing.T) {
		tok := srv.Token(t, "root@example.com", store.RoleAdmin)
		for _, c := range []struct {
			path, body string
			status     int
			field      string
		}{
			{"/api/v1/containers/types/web", `{"stack":`, 400, ""},
			{"/api/v1/containers/types/web", `{"stack":"Web","profiles":["small"],"color":"red"}`, 400, ""},
			{"/api/v1/containers/types/web", `{"stack":"Web","profiles":["small"],"lifetime_hours":"long"}`, 400, ""},
			{"/api/v1/containers/types/web", `null`, 400, ""},
			{"/api/v1/containers/types/web", `{"profiles":["small"]}`, 422, "stack"},
			{"/api/v1/containers/types/web", `{"stack":"Web","profiles":[]}`, 422, "profiles"},
			{"/api/v1/containers/types/web", `{"stack":"Web","profiles":["small"],"lifetime_hours":0}`, 422, "lifetime_hours"},
			{"/api/v1/containers/types/web", `{"stack":"Web","profiles":["small"],"lifetime_hours":721}`, 422, "lifetime_hours"},
			{"/api/v1/containers/types/web", `{"stack":"Web","profiles":["small"],"features":["emacs"]}`, 422, "features"},
			{"/api/v1/containers/types/web", `{"stack":"Web","profiles":["small"],"tools":[{"name":"node"}]}`, 422, "tools"},
			{"/api/v1/containers/types/web", `{"stack":"Web","profiles":["small"],"sandbox_url":"javascript:alert(1)"}`, 422, "sandbox_url"},
			{"/api/v1/containers/types/Web%20App", `{"stack":"Web","profiles":["small"]}`, 422, "name"},
			{"/api/v1/containers/profiles/small", `{"cpus":0,"memory_gb":4,"disk_gb":20}`, 422, "cpus"},
			{"/api/v1/containers/profiles/small", `{"memory_gb":4,"disk_gb":20}`, 422, "cpus"},
			{"/api/v1/containers/profiles/small", `{"cpus":2,"memory_gb":4,"disk_gb":20,"gpus":-1}`, 422, "gpus"},
			{"/api/v1/containers/profiles/small", `{"cpus":"two"}`, 400, ""},
		} {
			before := catalogueState(t, srv)
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: c.path, Token: tok, Body: c.body})
			if resp.StatusCode != c.status {
				t.Errorf("PUT %s %s: %d, want %d: %s", c.path, c.body, resp.StatusCode, c.status, body)
				continue
			}
			if c.field != "" {
				if f := decode[apiError](t, body).Error.Fields; f[c.field] == "" {
					t.Errorf("PUT %s %s: fields %v, want %s named", c.path, c.body, f, c.field)
				}
			}
			if catalogueState(t, srv) != before {
				t.Errorf("PUT %s %s changed the catalogue", c.path, c.body)
			}
		}
	})

	t.Run("an engineer gets 403 on every catalogue route and changes nothing", func(t *testing.T) {
		before := catalogueState(t, srv)
		tok := srv.Token(t, "eve@example.com")
		for _, r := range []handlertest.Request{
			{Path: "/admin/containers"},
			{Method: "POST", Path: "/admin/containers/types", Form: webForm(url.Values{"name": {"mine"}})},
			{Method: "POST", Path: "/admin/containers/types/web", Form: webForm(url.Values{"lifetime_hours": {"700"}})},
			{Method: "POST", Path: "/admin/containers/profiles", Form: url.Values{"name": {"mine"}, "cpus": {"64"}, "memory_gb": {"64"}, "disk_gb": {"64"}, "gpus": {"4"}}},
			{Method: "POST", Path: "/admin/containers/profiles/small", Form: url.Values{"cpus": {"64"}, "memory_gb": {"64"}, "disk_gb": {"64"}, "gpus": {"4"}}},
		} {
			if resp, _ := srv.Do(t, engineer, r); resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s: %d, want 403", r.Method, r.Path, resp.StatusCode)
			}
		}
		for _, r := range []handlertest.Request{
			{Method: "PUT", Path: "/api/v1/containers/types/web", Body: `{"stack":"Mine","profiles":["small"]}`},
			{Method: "PUT", Path: "/api/v1/containers/profiles/small", Body: `{"cpus":64,"memory_gb":64,"disk_gb":64}`},
		} {
			r.Token = tok
			if resp, _ := srv.Do(t, nil, r); resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s: %d, want 403", r.Method, r.Path, resp.StatusCode)
			}
		}
		if catalogueState(t, srv) != before {
			t.Error("an engineer changed the catalogue")
		}
	})
}

// poolCell is what the capacity page shows in a pool's row.
func poolCell(t *testing.T, srv *handlertest.Server, c *http.Client, key, attr string) string {
	t.Helper()
	resp, body := srv.Do(t, c, handlertest.Request{Path: "/admin/capacity"})
	if resp.StatusCode != 200 {
		t.Fatalf("capacity page: %d", resp.StatusCode)
	}
	v, _ := handlertest.Doc(t, body).Find(`tr[data-pool="` + key + `"] [` + attr + `]`).Attr(attr)
	return v
}

func containerPool(t *testing.T, srv *handlertest.Server, key string) (store.ContainerPool, bool) {
	t.Helper()
	ps, err := srv.Store.ContainerPools(context.Background(), srv.Store.Now().Add(-store.DefaultContainerFreshness))
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ps, func(p store.ContainerPool) bool { return store.ContainerPoolKey(p.Region, p.Type, p.Profile) == key })
	if i < 0 {
		return store.ContainerPool{}, false
	}
	return ps[i], true
}

func TestCapacityPage(t *testing.T) {
	srv := handlertest.New(t)
	admin := srv.SignIn(t, "root@example.com", store.RoleAdmin)
	engineer := srv.SignIn(t, "eve@example.com")
	ctx := context.Background()

	t.Run("the page shows each region's container hosts and pools before they fill", func(t *testing.T) {
		resp, body := srv.Do(t, admin, handlertest.Request{Path: "/admin/capacity"})
		if resp.StatusCode != 200 {
			t.Fatalf("%d", resp.StatusCode)
		}
		doc := handlertest.Doc(t, body)
		hosts, err := srv.Store.Hosts(ctx, "prn")
		if err != nil {
			t.Fatal(err)
		}
		var cpus, gpus, n int
		for _, h := range hosts {
			if h.Kind == "container" {
				cpus, gpus, n = cpus+h.CPUs, gpus+h.GPUs, n+1
			}
		}
		prn := doc.Find(`section[data-region="prn"]`)
		if got := prn.Find(`[data-resource="cpus"] [data-total]`).Text(); got != strconv.Itoa(cpus) || n != 5 {
			t.Errorf("prn CPUs %q, want %d over %d hosts", got, cpus, n)
		}
		if got := prn.Find(`[data-resource="gpus"] [data-free]`).Text(); got != strconv.Itoa(gpus) || gpus != 4 {
			t.Errorf("prn free GPUs %q, want %d", got, gpus)
		}
		row := prn.Find(`tr[data-pool="prn/web/medium"]`)
		if row.Find("[data-ready]").AttrOr("data-ready", "") != "0" || row.Find("[data-health]").AttrOr("data-health", "") != "low" ||
			!strings.Contains(row.Find("[data-health]").Text(), "Low") {
			t.Errorf("prn/web/medium before a refill: %q", row.Text())
		}
		if v, _ := doc.Find("#cpool-prn-web-medium-target").Attr("value"); v != "2" {
			t.Errorf("target input %q", v)
		}
		if got := doc.Find("#cpool-form-prn-web-medium").AttrOr("action", ""); got != "/admin/capacity/pools/prn/web/medium" ||
			doc.Find("#cpool-prn-web-medium-target").AttrOr("form", "") != "cpool-form-prn-web-medium" {
			t.Errorf("the row form posts to %q", got)
		}
		if got := doc.Find("#cpool-form-new").AttrOr("action", ""); got != "/admin/capacity/pools" {
			t.Errorf("the add form posts to %q", got)
		}
		if doc.Find(`main a[href="/admin/pools"]`).Length() != 1 || doc.Find(`main a[href="/admin/containers"]`).Length() != 1 {
			t.Error("no links to the devserver pools and the catalogue")
		}
		if doc.Find(`#container-pools[hx-get]`).Length() != 0 {
			t.Error("the pools refresh themselves while nothing is building")
		}
		everyInputLabelled(t, doc)
	})

	t.Run("the devserver pools page links to the capacity page", func(t *testing.T) {
		_, body := srv.Do(t, admin, handlertest.Request{Path: "/admin/pools"})
		if handlertest.Doc(t, body).Find(`main a[href="/admin/capacity"]`).Length() != 1 {
			t.Error("no link")
		}
	})

	t.Run("after a refill the page shows the pools ready and healthy", func(t *testing.T) {
		if _, err := jobs.RefillContainerPools(ctx, srv.Store, srv.Runner, 0, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatal(err)
		}
		handlertest.Eventually(t, 20*time.Second, "prn/web/medium to show 2 ready", func() bool {
			return poolCell(t, srv, admin, "prn/web/medium", "data-ready") == "2"
		})
		_, body := srv.Do(t, admin, handlertest.Request{Path: "/admin/capacity"})
		doc := handlertest.Doc(t, body)
		row := doc.Find(`tr[data-pool="prn/web/medium"]`)
		if h := row.Find("[data-health]"); h.AttrOr("data-health", "") != "healthy" || !strings.Contains(h.Text(), "Healthy") {
			t.Errorf("health %q", h.Text())
		}
		if row.Find("[data-building]").AttrOr("data-building", "") != "0" || row.Find("[data-stale]").AttrOr("data-stale", "") != "0" {
			t.Errorf("row %q", row.Text())
		}
		if used := doc.Find(`section[data-region="prn"] [data-resource="cpus"] [data-used]`).Text(); used == "0" {
			t.Error("the pooled containers use no CPUs on the page")
		}
	})

	t.Run("pooled containers past the freshness limit show as stale", func(t *testing.T) {
		real := srv.Store.Now
		defer func() { srv.Store.Now = real }()
		srv.Store.Now = func() time.Time { return real().Add(7 * time.Hour) }
		row := func() *goquery.Selection {
			_, body := srv.Do(t, admin, handlertest.Request{Path: "/admin/capacity"})
			return handlertest.Doc(t, body).Find(`tr[data-pool="prn/web/medium"]`)
		}()
		if row.Find("[data-stale]").AttrOr("data-stale", "") != "2" || row.Find("[data-health]").AttrOr("data-health", "") != "filling" ||
			!strings.Contains(row.Text(), "7 hours") {
			t.Errorf("7 hours on: %q", row.Text())
		}
	})

	t.Run("saving a pool from its row enqueues a refill that builds its containers", func(t *testing.T) {
		resp, _ := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: "/admin/capacity/pools/ftw/jupyter/small", Form: url.Values{"min": {"1"}, "target": {"3"}, "max": {"3"}}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/capacity" {
			t.Fatalf("save: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		if p, _ := containerPool(t, srv, "ftw/jupyter/small"); p.Min != 1 || p.Target != 3 || p.Max != 3 {
			t.Errorf("pool %+v", p)
		}
		if !audited(t, srv, "container_pool", "ftw/jupyter/small", "container_pool.set") {
			t.Error("no audit event")
		}
		handlertest.Eventually(t, 20*time.Second, "ftw/jupyter/small to show 3 ready", func() bool {
			return poolCell(t, srv, admin, "ftw/jupyter/small", "data-ready") == "3"
		})
	})

	t.Run("adding a pool enqueues a refill that builds its containers", func(t *testing.T) {
		resp, _ := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: "/admin/capacity/pools", Form: url.Values{
			"region": {"lla"}, "type": {"android"}, "profile": {"large"}, "min": {"0"}, "target": {"1"}, "max": {"2"}}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("add: %d", resp.StatusCode)
		}
		handlertest.Eventually(t, 20*time.Second, "lla/android/large to show 1 ready", func() bool {
			return poolCell(t, srv, admin, "lla/android/large", "data-ready") == "1"
		})
		if h := poolCell(t, srv, admin, "lla/android/large", "data-health"); h != "healthy" {
			t.Errorf("health %q", h)
		}
	})

	t.Run("a target and maximum of 0 remove a pool, and its containers are recycled", func(t *testing.T) {
		// A refill of a pool is unique while one waits or runs, and River
		// marks a job completed a moment after its work: a change in that
		// moment is left to the periodic refill, which this test turns off.
		handlertest.Eventually(t, 10*time.Second, "the last refill of lla/android/large to be marked done", func() bool {
			var n int
			err := srv.Store.InTx(ctx, func(tx *store.Tx) error {
				return tx.GetContext(ctx, &n, `SELECT COUNT(*) FROM river_job WHERE kind = 'refill_container_pool' AND state = 'running'`)
			})
			return err == nil && n == 0
		})
		resp, _ := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: "/admin/capacity/pools/lla/android/large", Form: url.Values{"min": {"0"}, "target": {"0"}, "max": {"0"}}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("remove: %d", resp.StatusCode)
		}
		if _, ok := containerPool(t, srv, "lla/android/large"); ok {
			t.Error("the pool is still there")
		}
		_, body := srv.Do(t, admin, handlertest.Request{Path: "/admin/capacity"})
		doc := handlertest.Doc(t, body)
		if !strings.Contains(doc.Find(".flash-success").Text(), "Removed the lla/android/large pool") || doc.Find(`tr[data-pool="lla/android/large"]`).Length() != 0 {
			t.Errorf("flash %q", doc.Find(".flash").Text())
		}
		handlertest.Eventually(t, 20*time.Second, "the pooled android container in lla to be recycled", func() bool {
			ready, err := srv.Store.ContainerPoolReady(ctx)
			return err == nil && ready["lla/android/large"] == 0
		})
	})

	for _, tc := range []struct {
		name, path string
		form       url.Values
		field, msg string
	}{
		{"a minimum above the target", "/admin/capacity/pools/prn/web/medium", url.Values{"min": {"3"}, "target": {"2"}, "max": {"4"}}, "min", "0 to the target"},
		{"a target above the maximum", "/admin/capacity/pools/prn/web/medium", url.Values{"min": {"1"}, "target": {"5"}, "max": {"4"}}, "target", "0 to the maximum"},
		{"a maximum above 500", "/admin/capacity/pools/prn/web/medium", url.Values{"min": {"1"}, "target": {"2"}, "max": {"501"}}, "max", "0 to 500"},
		{"a target that is not a number", "/admin/capacity/pools/prn/web/medium", url.Values{"min": {"1"}, "target": {"plenty"}, "max": {"4"}}, "target", "whole number"},
		{"a profile the type does not run on", "/admin/capacity/pools", url.Values{"region": {"prn"}, "type": {"ml-gpu"}, "profile": {"small"}, "min": {"0"}, "target": {"1"}, "max": {"1"}}, "profile", "ml-gpu containers run on gpu"},
		{"an unknown region", "/admin/capacity/pools", url.Values{"region": {"mars"}, "type": {"web"}, "profile": {"small"}, "min": {"0"}, "target": {"1"}, "max": {"1"}}, "region", "not a region"},
		{"an unknown type", "/admin/capacity/pools", url.Values{"region": {"prn"}, "type": {"cobol"}, "profile": {"small"}, "min": {"0"}, "target": {"1"}, "max": {"1"}}, "type", "not a container type"},
	} {
		t.Run("refuses "+tc.name+" with 422, the problem by the field, and changes nothing", func(t *testing.T) {
			before := catalogueState(t, srv)
			resp, body := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: tc.path, Form: tc.form})
			if resp.StatusCode != http.StatusUnprocessableEntity {
				t.Fatalf("status %d, want 422", resp.StatusCode)
			}
			doc := handlertest.Doc(t, body)
			scope := doc.Find(`tr[data-pool="prn/web/medium"]`)
			if tc.path == "/admin/capacity/pools" {
				scope = doc.Find("#add-container-pool")
			}
			if msg := scope.Find(`[data-error-for="` + tc.field + `"]`).Text(); !strings.Contains(msg, tc.msg) {
				t.Errorf("error for %s: %q, want %q", tc.field, msg, tc.msg)
			}
			if in := scope.Find(`input[name="` + tc.field + `"]`); in.Length() == 1 && in.AttrOr("value", "") != tc.form.Get(tc.field) {
				t.Errorf("%s shows %q, want %q as entered", tc.field, in.AttrOr("value", ""), tc.form.Get(tc.field))
			}
			if doc.Find("[role=alert]").Length() != 1 {
				t.Error("no alert")
			}
			if catalogueState(t, srv) != before {
				t.Error("a refused pool changed something")
			}
		})
	}
	t.Run("a pool row of an unknown region or type is not found", func(t *testing.T) {
		for _, path := range []string{"/admin/capacity/pools/mars/web/medium", "/admin/capacity/pools/prn/cobol/medium", "/admin/capacity/pools/prn/web/huge"} {
			if resp, _ := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: path, Form: url.Values{"min": {"0"}, "target": {"1"}, "max": {"1"}}}); resp.StatusCode != 404 {
				t.Errorf("%s: %d", path, resp.StatusCode)
			}
		}
	})

	t.Run("the API lists the pools with their health and sets one, which fills", func(t *testing.T) {
		tok := srv.Token(t, "root@example.com", store.RoleAdmin)
		resp, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/containers/pools", Token: tok})
		type poolJSON struct {
			Region, Type, Profile, Health string
			Ready, Target, Min, Max       int
		}
		items := decode[listJSON[poolJSON]](t, body).Items
		i := slices.IndexFunc(items, func(p poolJSON) bool { return p.Region == "prn" && p.Type == "web" && p.Profile == "medium" })
		if resp.StatusCode != 200 || i < 0 || items[i].Health != "healthy" || items[i].Ready != 2 {
			t.Fatalf("%d %+v", resp.StatusCode, items)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: "/api/v1/containers/pools/ftw/web/small", Token: tok, Body: `{"target":2,"min":1,"max":3}`})
		out := decode[poolJSON](t, body)
		if resp.StatusCode != 200 || out.Target != 2 || out.Min != 1 || out.Max != 3 || out.Health == "" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		handlertest.Eventually(t, 20*time.Second, "ftw/web/small to be ready", func() bool {
			p, _ := containerPool(t, srv, "ftw/web/small")
			return p.Ready == 2
		})
		// An omitted minimum and maximum keep the pool's.
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: "/api/v1/containers/pools/ftw/web/small", Token: tok, Body: `{"target":3}`})
		if out := decode[poolJSON](t, body); resp.StatusCode != 200 || out.Min != 1 || out.Max != 3 || out.Target != 3 {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
		for _, c := range []struct {
			path, body string
			status     int
			field      string
		}{
			{"/api/v1/containers/pools/ftw/web/small", `{"target":`, 400, ""},
			{"/api/v1/containers/pools/ftw/web/small", `{"target":"two"}`, 400, ""},
			{"/api/v1/containers/pools/ftw/web/small", `{"target":1,"size":2}`, 400, ""},
			{"/api/v1/containers/pools/ftw/web/small", `{}`, 422, "target"},
			{"/api/v1/containers/pools/ftw/web/small", `{"target":2,"min":3}`, 422, "min"},
			{"/api/v1/containers/pools/ftw/web/small", `{"target":9,"max":4}`, 422, "target"},
			{"/api/v1/containers/pools/ftw/web/gpu", `{"target":1}`, 422, "profile"},
			{"/api/v1/containers/pools/prn/ios/medium", `{"target":501}`, 422, "target"},
			{"/api/v1/containers/pools/prn/ios/medium", `{"target":-1}`, 422, "target"},
			{"/api/v1/containers/pools/mars/web/small", `{"target":1}`, 404, ""},
			{"/api/v1/containers/pools/ftw/cobol/small", `{"target":1}`, 404, ""},
			{"/api/v1/containers/pools/ftw/web/huge", `{"target":1}`, 404, ""},
		} {
			before := catalogueState(t, srv)
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: c.path, Token: tok, Body: c.body})
			if resp.StatusCode != c.status {
				t.Errorf("PUT %s %s: %d, want %d: %s", c.path, c.body, resp.StatusCode, c.status, body)
				continue
			}
			if c.field != "" && decode[apiError](t, body).Error.Fields[c.field] == "" {
				t.Errorf("PUT %s %s: %s does not name %s", c.path, c.body, body, c.field)
			}
			if catalogueState(t, srv) != before {
				t.Errorf("PUT %s %s changed something", c.path, c.body)
			}
		}
	})

	t.Run("an engineer gets 403 on every capacity route and changes nothing", func(t *testing.T) {
		before := catalogueState(t, srv)
		for _, r := range []handlertest.Request{
			{Path: "/admin/capacity"},
			{Method: "POST", Path: "/admin/capacity/pools", Form: url.Values{"region": {"prn"}, "type": {"web"}, "profile": {"small"}, "min": {"0"}, "target": {"9"}, "max": {"9"}}},
			{Method: "POST", Path: "/admin/capacity/pools/prn/web/medium", Form: url.Values{"min": {"0"}, "target": {"9"}, "max": {"9"}}},
		} {
			if resp, _ := srv.Do(t, engineer, r); resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s: %d, want 403", r.Method, r.Path, resp.StatusCode)
			}
		}
		tok := srv.Token(t, "eve@example.com")
		for _, r := range []handlertest.Request{
			{Path: "/api/v1/containers/pools"},
			{Method: "PUT", Path: "/api/v1/containers/pools/prn/web/medium", Body: `{"target":9,"max":9}`},
		} {
			r.Token = tok
			if resp, _ := srv.Do(t, nil, r); resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s: %d, want 403", r.Method, r.Path, resp.StatusCode)
			}
		}
		if catalogueState(t, srv) != before {
			t.Error("an engineer changed a pool")
		}
	})
}

// TestCapacityRefresh: while a pool is building, the pools part of the page
// refreshes itself every few seconds; an HTMX request gets that part alone.
func TestCapacityRefresh(t *testing.T) {
	srv := handlertest.New(t, handlertest.Options{NoJobs: true}) // built containers stay building
	admin := srv.SignIn(t, "root@example.com", store.RoleAdmin)
	if _, err := jobs.RefillContainerPools(context.Background(), srv.Store, srv.Runner, 0, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	_, body := srv.Do(t, admin, handlertest.Request{Path: "/admin/capacity"})
	doc := handlertest.Doc(t, body)
	live := doc.Find("#container-pools")
	if live.AttrOr("hx-get", "") != "/admin/capacity" || !strings.Contains(live.AttrOr("hx-trigger", ""), "every") || live.AttrOr("hx-swap", "") != "outerHTML" {
		t.Errorf("pools section attributes: %v", live.Nodes[0].Attr)
	}
	if b := doc.Find(`tr[data-pool="prn/web/medium"] [data-building]`).AttrOr("data-building", ""); b != "2" {
		t.Errorf("building %q", b)
	}
	if doc.Find(`#cpool-prn-web-medium-target[hx-preserve]`).Length() != 1 {
		t.Error("a refresh would overwrite what an admin is typing")
	}
	resp, body := srv.Do(t, admin, handlertest.Request{Path: "/admin/capacity", Headers: map[string]string{"HX-Request": "true"}})
	part := handlertest.Doc(t, body)
	if resp.StatusCode != 200 || part.Find("#container-pools").Length() != 1 || part.Find("h1").Length() != 0 || part.Find("#add-container-pool").Length() != 0 {
		t.Errorf("the HTMX answer is not the pools part alone: %.300s", body)
	}
}

// FuzzAdminContainerForms posts arbitrary forms to the catalogue's and the
// capacity page's forms: whatever arrives, the answer is a redirect or a
// clear 4xx, and the catalogue and pools stay within their bounds.
func FuzzAdminContainerForms(f *testing.F) {
	for _, seed := range []string{
		"stack=Web&lifetime_hours=36&tools=node+22%0Apnpm+9&profiles=small",
		"stack=Web&lifetime_hours=99999999999999999999&profiles=small", "images=sim%0Asim&profiles=huge",
		"tools=%00+%00&repos=a+b+c&lifetime_hours=-1", "sandbox_url=http%3A%2F%2F%7Bname%7D&stack=x&lifetime_hours=1&profiles=gpu",
		"cpus=4&memory_gb=8&disk_gb=40&gpus=0", "cpus=1e3&memory_gb=-8", "min=1&target=2&max=4", "min=5&target=2&max=1",
		"name=new-one&stack=x&lifetime_hours=1&profiles=small&cpus=1&memory_gb=1&disk_gb=1&gpus=0&region=prn&type=web&profile=small&min=0&target=1&max=1",
		"%zz", "",
	} {
		f.Add(seed)
	}
	srv := handlertest.New(f, handlertest.Options{NoJobs: true})
	admin := srv.SignIn(f, "root@example.com", store.RoleAdmin)
	paths := []string{"/admin/containers/types/web", "/admin/containers/types", "/admin/containers/profiles/small", "/admin/containers/profiles",
		"/admin/capacity/pools/prn/web/medium", "/admin/capacity/pools"}
	f.Fuzz(func(t *testing.T, body string) {
		for _, path := range paths {
			resp, out := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: path, Body: body,
				Headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}})
			if resp.StatusCode >= 500 || resp.StatusCode < 300 {
				t.Fatalf("%s body %q: status %d %.300s", path, body, resp.StatusCode, out)
			}
		}
		var bad int
		err := srv.Store.InTx(context.Background(), func(tx *store.Tx) error {
			return tx.GetContext(context.Background(), &bad, `SELECT
  (SELECT COUNT(*) FROM container_types WHERE lifetime_hours < 1 OR lifetime_hours > 720 OR stack = ''
      OR NOT EXISTS (SELECT 1 FROM container_type_profiles p WHERE p.type = container_types.name))
+ (SELECT COUNT(*) FROM container_profiles WHERE cpus < 1 OR cpus > 256 OR memory_gb < 1 OR disk_gb < 1 OR gpus < 0 OR gpus > 16)
+ (SELECT COUNT(*) FROM container_pools WHERE min_ready < 0 OR min_ready > target OR target > max_size OR max_size > 500)`)
		})
		if err != nil || bad != 0 {
			t.Fatalf("body %q left %d catalogue rows out of bounds (%v)", body, bad, err)
		}
	})
}
