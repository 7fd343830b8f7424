package handlers_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
)

type sevJSON struct {
	ID          int64    `json:"id"`
	Title       string   `json:"title"`
	Severity    int      `json:"severity"`
	Kind        string   `json:"kind"`
	State       string   `json:"state"`
	Regions     []string `json:"regions"`
	Commander   string   `json:"commander"`
	NextStates  []string `json:"next_states"`
	Subscribers []string `json:"subscribers"`
	ClosedAt    *string  `json:"closed_at"`
	ReviewDueAt *string  `json:"review_due_at"`
}

type apiErrorJSON struct {
	Error struct {
		Code    string            `json:"code"`
		Message string            `json:"message"`
		Fields  map[string]string `json:"fields"`
	} `json:"error"`
}

// matrixSev opens a SEV for the authorization matrix and returns its number.
func matrixSev(t *testing.T, srv *handlertest.Server, adminToken string) string {
	t.Helper()
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/sevs", Token: adminToken,
		Body: `{"title":"matrix SEV","severity":3,"kind":"exercise","regions":["prn"]}`})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("open a SEV: %d %s", resp.StatusCode, body)
	}
	return strconv.FormatInt(decode[sevJSON](t, body).ID, 10)
}

// sevState reads what a refused request must leave alone: the SEV, its
// timeline and the audit log.
func sevState(t *testing.T, srv *handlertest.Server, id int64) string {
	t.Helper()
	ctx := context.Background()
	sv, err := srv.Store.Sev(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := srv.Store.SevTimeline(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var audits int
	if err := srv.Store.WriteDB().QueryRow(`SELECT COUNT(*) FROM audit_events WHERE object_type = 'sev'`).Scan(&audits); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(sv)
	return string(b) + "|" + strconv.Itoa(len(tl)) + "|" + strconv.Itoa(audits)
}

func TestSevAPI(t *testing.T) {
	srv := handlertest.New(t)
	rev := srv.Token(t, "rita@example.com", store.RoleReviewer)
	eng := srv.Token(t, "ed@example.com")
	srv.Token(t, "cmdr@example.com")
	past := func(d time.Duration) string { return time.Now().UTC().Add(-d).Format(time.RFC3339) }

	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/sevs", Token: rev,
		Body: `{"title":"prn is down","severity":1,"regions":["prn"],"services":["devservers"],"commander":"cmdr@example.com","impact_started_at":"` + past(3*time.Hour) + `"}`})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	sv := decode[sevJSON](t, body)
	if sv.State != "open" || sv.Kind != "incident" || sv.Commander != "cmdr@example.com" || len(sv.Regions) != 1 ||
		strings.Join(sv.Subscribers, ",") != "cmdr@example.com,rita@example.com" || strings.Join(sv.NextStates, ",") != "mitigated" {
		t.Fatalf("created %+v", sv)
	}
	path := "/api/v1/sevs/" + strconv.FormatInt(sv.ID, 10)

	t.Run("bad input is refused with clear errors and changes nothing", func(t *testing.T) {
		cases := []struct {
			name, method, path, token, body string
			status                          int
			code, field                     string
		}{
			{"unknown severity", "PATCH", path, rev, `{"severity":9}`, 422, "", "severity"},
			{"unknown kind", "PATCH", path, rev, `{"kind":"drill"}`, 422, "", "kind"},
			{"illegal transition", "PATCH", path, rev, `{"state":"closed"}`, 409, "illegal_transition", ""},
			{"a date in the future", "PATCH", path, rev, `{"detected_at":"` + time.Now().UTC().Add(48*time.Hour).Format(time.RFC3339) + `"}`, 422, "", "detected_at"},
			{"a commander who does not exist", "PATCH", path, rev, `{"commander":"ghost@example.com"}`, 422, "", "commander"},
			{"oversized title", "PATCH", path, rev, `{"title":"` + strings.Repeat("t", 300) + `"}`, 422, "", "title"},
			{"oversized note", "POST", path + "/timeline", eng, `{"text":"` + strings.Repeat("n", 4001) + `"}`, 422, "", "text"},
			{"a note in the future", "POST", path + "/timeline", eng, `{"text":"later","at":"` + time.Now().UTC().Add(time.Hour).Format(time.RFC3339) + `"}`, 422, "", "at"},
			{"severity as text", "PATCH", path, rev, `{"severity":"high"}`, 400, "", ""},
			{"an unknown field", "PATCH", path, rev, `{"sevirity":1}`, 400, "", ""},
			{"an engineer may not edit", "PATCH", path, eng, `{"title":"mine"}`, 403, "forbidden", ""},
			{"a report before closing", "PUT", path + "/report", rev, `{"summary":"early"}`, 409, "sev_not_closed", ""},
			{"a review before closing", "POST", path + "/review", rev, `{"sign_off":false}`, 409, "sev_not_closed", ""},
			{"malformed JSON", "PATCH", path, rev, `{"title":`, 400, "malformed_json", ""},
			{"a malformed note", "POST", path + "/timeline", eng, `{"text":`, 400, "malformed_json", ""},
			{"an unknown SEV", "PATCH", "/api/v1/sevs/999999", rev, `{"title":"elsewhere"}`, 404, "not_found", ""},
			{"a note on an unknown SEV", "POST", "/api/v1/sevs/999999/timeline", eng, `{"text":"elsewhere"}`, 404, "not_found", ""},
			{"a SEV number that is not one", "PATCH", "/api/v1/sevs/abc", rev, `{"title":"elsewhere"}`, 404, "not_found", ""},
			{"a broadcast to an unknown SEV", "POST", "/api/v1/sevs/999999/broadcast", rev, `{"text":"elsewhere","subscribers":true}`, 404, "not_found", ""},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				before := sevState(t, srv, sv.ID)
				resp, body := srv.Do(t, nil, handlertest.Request{Method: c.method, Path: c.path, Token: c.token, Body: c.body})
				if resp.StatusCode != c.status {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, body)
				}
				e := decode[apiErrorJSON](t, body)
				if e.Error.Message == "" || (c.code != "" && e.Error.Code != c.code) || (c.field != "" && e.Error.Fields[c.field] == "") {
					t.Errorf("error %+v", e.Error)
				}
				if after := sevState(t, srv, sv.ID); after != before {
					t.Errorf("changed:\n%s\n%s", before, after)
				}
			})
		}
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "PATCH", Path: path, Token: rev, Body: `{"state":"closed"}`})
		if e := decode[apiErrorJSON](t, body); resp.StatusCode != 409 || !strings.Contains(e.Error.Message, "allowed next states: mitigated") {
			t.Errorf("the conflict does not name the next state: %s", body)
		}
	})

	t.Run("an engineer reads and adds a note with its own time", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: path + "/timeline", Token: eng,
			Body: `{"text":"saw errors on the dashboard","at":"` + past(2*time.Hour) + `"}`})
		if resp.StatusCode != http.StatusCreated || !strings.Contains(body, "saw errors on the dashboard") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "GET", Path: "/api/v1/sevs?state=open&severity=1&kind=incident", Token: eng})
		if resp.StatusCode != 200 || !strings.Contains(body, `"prn is down"`) {
			t.Errorf("list: %d %s", resp.StatusCode, body)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "GET", Path: "/api/v1/sevs?state=solved", Token: eng})
		if resp.StatusCode != 400 {
			t.Errorf("bad filter: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("mitigate, close, report, review and sign off", func(t *testing.T) {
		for _, b := range []string{`{"state":"mitigated","severity":2}`, `{"detected_at":"` + past(2*time.Hour) + `"}`, `{"state":"closed"}`} {
			if resp, body := srv.Do(t, nil, handlertest.Request{Method: "PATCH", Path: path, Token: rev, Body: b}); resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", b, resp.StatusCode, body)
			}
		}
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "GET", Path: path + "/timeline", Token: eng})
		for _, want := range []string{"Severity changed from SEV1 to SEV2", "State changed from open to mitigated", "State changed from mitigated to closed"} {
			if !strings.Contains(body, want) {
				t.Errorf("timeline lacks %q: %s", want, body)
			}
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "GET", Path: path + "/report", Token: eng})
		if resp.StatusCode != 200 || !strings.Contains(body, "Users affected") {
			t.Fatalf("report: %d %s", resp.StatusCode, body)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: path + "/report", Token: rev,
			Body: `{"summary":"prn lost power <script>alert(1)</script>","root_cause":"[x](javascript:alert(2))"}`})
		if resp.StatusCode != 200 {
			t.Fatalf("put report: %d %s", resp.StatusCode, body)
		}
		if resp, _ := srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: path + "/report", Token: eng, Body: `{"summary":"x"}`}); resp.StatusCode != 403 {
			t.Errorf("an engineer wrote the report: %d", resp.StatusCode)
		}
		browser := srv.SignIn(t, "ed@example.com")
		resp, page := srv.Do(t, browser, handlertest.Request{Method: "GET", Path: "/sevs/" + strconv.FormatInt(sv.ID, 10)})
		if resp.StatusCode != 200 {
			t.Fatalf("page: %d", resp.StatusCode)
		}
		doc := handlertest.Doc(t, page)
		summary, _ := doc.Find("#report-summary").Html()
		rootCause, _ := doc.Find("#report-root_cause").Html()
		if !strings.Contains(summary, "prn lost power") || strings.Contains(summary, "<script") || strings.Contains(rootCause, "javascript:") {
			t.Errorf("report not sanitized:\n%s\n%s", summary, rootCause)
		}
		if doc.Find("#sev-followups").Length() != 1 {
			t.Error("no follow-ups section")
		}
		if doc.Find("#sev-edit-link, a[href$='/edit']").Length() != 0 {
			t.Error("an engineer is offered the edit form")
		}

		resp, body = srv.Do(t, nil, handlertest.Request{Method: "GET", Path: "/api/v1/reviews", Token: eng})
		if resp.StatusCode != 200 || !strings.Contains(body, `"prn is down"`) || !strings.Contains(body, `"due_at"`) {
			t.Errorf("queue: %d %s", resp.StatusCode, body)
		}
		if resp, _ := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: path + "/review", Token: eng, Body: `{}`}); resp.StatusCode != 403 {
			t.Errorf("an engineer reviewed: %d", resp.StatusCode)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: path + "/review", Token: rev,
			Body: `{"attendees":["ed@example.com"],"notes":"good"}`})
		if resp.StatusCode != 200 || !strings.Contains(body, `"state": "in_review"`) {
			t.Fatalf("start review: %d %s", resp.StatusCode, body)
		}
		checklist, _ := json.Marshal(func() map[string]bool {
			m := map[string]bool{}
			for _, c := range store.ReviewCriteria {
				m[c] = true
			}
			return m
		}())
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: path + "/review", Token: rev,
			Body: `{"attendees":["ed@example.com"],"notes":"good","checklist":` + string(checklist) + `,"sign_off":true}`})
		if resp.StatusCode != 200 || !strings.Contains(body, `"state": "reviewed"`) || !strings.Contains(body, `"signed_off_by": "rita@example.com"`) {
			t.Fatalf("sign off: %d %s", resp.StatusCode, body)
		}
	})
}

