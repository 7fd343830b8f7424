package handlers_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
)

func countIn(t *testing.T, srv *handlertest.Server, query string, args ...any) int {
	t.Helper()
	var n int
	if err := srv.Store.WriteDB().QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func reserveIn(t *testing.T, srv *handlertest.Server, token, flavor, region string) string {
	t.Helper()
	body := `{"flavor":"` + flavor + `"}`
	if region != "" {
		body = `{"flavor":"` + flavor + `","region":"` + region + `"}`
	}
	resp, out := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: token, Body: body})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("reserve %s: %d %s", flavor, resp.StatusCode, out)
	}
	name := decode[devserverJSON](t, out).Name
	srv.WaitState(t, name, store.StateReady)
	return name
}

// The drain API: a dry run answers the plan and changes nothing, bad input
// is refused and changes nothing, a drain is 202 with its run, a second one
// (also concurrent ones) is 409 already_draining, a reservation during the
// drain lands in another region, the drain completes, undrain reopens.
func TestDrainAPI(t *testing.T) {
	srv := handlertest.New(t)
	admin := srv.Token(t, "admin@example.com", store.RoleAdmin)
	owner := srv.Token(t, "owner@example.com")
	vm := reserveIn(t, srv, owner, "vm.small", "prn")
	phys := reserveIn(t, srv, owner, "physical.standard", "prn")

	tables := []string{"drains", "drain_items", "runbook_runs", "sevs", "notifications", "tasks", "backups", "devserver_migrations"}
	counts := func() map[string]int {
		out := map[string]int{}
		for _, tb := range tables {
			out[tb] = countIn(t, srv, `SELECT COUNT(*) FROM `+tb)
		}
		out["inactive regions"] = countIn(t, srv, `SELECT COUNT(*) FROM regions WHERE status <> 'active'`)
		return out
	}
	before := counts()
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/regions/prn/drain", Token: admin, Body: `{"reason":"rack swap","dry_run":true}`})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("dry run: %d %s", resp.StatusCode, body)
	}
	plan := decode[struct {
		DryRun bool `json:"dry_run"`
		Plan   []struct {
			Devserver string `json:"devserver"`
			Method    string `json:"method"`
			ToRegion  string `json:"to_region"`
		} `json:"plan"`
	}](t, body)
	methods := map[string]string{}
	for _, m := range plan.Plan {
		methods[m.Devserver] = m.Method + ">" + m.ToRegion
	}
	if !plan.DryRun || methods[vm] != "live>ftw" || methods[phys] != "owner>ftw" {
		t.Fatalf("plan %s", body)
	}
	for _, bad := range []struct{ body, code string }{
		{`{"reason":""}`, "validation_failed"},
		{`{"reason":"x","max_parallel":0}`, "validation_failed"},
		{`{"reason":"x","deadline":"2001-01-01T00:00:00Z"}`, "validation_failed"},
		{`{"reason":"x","deadline":"soon"}`, ""},
		{`{"reason":"x","dry_run":true,"max_parallel":-1}`, "validation_failed"},
	} {
		resp, out := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/regions/prn/drain", Token: admin, Body: bad.body})
		if resp.StatusCode != http.StatusUnprocessableEntity && resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("%s: %d %s", bad.body, resp.StatusCode, out)
		}
		if !strings.Contains(out, `"error"`) {
			t.Fatalf("%s: no error body: %s", bad.body, out)
		}
	}
	for _, bad := range []struct {
		what, path, body string
		status           int
		code, field      string
	}{
		{"malformed JSON", "/api/v1/regions/prn/drain", `{"reason":`, 400, "malformed_json", ""},
		{"an unknown field", "/api/v1/regions/prn/drain", `{"reason":"x","force":true}`, 400, "malformed_json", ""},
		{"an oversized reason", "/api/v1/regions/prn/drain", `{"reason":"` + strings.Repeat("r", 501) + `"}`, 422, "invalid", "reason"},
		{"an unknown region", "/api/v1/regions/zzz/drain", `{"reason":"x"}`, 404, "not_found", ""},
		{"undraining a region that is not draining", "/api/v1/regions/prn/undrain", `{}`, 409, "not_draining", ""},
	} {
		resp, out := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: bad.path, Token: admin, Body: bad.body})
		e := decode[apiError](t, out)
		if resp.StatusCode != bad.status || e.Error.Code != bad.code || e.Error.Message == "" || (bad.field != "" && e.Error.Fields[bad.field] == "") {
			t.Errorf("%s: %d %s", bad.what, resp.StatusCode, out)
		}
	}
	if resp, out := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/regions/prn/drain", Token: owner, Body: `{"reason":"mine"}`}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a drain by an engineer: %d %s", resp.StatusCode, out)
	}
	// The admin form: the plan button shows the plan; bad input is 422 with
	// the problem next to its field.
	page := srv.SignIn(t, "admin@example.com", store.RoleAdmin)
	resp, body = srv.Do(t, page, handlertest.Request{Method: "POST", Path: "/admin/regions/prn/drain", Form: url.Values{"reason": {"rack swap"}, "dry_run": {"1"}}})
	if resp.StatusCode != http.StatusOK || handlertest.Doc(t, body).Find(`#drain-plan-result tr[data-devserver="`+vm+`"][data-method="live"]`).Length() != 1 {
		t.Fatalf("plan form: %d %.2000s", resp.StatusCode, body)
	}
	for _, form := range []url.Values{{"reason": {""}}, {"reason": {"x"}, "max_parallel": {"0"}}, {"reason": {"x"}, "deadline": {"2001-01-01T00:00"}}} {
		resp, body = srv.Do(t, page, handlertest.Request{Method: "POST", Path: "/admin/regions/prn/drain", Form: form})
		if resp.StatusCode != http.StatusUnprocessableEntity || handlertest.Doc(t, body).Find(".field-error").Length() != 1 {
			t.Fatalf("form %v: %d %.1500s", form, resp.StatusCode, body)
		}
	}
	if after := counts(); !equalCounts(before, after) {
		t.Fatalf("dry run or bad input changed rows: %v → %v", before, after)
	}

	// Concurrent drains: exactly one.
	var wg sync.WaitGroup
	statuses := make([]int, 6)
	bodies := make([]string, 6)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, out := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/regions/prn/drain", Token: admin, Body: `{"reason":"rack swap","max_parallel":5}`})
			statuses[i], bodies[i] = resp.StatusCode, out
		}()
	}
	wg.Wait()
	var runID int64
	accepted := 0
	for i, st := range statuses {
		switch st {
		case http.StatusAccepted:
			accepted++
			runID = decode[struct {
				Run struct {
					ID int64 `json:"id"`
				} `json:"run"`
			}](t, bodies[i]).Run.ID
		case http.StatusConflict:
			if !strings.Contains(bodies[i], "already_draining") {
				t.Fatalf("409 without already_draining: %s", bodies[i])
			}
		default:
			t.Fatalf("drain: %d %s", st, bodies[i])
		}
	}
	if accepted != 1 || countIn(t, srv, `SELECT COUNT(*) FROM drains`) != 1 {
		t.Fatalf("%d drains accepted, %d recorded", accepted, countIn(t, srv, `SELECT COUNT(*) FROM drains`))
	}
	// A reservation without a region by someone whose home is prn lands elsewhere.
	late := srv.Token(t, "late@example.com")
	if _, err := srv.Store.WriteDB().Exec(`UPDATE users SET home_region = 'prn' WHERE email = 'late@example.com'`); err != nil {
		t.Fatal(err)
	}
	resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: late, Body: `{"flavor":"vm.small"}`})
	if resp.StatusCode != http.StatusAccepted || decode[devserverJSON](t, body).Region == "prn" {
		t.Fatalf("reservation during the drain: %d %s", resp.StatusCode, body)
	}
	// Naming the drained region is refused.
	resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: late, Body: `{"flavor":"vm.small","region":"prn"}`})
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "region_not_active") {
		t.Fatalf("reservation in the draining region: %d %s", resp.StatusCode, body)
	}
	handlertest.Eventually(t, 30*time.Second, "the drain run to succeed", func() bool {
		r, err := srv.Store.Run(context.Background(), runID)
		return err == nil && r.State == store.RunSucceeded
	})
	got, _ := srv.Store.Devserver(context.Background(), vm)
	if got.Region != "ftw" || got.State != store.StateReady {
		t.Fatalf("the VM is %s in %s", got.State, got.Region)
	}
	if n := countIn(t, srv, `SELECT COUNT(*) FROM tasks k JOIN users u ON u.id = k.user_id WHERE u.email = 'owner@example.com' AND k.link = ?`, "/devservers/"+phys); n != 1 {
		t.Fatalf("%d move tasks for the physical devserver's owner", n)
	}
	if n := countIn(t, srv, `SELECT COUNT(*) FROM notifications n JOIN users u ON u.id = n.user_id WHERE u.email = 'owner@example.com' AND n.idempotency_key LIKE 'drain:%'`); n != 1 {
		t.Fatalf("the owner got %d drain notifications", n)
	}
	// The drain page shows 100%.
	resp, body = srv.Do(t, page, handlertest.Request{Method: "GET", Path: "/admin/regions/prn/drain"})
	doc := handlertest.Doc(t, body)
	if resp.StatusCode != 200 || doc.Find("#drain-bar").AttrOr("value", "") != "100" || doc.Find("#undrain").Length() != 1 {
		t.Fatalf("drain page: %d %.2000s", resp.StatusCode, body)
	}
	// Undrain: active again; a second undrain is 409.
	resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/regions/prn/undrain", Token: admin, Body: `{}`})
	if resp.StatusCode != http.StatusOK || decode[store.Region](t, body).Status != "active" {
		t.Fatalf("undrain: %d %s", resp.StatusCode, body)
	}
	resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/regions/prn/undrain", Token: admin, Body: `{}`})
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "not_draining") {
		t.Fatalf("second undrain: %d %s", resp.StatusCode, body)
	}
}

