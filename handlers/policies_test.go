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

// regionOrder is the order of the regions on the reservation form, and the
// one preselected.
func regionOrder(t *testing.T, srv *handlertest.Server, c *http.Client) (order, checked string) {
	t.Helper()
	resp, body := srv.Do(t, c, handlertest.Request{Path: "/devservers/new?flavor=vm.small"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reservation form: %d", resp.StatusCode)
	}
	var codes []string
	doc := handlertest.Doc(t, body)
	doc.Find("#reserve-regions input[name=region]").Each(func(_ int, s *goquery.Selection) {
		v, _ := s.Attr("value")
		codes = append(codes, v)
	})
	checked, _ = doc.Find("#reserve-regions input[name=region][checked]").Attr("value")
	return strings.Join(codes, " "), checked
}

// policyState is every policy as the database holds it, with the number of
// their audit events, to check that a refused change changed nothing. (Jobs
// of earlier reservations may still be writing audit events of their own.)
func policyState(t *testing.T, srv *handlertest.Server) string {
	t.Helper()
	var rows []string
	err := srv.Store.InTx(context.Background(), func(tx *store.Tx) error {
		return tx.SelectContext(context.Background(), &rows, `
SELECT 'latency ' || from_region || '-' || to_region || '=' || ms FROM region_latencies
UNION ALL SELECT 'lease ' || flavor || '=' || max_lease_days || '/' || permanent_roles FROM flavor_policies
UNION ALL SELECT 'quota ' || role || '=' || devservers || '/' || gpu_devservers || '/' || containers FROM quotas
UNION ALL SELECT 'home ' || email || '=' || home_region FROM users
UNION ALL SELECT 'policy audit events ' || COUNT(*) FROM audit_events
    WHERE action IN ('region_latency.set', 'lease_policy.set', 'quota.set', 'user.home_region')
ORDER BY 1`)
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(rows, "\n")
}

// audited tells whether the last audit event of the object is action.
func audited(t *testing.T, srv *handlertest.Server, objectType, objectID, action string) bool {
	t.Helper()
	evs, err := srv.Store.AuditEvents(context.Background(), objectType, objectID)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Action == action {
			return true
		}
	}
	return false
}

func reserveVMSmall(t *testing.T, srv *handlertest.Server, token string) (int, string) {
	t.Helper()
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: token, Body: `{"flavor":"vm.small"}`})
	return resp.StatusCode, body
}

