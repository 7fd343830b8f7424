package handlers_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
)

type followupJSON struct {
	ID      int64  `json:"id"`
	SevID   int64  `json:"sev_id"`
	Kind    string `json:"kind"`
	Title   string `json:"title"`
	Owner   string `json:"owner"`
	Due     string `json:"due"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Overdue bool   `json:"overdue"`
	RunStep string `json:"run_step"`
}

type fuErrorJSON struct {
	Error struct {
		Code    string            `json:"code"`
		Message string            `json:"message"`
		Fields  map[string]string `json:"fields"`
	} `json:"error"`
}

// matrixFollowup files a medium follow-up of sev owned by owner@example.com
// for the authorization matrix and returns its ID.
func matrixFollowup(t *testing.T, srv *handlertest.Server, adminToken, sev string) string {
	t.Helper()
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/sevs/" + sev + "/followups", Token: adminToken,
		Body: `{"kind":"medium","title":"matrix follow-up","owner":"owner@example.com"}`})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("file a follow-up: %d %s", resp.StatusCode, body)
	}
	return strconv.FormatInt(decode[followupJSON](t, body).ID, 10)
}

// openSev opens an incident through the API and returns its number.
func openSev(t *testing.T, srv *handlertest.Server, token, body string) int64 {
	t.Helper()
	resp, b := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/sevs", Token: token, Body: body})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("open a SEV: %d %s", resp.StatusCode, b)
	}
	return decode[sevJSON](t, b).ID
}

// followupState is what a refused request must leave alone: the follow-ups and the audit log.
func followupState(t *testing.T, srv *handlertest.Server) string {
	t.Helper()
	var rows, audits int
	var last string
	db := srv.Store.WriteDB()
	if err := db.QueryRow(`SELECT COUNT(*), COALESCE(MAX(updated_at), '') || COALESCE(GROUP_CONCAT(status || kind || title || owner_id || due_at || reason), '') FROM followups`).Scan(&rows, &last); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT COUNT(*) FROM audit_events WHERE object_type = 'followup'`).Scan(&audits); err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(rows) + "|" + last + "|" + strconv.Itoa(audits)
}