func equalCounts(a, b map[string]int) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return len(a) == len(b)
}

// The owner of a physical devserver a drain asked to move sees "move me"
// on its page; one click starts its migration to the nearest active region.
func TestDrainMoveMe(t *testing.T) {
	srv := handlertest.New(t)
	admin := srv.Token(t, "admin@example.com", store.RoleAdmin)
	owner := srv.Token(t, "owner@example.com")
	phys := reserveIn(t, srv, owner, "physical.standard", "prn")
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/regions/prn/drain", Token: admin, Body: `{"reason":"rack swap"}`})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("drain: %d %s", resp.StatusCode, body)
	}
	handlertest.Eventually(t, 20*time.Second, "the owner's task", func() bool {
		return countIn(t, srv, `SELECT COUNT(*) FROM tasks WHERE link = ?`, "/devservers/"+phys) == 1
	})
	browser := srv.SignIn(t, "owner@example.com")
	_, body = srv.Do(t, browser, handlertest.Request{Method: "GET", Path: "/devservers/" + phys})
	if handlertest.Doc(t, body).Find("#move-me").Length() != 1 {
		t.Fatalf("no move me button on the devserver page: %.3000s", body)
	}
	// Someone else cannot.
	other := srv.SignIn(t, "admin@example.com", store.RoleAdmin)
	if resp, _ := srv.Do(t, other, handlertest.Request{Method: "POST", Path: "/devservers/" + phys + "/move-me", Form: url.Values{}}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("an admin's move me: %d", resp.StatusCode)
	}
	resp, _ = srv.Do(t, browser, handlertest.Request{Method: "POST", Path: "/devservers/" + phys + "/move-me", Form: url.Values{}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("move me: %d", resp.StatusCode)
	}
	handlertest.Eventually(t, 30*time.Second, "the physical devserver to move", func() bool {
		d, err := srv.Store.Devserver(context.Background(), phys)
		return err == nil && d.Region == "ftw" && d.State == store.StateReady
	})
}

