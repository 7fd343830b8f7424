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
	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
)

type hostJSON struct {
	ID         int64  `json:"id"`
	Name       string `json:"name"`
	State      string `json:"state"`
	Devservers int    `json:"devservers"`
}

// errorCode is the code of an API error answer.
func errorCode(body string) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal([]byte(body), &e)
	return e.Error.Code
}

func countRuns(t *testing.T, s *store.Store) int {
	t.Helper()
	n := 0
	for _, name := range []string{"host-maintenance", "host-decommission"} {
		runs, err := s.Runs(context.Background(), name, 100)
		if err != nil {
			t.Fatal(err)
		}
		n += len(runs)
	}
	return n
}

func TestHostOperations(t *testing.T) {
	srv := handlertest.New(t)
	ctx := context.Background()
	admin := srv.Token(t, "admin@example.com", store.RoleAdmin)
	owner := srv.Token(t, "owner@example.com")
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: owner, Body: `{"flavor":"vm.small","region":"prn"}`})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("reserve: %d %s", resp.StatusCode, body)
	}
	d := srv.WaitState(t, decode[devserverJSON](t, body).Name, store.StateReady)
	hostPath := "/api/v1/hosts/" + strconv.FormatInt(d.HostID, 10)

	t.Run("admins list hosts with their devservers", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "GET", Path: "/api/v1/hosts", Token: admin})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		var list struct{ Items []hostJSON }
		if err := json.Unmarshal([]byte(body), &list); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, h := range list.Items {
			if h.ID == d.HostID {
				found = h.Devservers == 1 && h.State == "ready"
			}
		}
		if !found || len(list.Items) < 10 {
			t.Errorf("host %s not listed with one devserver among %d hosts", d.Host, len(list.Items))
		}
	})

	t.Run("refuses bad input and changes nothing", func(t *testing.T) {
		before := countRuns(t, srv.Store)
		past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
		cases := []struct {
			path, body string
			status     int
			code       string
		}{
			{hostPath + "/maintenance", `{"deadline":"` + past + `"}`, 422, "invalid"},
			{hostPath + "/maintenance", `{"deadline":"soon"}`, 400, "malformed_json"},
			{hostPath + "/maintenance", `{"reason":"` + strings.Repeat("x", 201) + `"}`, 422, "invalid"},
			{"/api/v1/hosts/999999/maintenance", `{}`, 404, "not_found"},
			{hostPath + "/maintenance", `{"sev":999999}`, 422, "invalid"},
			{"/api/v1/hosts/nope/decommission", `{}`, 404, "not_found"},
		}
		for _, c := range cases {
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: c.path, Token: admin, Body: c.body})
			if resp.StatusCode != c.status || errorCode(body) != c.code {
				t.Errorf("%s %s: %d %s", c.path, c.body, resp.StatusCode, body)
			}
		}
		if h, _ := srv.Store.Host(ctx, d.HostID); h.State != "ready" {
			t.Errorf("host is %s", h.State)
		}
		if n := countRuns(t, srv.Store); n != before {
			t.Errorf("%d runs started by bad input", n-before)
		}
	})

	t.Run("refuses maintenance of a retired host", func(t *testing.T) {
		var spare store.Host
		hs, _ := srv.Store.HostsWithLoad(ctx)
		for _, h := range hs {
			if h.Kind == "physical" && h.Devservers == 0 && h.Region == "lla" {
				spare = h.Host
			}
		}
		err := srv.Store.InTx(ctx, func(tx *store.Tx) error {
			if _, err := tx.SetHostState(ctx, store.System, spare.Name, []string{"ready"}, "decommissioning"); err != nil {
				return err
			}
			_, err := tx.RetireHost(ctx, store.System, spare.Name)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		before := countRuns(t, srv.Store)
		for _, op := range []string{"maintenance", "decommission"} {
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/hosts/" + strconv.FormatInt(spare.ID, 10) + "/" + op, Token: admin, Body: `{}`})
			if resp.StatusCode != http.StatusConflict || errorCode(body) != "host_retired" {
				t.Errorf("%s of a retired host: %d %s", op, resp.StatusCode, body)
			}
		}
		if n := countRuns(t, srv.Store); n != before {
			t.Errorf("%d runs started", n-before)
		}
	})

	t.Run("a dry run shows the plan and changes nothing", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: hostPath + "/maintenance", Token: admin, Body: `{"dry_run":true}`})
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Live-migrate "+d.Name) {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if h, _ := srv.Store.Host(ctx, d.HostID); h.State != "ready" {
			t.Errorf("host is %s after a dry run", h.State)
		}
	})

	t.Run("maintenance answers 202 with a run, moves the VM off and returns the host to ready", func(t *testing.T) {
		sev := matrixSev(t, srv, admin)
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: hostPath + "/maintenance", Token: admin, Body: `{"reason":"firmware","sev":` + sev + `}`})
		if resp.StatusCode != http.StatusAccepted || !strings.HasPrefix(resp.Header.Get("Location"), "/api/v1/runs/") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		var run struct {
			ID      int64  `json:"id"`
			Runbook string `json:"runbook"`
		}
		_ = json.Unmarshal([]byte(body), &run)
		if run.Runbook != "host-maintenance" {
			t.Errorf("run %+v", run)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: hostPath + "/maintenance", Token: admin, Body: `{}`})
		if resp.StatusCode != http.StatusConflict {
			t.Errorf("a second maintenance: %d %s", resp.StatusCode, body)
		}
		handlertest.Eventually(t, 20*time.Second, "the run to succeed", func() bool {
			r, err := srv.Store.Run(ctx, run.ID)
			return err == nil && r.State == store.RunSucceeded
		})
		// The SEV it updates has the run's start and end on its timeline.
		var entries int
		if err := srv.Store.WriteDB().QueryRow(`SELECT COUNT(*) FROM sev_timeline WHERE sev_id = ? AND event_key LIKE 'run:%'`, sev).Scan(&entries); err != nil || entries < 2 {
			t.Errorf("SEV-%s has %d run entries (%v)", sev, entries, err)
		}
		now, _ := srv.Store.Devserver(ctx, d.Name)
		if now.HostID == d.HostID || now.State != store.StateReady || now.InstanceID != d.InstanceID || now.Region != "prn" {
			t.Errorf("devserver on %s in %s (%s), instance %s", now.Host, now.Region, now.State, now.InstanceID)
		}
		if h, _ := srv.Store.Host(ctx, d.HostID); h.State != "ready" || h.UsedCPUs != 0 {
			t.Errorf("host %s with %d CPUs used", h.State, h.UsedCPUs)
		}
	})

	t.Run("the hosts page starts a decommission and shows its run", func(t *testing.T) {
		browser := srv.SignIn(t, "admin@example.com", store.RoleAdmin)
		now, _ := srv.Store.Devserver(ctx, d.Name)
		resp, body := srv.Do(t, browser, handlertest.Request{Method: "GET", Path: views.AdminHostsURL})
		doc := handlertest.Doc(t, body)
		row := doc.Find("#" + views.HostRowID(now.HostID))
		if resp.StatusCode != 200 || !strings.Contains(row.Text(), "Decommission "+now.Host) || row.Find("td").Eq(5).Text() != "1" {
			t.Fatalf("%d, row %q", resp.StatusCode, row.Text())
		}
		// A deadline in the past is refused with a message, nothing started.
		before := countRuns(t, srv.Store)
		past := time.Now().Add(-time.Hour).UTC().Format(views.HostOpTime)
		resp, _ = srv.Do(t, browser, handlertest.Request{Method: "POST", Path: views.AdminHostDecommissionURL(now.HostID), Form: url.Values{"deadline": {past}}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != views.AdminHostsURL || countRuns(t, srv.Store) != before {
			t.Fatalf("past deadline: %d to %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		_, body = srv.Do(t, browser, handlertest.Request{Method: "GET", Path: views.AdminHostsURL})
		if !strings.Contains(body, "is in the past") {
			t.Errorf("no message about the deadline: %s", handlertest.Doc(t, body).Find(".flash").Text())
		}
		resp, _ = srv.Do(t, browser, handlertest.Request{Method: "POST", Path: views.AdminHostDecommissionURL(now.HostID), Form: url.Values{"reason": {"end of life"}}})
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/admin/runs/") {
			t.Fatalf("decommission: %d to %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		handlertest.Eventually(t, 20*time.Second, "the host to be retired", func() bool {
			h, err := srv.Store.Host(ctx, now.HostID)
			return err == nil && h.State == "retired"
		})
		moved, _ := srv.Store.Devserver(ctx, d.Name)
		if moved.HostID == now.HostID || moved.State != store.StateReady {
			t.Errorf("devserver on %s (%s)", moved.Host, moved.State)
		}
		_, body = srv.Do(t, browser, handlertest.Request{Method: "GET", Path: views.AdminHostsURL})
		row = handlertest.Doc(t, body).Find("#" + views.HostRowID(now.HostID))
		if !strings.Contains(row.Text(), "retired") || row.Find("form").Length() != 0 {
			t.Errorf("retired host row %q offers %d forms", row.Text(), row.Find("form").Length())
		}
	})

	t.Run("an owner can move a devserver only off a host that is going away", func(t *testing.T) {
		browser := srv.SignIn(t, "owner@example.com")
		resp, body := srv.Do(t, browser, handlertest.Request{Method: "GET", Path: views.MoveOffHostURL(d.Name)})
		if resp.StatusCode != 200 || !strings.Contains(handlertest.Doc(t, body).Find("#move-off-host-problem").Text(), "need not move") {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + d.Name + "/move-off-host", Token: owner})
		if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "host_not_leaving") {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
	})

	t.Run("the owner moves a devserver off a host in maintenance with one click", func(t *testing.T) {
		cur, _ := srv.Store.Devserver(ctx, d.Name)
		err := srv.Store.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.SetHostState(ctx, store.System, cur.Host, []string{"ready"}, "maintenance")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		browser := srv.SignIn(t, "owner@example.com")
		_, body := srv.Do(t, browser, handlertest.Request{Method: "GET", Path: views.MoveOffHostURL(d.Name)})
		if handlertest.Doc(t, body).Find("form[action='"+views.MoveOffHostURL(d.Name)+"'] button").Text() != "Move me now" {
			t.Fatalf("no move button: %s", body)
		}
		resp, _ := srv.Do(t, browser, handlertest.Request{Method: "POST", Path: views.MoveOffHostURL(d.Name), Form: url.Values{}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%d", resp.StatusCode)
		}
		handlertest.Eventually(t, 20*time.Second, "the move", func() bool {
			now, err := srv.Store.Devserver(ctx, d.Name)
			return err == nil && now.State == store.StateReady && now.HostID != cur.HostID
		})
		if h, _ := srv.Store.Host(ctx, cur.HostID); h.UsedCPUs != 0 {
			t.Errorf("the source host still holds %d CPUs", h.UsedCPUs)
		}
		if jobs.MoveOffHostURL(d.Name) != views.MoveOffHostURL(d.Name) {
			t.Errorf("owners' tasks link %s, the page is %s", jobs.MoveOffHostURL(d.Name), views.MoveOffHostURL(d.Name))
		}
	})
}
