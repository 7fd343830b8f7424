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
	"github.com/devport/devport/views"
)

type ownerHealthJSON struct {
	Devserver   string                    `json:"devserver"`
	State       string                    `json:"state"`
	Health      string                    `json:"health"`
	CheckedAt   *time.Time                `json:"checked_at"`
	Detail      string                    `json:"detail"`
	Remediation *store.RemediationSummary `json:"remediation"`
}

func TestOwnerHealth(t *testing.T) {
	srv := handlertest.New(t)
	ctx := context.Background()
	owner := srv.Token(t, "owner@example.com")
	sharee := srv.Token(t, "sharee@example.com")
	stranger := srv.Token(t, "stranger@example.com")
	admin := srv.Token(t, "admin@example.com", store.RoleAdmin)
	ds := reserveIn(t, srv, owner, "vm.small", "")
	if resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + ds + "/shares", Token: owner, Body: `{"email":"sharee@example.com"}`}); resp.StatusCode != http.StatusCreated {
		t.Fatalf("share: %d %s", resp.StatusCode, body)
	}
	health := func(t *testing.T, token string) (int, ownerHealthJSON) {
		t.Helper()
		resp, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/devservers/" + ds + "/health", Token: token})
		var h ownerHealthJSON
		_ = json.Unmarshal([]byte(body), &h)
		return resp.StatusCode, h
	}

	t.Run("owner, sharee and admin see the latest check; a stranger gets 404", func(t *testing.T) {
		d := srv.WaitState(t, ds, store.StateReady)
		err := srv.Store.InTx(ctx, func(tx *store.Tx) error {
			return tx.AddHealthCheck(ctx, store.HealthResult{DevserverID: d.ID, OK: false, Cause: store.CauseInstanceStopped, Detail: "instance stopped", At: srv.Store.Now()}, "rage")
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, token := range []string{owner, sharee, admin} {
			status, h := health(t, token)
			if status != http.StatusOK || h.Devserver != ds || h.State != store.StateReady || h.Health != store.HealthUnhealthy || h.Detail != "instance stopped" || h.CheckedAt == nil {
				t.Errorf("%d %+v", status, h)
			}
		}
		if status, _ := health(t, stranger); status != http.StatusNotFound {
			t.Errorf("stranger: %d", status)
		}
	})

	t.Run("a sharee may not restart, a stranger does not see the devserver; nothing opens", func(t *testing.T) {
		for token, want := range map[string]int{sharee: http.StatusForbidden, stranger: http.StatusNotFound} {
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + ds + "/restart", Token: token})
			if resp.StatusCode != want {
				t.Errorf("%d %s, want %d", resp.StatusCode, body, want)
			}
		}
		if n := countRows(t, srv, "remediations"); n != 0 {
			t.Errorf("%d remediations", n)
		}
	})

	t.Run("the owner's restart goes through the remediation steps and mends the devserver", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + ds + "/restart", Token: owner})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		out := decode[struct {
			Devserver   string                   `json:"devserver"`
			Remediation store.RemediationSummary `json:"remediation"`
		}](t, body)
		if out.Devserver != ds || out.Remediation.ID == 0 || out.Remediation.Step != store.RemediateRestart || out.Remediation.Reason != "restart requested by owner@example.com" {
			t.Errorf("%s", body)
		}
		if n := countIn(t, srv, `SELECT COUNT(*) FROM audit_events WHERE action = 'devserver.restart' AND actor = 'owner@example.com' AND object_id = ?`, ds); n != 1 {
			t.Errorf("%d audit events", n)
		}
		handlertest.Eventually(t, 20*time.Second, "the restart", func() bool {
			r, err := srv.Store.Remediation(ctx, out.Remediation.ID)
			return err == nil && r.State == store.RemediationResolved
		})
		as, err := srv.Store.RemediationAttempts(ctx, out.Remediation.ID)
		if err != nil || len(as) != 1 || as[0].Action != store.RemediateRestart || as[0].Outcome != "fixed" {
			t.Errorf("attempts %+v %v", as, err)
		}
		status, h := health(t, owner)
		if status != http.StatusOK || h.Health != store.HealthHealthy || h.Remediation == nil || h.Remediation.ID != out.Remediation.ID || h.Remediation.State != store.RemediationResolved {
			t.Errorf("after the restart: %d %+v", status, h)
		}
	})

	t.Run("an admin may restart it too; a restart while one is open answers that one", func(t *testing.T) {
		d := srv.WaitState(t, ds, store.StateReady)
		// An episode open already (the periodic check found it unhealthy).
		var open store.Remediation
		err := srv.Store.InTx(ctx, func(tx *store.Tx) (err error) {
			open, _, err = tx.RequestRestart(ctx, store.System, d)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + ds + "/restart", Token: admin})
		got := decode[struct {
			Remediation store.RemediationSummary `json:"remediation"`
		}](t, body)
		if resp.StatusCode != http.StatusAccepted || got.Remediation.ID != open.ID {
			t.Errorf("%d %s, want episode %d", resp.StatusCode, body, open.ID)
		}
		if n := countIn(t, srv, `SELECT COUNT(*) FROM remediations WHERE devserver_id = ?`, d.ID); n != 2 {
			t.Errorf("%d episodes, want 2", n)
		}
	})

	t.Run("the owner has a Restart button on the devserver's page; a sharee has none and is refused", func(t *testing.T) {
		ownerBrowser, shareeBrowser := srv.SignIn(t, "owner@example.com"), srv.SignIn(t, "sharee@example.com")
		_, body := srv.Do(t, ownerBrowser, handlertest.Request{Path: views.DevserverURL(ds)})
		if handlertest.Doc(t, body).Find("form#"+views.RestartFormID+"[action='"+views.RestartURL(ds)+"'] button").Length() != 1 {
			t.Error("no restart button for the owner")
		}
		_, body = srv.Do(t, shareeBrowser, handlertest.Request{Path: views.DevserverURL(ds)})
		if handlertest.Doc(t, body).Find("#"+views.RestartFormID).Length() != 0 {
			t.Error("a sharee is offered the restart button")
		}
		if resp, _ := srv.Do(t, shareeBrowser, handlertest.Request{Method: "POST", Path: views.RestartURL(ds), Form: url.Values{}}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("sharee: %d", resp.StatusCode)
		}
		resp, _ := srv.Do(t, ownerBrowser, handlertest.Request{Method: "POST", Path: views.RestartURL(ds), Form: url.Values{}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != views.DevserverURL(ds) {
			t.Fatalf("%d to %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		_, body = srv.Do(t, ownerBrowser, handlertest.Request{Path: views.DevserverURL(ds)})
		if !strings.Contains(body, "Restarting "+ds) {
			t.Error("the owner is not told")
		}
	})

	t.Run("a devserver that is not ready cannot be restarted", func(t *testing.T) {
		other := reserveIn(t, srv, owner, "vm.small", "")
		if resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + other + "/release", Token: owner}); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("release: %d %s", resp.StatusCode, body)
		}
		before := countRows(t, srv, "remediations")
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + other + "/restart", Token: owner})
		if resp.StatusCode != http.StatusConflict || errorCode(body) != "not_restartable" {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
		if countRows(t, srv, "remediations") != before {
			t.Error("an episode was opened")
		}
	})
}

