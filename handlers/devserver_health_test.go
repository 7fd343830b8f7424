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

	"github.com/riverqueue/river"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
)

func TestRageAndHealth(t *testing.T) {
	srv := handlertest.New(t)
	ctx := context.Background()
	owner := srv.Token(t, "owner@example.com")
	adminBrowser := srv.SignIn(t, "admin@example.com", store.RoleAdmin)
	ownerBrowser := srv.SignIn(t, "owner@example.com")
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: owner, Body: `{"flavor":"vm.small"}`})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("reserve: %d %s", resp.StatusCode, body)
	}
	d := srv.WaitState(t, decode[devserverJSON](t, body).Name, store.StateReady)
	sharee := srv.Token(t, "sharee@example.com")
	if resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + d.Name + "/shares", Token: owner, Body: `{"email":"sharee@example.com"}`}); resp.StatusCode != http.StatusCreated || !strings.Contains(body, "sharee") {
		t.Fatalf("share: %d %s", resp.StatusCode, body)
	}

	t.Run("the owner sees the Rage form; a sharee does not", func(t *testing.T) {
		_, body := srv.Do(t, ownerBrowser, handlertest.Request{Method: "GET", Path: views.DevserverURL(d.Name)})
		if handlertest.Doc(t, body).Find("#"+views.RageFormID+" form[action='"+views.RageURL(d.Name)+"'] textarea[name=note]").Length() != 1 {
			t.Error("no rage form for the owner")
		}
		resp, body := srv.Do(t, srv.SignIn(t, "sharee@example.com"), handlertest.Request{Method: "GET", Path: views.DevserverURL(d.Name)})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("the sharee cannot see the devserver: %d", resp.StatusCode)
		}
		if handlertest.Doc(t, body).Find("#"+views.RageFormID).Length() != 0 {
			t.Error("a sharee is offered the rage form")
		}
	})

	t.Run("a rage with a note too long is refused and records nothing", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + d.Name + "/rage", Token: owner, Body: `{"note":"` + strings.Repeat("x", 2001) + `"}`})
		if resp.StatusCode != http.StatusUnprocessableEntity || errorCode(body) != "invalid" {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
		if bs, _ := srv.Store.Bundles(ctx, 10); len(bs) != 0 {
			t.Errorf("%d bundles", len(bs))
		}
	})

	t.Run("a malformed rage, a rage at someone else's devserver or an unknown one records nothing", func(t *testing.T) {
		stranger := srv.Token(t, "stranger@example.com")
		for _, c := range []struct {
			what, name, token, body string
			status                  int
			code                    string
		}{
			{"malformed JSON", d.Name, owner, `{"note":`, http.StatusBadRequest, "malformed_json"},
			{"an unknown field", d.Name, owner, `{"note":"slow","parts":[]}`, http.StatusBadRequest, "malformed_json"},
			{"a stranger", d.Name, stranger, `{"note":"slow"}`, http.StatusNotFound, "not_found"},
			{"a sharee", d.Name, sharee, `{"note":"slow"}`, http.StatusForbidden, "forbidden"},
			{"an unknown devserver", "nope", owner, `{"note":"slow"}`, http.StatusNotFound, "not_found"},
		} {
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + c.name + "/rage", Token: c.token, Body: c.body})
			if resp.StatusCode != c.status || errorCode(body) != c.code {
				t.Errorf("%s: %d %s", c.what, resp.StatusCode, body)
			}
		}
		if bs, _ := srv.Store.Bundles(ctx, 10); len(bs) != 0 {
			t.Errorf("%d bundles", len(bs))
		}
	})

	t.Run("a rage sends the admins a bundle with every part, shown in the support queue", func(t *testing.T) {
		resp, _ := srv.Do(t, ownerBrowser, handlertest.Request{Method: "POST", Path: views.RageURL(d.Name), Form: url.Values{"note": {"my build hangs"}}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != views.DevserverURL(d.Name) {
			t.Fatalf("%d to %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		_, body := srv.Do(t, ownerBrowser, handlertest.Request{Method: "GET", Path: views.DevserverURL(d.Name)})
		if !strings.Contains(body, "on their way to the platform team") {
			t.Error("the owner is not told")
		}
		// A second rage right after is refused: every rage tasks every admin.
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + d.Name + "/rage", Token: owner, Body: `{}`})
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("a second rage: %d %s", resp.StatusCode, body)
		}
		var b store.DiagnosticBundle
		handlertest.Eventually(t, 10*time.Second, "the bundle", func() bool {
			bs, _ := srv.Store.Bundles(ctx, 10)
			if len(bs) == 1 {
				b = bs[0]
			}
			return b.State == "ready"
		})
		_, body = srv.Do(t, adminBrowser, handlertest.Request{Method: "GET", Path: views.AdminSupportURL})
		row := handlertest.Doc(t, body).Find("#bundles tbody tr")
		if row.Length() != 1 || !strings.Contains(row.Text(), "my build hangs") || !strings.Contains(row.Text(), "owner@example.com") {
			t.Errorf("support queue: %q", row.Text())
		}
		_, body = srv.Do(t, adminBrowser, handlertest.Request{Method: "GET", Path: views.AdminBundleURL(b.ID)})
		doc := handlertest.Doc(t, body)
		for _, p := range views.BundleParts {
			if strings.TrimSpace(doc.Find("#part-"+p.Name+" pre").Text()) == "" {
				t.Errorf("part %s is empty", p.Name)
			}
		}
		if !strings.Contains(doc.Find("#part-jobs").Text(), "provision_devserver") || !strings.Contains(doc.Find("#part-audit_events").Text(), "devserver.rage") {
			t.Error("the bundle lacks the provisioning job or the rage's audit event")
		}
		// Every admin has a support task that links the bundle.
		admin, _ := srv.Store.UserByEmail(ctx, "admin@example.com")
		tasks, _ := srv.Store.Tasks(ctx, admin.ID, 0, 50)
		found := 0
		for _, task := range tasks {
			if task.Link == views.AdminBundleURL(b.ID) {
				found++
			}
		}
		if found != 1 {
			t.Errorf("%d support tasks link the bundle", found)
		}
		// The API gives the bundle with its parts to admins.
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "GET", Path: "/api/v1/support/" + strconv.FormatInt(b.ID, 10), Token: srv.Token(t, "admin@example.com", store.RoleAdmin)})
		var got struct {
			Parts map[string]json.RawMessage `json:"parts"`
		}
		_ = json.Unmarshal([]byte(body), &got)
		if resp.StatusCode != 200 || len(got.Parts) != len(views.BundleParts) {
			t.Errorf("%d, %d parts", resp.StatusCode, len(got.Parts))
		}
	})

	t.Run("the health page counts failures by cause", func(t *testing.T) {
		if err := srv.Sim.Stop(ctx, d.InstanceID); err != nil {
			t.Fatal(err)
		}
		_, unhealthy, opened, err := jobs.CheckHealth(ctx, srv.Store, fleet.New(srv.Sim), func(ctx context.Context, tx *store.Tx, a river.JobArgs) error {
			return srv.Runner.Enqueue(ctx, tx, a)
		})
		if err != nil || unhealthy != 1 || opened != 1 {
			t.Fatalf("unhealthy %d, opened %d, %v", unhealthy, opened, err)
		}
		handlertest.Eventually(t, 10*time.Second, "the restart", func() bool {
			rs, _ := srv.Store.Remediations(ctx, d.ID, 5)
			return len(rs) == 1 && rs[0].State == store.RemediationResolved
		})
		_, body := srv.Do(t, adminBrowser, handlertest.Request{Method: "GET", Path: views.AdminHealthURL})
		row := handlertest.Doc(t, body).Find("#" + views.CauseRowID(store.CauseInstanceStopped))
		if row.Find(".total").Text() != "1" || row.Find(".resolved").Text() != "1" || row.Find(".escalated").Text() != "0" {
			t.Errorf("row %q", row.Text())
		}
	})
}
