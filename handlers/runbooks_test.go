package handlers_test

import (
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

func countRunbookRows(t *testing.T, srv *handlertest.Server, table string) int {
	t.Helper()
	var n int
	if err := srv.Store.WriteDB().QueryRow(`SELECT COUNT(*) FROM ` + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

type runJSONBody struct {
	ID       int64          `json:"id"`
	State    string         `json:"state"`
	Progress int            `json:"progress"`
	Params   map[string]any `json:"params"`
	Steps    []struct {
		Name, State, Kind string
		DoneBy            string `json:"done_by"`
	} `json:"steps"`
	Timeline []struct{ Kind, Step, Message, Actor string } `json:"timeline"`
	Logs     []struct{ Step, Message string }              `json:"logs"`
}

func waitRunState(t *testing.T, srv *handlertest.Server, token string, id int64, state string) runJSONBody {
	t.Helper()
	var run runJSONBody
	handlertest.Eventually(t, 20*time.Second, "run "+state, func() bool {
		resp, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/runs/" + runIDText(id), Token: token})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("run: %d %s", resp.StatusCode, body)
		}
		run = decode[runJSONBody](t, body)
		return run.State == state
	})
	return run
}

func runIDText(n int64) string { return strconv.FormatInt(n, 10) }

func TestRunbooksAPI(t *testing.T) {
	srv := handlertest.New(t)
	admin := srv.Token(t, "admin@example.com", store.RoleAdmin)

	t.Run("lists the built-in runbooks", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/runbooks", Token: admin})
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"name": "backup-region"`) || !strings.Contains(body, `"name": "exercise-checklist"`) {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})

	t.Run("refuses an invalid definition with its lines, saving nothing", func(t *testing.T) {
		before := countRunbookRows(t, srv, "runbook_versions")
		src := "name: backup-region\nversion: 2\nsteps:\n  - name: a\n    op: nope\n  - name: b\n    wait_for: [ghost]\n"
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/runbooks/backup-region/versions", Token: admin, Body: src,
			Headers: map[string]string{"Content-Type": "text/yaml"}})
		if resp.StatusCode != http.StatusUnprocessableEntity {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		var e struct {
			Error struct {
				Code   string
				Fields map[string]string
			}
		}
		_ = json.Unmarshal([]byte(body), &e)
		if e.Error.Code != "invalid" || !strings.Contains(e.Error.Fields["line 5, column 9"], `unknown operation "nope"`) ||
			!strings.Contains(e.Error.Fields["line 7, column 15"], "can never be satisfied") {
			t.Errorf("fields %v", e.Error.Fields)
		}
		if after := countRunbookRows(t, srv, "runbook_versions"); after != before {
			t.Errorf("versions went from %d to %d", before, after)
		}
	})
	t.Run("refuses invalid YAML with the parser's line", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/runbooks/backup-region/versions", Token: admin, Body: `{"yaml":"name: x\nsteps: a: b\n"}`})
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `"line 2": "invalid YAML: mapping values are not allowed`) {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("refuses a definition of another runbook", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/runbooks/backup-region/versions", Token: admin,
			Body: `{"yaml":"name: other\nversion: 1\nsteps:\n  - {name: a, op: log, params: {message: hi}}\n"}`})
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "being added to") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("adds a version; the old one stays listed", func(t *testing.T) {
		src := "name: backup-region\nversion: 2\ndescription: Says hello.\nparams:\n  region: region\nsteps:\n  - {name: hello, op: log, params: {message: \"hello ${region}\"}}\n"
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/runbooks/backup-region/versions", Token: admin, Body: src,
			Headers: map[string]string{"Content-Type": "application/yaml"}})
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/runbooks/backup-region", Token: admin})
		var rb struct {
			Latest   int `json:"latest_version"`
			Versions []struct {
				Version   int
				CreatedBy string `json:"created_by"`
			}
		}
		_ = json.Unmarshal([]byte(body), &rb)
		if resp.StatusCode != http.StatusOK || rb.Latest != 2 || len(rb.Versions) != 2 || rb.Versions[0].CreatedBy != "admin@example.com" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/runbooks/backup-region/versions", Token: admin, Body: src,
			Headers: map[string]string{"Content-Type": "text/yaml"}})
		if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "version_not_newer") {
			t.Errorf("the same version again: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("a dry run answers the plan and changes nothing", func(t *testing.T) {
		runs := countRunbookRows(t, srv, "runbook_runs")
		audits := countRunbookRows(t, srv, "audit_events")
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/runbooks/exercise-checklist/runs", Token: admin,
			Body: `{"params":{"region":"prn"},"dry_run":true}`})
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"dry_run": true`) || !strings.Contains(body, `"step": "both checks done"`) || !strings.Contains(body, "Run backup-region version 2") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if countRunbookRows(t, srv, "runbook_runs") != runs || countRunbookRows(t, srv, "audit_events") != audits {
			t.Error("the dry run changed the database")
		}
	})
	t.Run("parameters of the wrong type are refused, nothing started", func(t *testing.T) {
		runs := countRunbookRows(t, srv, "runbook_runs")
		for _, body := range []string{`{"params":{"region":5}}`, `{"params":{"region":"nowhere"}}`, `{"params":{}}`, `{"params":{"region":"prn","extra":1}}`} {
			resp, out := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/runbooks/exercise-checklist/runs", Token: admin, Body: body})
			if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(out, `"params.`) {
				t.Errorf("%s: %d %s", body, resp.StatusCode, out)
			}
		}
		resp, out := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/runbooks/exercise-checklist/runs", Token: admin, Body: `{"params":[1]}`})
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("params as a list: %d %s", resp.StatusCode, out)
		}
		resp, out = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/runbooks/nowhere/runs", Token: admin, Body: `{}`})
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("unknown runbook: %d %s", resp.StatusCode, out)
		}
		resp, out = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/runbooks/exercise-checklist/runs", Token: admin, Body: `{"params":`})
		if resp.StatusCode != http.StatusBadRequest || errorCode(out) != "malformed_json" {
			t.Errorf("malformed JSON: %d %s", resp.StatusCode, out)
		}
		for _, path := range []string{"/api/v1/runs/999999/cancel", "/api/v1/runs/abc/cancel", "/api/v1/runs/999999/steps/hello/retry"} {
			resp, out = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: path, Token: admin})
			if resp.StatusCode != http.StatusNotFound || errorCode(out) != "not_found" {
				t.Errorf("%s: %d %s", path, resp.StatusCode, out)
			}
		}
		if n := countRunbookRows(t, srv, "runbook_runs"); n != runs {
			t.Errorf("runs went from %d to %d", runs, n)
		}
	})

	t.Run("runs, completes manual steps and records who did", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/runbooks/exercise-checklist/runs", Token: admin, Body: `{"params":{"region":"prn"}}`})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		run := decode[runJSONBody](t, body)
		if run.State != store.RunRunning || run.Params["region"] != "prn" {
			t.Fatalf("run %+v", run)
		}
		path := "/api/v1/runs/" + runIDText(run.ID)
		handlertest.Eventually(t, 10*time.Second, "manual steps to wait", func() bool {
			r := waitRunState(t, srv, admin, run.ID, store.RunRunning)
			waiting := 0
			for _, s := range r.Steps {
				if s.State == store.StepWaiting {
					waiting++
				}
			}
			return waiting == 2
		})
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: path + "/steps/both%20checks%20done/complete", Token: admin})
		if resp.StatusCode != http.StatusConflict {
			t.Errorf("completing a barrier: %d %s", resp.StatusCode, body)
		}
		for _, step := range []string{"check%20dashboards", "check%20pagers"} {
			resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: path + "/steps/" + step + "/complete", Token: admin})
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("complete %s: %d %s", step, resp.StatusCode, body)
			}
		}
		handlertest.Eventually(t, 10*time.Second, "sign off to wait", func() bool {
			r := waitRunState(t, srv, admin, run.ID, store.RunRunning)
			return r.Steps[len(r.Steps)-1].State == store.StepWaiting
		})
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: path + "/steps/sign%20off/complete", Token: admin})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("sign off: %d %s", resp.StatusCode, body)
		}
		done := waitRunState(t, srv, admin, run.ID, store.RunSucceeded)
		if done.Progress != 100 || done.Steps[1].DoneBy != "admin@example.com" {
			t.Errorf("run %+v", done)
		}
		found := false
		for _, e := range done.Timeline {
			found = found || e.Kind == "manual_done" && e.Step == "sign off" && e.Actor == "admin@example.com"
		}
		if !found {
			t.Errorf("timeline %+v", done.Timeline)
		}
	})
	t.Run("a failed step is retried by a person", func(t *testing.T) {
		src := `{"yaml":"name: flaky\nversion: 1\nsteps:\n  - {name: tell, op: notify, params: {audience: host_devservers, host: ghost-hv, title: Hi}}\n"}`
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/runbooks/flaky/versions", Token: admin, Body: src})
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/runbooks/flaky/runs", Token: admin, Body: `{}`})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		run := decode[runJSONBody](t, body)
		failed := waitRunState(t, srv, admin, run.ID, store.RunFailed)
		if failed.Steps[0].State != store.StepFailed {
			t.Fatalf("steps %+v", failed.Steps)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/runs/" + runIDText(run.ID) + "/steps/tell/retry", Token: admin})
		if resp.StatusCode != http.StatusAccepted || decode[runJSONBody](t, body).State != store.RunRunning {
			t.Fatalf("retry: %d %s", resp.StatusCode, body)
		}
		again := waitRunState(t, srv, admin, run.ID, store.RunFailed)
		retried := false
		for _, e := range again.Timeline {
			retried = retried || e.Kind == "retried" && e.Actor == "admin@example.com"
		}
		if !retried {
			t.Errorf("timeline %+v", again.Timeline)
		}
	})
	t.Run("cancel and retry answer conflicts on an ended run", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/runbooks/backup-region/runs", Token: admin, Body: `{"params":{"region":"prn"}}`})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		run := decode[runJSONBody](t, body)
		waitRunState(t, srv, admin, run.ID, store.RunSucceeded)
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/runs/" + runIDText(run.ID) + "/cancel", Token: admin})
		if resp.StatusCode != http.StatusConflict {
			t.Errorf("cancel: %d %s", resp.StatusCode, body)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/runs/" + runIDText(run.ID) + "/steps/hello/retry", Token: admin})
		if resp.StatusCode != http.StatusConflict {
			t.Errorf("retry: %d %s", resp.StatusCode, body)
		}
	})
}