func TestFollowupAPI(t *testing.T) {
	srv := handlertest.New(t)
	rev := srv.Token(t, "rita@example.com", store.RoleReviewer)
	admin := srv.Token(t, "root@example.com", store.RoleAdmin)
	ann := srv.Token(t, "ann@example.com")
	bob := srv.Token(t, "bob@example.com")
	sev := openSev(t, srv, rev, `{"title":"prn is down","severity":1,"regions":["prn"]}`)
	base := "/api/v1/sevs/" + strconv.FormatInt(sev, 10) + "/followups"

	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: base, Token: rev, Body: `{"kind":"critical","title":"Fix the breaker","owner":"ann@example.com"}`})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("file: %d %s", resp.StatusCode, body)
	}
	crit := decode[followupJSON](t, body)
	if crit.Status != "open" || crit.Owner != "ann@example.com" || crit.SevID != sev || crit.Due != time.Now().UTC().AddDate(0, 0, 7).Format("2006-01-02") {
		t.Fatalf("filed %+v", crit)
	}
	fuPath := "/api/v1/followups/" + strconv.FormatInt(crit.ID, 10)

	t.Run("the due date defaults by kind and takes a day", func(t *testing.T) {
		day := time.Now().UTC().AddDate(0, 0, 3).Format("2006-01-02")
		for _, c := range []struct{ body, due string }{
			{`{"kind":"medium","title":"Alert sooner","owner":"bob@example.com"}`, time.Now().UTC().AddDate(0, 0, 30).Format("2006-01-02")},
			{`{"kind":"exploratory","title":"Rethink power","owner":"bob@example.com"}`, time.Now().UTC().AddDate(0, 0, 90).Format("2006-01-02")},
			{`{"kind":"exploratory","title":"Sooner","owner":"bob@example.com","due":"` + day + `"}`, day},
			{`{"kind":"medium","title":"Today","owner":"bob@example.com","due":"` + time.Now().UTC().Format("2006-01-02") + `"}`, time.Now().UTC().Format("2006-01-02")},
		} {
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: base, Token: admin, Body: c.body})
			if resp.StatusCode != http.StatusCreated || decode[followupJSON](t, body).Due != c.due {
				t.Errorf("%s: %d %s, want due %s", c.body, resp.StatusCode, body, c.due)
			}
		}
	})

	t.Run("bad input is refused with clear errors and changes nothing", func(t *testing.T) {
		yesterday := time.Now().UTC().AddDate(0, 0, -1).Format("2006-01-02")
		for _, c := range []struct {
			name, method, path, token, body string
			status                          int
			field                           string
		}{
			{"unknown kind", "POST", base, rev, `{"kind":"urgent","title":"x","owner":"ann@example.com"}`, 422, "kind"},
			{"a due date in the past", "POST", base, rev, `{"kind":"critical","title":"x","owner":"ann@example.com","due":"` + yesterday + `"}`, 422, "due"},
			{"a due date that is not a date", "POST", base, rev, `{"kind":"critical","title":"x","owner":"ann@example.com","due":"soon"}`, 422, "due"},
			{"an owner who does not exist", "POST", base, rev, `{"kind":"critical","title":"x","owner":"ghost@example.com"}`, 422, "owner"},
			{"an oversized title", "POST", base, rev, `{"kind":"critical","title":"` + strings.Repeat("t", 201) + `","owner":"ann@example.com"}`, 422, "title"},
			{"a run step of a SEV without a run", "POST", base, rev, `{"kind":"critical","title":"x","owner":"ann@example.com","run_step":"drain"}`, 422, "run_id"},
			{"an unknown SEV", "POST", "/api/v1/sevs/999999/followups", rev, `{"kind":"critical","title":"x","owner":"ann@example.com"}`, 404, ""},
			{"the follow-ups of an unknown SEV", "GET", "/api/v1/sevs/999999/followups", ann, "", 404, ""},
			{"an unknown field", "POST", base, rev, `{"kind":"critical","title":"x","owner":"ann@example.com","priority":1}`, 400, ""},
			{"malformed JSON", "POST", base, rev, `{"kind":`, 400, ""},
			{"a malformed change", "PATCH", fuPath, ann, `{"status":`, 400, ""},
			{"an engineer may not file", "POST", base, ann, `{"kind":"critical","title":"x","owner":"ann@example.com"}`, 403, ""},
			{"won't do without a reason", "PATCH", fuPath, rev, `{"status":"wont_do"}`, 422, "reason"},
			{"an unknown status", "PATCH", fuPath, ann, `{"status":"closed"}`, 422, "status"},
			{"a due date moved into the past", "PATCH", fuPath, rev, `{"due":"` + yesterday + `"}`, 422, "due"},
			{"a due date that is not a date", "PATCH", fuPath, rev, `{"due":"tomorrow","status":"done"}`, 422, "due"},
			{"the owner changes the title", "PATCH", fuPath, ann, `{"title":"mine now"}`, 403, ""},
			{"the owner changes the due date", "PATCH", fuPath, ann, `{"due":"` + time.Now().UTC().AddDate(1, 0, 0).Format("2006-01-02") + `"}`, 403, ""},
			{"someone else changes the status", "PATCH", fuPath, bob, `{"status":"done"}`, 403, ""},
			{"an unknown follow-up", "PATCH", "/api/v1/followups/999999", rev, `{"status":"done"}`, 404, ""},
			{"an unknown kind on the board", "GET", "/api/v1/followups?kind=urgent", ann, "", 422, "kind"},
			{"a bad overdue flag on the board", "GET", "/api/v1/followups?overdue=maybe", ann, "", 400, ""},
		} {
			t.Run(c.name, func(t *testing.T) {
				before := followupState(t, srv)
				resp, body := srv.Do(t, nil, handlertest.Request{Method: c.method, Path: c.path, Token: c.token, Body: c.body})
				if resp.StatusCode != c.status {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, body)
				}
				e := decode[fuErrorJSON](t, body)
				if e.Error.Message == "" || (c.field != "" && e.Error.Fields[c.field] == "") {
					t.Errorf("error %s", body)
				}
				if after := followupState(t, srv); after != before {
					t.Errorf("changed:\n%s\n%s", before, after)
				}
			})
		}
	})

	t.Run("the owner changes the status, with a reason for won't do", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "PATCH", Path: fuPath, Token: ann, Body: `{"status":"in_progress"}`})
		if resp.StatusCode != 200 || decode[followupJSON](t, body).Status != "in_progress" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "PATCH", Path: fuPath, Token: ann, Body: `{"status":"wont_do","reason":"The breaker is being replaced"}`})
		if f := decode[followupJSON](t, body); resp.StatusCode != 200 || f.Status != "wont_do" || f.Reason != "The breaker is being replaced" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "PATCH", Path: fuPath, Token: rev, Body: `{"status":"open","title":"Replace the breaker","owner":"bob@example.com"}`})
		if f := decode[followupJSON](t, body); resp.StatusCode != 200 || f.Status != "open" || f.Reason != "" || f.Owner != "bob@example.com" || f.Title != "Replace the breaker" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		// ann no longer owns it.
		if resp, _ := srv.Do(t, nil, handlertest.Request{Method: "PATCH", Path: fuPath, Token: ann, Body: `{"status":"done"}`}); resp.StatusCode != 403 {
			t.Errorf("the former owner: %d", resp.StatusCode)
		}
	})

	t.Run("the board filters and pages", func(t *testing.T) {
		// Make one overdue: due yesterday.
		if _, err := srv.Store.WriteDB().Exec(`UPDATE followups SET due_at = ? WHERE id = ?`, time.Now().UTC().Add(-24*time.Hour), crit.ID); err != nil {
			t.Fatal(err)
		}
		list := func(q string) page[followupJSON] {
			t.Helper()
			resp, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/followups" + q, Token: ann})
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", q, resp.StatusCode, body)
			}
			return decode[page[followupJSON]](t, body)
		}
		if p := list("?overdue=1"); len(p.Items) != 1 || p.Items[0].ID != crit.ID || !p.Items[0].Overdue {
			t.Errorf("overdue: %+v", p.Items)
		}
		if p := list("?kind=exploratory"); len(p.Items) != 2 {
			t.Errorf("exploratory: %+v", p.Items)
		}
		if p := list("?owner=bob@example.com&kind=critical"); len(p.Items) != 1 || p.Items[0].Title != "Replace the breaker" {
			t.Errorf("bob's critical: %+v", p.Items)
		}
		if p := list("?status=done"); len(p.Items) != 0 {
			t.Errorf("done: %+v", p.Items)
		}
		all := list("")
		seen := map[int64]bool{}
		p := list("?limit=2")
		for pages := 0; ; pages++ {
			for _, f := range p.Items {
				seen[f.ID] = true
			}
			if p.NextCursor == "" || pages > 10 {
				break
			}
			p = list("?limit=2&cursor=" + url.QueryEscape(p.NextCursor))
		}
		if len(seen) != len(all.Items) || len(all.Items) != 5 {
			t.Errorf("paged through %d of %d", len(seen), len(all.Items))
		}
		resp, body := srv.Do(t, nil, handlertest.Request{Path: base, Token: ann})
		if p := decode[page[followupJSON]](t, body); resp.StatusCode != 200 || len(p.Items) != 5 {
			t.Errorf("the SEV's follow-ups: %d %d", resp.StatusCode, len(p.Items))
		}
	})
}

