package handlers_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
)

func target(t *testing.T, s *store.Store, region, flavor string) int {
	t.Helper()
	ps, err := s.Pools(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Region == region && p.Flavor == flavor {
			return p.Target
		}
	}
	t.Fatalf("no pool %s/%s", region, flavor)
	return 0
}

func TestAdminPools(t *testing.T) {
	srv := handlertest.New(t)
	admin := srv.SignIn(t, "root@example.com", store.RoleAdmin)
	engineer := srv.SignIn(t, "eve@example.com")

	t.Run("the admin landing page links to the pools", func(t *testing.T) {
		resp, body := srv.Do(t, admin, handlertest.Request{Path: "/admin"})
		if resp.StatusCode != 200 || handlertest.Doc(t, body).Find(`main a[href="/admin/pools"]`).Length() != 1 {
			t.Errorf("%d %.300s", resp.StatusCode, body)
		}
	})
	t.Run("the table shows every region × flavour with its target, ready and building", func(t *testing.T) {
		resp, body := srv.Do(t, admin, handlertest.Request{Path: "/admin/pools"})
		doc := handlertest.Doc(t, body)
		rows := doc.Find("#pools-table tbody tr")
		if resp.StatusCode != 200 || rows.Length() != 3*7 {
			t.Fatalf("%d, %d rows", resp.StatusCode, rows.Length())
		}
		row := doc.Find(`tr[data-pool="prn/vm.small"]`)
		if v, _ := row.Find("input").Attr("value"); v != "2" {
			t.Errorf("prn/vm.small target %q, want the seeded 2", v)
		}
		if id, _ := row.Find("input").Attr("id"); doc.Find(`label[for="`+id+`"]`).Length() != 1 {
			t.Error("the target input has no label")
		}
		if r, _ := row.Find("[data-ready]").Attr("data-ready"); r != "0" {
			t.Errorf("ready %q before any refill", r)
		}
		if doc.Find(`#pools-form button[type=submit]`).Text() != "Save targets" {
			t.Error("no Save button")
		}
	})

	t.Run("saving a target records it, audits it and starts filling the pool", func(t *testing.T) {
		resp, _ := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: "/admin/pools", Form: url.Values{"target-ftw/vm.large": {"1"}, "target-prn/vm.small": {"2"}}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/pools" {
			t.Fatalf("save: %d", resp.StatusCode)
		}
		if target(t, srv.Store, "ftw", "vm.large") != 1 {
			t.Error("target not saved")
		}
		events, _ := srv.Store.AuditEvents(context.Background(), "pool", "ftw/vm.large")
		if len(events) == 0 || events[0].Action != "pool.set_target" || events[0].Actor != "root@example.com" {
			t.Errorf("events = %+v", events)
		}
		// The save enqueued a refill, which fills every pool within capacity.
		handlertest.Eventually(t, 20*time.Second, "the ftw vm.large pool to be ready", func() bool {
			_, body := srv.Do(t, admin, handlertest.Request{Path: "/admin/pools"})
			r, _ := handlertest.Doc(t, body).Find(`tr[data-pool="ftw/vm.large"] [data-ready]`).Attr("data-ready")
			return r == "1"
		})
		handlertest.Eventually(t, 20*time.Second, "the prn vm.small pool to show 2 ready", func() bool {
			_, body := srv.Do(t, admin, handlertest.Request{Path: "/admin/pools"})
			r, _ := handlertest.Doc(t, body).Find(`tr[data-pool="prn/vm.small"] [data-ready]`).Attr("data-ready")
			return r == "2"
		})
	})

	for _, c := range []struct{ name, value, want string }{
		{"a negative target", "-1", "from 0 to 500"},
		{"a target that is not a number", "lots", "whole number"},
		{"a target above the sane maximum", "501", "from 0 to 500"},
		{"an empty target", "", "whole number"},
	} {
		t.Run("refuses "+c.name+" with 422 and changes nothing", func(t *testing.T) {
			resp, body := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: "/admin/pools", Form: url.Values{"target-lla/vm.small": {c.value}, "target-lla/vm.medium": {"7"}}})
			doc := handlertest.Doc(t, body)
			if resp.StatusCode != 422 || !strings.Contains(doc.Find(`[data-error-for="lla/vm.small"]`).Text(), c.want) || doc.Find("#pools-problem").Length() != 1 {
				t.Errorf("%d %.300s", resp.StatusCode, doc.Find("main").Text())
			}
			if v, _ := doc.Find("#target-lla-vm\\.small").Attr("value"); v != c.value {
				t.Errorf("the form lost what was entered: %q", v)
			}
			if target(t, srv.Store, "lla", "vm.small") != 2 || target(t, srv.Store, "lla", "vm.medium") != 2 {
				t.Error("a refused save changed a target")
			}
		})
	}
	t.Run("refuses an unknown pool", func(t *testing.T) {
		resp, _ := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: "/admin/pools", Form: url.Values{"target-mars/vm.small": {"1"}}})
		if resp.StatusCode != 422 {
			t.Errorf("status %d", resp.StatusCode)
		}
	})

	t.Run("an engineer gets 403 and changes nothing", func(t *testing.T) {
		for _, r := range []handlertest.Request{
			{Path: "/admin"}, {Path: "/admin/pools"},
			{Method: "POST", Path: "/admin/pools", Form: url.Values{"target-lla/vm.small": {"9"}}},
		} {
			if resp, _ := srv.Do(t, engineer, r); resp.StatusCode != 403 {
				t.Errorf("%s %s: %d", r.Method, r.Path, resp.StatusCode)
			}
		}
		if target(t, srv.Store, "lla", "vm.small") != 2 {
			t.Error("an engineer changed a target")
		}
	})

	t.Run("the API lists pools and sets one target", func(t *testing.T) {
		tok := srv.Token(t, "root@example.com", store.RoleAdmin)
		resp, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/pools", Token: tok})
		if resp.StatusCode != 200 || !strings.Contains(body, `"flavor": "gpu.a100"`) {
			t.Errorf("%d %.200s", resp.StatusCode, body)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: "/api/v1/pools/lla/vm.large", Token: tok, Body: `{"target":3}`})
		if resp.StatusCode != 200 || !strings.Contains(body, `"target": 3`) || target(t, srv.Store, "lla", "vm.large") != 3 {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
		for _, c := range []struct {
			path, body string
			status     int
		}{
			{"/api/v1/pools/lla/vm.large", `{"target":-2}`, 422},
			{"/api/v1/pools/lla/vm.large", `{"target":100000}`, 422},
			{"/api/v1/pools/lla/vm.large", `{"target":"many"}`, 400},
			{"/api/v1/pools/lla/vm.large", `{}`, 422},
			{"/api/v1/pools/mars/vm.large", `{"target":1}`, 404},
			{"/api/v1/pools/lla/vm.huge", `{"target":1}`, 404},
		} {
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: c.path, Token: tok, Body: c.body})
			if resp.StatusCode != c.status {
				t.Errorf("PUT %s %s: %d %s", c.path, c.body, resp.StatusCode, body)
			}
		}
		if target(t, srv.Store, "lla", "vm.large") != 3 {
			t.Error("a refused PUT changed the target")
		}
	})
}