// Undrain takes "move me" off the devserver page.
func TestDrainMoveMeGoneAfterUndrain(t *testing.T) {
	srv := handlertest.New(t)
	admin := srv.Token(t, "admin@example.com", store.RoleAdmin)
	owner := srv.Token(t, "owner@example.com")
	phys := reserveIn(t, srv, owner, "physical.standard", "prn")
	if resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/regions/prn/drain", Token: admin, Body: `{"reason":"rack swap"}`}); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("drain: %d %s", resp.StatusCode, body)
	}
	handlertest.Eventually(t, 20*time.Second, "the owner's task", func() bool {
		return countIn(t, srv, `SELECT COUNT(*) FROM tasks WHERE link = ?`, "/devservers/"+phys) == 1
	})
	if resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/regions/prn/undrain", Token: admin, Body: `{}`}); resp.StatusCode != http.StatusOK {
		t.Fatalf("undrain: %d %s", resp.StatusCode, body)
	}
	browser := srv.SignIn(t, "owner@example.com")
	_, body := srv.Do(t, browser, handlertest.Request{Method: "GET", Path: "/devservers/" + phys})
	if handlertest.Doc(t, body).Find("#move-me").Length() != 0 {
		t.Fatal("move me is still offered after the undrain")
	}
	resp, _ := srv.Do(t, browser, handlertest.Request{Method: "POST", Path: "/devservers/" + phys + "/move-me", Form: url.Values{}})
	if resp.StatusCode != http.StatusSeeOther || countIn(t, srv, `SELECT COUNT(*) FROM devserver_migrations`) != 0 {
		t.Fatalf("move me after undrain: %d, %d migrations", resp.StatusCode, countIn(t, srv, `SELECT COUNT(*) FROM devserver_migrations`))
	}
}