func TestSevPages(t *testing.T) {
	srv := handlertest.New(t)
	admin := srv.SignIn(t, "ada@example.com", store.RoleAdmin)
	eng := srv.SignIn(t, "ed@example.com")
	resp, body := srv.Do(t, admin, handlertest.Request{Method: "GET", Path: "/sevs/new"})
	if resp.StatusCode != 200 || !strings.Contains(body, "SEV0") || !strings.Contains(body, store.SeverityDefinitions[0]) {
		t.Fatalf("new form: %d", resp.StatusCode)
	}
	t.Run("a bad form shows what is wrong and opens nothing", func(t *testing.T) {
		resp, body := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: "/sevs", Form: url.Values{"title": {"x"}, "severity": {"2"}, "kind": {"drill"}, "commander": {"ghost@example.com"}}})
		doc := handlertest.Doc(t, body)
		if resp.StatusCode != 422 || doc.Find("[data-error-for=kind]").Length() != 1 || doc.Find("[data-error-for=commander]").Length() != 1 {
			t.Errorf("%d: %s", resp.StatusCode, doc.Find(".field-error").Text())
		}
		if ss, _ := srv.Store.Sevs(context.Background(), store.SevFilter{}); len(ss) != 0 {
			t.Errorf("%d SEVs", len(ss))
		}
	})
	resp, _ = srv.Do(t, admin, handlertest.Request{Method: "POST", Path: "/sevs", Form: url.Values{"title": {"lla drill"}, "severity": {"4"}, "kind": {"exercise"}, "regions": {"lla"}}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("open: %d", resp.StatusCode)
	}
	sevPath := resp.Header.Get("Location")
	t.Run("an engineer adds a note and subscribes", func(t *testing.T) {
		if resp, _ := srv.Do(t, eng, handlertest.Request{Method: "POST", Path: sevPath + "/timeline", Form: url.Values{"text": {"pagers acknowledged"}}}); resp.StatusCode != 303 {
			t.Fatalf("note: %d", resp.StatusCode)
		}
		if resp, _ := srv.Do(t, eng, handlertest.Request{Method: "POST", Path: sevPath + "/subscription", Form: url.Values{"subscribe": {"1"}}}); resp.StatusCode != 303 {
			t.Fatalf("subscribe: %d", resp.StatusCode)
		}
		_, body := srv.Do(t, eng, handlertest.Request{Method: "GET", Path: sevPath})
		doc := handlertest.Doc(t, body)
		if !strings.Contains(doc.Find("#sev-timeline").Text(), "pagers acknowledged") || doc.Find("#sev-unsubscribe").Length() != 1 {
			t.Error("the note or the subscription is not shown")
		}
		if doc.Find("#sev-broadcast-form").Length() != 0 || doc.Find("#sev-to-mitigated").Length() != 0 {
			t.Error("an engineer is offered writers' actions")
		}
	})
	t.Run("closing without times is refused on the page", func(t *testing.T) {
		srv.Do(t, admin, handlertest.Request{Method: "POST", Path: sevPath + "/state", Form: url.Values{"state": {"mitigated"}}})
		resp, body := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: sevPath + "/state", Form: url.Values{"state": {"closed"}}})
		doc := handlertest.Doc(t, body)
		if resp.StatusCode != 422 || !strings.Contains(doc.Find("#sev-problem").Text(), "impact") {
			t.Errorf("%d %q", resp.StatusCode, doc.Find("#sev-problem").Text())
		}
		if doc.Find("#sev-state").AttrOr("data-state", "") != "mitigated" {
			t.Error("the state changed")
		}
	})
	t.Run("a broadcast reaches subscribers and shows a banner", func(t *testing.T) {
		resp, _ := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: sevPath + "/broadcast", Form: url.Values{"text": {"drill over"}, "subscribers": {"1"}, "banner": {"1"}}})
		if resp.StatusCode != 303 {
			t.Fatalf("broadcast: %d", resp.StatusCode)
		}
		_, body := srv.Do(t, eng, handlertest.Request{Method: "GET", Path: "/inbox"})
		if !strings.Contains(body, "drill over") {
			t.Error("the subscriber was not notified")
		}
		_, body = srv.Do(t, eng, handlertest.Request{Method: "GET", Path: sevPath})
		if !strings.Contains(handlertest.Doc(t, body).Find("#sev-timeline tr[data-kind=broadcast]").Text(), "drill over") {
			t.Error("no broadcast on the timeline")
		}
	})
	t.Run("the report is a form with one textarea per section, rendered sanitized", func(t *testing.T) {
		now := time.Now().UTC()
		resp, body := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: sevPath, Form: url.Values{"title": {"lla drill"}, "severity": {"4"}, "kind": {"exercise"},
			"regions": {"lla"}, "impact_started_at": {now.Add(-time.Hour).Format("2006-01-02T15:04")}, "detected_at": {now.Add(-30 * time.Minute).Format("2006-01-02T15:04")}}})
		if resp.StatusCode != 303 {
			t.Fatalf("edit: %d %s", resp.StatusCode, body)
		}
		if resp, body := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: sevPath + "/state", Form: url.Values{"state": {"closed"}}}); resp.StatusCode != 303 {
			t.Fatalf("close: %d %s", resp.StatusCode, body)
		}
		_, body = srv.Do(t, admin, handlertest.Request{Method: "GET", Path: sevPath + "/report/edit"})
		doc := handlertest.Doc(t, body)
		if n := doc.Find("#sev-report-form textarea").Length(); n != len(store.ReportSections) {
			t.Errorf("%d textareas", n)
		}
		if !strings.Contains(doc.Find("#report-field-impact").Text(), "Users affected") {
			t.Error("the impact is not pre-filled")
		}
		resp, _ = srv.Do(t, admin, handlertest.Request{Method: "POST", Path: sevPath + "/report", Form: url.Values{"summary": {"**Drill** went fine <img src=x onerror=alert(1)>"}, "lessons": {"[a](javascript:alert(1))"}}})
		if resp.StatusCode != 303 {
			t.Fatalf("save report: %d", resp.StatusCode)
		}
		_, body = srv.Do(t, eng, handlertest.Request{Method: "GET", Path: sevPath})
		html, _ := handlertest.Doc(t, body).Find("#" + "sev-report").Html()
		if !strings.Contains(html, "<strong>Drill</strong>") || strings.Contains(html, "onerror") || strings.Contains(html, "javascript:") {
			t.Errorf("report HTML:\n%s", html)
		}
		resp, body = srv.Do(t, admin, handlertest.Request{Method: "POST", Path: sevPath + "/review", Form: url.Values{"facilitator": {"ghost@example.com"}, "sign_off": {"1"}}})
		if resp.StatusCode != 422 || !strings.Contains(body, "ghost@example.com") {
			t.Errorf("review with a ghost facilitator: %d", resp.StatusCode)
		}
		if sv, _ := srv.Store.Sev(context.Background(), 1); sv.State != store.SevClosed {
			t.Errorf("a refused review moved the SEV to %s", sv.State)
		}
	})
	t.Run("the list filters", func(t *testing.T) {
		_, body := srv.Do(t, eng, handlertest.Request{Method: "GET", Path: "/sevs?kind=exercise"})
		if handlertest.Doc(t, body).Find("#sev-list tbody tr[data-state]").Length() != 1 {
			t.Error("the exercise is not listed")
		}
		_, body = srv.Do(t, eng, handlertest.Request{Method: "GET", Path: "/sevs?kind=incident"})
		if handlertest.Doc(t, body).Find("#sev-list tbody tr[data-state]").Length() != 0 {
			t.Error("the exercise is listed as an incident")
		}
	})
}
