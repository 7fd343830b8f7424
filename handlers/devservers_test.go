package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

type apiError struct {
	Error struct {
		Code    string            `json:"code"`
		Message string            `json:"message"`
		Fields  map[string]string `json:"fields"`
	} `json:"error"`
}

func decode[T any](t testing.TB, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	return v
}

type devserverJSON struct {
	Name     string `json:"name"`
	Owner    string `json:"owner"`
	State    string `json:"state"`
	Progress int    `json:"progress"`
	Region   string `json:"region"`
	Host     string `json:"host"`
	Address  string `json:"address"`
	Hostname string `json:"hostname"`
	Lease    struct {
		Kind  string `json:"kind"`
		Until string `json:"until"`
	} `json:"lease"`
}

func TestAPIThinSlice(t *testing.T) {
	srv := handlertest.New(t)
	tok := srv.Token(t, "alice@example.com")

	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: tok, Body: `{"flavor":"vm.medium","region":"ftw","lease":{"kind":"short"}}`})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("reserve: %d %s", resp.StatusCode, body)
	}
	d := decode[devserverJSON](t, body)
	if d.State != "provisioning" || d.Region != "ftw" || d.Owner != "alice@example.com" || d.Lease.Kind != "short" {
		t.Errorf("reserved = %+v", d)
	}
	if loc := resp.Header.Get("Location"); loc != "/api/v1/devservers/"+d.Name {
		t.Errorf("Location = %q", loc)
	}

	srv.WaitState(t, d.Name, store.StateReady)
	resp, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/devservers/" + d.Name, Token: tok})
	got := decode[devserverJSON](t, body)
	if resp.StatusCode != 200 || got.State != "ready" || got.Progress != 100 || got.Address == "" || !strings.HasPrefix(got.Host, "ftw-") {
		t.Errorf("ready devserver = %d %+v", resp.StatusCode, got)
	}

	resp, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/devservers", Token: tok})
	list := decode[struct{ Items []devserverJSON }](t, body)
	if resp.StatusCode != 200 || len(list.Items) != 1 || list.Items[0].Name != d.Name {
		t.Errorf("list = %d %s", resp.StatusCode, body)
	}

	resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + d.Name + "/release", Token: tok})
	if resp.StatusCode != http.StatusAccepted || decode[devserverJSON](t, body).State != "releasing" {
		t.Fatalf("release: %d %s", resp.StatusCode, body)
	}
	srv.WaitState(t, d.Name, store.StateReleased)

	events, err := srv.Store.AuditEvents(context.Background(), "devserver", d.Name)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range events {
		actions = append(actions, e.Actor+":"+e.Action)
	}
	want := "alice@example.com:devserver.reserve system:devserver.ready alice@example.com:devserver.release " +
		"system:devserver.backup system:devserver.backup_done system:devserver.released"
	if strings.Join(actions, " ") != want {
		t.Errorf("audit trail = %v, want %s", actions, want)
	}
	h, _ := srv.Store.HostByName(context.Background(), got.Host)
	if h.UsedCPUs != 0 {
		t.Errorf("host %s still has %d CPUs in use after release", h.Name, h.UsedCPUs)
	}
}