func TestPoliciesPage(t *testing.T) {
	srv := handlertest.New(t)
	admin := srv.SignIn(t, "root@example.com", store.RoleAdmin)
	engineer := srv.SignIn(t, "eve@example.com")
	post := func(t *testing.T, path string, form url.Values) (*http.Response, *goquery.Document) {
		t.Helper()
		resp, body := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: path, Form: form})
		return resp, handlertest.Doc(t, body)
	}

	t.Run("the admin landing page links to the policies", func(t *testing.T) {
		resp, body := srv.Do(t, admin, handlertest.Request{Path: "/admin"})
		if resp.StatusCode != 200 || handlertest.Doc(t, body).Find(`main a[href="/admin/policies"]`).Length() != 1 {
			t.Errorf("%d %.300s", resp.StatusCode, body)
		}
	})
	t.Run("the page shows the latencies, lease policies and quotas in force", func(t *testing.T) {
		resp, body := srv.Do(t, admin, handlertest.Request{Path: "/admin/policies"})
		if resp.StatusCode != 200 {
			t.Fatalf("%d", resp.StatusCode)
		}
		doc := handlertest.Doc(t, body)
		for sel, want := range map[string]string{
			`input[name="latency-prn/ftw"]`:                        "38",
			`input[name="latency-ftw/lla"]`:                        "125",
			`input[name="max_days-gpu.a100"]`:                      "14",
			`input[name="max_days-vm.small"]`:                      "30",
			`select[name="permanent-gpu.a100"] [selected]`:         "nobody",
			`select[name="permanent-vm.small"] [selected]`:         "admins",
			`select[name="permanent-container.medium"] [selected]`: "everyone",
			`input[name="devservers-engineer"]`:                    "5",
			`input[name="gpu_devservers-admin"]`:                   "4",
			`input[name="containers-engineer"]`:                    "3",
			`input[name="containers-admin"]`:                       "10",
		} {
			if got, _ := doc.Find(sel).Attr("value"); got != want {
				t.Errorf("%s = %q, want %q", sel, got, want)
			}
		}
		// One input per unordered pair: none on the diagonal or below it.
		if n := doc.Find(`.latency-matrix input`).Length(); n != 3 {
			t.Errorf("%d latency inputs, want 3 (one per pair of the 3 regions)", n)
		}
		if got := doc.Find(`[data-mirror="prn/ftw"]`).Text(); got != "38" {
			t.Errorf("the mirrored cell shows %q", got)
		}
		doc.Find("main input, main select").Each(func(_ int, s *goquery.Selection) {
			id, _ := s.Attr("id")
			if doc.Find(`label[for="`+id+`"]`).Length() != 1 {
				t.Errorf("input %s has no label", id)
			}
		})
	})

	t.Run("a changed latency changes the order of regions on the reservation form, both ways", func(t *testing.T) {
		if order, checked := regionOrder(t, srv, engineer); order != "prn ftw lla" || checked != "prn" {
			t.Fatalf("before: %s (%s)", order, checked)
		}
		resp, _ := post(t, "/admin/policies/latencies", url.Values{"latency-prn/ftw": {"38"}, "latency-prn/lla": {"20"}, "latency-ftw/lla": {"125"}})
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/admin/policies") {
			t.Fatalf("save: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		if order, _ := regionOrder(t, srv, engineer); order != "prn lla ftw" {
			t.Errorf("after: %s, want prn lla ftw", order)
		}
		back, err := srv.Store.Latencies(context.Background(), "lla")
		if err != nil || back["prn"] != 20 {
			t.Errorf("lla→prn = %d (%v), want 20", back["prn"], err)
		}
		if !audited(t, srv, "region", "prn", "region_latency.set") {
			t.Error("no audit event")
		}
	})

	t.Run("a changed lease policy lets an engineer extend to 50 days and hold permanently", func(t *testing.T) {
		tok := srv.Token(t, "eve@example.com")
		name := readyDevserver(t, srv, tok)
		fifty := time.Now().UTC().Add(50 * 24 * time.Hour).Format(time.DateOnly)
		resp, _ := srv.Do(t, engineer, handlertest.Request{Method: "POST", Path: "/devservers/" + name + "/extend", Form: url.Values{"until": {fifty}}})
		if resp.StatusCode != http.StatusUnprocessableEntity {
			t.Fatalf("before: extend by the form to 50 days: %d, want 422", resp.StatusCode)
		}
		resp, _ = post(t, "/admin/policies/leases", url.Values{"max_days-vm.small": {"60"}, "permanent-vm.small": {"everyone"}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("save: %d", resp.StatusCode)
		}
		resp, body := srv.Do(t, engineer, handlertest.Request{Method: "POST", Path: "/devservers/" + name + "/extend", Form: url.Values{"until": {fifty}}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Errorf("after: extend by the form to 50 days: %d %.300s", resp.StatusCode, body)
		}
		d, _ := srv.Store.Devserver(context.Background(), name)
		if d.Lease.EndsAt == nil || d.Lease.EndsAt.UTC().Format(time.DateOnly) != fifty {
			t.Errorf("lease ends %v, want %s", d.Lease.EndsAt, fifty)
		}
		_, body = srv.Do(t, engineer, handlertest.Request{Path: "/devservers/new?flavor=vm.small"})
		if handlertest.Doc(t, body).Find(`input[name=lease_kind][value=permanent]`).Length() != 1 {
			t.Error("the reservation form offers no permanent lease to an engineer")
		}
		if !audited(t, srv, "flavor", "vm.small", "lease_policy.set") {
			t.Error("no audit event")
		}
	})

	t.Run("a raised quota lets an engineer reserve a sixth devserver", func(t *testing.T) {
		tok := srv.Token(t, "quinn@example.com")
		for i := range 5 {
			if st, body := reserveVMSmall(t, srv, tok); st != http.StatusAccepted {
				t.Fatalf("reservation %d: %d %s", i+1, st, body)
			}
		}
		if st, _ := reserveVMSmall(t, srv, tok); st != http.StatusTooManyRequests {
			t.Fatalf("sixth before: %d, want 429", st)
		}
		resp, _ := post(t, "/admin/policies/quotas", url.Values{"devservers-engineer": {"6"}, "gpu_devservers-engineer": {"1"}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("save: %d", resp.StatusCode)
		}
		if st, body := reserveVMSmall(t, srv, tok); st != http.StatusAccepted {
			t.Errorf("sixth after: %d %s", st, body)
		}
		if st, _ := reserveVMSmall(t, srv, tok); st != http.StatusTooManyRequests {
			t.Errorf("seventh: %d, want 429", st)
		}
		if !audited(t, srv, "role", "engineer", "quota.set") {
			t.Error("no audit event")
		}
	})

	t.Run("saving what is in force writes no audit event", func(t *testing.T) {
		before := policyState(t, srv)
		resp, _ := post(t, "/admin/policies/quotas", url.Values{"devservers-engineer": {"6"}, "gpu_devservers-engineer": {"1"}})
		if resp.StatusCode != http.StatusSeeOther || policyState(t, srv) != before {
			t.Errorf("%d; state changed", resp.StatusCode)
		}
	})

	for _, tc := range []struct {
		name, path string
		form       url.Values
		section    string
		field, msg string // a field shown with its error; "" when the problem shows in the alert
		alert      string
	}{
		{"a latency that is not a number", "/admin/policies/latencies", url.Values{"latency-prn/ftw": {"fast"}, "latency-prn/lla": {"99"}}, "latencies", "latency-prn/ftw", "whole number", ""},
		{"a latency out of range", "/admin/policies/latencies", url.Values{"latency-ftw/lla": {"10001"}, "latency-prn/lla": {"99"}}, "latencies", "latency-ftw/lla", "0 to 10000", ""},
		{"a negative latency", "/admin/policies/latencies", url.Values{"latency-ftw/lla": {"-1"}}, "latencies", "latency-ftw/lla", "0 to 10000", ""},
		{"a latency on the diagonal", "/admin/policies/latencies", url.Values{"latency-prn/prn": {"5"}, "latency-prn/lla": {"99"}}, "latencies", "", "", "latency-prn/prn: must be another region"},
		{"a latency to an unknown region", "/admin/policies/latencies", url.Values{"latency-prn/xyz": {"5"}, "latency-prn/lla": {"99"}}, "latencies", "", "", `"xyz" is not a region`},
		{"a lease of 0 days", "/admin/policies/leases", url.Values{"max_days-vm.small": {"0"}, "max_days-vm.large": {"90"}}, "lease-policies", "max_days-vm.small", "1 to 365", ""},
		{"a lease of 366 days", "/admin/policies/leases", url.Values{"max_days-vm.small": {"366"}}, "lease-policies", "max_days-vm.small", "1 to 365", ""},
		{"a lease that is not a number", "/admin/policies/leases", url.Values{"max_days-vm.small": {"a month"}}, "lease-policies", "max_days-vm.small", "whole number", ""},
		{"an unknown permanent choice", "/admin/policies/leases", url.Values{"max_days-vm.large": {"90"}, "permanent-vm.large": {"forever"}}, "lease-policies", "permanent-vm.large", "nobody, admins or everyone", ""},
		{"an unknown flavour", "/admin/policies/leases", url.Values{"max_days-vm.huge": {"9"}, "max_days-vm.large": {"90"}}, "lease-policies", "", "", `"vm.huge" is not a flavour`},
		{"a quota over 1000", "/admin/policies/quotas", url.Values{"devservers-engineer": {"1001"}, "devservers-admin": {"30"}}, "quotas", "devservers-engineer", "0 to 1000", ""},
		{"a GPU quota over 100", "/admin/policies/quotas", url.Values{"gpu_devservers-reviewer": {"101"}}, "quotas", "gpu_devservers-reviewer", "0 to 100", ""},
		{"a quota that is not a number", "/admin/policies/quotas", url.Values{"devservers-reviewer": {"many"}}, "quotas", "devservers-reviewer", "whole number", ""},
		{"an unknown role", "/admin/policies/quotas", url.Values{"devservers-boss": {"9"}, "devservers-admin": {"30"}}, "quotas", "", "", `"boss" is not a role`},
		{"a container quota over 100", "/admin/policies/quotas", url.Values{"containers-engineer": {"101"}, "containers-admin": {"12"}}, "quotas", "containers-engineer", "0 to 100", ""},
		{"a container quota that is not a number", "/admin/policies/quotas", url.Values{"containers-reviewer": {"a few"}}, "quotas", "containers-reviewer", "whole number", ""},
	} {
		t.Run("refuses "+tc.name+", keeps what was entered and changes nothing", func(t *testing.T) {
			before := policyState(t, srv)
			resp, doc := post(t, tc.path, tc.form)
			if resp.StatusCode != http.StatusUnprocessableEntity {
				t.Fatalf("status %d, want 422", resp.StatusCode)
			}
			if after := policyState(t, srv); after != before {
				t.Errorf("the policies changed:\n%s\nwant\n%s", after, before)
			}
			alert := doc.Find("#" + tc.section + "-problem")
			if !strings.Contains(alert.Text(), "nothing was saved") || !strings.Contains(alert.Text(), tc.alert) {
				t.Errorf("alert %q", alert.Text())
			}
			if tc.field != "" {
				if msg := doc.Find(`[data-error-for="` + tc.field + `"]`).Text(); !strings.Contains(msg, tc.msg) {
					t.Errorf("error for %s: %q, want %q", tc.field, msg, tc.msg)
				}
			}
			for field, vs := range tc.form {
				in := doc.Find(`[name="` + field + `"]`)
				if in.Length() == 0 {
					continue
				}
				got, _ := in.Attr("value")
				if in.Is("select") {
					got, _ = in.Find("[selected]").Attr("value")
					if vs[0] == "forever" {
						continue // a select cannot show a choice it does not have
					}
				}
				if got != vs[0] {
					t.Errorf("%s shows %q, want %q as entered", field, got, vs[0])
				}
			}
		})
	}

	t.Run("an engineer may not see or change the policies", func(t *testing.T) {
		before := policyState(t, srv)
		for _, r := range []handlertest.Request{
			{Path: "/admin/policies"},
			{Method: "POST", Path: "/admin/policies/quotas", Form: url.Values{"devservers-engineer": {"1000"}}},
			{Method: "POST", Path: "/admin/policies/leases", Form: url.Values{"max_days-vm.small": {"365"}}},
			{Method: "POST", Path: "/admin/policies/latencies", Form: url.Values{"latency-prn/ftw": {"1"}}},
		} {
			if resp, _ := srv.Do(t, engineer, r); resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s: %d, want 403", r.Method, r.Path, resp.StatusCode)
			}
		}
		if resp, _ := srv.Do(t, nil, handlertest.Request{Path: "/admin/policies"}); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
			t.Errorf("anonymous: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		if policyState(t, srv) != before {
			t.Error("the policies changed")
		}
	})
}

type leasePolicyJSON struct {
	Flavor    string `json:"flavor"`
	MaxDays   int    `json:"max_days"`
	Permanent string `json:"permanent"`
}

func TestPoliciesAPI(t *testing.T) {
	srv := handlertest.New(t)
	admin := srv.Token(t, "root@example.com", store.RoleAdmin)
	eng := srv.Token(t, "eve@example.com")
	do := func(t *testing.T, token, method, path, body string) (*http.Response, string) {
		t.Helper()
		return srv.Do(t, nil, handlertest.Request{Method: method, Path: path, Token: token, Body: body})
	}

	t.Run("GETs return the whole tables", func(t *testing.T) {
		_, body := do(t, admin, "GET", "/api/v1/policies/latencies", "")
		ls := decode[listJSON[store.RegionLatency]](t, body).Items
		if len(ls) != 6 || !containsLatency(ls, "prn", "ftw", 38) || !containsLatency(ls, "ftw", "prn", 38) {
			t.Errorf("latencies %+v", ls)
		}
		_, body = do(t, admin, "GET", "/api/v1/policies/leases", "")
		ps := decode[listJSON[leasePolicyJSON]](t, body).Items
		if len(ps) != 7 || ps[0] != (leasePolicyJSON{"vm.small", 30, "admins"}) {
			t.Errorf("lease policies %+v", ps)
		}
		_, body = do(t, admin, "GET", "/api/v1/policies/leases/gpu.a100", "")
		if p := decode[leasePolicyJSON](t, body); p != (leasePolicyJSON{"gpu.a100", 14, "nobody"}) {
			t.Errorf("gpu.a100 %+v", p)
		}
		_, body = do(t, admin, "GET", "/api/v1/policies/quotas", "")
		qs := decode[listJSON[store.Quota]](t, body).Items
		if len(qs) != 3 || qs[0] != (store.Quota{Role: "engineer", Devservers: 5, GPUDevservers: 1, Containers: 3}) {
			t.Errorf("quotas %+v", qs)
		}
		_, body = do(t, admin, "GET", "/api/v1/policies/quotas/admin", "")
		if q := decode[store.Quota](t, body); q != (store.Quota{Role: "admin", Devservers: 20, GPUDevservers: 4, Containers: 10}) {
			t.Errorf("admin quota %+v", q)
		}
	})

	t.Run("a latency is set both ways and reorders the reservation form", func(t *testing.T) {
		c := srv.SignIn(t, "lars@example.com")
		if resp, body := srv.Do(t, c, handlertest.Request{Method: "PATCH", Path: "/api/v1/me", Body: `{"home_region":"lla"}`}); resp.StatusCode != 200 {
			t.Fatalf("home: %d %s", resp.StatusCode, body)
		}
		if order, _ := regionOrder(t, srv, c); order != "lla ftw prn" {
			t.Fatalf("before: %s", order)
		}
		resp, body := do(t, admin, "PUT", "/api/v1/policies/latencies", `{"from":"prn","to":"lla","ms":40}`)
		if resp.StatusCode != 200 || decode[store.RegionLatency](t, body) != (store.RegionLatency{From: "prn", To: "lla", MS: 40}) {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if order, _ := regionOrder(t, srv, c); order != "lla prn ftw" {
			t.Errorf("after: %s, want lla prn ftw", order)
		}
		_, body = do(t, admin, "GET", "/api/v1/policies/latencies", "")
		if ls := decode[listJSON[store.RegionLatency]](t, body).Items; !containsLatency(ls, "lla", "prn", 40) {
			t.Errorf("lla→prn not 40: %+v", ls)
		}
	})

	t.Run("a longer lease policy lets the owner extend to 50 days", func(t *testing.T) {
		name := readyDevserver(t, srv, eng)
		fifty := `{"until":"` + time.Now().UTC().Add(50*24*time.Hour).Format(time.RFC3339) + `"}`
		if resp, _ := do(t, eng, "POST", "/api/v1/devservers/"+name+"/extend", fifty); resp.StatusCode != 422 {
			t.Fatalf("before: %d, want 422", resp.StatusCode)
		}
		resp, body := do(t, admin, "PUT", "/api/v1/policies/leases/vm.small", `{"max_days":60,"permanent":"admins"}`)
		if resp.StatusCode != 200 || decode[leasePolicyJSON](t, body) != (leasePolicyJSON{"vm.small", 60, "admins"}) {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if resp, body := do(t, eng, "POST", "/api/v1/devservers/"+name+"/extend", fifty); resp.StatusCode != 200 {
			t.Errorf("after: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("a raised quota lets an engineer reserve a sixth devserver", func(t *testing.T) {
		tok := srv.Token(t, "quinn@example.com")
		for i := range 5 {
			if st, body := reserveVMSmall(t, srv, tok); st != http.StatusAccepted {
				t.Fatalf("reservation %d: %d %s", i+1, st, body)
			}
		}
		if st, _ := reserveVMSmall(t, srv, tok); st != http.StatusTooManyRequests {
			t.Fatalf("sixth before: %d", st)
		}
		resp, body := do(t, admin, "PUT", "/api/v1/policies/quotas/engineer", `{"devservers":6,"gpu_devservers":1}`)
		if resp.StatusCode != 200 || decode[store.Quota](t, body) != (store.Quota{Role: "engineer", Devservers: 6, GPUDevservers: 1, Containers: 3}) {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if st, body := reserveVMSmall(t, srv, tok); st != http.StatusAccepted {
			t.Errorf("sixth after: %d %s", st, body)
		}
	})

	for _, tc := range []struct {
		name, token, method, path, body string
		status                          int
		field                           string
	}{
		{"a latency on the diagonal", admin, "PUT", "/api/v1/policies/latencies", `{"from":"prn","to":"prn","ms":1}`, 422, "to"},
		{"a latency from an unknown region", admin, "PUT", "/api/v1/policies/latencies", `{"from":"xyz","to":"prn","ms":1}`, 422, "from"},
		{"a latency over 10000 ms", admin, "PUT", "/api/v1/policies/latencies", `{"from":"ftw","to":"prn","ms":10001}`, 422, "ms"},
		{"a negative latency", admin, "PUT", "/api/v1/policies/latencies", `{"from":"ftw","to":"prn","ms":-1}`, 422, "ms"},
		{"a latency without ms", admin, "PUT", "/api/v1/policies/latencies", `{"from":"ftw","to":"prn"}`, 422, "ms"},
		{"a latency that is not a number", admin, "PUT", "/api/v1/policies/latencies", `{"from":"ftw","to":"prn","ms":"40"}`, 400, ""},
		{"a lease of 366 days", admin, "PUT", "/api/v1/policies/leases/vm.small", `{"max_days":366,"permanent":"admins"}`, 422, "max_days"},
		{"a lease of 0 days", admin, "PUT", "/api/v1/policies/leases/vm.small", `{"max_days":0,"permanent":"admins"}`, 422, "max_days"},
		{"an unknown permanent choice", admin, "PUT", "/api/v1/policies/leases/vm.small", `{"max_days":30,"permanent":"engineers"}`, 422, "permanent"},
		{"a lease policy without max_days", admin, "PUT", "/api/v1/policies/leases/vm.small", `{"permanent":"admins"}`, 422, "max_days"},
		{"an unknown flavour", admin, "PUT", "/api/v1/policies/leases/vm.huge", `{"max_days":30,"permanent":"admins"}`, 404, ""},
		{"a quota over 1000", admin, "PUT", "/api/v1/policies/quotas/engineer", `{"devservers":1001,"gpu_devservers":1}`, 422, "devservers"},
		{"a GPU quota over 100", admin, "PUT", "/api/v1/policies/quotas/engineer", `{"devservers":5,"gpu_devservers":101}`, 422, "gpu_devservers"},
		{"a quota without GPUs", admin, "PUT", "/api/v1/policies/quotas/engineer", `{"devservers":5}`, 422, "gpu_devservers"},
		{"an unknown role", admin, "PUT", "/api/v1/policies/quotas/boss", `{"devservers":5,"gpu_devservers":1}`, 404, ""},
		{"an unknown field", admin, "PUT", "/api/v1/policies/quotas/engineer", `{"devservers":5,"gpu_devservers":1,"cpus":2}`, 400, ""},
		{"an engineer setting a quota", eng, "PUT", "/api/v1/policies/quotas/engineer", `{"devservers":1000,"gpu_devservers":100}`, 403, ""},
		{"an engineer setting a lease policy", eng, "PUT", "/api/v1/policies/leases/vm.small", `{"max_days":365,"permanent":"everyone"}`, 403, ""},
		{"an engineer setting a latency", eng, "PUT", "/api/v1/policies/latencies", `{"from":"ftw","to":"prn","ms":1}`, 403, ""},
		{"an engineer reading the quotas", eng, "GET", "/api/v1/policies/quotas", "", 403, ""},
		{"anonymous setting a quota", "", "PUT", "/api/v1/policies/quotas/engineer", `{"devservers":1000,"gpu_devservers":100}`, 401, ""},
	} {
		t.Run("refuses "+tc.name+" and changes nothing", func(t *testing.T) {
			before := policyState(t, srv)
			resp, body := do(t, tc.token, tc.method, tc.path, tc.body)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if e := decode[apiError](t, body); tc.field != "" && e.Error.Fields[tc.field] == "" {
				t.Errorf("no problem with %s: %s", tc.field, body)
			}
			if after := policyState(t, srv); after != before {
				t.Errorf("the policies changed:\n%s\nwant\n%s", after, before)
			}
		})
	}
}

func containsLatency(ls []store.RegionLatency, from, to string, ms int) bool {
	for _, l := range ls {
		if l == (store.RegionLatency{From: from, To: to, MS: ms}) {
			return true
		}
	}
	return false
}

func TestPoliciesHomeRegion(t *testing.T) {
	srv := handlertest.New(t)
	c := srv.SignIn(t, "hanna@example.com")
	home := func() string {
		u, err := srv.Store.UserByEmail(context.Background(), "hanna@example.com")
		if err != nil {
			t.Fatal(err)
		}
		return u.HomeRegion
	}

	t.Run("the profile shows the home region, the first region until chosen", func(t *testing.T) {
		_, body := srv.Do(t, c, handlertest.Request{Path: "/profile"})
		doc := handlertest.Doc(t, body)
		if v, _ := doc.Find(`#home-region select[name=home_region] [selected]`).Attr("value"); v != "prn" {
			t.Errorf("selected %q, want prn", v)
		}
		if doc.Find(`label[for="home-region-select"]`).Length() != 1 || doc.Find(`#home-region option`).Length() != 3 {
			t.Error("no labelled select of the three regions")
		}
	})
	t.Run("a new home region is preselected and listed first on the reservation form", func(t *testing.T) {
		resp, _ := srv.Do(t, c, handlertest.Request{Method: "POST", Path: "/profile/home-region", Form: url.Values{"home_region": {"lla"}}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/profile" {
			t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		_, body := srv.Do(t, c, handlertest.Request{Path: "/profile"})
		doc := handlertest.Doc(t, body)
		if v, _ := doc.Find(`#home-region [selected]`).Attr("value"); v != "lla" {
			t.Errorf("selected %q, want lla", v)
		}
		if !strings.Contains(doc.Find(".flash").Text(), "Luleå") {
			t.Errorf("flash %q", doc.Find(".flash").Text())
		}
		if order, checked := regionOrder(t, srv, c); order != "lla ftw prn" || checked != "lla" {
			t.Errorf("reservation form: %s (%s), want lla ftw prn (lla)", order, checked)
		}
		if !audited(t, srv, "user", "hanna@example.com", "user.home_region") {
			t.Error("no audit event")
		}
	})
	t.Run("an unknown region is refused on the form and changes nothing", func(t *testing.T) {
		before := policyState(t, srv)
		resp, body := srv.Do(t, c, handlertest.Request{Method: "POST", Path: "/profile/home-region", Form: url.Values{"home_region": {"mars"}}})
		if resp.StatusCode != http.StatusUnprocessableEntity {
			t.Fatalf("%d", resp.StatusCode)
		}
		if msg := handlertest.Doc(t, body).Find(`[data-error-for=home_region]`).Text(); !strings.Contains(msg, `"mars" is not a region`) {
			t.Errorf("error %q", msg)
		}
		if policyState(t, srv) != before || home() != "lla" {
			t.Error("something changed")
		}
	})
	t.Run("the API sets the home region and GET /me shows it", func(t *testing.T) {
		tok := srv.Token(t, "hanna@example.com")
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "PATCH", Path: "/api/v1/me", Token: tok, Body: `{"home_region":"ftw"}`})
		if resp.StatusCode != 200 || decode[store.User](t, body).HomeRegion != "ftw" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		_, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/me", Token: tok})
		if decode[store.User](t, body).HomeRegion != "ftw" {
			t.Errorf("GET /me: %s", body)
		}
		if order, checked := regionOrder(t, srv, c); order != "ftw prn lla" || checked != "ftw" {
			t.Errorf("reservation form: %s (%s)", order, checked)
		}
	})
	t.Run("the API refuses an unknown region and changes nothing", func(t *testing.T) {
		tok := srv.Token(t, "hanna@example.com")
		before := policyState(t, srv)
		for body, status := range map[string]int{`{"home_region":"mars"}`: 422, `{"home_region":""}`: 422, `{"home_region":7}`: 400, `{"home":"prn"}`: 400} {
			resp, out := srv.Do(t, nil, handlertest.Request{Method: "PATCH", Path: "/api/v1/me", Token: tok, Body: body})
			if resp.StatusCode != status {
				t.Errorf("%s: %d, want %d: %s", body, resp.StatusCode, status, out)
			}
			if status == 422 && decode[apiError](t, out).Error.Fields["home_region"] == "" {
				t.Errorf("%s: no field problem: %s", body, out)
			}
		}
		if policyState(t, srv) != before || home() != "ftw" {
			t.Error("something changed")
		}
	})
}

// FuzzPolicyForms posts arbitrary forms to the three policy forms: whatever
// arrives, the answer is a redirect or a clear 4xx, and every policy stays
// within its bounds.
func FuzzPolicyForms(f *testing.F) {
	for _, seed := range []string{
		"latency-prn%2Fftw=40", "latency-prn%2Fprn=1", "latency-prn=1", "latency-%2F=1", "latency-prn%2Fftw=1e3",
		"max_days-vm.small=60&permanent-vm.small=everyone", "max_days-vm.small=-1", "permanent-vm.small=%00",
		"devservers-engineer=99999999999999999999", "gpu_devservers-=1", "x=1", "%zz",
	} {
		f.Add(seed)
	}
	srv := handlertest.New(f, handlertest.Options{NoJobs: true})
	admin := srv.SignIn(f, "root@example.com", store.RoleAdmin)
	f.Fuzz(func(t *testing.T, body string) {
		for _, path := range []string{"/admin/policies/latencies", "/admin/policies/leases", "/admin/policies/quotas"} {
			resp, out := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: path, Body: body,
				Headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}})
			if resp.StatusCode >= 500 || resp.StatusCode < 300 {
				t.Fatalf("%s body %q: status %d %.300s", path, body, resp.StatusCode, out)
			}
		}
		var bad int
		err := srv.Store.InTx(context.Background(), func(tx *store.Tx) error {
			return tx.GetContext(context.Background(), &bad, `SELECT
  (SELECT COUNT(*) FROM region_latencies WHERE ms < 0 OR ms > 10000 OR from_region = to_region)
+ (SELECT COUNT(*) FROM flavor_policies WHERE max_lease_days < 1 OR max_lease_days > 365 OR permanent_roles NOT IN ('', 'admin', 'engineer'))
+ (SELECT COUNT(*) FROM quotas WHERE devservers > 1000 OR gpu_devservers > 100 OR containers > 100)`)
		})
		if err != nil || bad != 0 {
			t.Fatalf("body %q left %d policies out of bounds (%v)", body, bad, err)
		}
	})
}

// roleQuotaNow is a role's quota as the database holds it.
func roleQuotaNow(t *testing.T, srv *handlertest.Server, role string) store.Quota {
	t.Helper()
	qs, err := srv.Store.Quotas(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if q.Role == role {
			return q
		}
	}
	t.Fatalf("no quota for %s", role)
	return store.Quota{}
}

func requestWebContainer(t *testing.T, srv *handlertest.Server, token string) int {
	t.Helper()
	resp, _ := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/containers", Token: token, Body: `{"type":"web","profile":"small"}`})
	return resp.StatusCode
}

func TestContainerQuota(t *testing.T) {
	srv := handlertest.New(t)
	admin := srv.SignIn(t, "root@example.com", store.RoleAdmin)
	adminTok := srv.Token(t, "root@example.com", store.RoleAdmin)

	t.Run("a raised container quota through the form lets an engineer hold a fourth container", func(t *testing.T) {
		tok := srv.Token(t, "cora@example.com")
		for i := range 3 {
			if st := requestWebContainer(t, srv, tok); st != http.StatusCreated {
				t.Fatalf("container %d: %d", i+1, st)
			}
		}
		if st := requestWebContainer(t, srv, tok); st != http.StatusTooManyRequests {
			t.Fatalf("fourth before: %d, want 429", st)
		}
		resp, _ := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: "/admin/policies/quotas", Form: url.Values{"containers-engineer": {"4"}}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("save: %d", resp.StatusCode)
		}
		if q := roleQuotaNow(t, srv, "engineer"); q != (store.Quota{Role: "engineer", Devservers: 5, GPUDevservers: 1, Containers: 4}) {
			t.Errorf("engineer quota %+v", q)
		}
		if !audited(t, srv, "role", "engineer", "quota.set") {
			t.Error("no audit event")
		}
		_, body := srv.Do(t, admin, handlertest.Request{Path: "/admin/policies"})
		if v, _ := handlertest.Doc(t, body).Find(`input[name="containers-engineer"]`).Attr("value"); v != "4" {
			t.Errorf("the form shows %q", v)
		}
		if st := requestWebContainer(t, srv, tok); st != http.StatusCreated {
			t.Errorf("fourth after: %d", st)
		}
		if st := requestWebContainer(t, srv, tok); st != http.StatusTooManyRequests {
			t.Errorf("fifth: %d, want 429", st)
		}
	})

	t.Run("the API sets the container quota, and a PUT without it keeps it", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: "/api/v1/policies/quotas/reviewer", Token: adminTok, Body: `{"devservers":5,"gpu_devservers":1,"containers":7}`})
		if resp.StatusCode != 200 || decode[store.Quota](t, body).Containers != 7 || roleQuotaNow(t, srv, "reviewer").Containers != 7 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: "/api/v1/policies/quotas/reviewer", Token: adminTok, Body: `{"devservers":6,"gpu_devservers":1}`})
		if q := roleQuotaNow(t, srv, "reviewer"); resp.StatusCode != 200 || q != (store.Quota{Role: "reviewer", Devservers: 6, GPUDevservers: 1, Containers: 7}) {
			t.Errorf("%d %s; database %+v", resp.StatusCode, body, q)
		}
		if decode[store.Quota](t, body).Containers != 7 {
			t.Errorf("the answer says %s", body)
		}
	})

	for _, c := range []struct{ name, body string }{
		{"over 100", `{"devservers":5,"gpu_devservers":1,"containers":101}`},
		{"negative", `{"devservers":5,"gpu_devservers":1,"containers":-1}`},
	} {
		t.Run("the API refuses a container quota "+c.name+" and changes nothing", func(t *testing.T) {
			before := policyState(t, srv)
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: "/api/v1/policies/quotas/engineer", Token: adminTok, Body: c.body})
			if resp.StatusCode != 422 || decode[apiError](t, body).Error.Fields["containers"] == "" {
				t.Errorf("%d %s", resp.StatusCode, body)
			}
			if policyState(t, srv) != before {
				t.Error("the quotas changed")
			}
		})
	}
	t.Run("the API refuses a container quota that is not a number", func(t *testing.T) {
		before := policyState(t, srv)
		resp, _ := srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: "/api/v1/policies/quotas/engineer", Token: adminTok, Body: `{"devservers":5,"gpu_devservers":1,"containers":"3"}`})
		if resp.StatusCode != 400 || policyState(t, srv) != before {
			t.Errorf("%d", resp.StatusCode)
		}
	})
}