func TestRunbookPages(t *testing.T) {
	srv := handlertest.New(t)
	admin := srv.SignIn(t, "admin@example.com", store.RoleAdmin)

	t.Run("the admin page links to runbooks", func(t *testing.T) {
		_, body := srv.Do(t, admin, handlertest.Request{Path: "/admin"})
		if handlertest.Doc(t, body).Find(`a[href="/admin/runbooks"]`).Length() != 1 {
			t.Error("no link")
		}
	})
	t.Run("an invalid definition is shown again with its problems by line", func(t *testing.T) {
		before := countRunbookRows(t, srv, "runbook_versions")
		src := "name: drill\nversion: 1\nsteps:\n  - {name: a, needs: [b], instructions: x}\n  - {name: b, instructions: y}\n"
		resp, body := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: "/admin/runbooks", Form: url.Values{"yaml": {src}}})
		if resp.StatusCode != http.StatusUnprocessableEntity {
			t.Fatalf("%d", resp.StatusCode)
		}
		doc := handlertest.Doc(t, body)
		li := doc.Find("#runbook-problems li")
		if li.Length() != 1 || li.AttrOr("data-line", "") != "4" || !strings.Contains(li.Text(), "cycle (each needs the next): a → b → a") {
			t.Errorf("problems %q", li.Text())
		}
		if doc.Find("textarea#runbook-yaml").Text() != src {
			t.Error("the text entered is not kept")
		}
		if countRunbookRows(t, srv, "runbook_versions") != before {
			t.Error("saved")
		}
	})
	src := "name: drill\nversion: 1\ndescription: A drill.\nparams:\n  region: {type: region, required: true}\n  count: {type: int, default: 1}\nsteps:\n  - {name: say, op: log, params: {message: \"drill in ${region}\"}}\n  - {name: confirm, instructions: Confirm it.}\n"
	t.Run("a valid definition is saved and shown", func(t *testing.T) {
		resp, _ := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: "/admin/runbooks", Form: url.Values{"yaml": {src}}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/runbooks/drill" {
			t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		_, body := srv.Do(t, admin, handlertest.Request{Path: "/admin/runbooks/drill"})
		doc := handlertest.Doc(t, body)
		if doc.Find(`tr[data-version="1"]`).Length() != 1 || !strings.Contains(doc.Find("#runbook-definition pre").Text(), "Confirm it.") {
			t.Error("version or YAML not shown")
		}
		if doc.Find(`label[for="param-region"]`).Length() != 1 || doc.Find(`input#param-count`).AttrOr("value", "") != "1" {
			t.Error("the run form lacks its parameters")
		}
	})
	t.Run("the dry run shows the plan as an ordered list", func(t *testing.T) {
		resp, body := srv.Do(t, admin, handlertest.Request{Path: "/admin/runbooks/drill/plan?version=1&param.region=prn"})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%d", resp.StatusCode)
		}
		items := handlertest.Doc(t, body).Find("#runbook-plan ol.plan-steps > li")
		if items.Length() != 2 || !strings.Contains(items.Eq(0).Text(), "Log: drill in prn") || !strings.Contains(items.Eq(1).Text(), "Confirm it.") {
			t.Errorf("plan %q", items.Text())
		}
		if countRunbookRows(t, srv, "runbook_runs") != 0 {
			t.Error("the dry run started a run")
		}
		resp, body = srv.Do(t, admin, handlertest.Request{Path: "/admin/runbooks/drill/plan?param.region=nowhere"})
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(handlertest.Doc(t, body).Find(`[data-error-for="region"]`).Text(), "not a region") {
			t.Errorf("bad region: %d", resp.StatusCode)
		}
	})
	t.Run("a run form with a wrong parameter is refused", func(t *testing.T) {
		resp, body := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: "/admin/runbooks/drill/runs", Form: url.Values{"param.region": {"prn"}, "param.count": {"many"}}})
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(handlertest.Doc(t, body).Find(`[data-error-for="count"]`).Text(), "whole number") {
			t.Fatalf("%d", resp.StatusCode)
		}
		if countRunbookRows(t, srv, "runbook_runs") != 0 {
			t.Error("a run was started")
		}
	})
	t.Run("a run shows its steps, chart, timeline and log, and a person completes a step", func(t *testing.T) {
		resp, _ := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: "/admin/runbooks/drill/runs", Form: url.Values{"param.region": {"prn"}}})
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/admin/runs/") {
			t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		page := resp.Header.Get("Location")
		var body string
		handlertest.Eventually(t, 10*time.Second, "the manual step to wait", func() bool {
			_, body = srv.Do(t, admin, handlertest.Request{Path: page})
			return handlertest.Doc(t, body).Find(`tr[data-step="confirm"][data-state="waiting"]`).Length() == 1
		})
		doc := handlertest.Doc(t, body)
		if doc.Find(`#run-live[hx-get][hx-trigger="every 1s"]`).Length() != 1 {
			t.Error("the live section does not refresh while the run runs")
		}
		if doc.Find(`svg rect`).Length() < 1 || doc.Find(`.gantt-row[data-step="say"] rect`).Length() != 1 {
			t.Error("no bar for the finished step")
		}
		if !strings.Contains(doc.Find(`ol.run-log li[data-step="say"]`).Text(), "drill in prn") {
			t.Error("the log line is not tagged with its step")
		}
		if doc.Find(`ol.run-timeline li[data-kind="waiting"]`).Length() != 1 {
			t.Error("no waiting event in the timeline")
		}
		_, partial := srv.Do(t, admin, handlertest.Request{Path: page, Headers: map[string]string{"HX-Request": "true"}})
		if !strings.HasPrefix(strings.TrimSpace(partial), `<section id="run-live"`) {
			t.Errorf("HTMX answer is not the live section alone: %.80s", partial)
		}
		form := doc.Find(`form[action="` + page + `/steps/confirm/complete"] button`)
		if !strings.Contains(form.Text(), "Mark confirm done") {
			t.Fatalf("no complete button")
		}
		resp, _ = srv.Do(t, admin, handlertest.Request{Method: "POST", Path: page + "/steps/confirm/complete", Form: url.Values{}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("complete: %d", resp.StatusCode)
		}
		handlertest.Eventually(t, 10*time.Second, "the run to succeed", func() bool {
			_, body = srv.Do(t, admin, handlertest.Request{Path: page})
			return handlertest.Doc(t, body).Find(`#run-live[data-state="succeeded"]`).Length() == 1
		})
		doc = handlertest.Doc(t, body)
		if doc.Find(`#run-live[hx-get]`).Length() != 0 {
			t.Error("a finished run still polls")
		}
		if !strings.Contains(doc.Find(`tr[data-step="confirm"]`).Text(), "done by admin@example.com") {
			t.Error("who completed the step is not shown")
		}
		resp, _ = srv.Do(t, admin, handlertest.Request{Method: "POST", Path: page + "/cancel", Form: url.Values{}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Errorf("cancel of a finished run: %d (want a flash and a redirect)", resp.StatusCode)
		}
	})
}