func TestHTMLThinSlice(t *testing.T) {
	srv := handlertest.New(t)
	c := srv.SignIn(t, "bob@example.com")

	resp, body := srv.Do(t, c, handlertest.Request{Path: "/devservers/new"})
	doc := handlertest.Doc(t, body)
	if resp.StatusCode != 200 || doc.Find(`input[name=flavor][value="vm.small"]`).Length() != 1 {
		t.Fatalf("reserve form: %d", resp.StatusCode)
	}
	if doc.Find(`input[name=region][value=prn][checked]`).Length() != 1 {
		t.Error("the home region is not preselected")
	}
	if doc.Find(".badge-dev").Text() != "dev login" || doc.Find(".badge-sim").Text() != "simulated fleet" {
		t.Error("the frame does not say dev login and simulated fleet")
	}

	t.Run("the region choice shows free capacity for the chosen flavour", func(t *testing.T) {
		resp, body := srv.Do(t, c, handlertest.Request{Path: "/devservers/new/regions?flavor=gpu.a100", Headers: map[string]string{"HX-Request": "true"}})
		doc := handlertest.Doc(t, body)
		if resp.StatusCode != 200 || doc.Find("html").Length() != 0 && strings.Contains(body, "<html") {
			t.Fatalf("partial: %d", resp.StatusCode)
		}
		if free, _ := doc.Find(`#reserve-regions input[value=prn]`).Parent().Find(".free").Attr("data-free"); free != "2" {
			t.Errorf("free gpu.a100 in prn = %q, want 2", free)
		}
	})

	resp, _ = srv.Do(t, c, handlertest.Request{Method: "POST", Path: "/devservers", Form: url.Values{"flavor": {"vm.small"}, "region": {"lla"}, "lease_kind": {"short"}}})
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/devservers/bob-") {
		t.Fatalf("reserve: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	page := resp.Header.Get("Location")
	name := strings.TrimPrefix(page, "/devservers/")

	_, body = srv.Do(t, c, handlertest.Request{Path: page})
	doc = handlertest.Doc(t, body)
	if !strings.Contains(doc.Find(".flash-success").Text(), "Reserving "+name) {
		t.Errorf("no flash after reserving: %q", doc.Find(".flash").Text())
	}
	srv.WaitState(t, name, store.StateReady)

	t.Run("an HTMX request gets the status panel alone", func(t *testing.T) {
		resp, body := srv.Do(t, c, handlertest.Request{Path: page, Headers: map[string]string{"HX-Request": "true"}})
		doc := handlertest.Doc(t, body)
		if resp.StatusCode != 200 || strings.Contains(body, "<nav") {
			t.Fatalf("partial has the page frame: %d", resp.StatusCode)
		}
		section := doc.Find("#devserver-status-" + name)
		if section.Length() != 1 || section.Find("[data-state=ready]").Length() != 1 {
			t.Errorf("status panel: %s", body)
		}
		if _, polling := section.Attr("hx-trigger"); polling {
			t.Error("a ready devserver's panel still polls")
		}
		if resp.Header.Get("HX-Trigger") != "devserver-settled" {
			t.Errorf("the settled panel does not tell the page's sections to refresh: HX-Trigger %q", resp.Header.Get("HX-Trigger"))
		}
	})

	_, body = srv.Do(t, c, handlertest.Request{Path: page})
	doc = handlertest.Doc(t, body)
	facts := doc.Find("dl.facts").Text()
	for _, want := range []string{name + ".lla.devport.internal", "lla-hv", "vm.small", "until "} {
		if !strings.Contains(facts, want) {
			t.Errorf("page facts lack %q: %s", want, facts)
		}
	}

	_, body = srv.Do(t, c, handlertest.Request{Path: "/devservers"})
	if handlertest.Doc(t, body).Find(`tr[data-devserver="`+name+`"] [data-state=ready]`).Length() != 1 {
		t.Error("the list does not show the devserver as ready")
	}

	resp, _ = srv.Do(t, c, handlertest.Request{Method: "POST", Path: "/devservers/" + name + "/release"})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("release: %d", resp.StatusCode)
	}
	_, body = srv.Do(t, c, handlertest.Request{Path: page})
	doc = handlertest.Doc(t, body)
	if st, _ := doc.Find(".state").Attr("data-state"); st != "releasing" && st != "released" {
		t.Errorf("after release the page shows %q", st)
	}
	srv.WaitState(t, name, store.StateReleased)
}