func TestBundleFromCLI(t *testing.T) {
	srv := handlertest.New(t)
	ctx := context.Background()
	owner := srv.Token(t, "owner@example.com")
	stranger := srv.Token(t, "stranger@example.com")
	srv.Token(t, "admin@example.com", store.RoleAdmin)
	adminBrowser := srv.SignIn(t, "admin@example.com", store.RoleAdmin)
	ds := reserveIn(t, srv, owner, "vm.small", "")
	send := func(token, body string) (*http.Response, string) {
		return srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/support/bundles", Token: token, Body: body})
	}

	t.Run("bad bundles are refused and store nothing", func(t *testing.T) {
		many := map[string]int{}
		for i := range 21 {
			many["p"+strconv.Itoa(i)] = i
		}
		manyJSON, _ := json.Marshal(map[string]any{"parts": many})
		for name, c := range map[string]struct {
			body   string
			status int
		}{
			"no parts":                 {`{"note":"x"}`, http.StatusUnprocessableEntity},
			"empty parts":              {`{"parts":{}}`, http.StatusUnprocessableEntity},
			"21 parts":                 {string(manyJSON), http.StatusUnprocessableEntity},
			"a long note":              {`{"note":"` + strings.Repeat("x", 2001) + `","parts":{"a":1}}`, http.StatusUnprocessableEntity},
			"an unknown devserver":     {`{"devserver":"nope","parts":{"a":1}}`, http.StatusNotFound},
			"an unknown field":         {`{"parts":{"a":1},"extra":1}`, http.StatusBadRequest},
			"malformed JSON":           {`{"parts":`, http.StatusBadRequest},
			"a body larger than 1 MiB": {`{"parts":{"a":"` + strings.Repeat("x", 1<<20) + `"}}`, http.StatusRequestEntityTooLarge},
		} {
			resp, body := send(owner, c.body)
			if resp.StatusCode != c.status {
				t.Errorf("%s: %d %.300s, want %d", name, resp.StatusCode, body, c.status)
			}
		}
		resp, body := send(stranger, `{"devserver":"`+ds+`","parts":{"a":1}}`)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("about someone else's devserver: %d %s", resp.StatusCode, body)
		}
		if n := countRows(t, srv, "diagnostic_bundles"); n != 0 {
			t.Errorf("%d bundles stored", n)
		}
	})

	var id int64
	t.Run("a bundle is stored ready, tasks every admin and shows in the support queue", func(t *testing.T) {
		resp, body := send(owner, `{"note":"login hangs","devserver":"`+ds+`","parts":{"doctor":{"checks":[{"name":"ssh","ok":false}]},"version":"1.2.3"}}`)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		out := decode[struct {
			ID          int64     `json:"id"`
			State       string    `json:"state"`
			RequestedBy string    `json:"requested_by"`
			Devserver   string    `json:"devserver"`
			CreatedAt   time.Time `json:"created_at"`
		}](t, body)
		if out.ID == 0 || out.State != "ready" || out.RequestedBy != "owner@example.com" || out.Devserver != ds || out.CreatedAt.IsZero() {
			t.Errorf("%s", body)
		}
		id = out.ID
		b, err := srv.Store.Bundle(ctx, id)
		if err != nil || b.Source != store.BundleFromCLI || b.Note != "login hangs" || len(b.Parts()) != 2 {
			t.Errorf("%+v %v", b, err)
		}
		if n := countIn(t, srv, `SELECT COUNT(*) FROM notifications n JOIN users u ON u.id = n.user_id WHERE u.email = 'admin@example.com' AND n.kind = 'support' AND n.title LIKE '%from the CLI%'`); n != 1 {
			t.Errorf("%d support notifications for the admin", n)
		}
		if n := countIn(t, srv, `SELECT COUNT(*) FROM audit_events WHERE action = 'bundle.upload' AND actor = 'owner@example.com'`); n != 1 {
			t.Errorf("%d audit events", n)
		}
		_, page := srv.Do(t, adminBrowser, handlertest.Request{Path: views.AdminSupportURL})
		row := handlertest.Doc(t, page).Find("#bundles tbody tr")
		if row.Length() != 1 || !strings.Contains(row.Text(), "from the CLI, about "+ds) || !strings.Contains(row.Text(), "login hangs") {
			t.Errorf("the support queue: %s", row.Text())
		}
		_, page = srv.Do(t, adminBrowser, handlertest.Request{Path: views.AdminBundleURL(id)})
		doc := handlertest.Doc(t, page)
		if !strings.Contains(doc.Find("#part-doctor pre").Text(), `"ssh"`) || !strings.Contains(doc.Find("#part-version pre").Text(), "1.2.3") {
			t.Errorf("the bundle page does not show the parts: %s", doc.Find("main").Text())
		}
	})

	t.Run("a second bundle within 10 minutes is refused", func(t *testing.T) {
		resp, body := send(owner, `{"parts":{"a":1}}`)
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
		if n := countRows(t, srv, "diagnostic_bundles"); n != 1 {
			t.Errorf("%d bundles", n)
		}
	})

	t.Run("a bundle about no devserver", func(t *testing.T) {
		resp, body := send(stranger, `{"parts":{"doctor":{"ok":true}}}`)
		if resp.StatusCode != http.StatusCreated || strings.Contains(body, `"devserver"`) {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		_, page := srv.Do(t, adminBrowser, handlertest.Request{Path: views.AdminSupportURL})
		if !strings.Contains(handlertest.Doc(t, page).Find("#bundles tbody tr").First().Text(), "from the CLI") {
			t.Error("not in the support queue")
		}
	})
}