func TestFollowupPages(t *testing.T) {
	srv := handlertest.New(t)
	revToken := srv.Token(t, "rita@example.com", store.RoleReviewer)
	rev := srv.SignIn(t, "rita@example.com", store.RoleReviewer)
	ann := srv.SignIn(t, "ann@example.com")
	bob := srv.SignIn(t, "bob@example.com")
	sev := openSev(t, srv, revToken, `{"title":"ftw flaps","severity":2,"regions":["ftw"]}`)
	sevPath := "/sevs/" + strconv.FormatInt(sev, 10)

	t.Run("a reviewer files a follow-up from a form", func(t *testing.T) {
		resp, body := srv.Do(t, rev, handlertest.Request{Method: "POST", Path: sevPath + "/followups",
			Form: url.Values{"kind": {"critical"}, "title": {"Pin the switch firmware"}, "owner": {"ann@example.com"}, "due": {""}}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != sevPath+"#sev-followups" {
			t.Fatalf("%d %s %s", resp.StatusCode, resp.Header.Get("Location"), body)
		}
		_, body = srv.Do(t, ann, handlertest.Request{Path: "/followups"})
		doc := handlertest.Doc(t, body)
		row := doc.Find("#followup-board tbody tr[data-kind=critical]")
		if row.Length() != 1 || !strings.Contains(row.Text(), "Pin the switch firmware") || !strings.Contains(row.Text(), "SEV-"+strconv.FormatInt(sev, 10)) {
			t.Fatalf("board: %s", doc.Find("#followup-board").Text())
		}
		// ann owns it: she has a status form; bob does not.
		if row.Find("form.followup-status").Length() != 1 {
			t.Error("the owner has no status form")
		}
		_, body = srv.Do(t, bob, handlertest.Request{Path: "/followups"})
		if handlertest.Doc(t, body).Find("#followup-board form.followup-status").Length() != 0 {
			t.Error("a stranger has a status form")
		}
	})

	t.Run("a refused form shows its problems and saves nothing", func(t *testing.T) {
		before := followupState(t, srv)
		resp, body := srv.Do(t, rev, handlertest.Request{Method: "POST", Path: sevPath + "/followups",
			Form: url.Values{"kind": {"urgent"}, "title": {strings.Repeat("x", 201)}, "owner": {"ghost@example.com"}, "due": {"2020-01-01"}}})
		if resp.StatusCode != http.StatusUnprocessableEntity {
			t.Fatalf("%d", resp.StatusCode)
		}
		doc := handlertest.Doc(t, body)
		for _, f := range []string{"kind", "title", "owner", "due"} {
			if doc.Find(`[data-error-for="`+f+`"]`).Length() != 1 {
				t.Errorf("no problem shown for %s", f)
			}
		}
		if got := doc.Find(`input[name=owner]`).AttrOr("value", ""); got != "ghost@example.com" {
			t.Errorf("the form lost what was typed: %q", got)
		}
		if followupState(t, srv) != before {
			t.Error("something was saved")
		}
		resp, _ = srv.Do(t, ann, handlertest.Request{Method: "POST", Path: sevPath + "/followups", Form: url.Values{"kind": {"critical"}, "title": {"x"}, "owner": {"ann@example.com"}}})
		if resp.StatusCode != http.StatusForbidden || followupState(t, srv) != before {
			t.Errorf("an engineer filed: %d", resp.StatusCode)
		}
	})

	fs, err := srv.Store.SevFollowups(context.Background(), sev)
	if err != nil || len(fs) != 1 {
		t.Fatalf("%v %v", fs, err)
	}
	id := strconv.FormatInt(fs[0].ID, 10)

	t.Run("the owner changes the status from the board and back there", func(t *testing.T) {
		resp, _ := srv.Do(t, ann, handlertest.Request{Method: "POST", Path: "/followups/" + id, Form: url.Values{"status": {"wont_do"}, "reason": {""}, "next": {"/followups?kind=critical"}}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/followups?kind=critical" {
			t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		_, body := srv.Do(t, ann, handlertest.Request{Path: "/followups?kind=critical"})
		if !strings.Contains(body, "reason is required for won") {
			t.Errorf("no reason asked for: %s", handlertest.Doc(t, body).Find(".flash").Text())
		}
		if f, _ := srv.Store.Followup(context.Background(), fs[0].ID); f.Status != "open" {
			t.Errorf("status %s", f.Status)
		}
		resp, _ = srv.Do(t, ann, handlertest.Request{Method: "POST", Path: "/followups/" + id, Form: url.Values{"status": {"done"}, "next": {"https://evil.example.com/"}}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/followups" {
			t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		if f, _ := srv.Store.Followup(context.Background(), fs[0].ID); f.Status != "done" || f.DoneAt == nil {
			t.Errorf("status %s", f.Status)
		}
		resp, _ = srv.Do(t, bob, handlertest.Request{Method: "POST", Path: "/followups/" + id, Form: url.Values{"status": {"open"}}})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("a stranger: %d", resp.StatusCode)
		}
	})

	t.Run("the board filters with a GET form and marks overdue ones", func(t *testing.T) {
		resp, body := srv.Do(t, rev, handlertest.Request{Method: "POST", Path: "/api/v1/sevs/" + strconv.FormatInt(sev, 10) + "/followups", Token: revToken,
			Body: `{"kind":"medium","title":"Watch the uplinks","owner":"bob@example.com"}`})
		if resp.StatusCode != 201 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		late := decode[followupJSON](t, body)
		if _, err := srv.Store.WriteDB().Exec(`UPDATE followups SET due_at = ? WHERE id = ?`, time.Now().UTC().Add(-time.Hour), late.ID); err != nil {
			t.Fatal(err)
		}
		_, body = srv.Do(t, bob, handlertest.Request{Path: "/followups?overdue=1&kind=&owner=&status="})
		doc := handlertest.Doc(t, body)
		rows := doc.Find("#followup-board tbody tr[data-overdue=true]")
		if rows.Length() != 1 || rows.Find("[data-overdue]").Length() != 1 || doc.Find("#followup-board tbody tr").Length() != 1 {
			t.Errorf("overdue board: %s", doc.Find("#followup-board").Text())
		}
		if _, ok := doc.Find("#followup-filter-overdue").Attr("checked"); !ok {
			t.Error("the filter forgot overdue")
		}
		_, body = srv.Do(t, bob, handlertest.Request{Path: "/followups?status=done"})
		if n := handlertest.Doc(t, body).Find("#followup-board tbody tr[data-kind]").Length(); n != 1 {
			t.Errorf("%d done", n)
		}
		resp, body = srv.Do(t, bob, handlertest.Request{Path: "/followups?kind=urgent"})
		if resp.StatusCode != 422 || !strings.Contains(body, "not a follow-up kind") {
			t.Errorf("%d", resp.StatusCode)
		}
	})

	t.Run("the form page lists the kinds with their due dates", func(t *testing.T) {
		resp, body := srv.Do(t, rev, handlertest.Request{Path: sevPath + "/followups/new"})
		doc := handlertest.Doc(t, body)
		if resp.StatusCode != 200 || doc.Find(`select[name=kind] option`).Length() != 3 || !strings.Contains(body, "due in 7 days") {
			t.Errorf("%d %s", resp.StatusCode, doc.Find("form").Text())
		}
		doc.Find("form input:not([type=hidden]), form select, form textarea").Each(func(_ int, s *goquery.Selection) {
			if id := s.AttrOr("id", ""); id == "" || doc.Find(`label[for="`+id+`"]`).Length() == 0 {
				t.Errorf("input %s has no label", s.AttrOr("name", "?"))
			}
		})
	})
}