func TestConcurrentReservationsNeverOverAllocate(t *testing.T) {
	inv := storetest.SmallRegion(10)
	srv := handlertest.New(t, handlertest.Options{Inventory: &inv})
	const n = 50
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = srv.Token(t, fmt.Sprintf("eng%02d@example.com", i))
	}
	var wg sync.WaitGroup
	statuses := make([]int, n)
	codes := make([]string, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			req, _ := http.NewRequest("POST", srv.URL+"/api/v1/devservers", strings.NewReader(`{"flavor":"vm.small","region":"tst"}`))
			req.Header.Set("Authorization", "Bearer "+tokens[i])
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			statuses[i] = resp.StatusCode
			var e apiError
			_ = json.NewDecoder(resp.Body).Decode(&e)
			codes[i] = e.Error.Code
		}(i)
	}
	close(start)
	wg.Wait()
	ok, full := 0, 0
	for i := range statuses {
		switch {
		case statuses[i] == http.StatusAccepted:
			ok++
		case statuses[i] == http.StatusConflict && codes[i] == "no_capacity":
			full++
		default:
			t.Errorf("request %d: status %d code %q", i, statuses[i], codes[i])
		}
	}
	if ok != 10 || full != 40 {
		t.Errorf("%d reserved and %d refused for no capacity, want 10 and 40", ok, full)
	}
	h, _ := srv.Store.HostByName(context.Background(), "tst-hv01")
	if h.UsedCPUs != h.CPUs {
		t.Errorf("host uses %d of %d CPUs, want it exactly full", h.UsedCPUs, h.CPUs)
	}
	ds, _ := srv.Store.Devservers(context.Background(), store.DevserverFilter{Region: "tst", Limit: 100})
	if len(ds) != 10 {
		t.Errorf("%d devservers in the region, want 10", len(ds))
	}
}