// FuzzAdminPools posts arbitrary forms to the pools page: whatever arrives,
// the answer is a redirect or a clear 4xx, and no target leaves 0..500.
func FuzzAdminPools(f *testing.F) {
	for _, seed := range []string{
		"target-prn%2Fvm.small=3", "target-prn%2Fvm.small=-1", "target-prn%2Fvm.small=1e3", "target-prn=1",
		"target-%2F=1", "target-prn%2Fvm.small=%00", "target-prn%2Fvm.small=99999999999999999999", "x=1", "%zz",
	} {
		f.Add(seed)
	}
	srv := handlertest.New(f, handlertest.Options{NoJobs: true})
	admin := srv.SignIn(f, "root@example.com", store.RoleAdmin)
	f.Fuzz(func(t *testing.T, body string) {
		resp, out := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: "/admin/pools", Body: body,
			Headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}})
		if resp.StatusCode >= 500 || resp.StatusCode < 300 {
			t.Fatalf("body %q: status %d %.300s", body, resp.StatusCode, out)
		}
		ps, err := srv.Store.Pools(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if p.Target < 0 || p.Target > store.MaxPoolTarget {
				t.Fatalf("body %q set %s/%s to %d", body, p.Region, p.Flavor, p.Target)
			}
		}
	})
}