// counts is what a refused request must leave unchanged.
func counts(t *testing.T, s *store.Store) string {
	t.Helper()
	ds, err := s.Devservers(context.Background(), store.DevserverFilter{Released: true, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	hosts, _ := s.Hosts(context.Background(), "")
	used := 0
	for _, h := range hosts {
		used += h.UsedCPUs
	}
	states := []string{}
	for _, d := range ds {
		states = append(states, d.Name+"="+d.State)
	}
	return fmt.Sprintf("%d devservers %v, %d CPUs used", len(ds), states, used)
}

func TestBadInput(t *testing.T) {
	inv := storetest.SmallRegion(1)
	srv := handlertest.New(t, handlertest.Options{Inventory: &inv})
	alice := srv.Token(t, "alice@example.com")
	mallory := srv.Token(t, "mallory@example.com")
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: alice, Body: `{"flavor":"vm.small","region":"tst"}`})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("setup: %d %s", resp.StatusCode, body)
	}
	alices := decode[devserverJSON](t, body).Name
	srv.WaitState(t, alices, store.StateReady)
	before := counts(t, srv.Store)

	api := []struct {
		name           string
		req            handlertest.Request
		status         int
		code           string
		field, message string
	}{
		{"an unknown API route", handlertest.Request{Path: "/api/v1/nope", Token: alice}, 404, "not_found", "", ""},
		{"a wrong method", handlertest.Request{Method: "DELETE", Path: "/api/v1/devservers", Token: alice}, 405, "method_not_allowed", "", ""},
		{"malformed JSON", handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: alice, Body: `{"flavor":`}, 400, "malformed_json", "", ""},
		{"JSON of the wrong shape", handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: alice, Body: `{"flavor":42}`}, 400, "malformed_json", "", `"flavor"`},
		{"an unknown field", handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: alice, Body: `{"flavour":"vm.small"}`}, 400, "malformed_json", "", "flavour"},
		{"two JSON values", handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: alice, Body: `{"flavor":"vm.small"}{}`}, 400, "malformed_json", "", ""},
		{"a body that is not JSON", handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: alice, Body: `flavor=vm.small`, Headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 415, "unsupported_media_type", "", ""},
		{"an oversized body", handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: alice, Body: `{"flavor":"` + strings.Repeat("x", 2<<20) + `"}`}, 413, "too_large", "", ""},
		{"an oversized field", handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: alice, Body: `{"flavor":"` + strings.Repeat("x", 5000) + `","region":"tst"}`}, 422, "invalid", "flavor", ""},
		{"an unknown flavour", handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: alice, Body: `{"flavor":"vm.huge","region":"tst"}`}, 422, "invalid", "flavor", ""},
		{"an unknown region", handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: alice, Body: `{"flavor":"vm.small","region":"mars"}`}, 422, "invalid", "region", ""},
		{"a bad lease date", handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: alice, Body: `{"flavor":"vm.small","region":"tst","lease":{"kind":"short","until":"tomorrow"}}`}, 400, "malformed_json", "", ""},
		{"a feature that is not in the catalogue", handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: alice, Body: `{"flavor":"vm.small","region":"alt","features":["cobol"]}`}, 422, "invalid", "features", ""},
		{"a region without capacity", handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: alice, Body: `{"flavor":"vm.small","region":"tst"}`}, 409, "no_capacity", "", "alt (3 free)"},
		{"a draining region", handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: alice, Body: `{"flavor":"vm.small","region":"drn"}`}, 409, "region_not_active", "", "alt"},
		{"someone else's devserver", handlertest.Request{Path: "/api/v1/devservers/" + alices, Token: mallory}, 404, "not_found", "", ""},
		{"releasing someone else's devserver", handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + alices + "/release", Token: mallory}, 404, "not_found", "", ""},
		{"an unknown devserver", handlertest.Request{Path: "/api/v1/devservers/nobody-xxxxx", Token: alice}, 404, "not_found", "", ""},
		{"listing everyone's devservers as an engineer", handlertest.Request{Path: "/api/v1/devservers?all=1", Token: alice}, 403, "forbidden", "", ""},
		{"a bad limit", handlertest.Request{Path: "/api/v1/devservers?limit=100000", Token: alice}, 400, "invalid_limit", "", ""},
		{"a forged cursor", handlertest.Request{Path: "/api/v1/devservers?cursor=Zm9v", Token: alice}, 400, "invalid_cursor", "", ""},
		{"a cursor that is not base64", handlertest.Request{Path: "/api/v1/devservers?cursor=!!", Token: alice}, 400, "invalid_cursor", "", ""},
		{"an unknown state filter", handlertest.Request{Path: "/api/v1/devservers?state=sleeping", Token: alice}, 422, "invalid", "state", ""},
		{"no token", handlertest.Request{Path: "/api/v1/devservers"}, 401, "unauthenticated", "", ""},
		{"a bad token", handlertest.Request{Path: "/api/v1/devservers", Token: "dpt_notatoken"}, 401, "invalid_token", "", ""},
		{"a token that is not a token", handlertest.Request{Path: "/api/v1/devservers", Headers: map[string]string{"Authorization": "Basic YWxpY2U6cHc="}}, 401, "unauthenticated", "", ""},
		{"a cross-origin POST", handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: alice, Body: `{"flavor":"vm.small","region":"alt"}`, Headers: map[string]string{"Sec-Fetch-Site": "cross-site"}}, 403, "cross_origin", "", ""},
		{"a POST from another origin", handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + alices + "/release", Token: alice, Headers: map[string]string{"Origin": "https://evil.example"}}, 403, "cross_origin", "", ""},
	}
	for _, c := range api {
		t.Run("API refuses "+c.name, func(t *testing.T) {
			resp, body := srv.Do(t, nil, c.req)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, body)
			}
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Errorf("content type %q", resp.Header.Get("Content-Type"))
			}
			e := decode[apiError](t, body)
			if e.Error.Code != c.code || e.Error.Message == "" {
				t.Errorf("error = %+v, want code %s", e.Error, c.code)
			}
			if c.field != "" && e.Error.Fields[c.field] == "" {
				t.Errorf("fields = %v, want a problem with %s", e.Error.Fields, c.field)
			}
			if c.message != "" && !strings.Contains(e.Error.Message, c.message) {
				t.Errorf("message %q lacks %q", e.Error.Message, c.message)
			}
			if after := counts(t, srv.Store); after != before {
				t.Errorf("it changed something:\nbefore %s\nafter  %s", before, after)
			}
		})
	}

	bob := srv.SignIn(t, "bob@example.com")
	html := []struct {
		name   string
		c      *http.Client
		req    handlertest.Request
		status int
		sel    string
	}{
		{"an unknown page", bob, handlertest.Request{Path: "/no/such/page"}, 404, "article.error-page h1"},
		{"someone else's devserver page", bob, handlertest.Request{Path: "/devservers/" + alices}, 404, "article.error-page"},
		{"releasing someone else's devserver", bob, handlertest.Request{Method: "POST", Path: "/devservers/" + alices + "/release", Form: url.Values{}}, 404, "article.error-page"},
		{"a reservation form without a flavour", bob, handlertest.Request{Method: "POST", Path: "/devservers", Form: url.Values{"region": {"tst"}}}, 422, "#error-flavor"},
		{"a reservation with a bad lease date", bob, handlertest.Request{Method: "POST", Path: "/devservers", Form: url.Values{"flavor": {"vm.small"}, "region": {"alt"}, "lease_until": {"31/12/2026"}}}, 422, `#error-lease\.until`},
		{"a reservation in a full region", bob, handlertest.Request{Method: "POST", Path: "/devservers", Form: url.Values{"flavor": {"vm.small"}, "region": {"tst"}}}, 409, "#reserve-problem"},
		{"a malformed form", bob, handlertest.Request{Method: "POST", Path: "/devservers", Body: "%zz", Headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 400, "article.error-page"},
		{"an oversized form", bob, handlertest.Request{Method: "POST", Path: "/devservers", Form: url.Values{"flavor": {strings.Repeat("x", 70<<10)}}}, 413, "article.error-page"},
		{"a cross-origin form post", bob, handlertest.Request{Method: "POST", Path: "/devservers", Form: url.Values{"flavor": {"vm.small"}, "region": {"alt"}}, Headers: map[string]string{"Sec-Fetch-Site": "cross-site"}}, 403, "article.error-page"},
		{"a dev login with a bad email", nil, handlertest.Request{Method: "POST", Path: "/login/dev", Form: url.Values{"email": {"not-an-email"}}}, 422, "#error-email"},
		{"a dev login with an unknown role", nil, handlertest.Request{Method: "POST", Path: "/login/dev", Form: url.Values{"email": {"x@example.com"}, "roles": {"god"}}}, 422, "#error-roles"},
	}
	for _, c := range html {
		t.Run("UI refuses "+c.name, func(t *testing.T) {
			resp, body := srv.Do(t, c.c, c.req)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %.400s", resp.StatusCode, c.status, body)
			}
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
				t.Errorf("content type %q", resp.Header.Get("Content-Type"))
			}
			if handlertest.Doc(t, body).Find(c.sel).Length() == 0 {
				t.Errorf("no %s in the page: %.600s", c.sel, body)
			}
			if after := counts(t, srv.Store); after != before {
				t.Errorf("it changed something:\nbefore %s\nafter  %s", before, after)
			}
		})
	}

	t.Run("pages send anonymous visitors to sign in and back", func(t *testing.T) {
		resp, _ := srv.Do(t, nil, handlertest.Request{Path: "/devservers/new"})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?next=%2Fdevservers%2Fnew" {
			t.Errorf("status %d location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("sign-in never redirects off-site", func(t *testing.T) {
		for _, next := range []string{"https://evil.example/", "//evil.example", "/\\evil.example"} {
			resp, _ := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/login/dev", Form: url.Values{"email": {"x@example.com"}, "next": {next}}})
			if resp.Header.Get("Location") != "/" {
				t.Errorf("next=%q redirected to %q", next, resp.Header.Get("Location"))
			}
		}
	})
}
