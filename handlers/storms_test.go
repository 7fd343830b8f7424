package handlers_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/fleet"
	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
)

// backedUp reserves a ready devserver for token's owner, writes a file and
// backs it up, waiting for the backup.
func backedUp(t *testing.T, srv *handlertest.Server, token, path, content string) string {
	t.Helper()
	name := readyDevserver(t, srv, token)
	simWrite(t, srv, name, path, content)
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + name + "/backups", Token: token, Body: `{}`})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("back up %s: %d %s", name, resp.StatusCode, body)
	}
	if b := waitBackupDone(t, srv, token, name, decode[backupJSON](t, body).ID); b.State != store.BackupDone {
		t.Fatalf("backup of %s: %+v", name, b)
	}
	return name
}

func stormCount(t *testing.T, srv *handlertest.Server) (storms, sevs int) {
	t.Helper()
	return countRows(t, srv, "storms"), countRows(t, srv, "sevs")
}

func regionStatus(t *testing.T, srv *handlertest.Server, code string) string {
	t.Helper()
	r, err := srv.Store.Region(context.Background(), code)
	if err != nil {
		t.Fatal(err)
	}
	return r.Status
}

func waitRun(t *testing.T, srv *handlertest.Server, id int64) store.Run {
	t.Helper()
	var run store.Run
	handlertest.Eventually(t, 20*time.Second, "the run to finish", func() bool {
		var err error
		run, err = srv.Store.Run(context.Background(), id)
		return err == nil && run.Finished()
	})
	if run.State != store.RunSucceeded {
		t.Fatalf("run %d %s", id, run.State)
	}
	return run
}

func devserverState(t *testing.T, srv *handlertest.Server, name string) store.Devserver {
	t.Helper()
	d, err := srv.Store.Devserver(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestStormReplaceRecover(t *testing.T) {
	srv := handlertest.New(t)
	ctx := context.Background()
	admin := srv.Token(t, "admin@example.com", store.RoleAdmin)
	alice := srv.Token(t, "alice@example.com")
	bob := srv.Token(t, "bob@example.com")
	carol := srv.Token(t, "carol@example.com")
	aliceDS := backedUp(t, srv, alice, "notes.txt", "written before the backup")
	simWrite(t, srv, aliceDS, "later.txt", "written after the backup")
	bobDS := backedUp(t, srv, bob, "notes.txt", "bob's")
	carolDS := readyDevserver(t, srv, carol) // no backup
	if d := devserverState(t, srv, aliceDS); d.Region != "prn" {
		t.Fatalf("devserver in %s, want prn", d.Region)
	}
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/containers", Token: alice, Body: `{"type":"web","profile":"small"}`})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("container: %d %s", resp.StatusCode, body)
	}
	oldCT := srv.WaitContainer(t, decode[containerJSON](t, body).ID, store.ContainerReady)

	t.Run("refuses a storm without the typed region code and changes nothing", func(t *testing.T) {
		for _, confirm := range []string{"", "ftw", "PRN"} {
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/regions/prn/storm", Token: admin,
				Body: `{"reason":"power","confirm":"` + confirm + `"}`})
			if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `"confirm"`) {
				t.Errorf("confirm %q: %d %s", confirm, resp.StatusCode, body)
			}
		}
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/regions/prn/storm", Token: admin, Body: `{"reason":"","confirm":"prn"}`})
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `"reason"`) {
			t.Errorf("no reason: %d %s", resp.StatusCode, body)
		}
		for _, c := range []struct {
			what, path, body string
			status           int
			code, field      string
		}{
			{"malformed JSON", "/api/v1/regions/prn/storm", `{"reason":`, 400, "malformed_json", ""},
			{"an unknown field", "/api/v1/regions/prn/storm", `{"reason":"power","confirm":"prn","force":true}`, 400, "malformed_json", ""},
			{"an oversized reason", "/api/v1/regions/prn/storm", `{"reason":"` + strings.Repeat("r", 501) + `","confirm":"prn"}`, 422, "invalid", "reason"},
			{"an unknown region", "/api/v1/regions/zzz/storm", `{"reason":"power","confirm":"zzz"}`, 404, "not_found", ""},
		} {
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: c.path, Token: admin, Body: c.body})
			e := decode[apiError](t, body)
			if resp.StatusCode != c.status || e.Error.Code != c.code || e.Error.Message == "" || (c.field != "" && e.Error.Fields[c.field] == "") {
				t.Errorf("%s: %d %s", c.what, resp.StatusCode, body)
			}
		}
		if resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/regions/prn/storm", Token: alice, Body: `{"reason":"power","confirm":"prn"}`}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("a storm by an engineer: %d %s", resp.StatusCode, body)
		}
		if st, sv := stormCount(t, srv); st != 0 || sv != 0 || regionStatus(t, srv, "prn") != "active" {
			t.Errorf("storms %d, sevs %d, prn %s: something changed", st, sv, regionStatus(t, srv, "prn"))
		}
	})

	t.Run("refuses a storm from a sign-in older than 15 minutes with a link to sign in again", func(t *testing.T) {
		browser := srv.SignIn(t, "admin@example.com", store.RoleAdmin)
		if err := srv.Store.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.ExecContext(ctx, `UPDATE sessions SET created_at = ?`, time.Now().UTC().Add(-20*time.Minute))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		resp, body := srv.Do(t, browser, handlertest.Request{Method: "POST", Path: "/admin/regions/prn/storm", Form: url.Values{"reason": {"power"}, "confirm": {"prn"}}})
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("form: %d %.300s", resp.StatusCode, body)
		}
		if link, ok := handlertest.Doc(t, body).Find("#storm-storm-reauth a").Attr("href"); !ok || !strings.Contains(link, "reauth=1") {
			t.Errorf("sign-in link %q", link)
		}
		resp, body = srv.Do(t, browser, handlertest.Request{Method: "POST", Path: "/api/v1/regions/prn/storm", Body: `{"reason":"power","confirm":"prn"}`})
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `"reauth_required"`) || !strings.Contains(body, "reauth=1") {
			t.Errorf("api: %d %s", resp.StatusCode, body)
		}
		if st, sv := stormCount(t, srv); st != 0 || sv != 0 || regionStatus(t, srv, "prn") != "active" {
			t.Errorf("storms %d, sevs %d, prn %s: something changed", st, sv, regionStatus(t, srv, "prn"))
		}
	})

	var storm store.Storm
	t.Run("a storm takes the region down: unreachable devservers, a refusing driver, a banner, a SEV and owners told once", func(t *testing.T) {
		browser := srv.SignIn(t, "admin@example.com", store.RoleAdmin)
		resp, body := srv.Do(t, browser, handlertest.Request{Method: "POST", Path: "/admin/regions/prn/storm", Form: url.Values{"reason": {"power loss"}, "confirm": {"prn"}, "exercise": {"1"}}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("storm: %d %.300s", resp.StatusCode, body)
		}
		storms, err := srv.Store.Storms(ctx, "prn")
		if err != nil || len(storms) != 1 {
			t.Fatalf("storms %v %v", storms, err)
		}
		storm = storms[0]
		if regionStatus(t, srv, "prn") != "down" {
			t.Errorf("prn is %s", regionStatus(t, srv, "prn"))
		}
		waitRun(t, srv, *storm.RunID)
		for _, name := range []string{aliceDS, bobDS, carolDS} {
			d := devserverState(t, srv, name)
			if d.State != store.StateUnreachable {
				t.Errorf("%s is %s", name, d.State)
			}
			if _, err := srv.Sim.Exec(ctx, d.InstanceID, []string{"cat", "notes.txt"}); !errors.Is(err, fleet.ErrUnreachable) {
				t.Errorf("the driver answered for %s: %v", name, err)
			}
		}
		hosts, _ := srv.Store.Hosts(ctx, "prn")
		for _, h := range hosts {
			if h.State != "unreachable" {
				t.Errorf("host %s is %s", h.Name, h.State)
			}
		}
		sev, err := srv.Store.Sev(ctx, *storm.SevID)
		if err != nil || sev.Kind != store.SevExercise || sev.RunID == nil || *sev.RunID != *storm.RunID {
			t.Errorf("SEV %+v %v", sev, err)
		}
		aliceUser, _ := srv.Store.UserByEmail(ctx, "alice@example.com")
		bs, _ := srv.Store.ActiveBanners(ctx, aliceUser.ID)
		if len(bs) != 1 || bs[0].RegionCode() != "prn" || bs[0].SevID == nil || *bs[0].SevID != sev.ID {
			t.Errorf("alice's banners %+v", bs)
		}
		// Told once, even when the step runs again.
		if err := srv.Store.InTx(ctx, func(tx *store.Tx) error {
			n, err := tx.NotifyStormOwners(ctx, store.System, storm.ID, time.Now().Add(time.Hour))
			if n != 0 {
				t.Errorf("notified %d again", n)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		ns, _ := srv.Store.Notifications(ctx, aliceUser.ID, 0, 50)
		stormNotes := 0
		for _, n := range ns {
			if n.Kind == "storm" && strings.Contains(n.Title, aliceDS) {
				stormNotes++
			}
		}
		tasks, _ := srv.Store.Tasks(ctx, aliceUser.ID, 0, 50)
		if stormNotes != 1 || len(tasks) != 1 || tasks[0].Link != "/devservers/"+aliceDS+"/storm" {
			t.Errorf("alice: %d storm notifications, tasks %+v", stormNotes, tasks)
		}
		carolUser, _ := srv.Store.UserByEmail(ctx, "carol@example.com")
		if tasks, _ := srv.Store.Tasks(ctx, carolUser.ID, 0, 50); len(tasks) != 0 {
			t.Errorf("carol has no backup yet got tasks %+v", tasks)
		}
	})

	t.Run("the admin sees the storm, its SEV and run, and the devservers it touched", func(t *testing.T) {
		browser := srv.SignIn(t, "admin@example.com", store.RoleAdmin)
		resp, body := srv.Do(t, browser, handlertest.Request{Path: "/admin/regions/prn/storm"})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("page: %d", resp.StatusCode)
		}
		doc := handlertest.Doc(t, body)
		if doc.Find("#storm-region-status").Text() != "down" || doc.Find("#storm-open a[href='/sevs/"+strconv.FormatInt(*storm.SevID, 10)+"']").Length() != 1 {
			t.Errorf("storm page:\n%s", doc.Find("main").Text())
		}
		if doc.Find("#storm-devservers tr[data-state='unreachable']").Length() != 3 || doc.Find("#storm-start").Length() != 0 {
			t.Errorf("devservers table:\n%s", doc.Find("#storm-devservers").Text())
		}
		resp, body = srv.Do(t, browser, handlertest.Request{Path: "/admin/storms"})
		if resp.StatusCode != http.StatusOK || !strings.Contains(handlertest.Doc(t, body).Find("tr[data-region='prn']").Text(), "power loss") {
			t.Errorf("storms page: %d", resp.StatusCode)
		}
	})

	t.Run("the region's containers are made again in the nearest active region", func(t *testing.T) {
		cs, err := srv.Store.Containers(ctx, store.ContainerFilter{})
		if err != nil {
			t.Fatal(err)
		}
		var fresh *store.Container
		for i, c := range cs {
			if c.ID != oldCT.ID && c.Owner == "alice@example.com" && c.Type == oldCT.Type && c.Profile == oldCT.Profile {
				fresh = &cs[i]
			}
		}
		if fresh == nil || fresh.Region == "prn" {
			t.Fatalf("no fresh container outside prn: %+v", fresh)
		}
		old, _ := srv.Store.ContainerByID(ctx, oldCT.ID)
		if old.Live() {
			t.Errorf("the old container is %s", old.State)
		}
	})

	t.Run("the admin cannot storm a region twice", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/regions/prn/storm", Token: admin, Body: `{"reason":"again","confirm":"prn"}`})
		if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "region_down") {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
	})

	replace := func(t *testing.T, token, name string) string {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + name + "/storm/replace", Token: token, Body: `{}`})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("replace %s: %d %s", name, resp.StatusCode, body)
		}
		var out struct {
			Replacement devserverJSON `json:"replacement"`
		}
		out = decode[struct {
			Replacement devserverJSON `json:"replacement"`
		}](t, body)
		handlertest.Eventually(t, 20*time.Second, "the replacement", func() bool {
			e, err := srv.Store.StormDevserverOf(ctx, devserverState(t, srv, name).ID)
			return err == nil && (e.State == store.StormReplaced || e.State == store.StormReplaceFailed)
		})
		return out.Replacement.Name
	}
	var aliceNew, bobNew string
	t.Run("replace from backup makes a ready devserver elsewhere with the backup's data", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + aliceDS + "/storm/replace", Token: bob, Body: `{}`})
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("bob replaced alice's devserver: %d %s", resp.StatusCode, body)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + carolDS + "/storm/replace", Token: carol, Body: `{}`})
		if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "no_backup") {
			t.Errorf("carol without a backup: %d %s", resp.StatusCode, body)
		}
		aliceNew = replace(t, alice, aliceDS)
		e, _ := srv.Store.StormDevserverOf(ctx, devserverState(t, srv, aliceDS).ID)
		if e.State != store.StormReplaced {
			t.Fatalf("replacement %s: %s %s", aliceNew, e.State, e.Note)
		}
		d := devserverState(t, srv, aliceNew)
		if d.State != store.StateReady || d.Region == "prn" || d.Flavor != "vm.small" {
			t.Errorf("replacement %+v", d)
		}
		if res, err := srv.Sim.Exec(ctx, d.InstanceID, []string{"cat", "notes.txt"}); err != nil || res.Output != "written before the backup" {
			t.Errorf("notes.txt on the replacement: %v %+v", err, res)
		}
		if res, _ := srv.Sim.Exec(ctx, d.InstanceID, []string{"cat", "later.txt"}); res.ExitCode == 0 {
			t.Errorf("later.txt came back though it was written after the backup")
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + aliceDS + "/storm/replace", Token: alice, Body: `{}`})
		if resp.StatusCode != http.StatusConflict {
			t.Errorf("replaced twice: %d %s", resp.StatusCode, body)
		}
		bobNew = replace(t, bob, bobDS)
	})

	t.Run("an owner chooses to release the replacement; the choice is validated", func(t *testing.T) {
		entry := func() store.StormDevserver {
			e, err := srv.Store.StormDevserverOf(ctx, devserverState(t, srv, aliceDS).ID)
			if err != nil {
				t.Fatal(err)
			}
			return e
		}
		before := entry()
		for _, c := range []struct {
			what, token, body string
			status            int
		}{
			{"someone else's devserver", bob, `{"choice":"release"}`, http.StatusNotFound},
			{"malformed JSON", alice, `{"choice":`, http.StatusBadRequest},
		} {
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + aliceDS + "/storm/choice", Token: c.token, Body: c.body})
			if e := decode[apiError](t, body); resp.StatusCode != c.status || e.Error.Message == "" {
				t.Errorf("%s: %d %s", c.what, resp.StatusCode, body)
			}
			if after := entry(); after.Choice != before.Choice || !after.UpdatedAt.Equal(before.UpdatedAt) {
				t.Errorf("%s changed the choice: %+v", c.what, after)
			}
		}
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + aliceDS + "/storm/choice", Token: alice, Body: `{"choice":"maybe"}`})
		if resp.StatusCode != http.StatusUnprocessableEntity {
			t.Errorf("bad choice: %d %s", resp.StatusCode, body)
		}
		browser := srv.SignIn(t, "alice@example.com")
		resp, body = srv.Do(t, browser, handlertest.Request{Path: "/devservers/" + aliceDS + "/storm"})
		if resp.StatusCode != http.StatusOK || handlertest.Doc(t, body).Find("#storm-choice form").Length() != 2 {
			t.Fatalf("owner page: %d %.300s", resp.StatusCode, body)
		}
		resp, _ = srv.Do(t, browser, handlertest.Request{Method: "POST", Path: "/devservers/" + aliceDS + "/storm/choice", Form: url.Values{"choice": {"release"}}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("choice: %d", resp.StatusCode)
		}
	})

	t.Run("recover brings the originals back and keeps or releases replacements as chosen", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/regions/prn/recover", Token: admin, Body: `{"replacements":"keep"}`})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("recover: %d %s", resp.StatusCode, body)
		}
		if regionStatus(t, srv, "prn") != "active" {
			t.Errorf("prn is %s", regionStatus(t, srv, "prn"))
		}
		hosts, _ := srv.Store.Hosts(ctx, "prn")
		for _, h := range hosts {
			if h.State != "ready" {
				t.Errorf("host %s is %s", h.Name, h.State)
			}
		}
		// Alice released her replacement: her original is back.
		if d := devserverState(t, srv, aliceDS); d.State != store.StateReady {
			t.Errorf("alice's original is %s", d.State)
		}
		srv.WaitState(t, aliceNew, store.StateReleased)
		// Bob made no choice and the admin keeps replacements: his original goes.
		srv.WaitState(t, bobDS, store.StateReleased)
		if d := devserverState(t, srv, bobNew); d.State != store.StateReady {
			t.Errorf("bob's replacement is %s", d.State)
		}
		carolD := devserverState(t, srv, carolDS)
		if carolD.State != store.StateReady {
			t.Errorf("carol's devserver is %s", carolD.State)
		}
		if res, err := srv.Sim.Exec(ctx, carolD.InstanceID, []string{"ls"}); err != nil || res.ExitCode != 0 {
			t.Errorf("the driver still refuses after the recovery: %v", err)
		}
		aliceUser, _ := srv.Store.UserByEmail(ctx, "alice@example.com")
		if bs, _ := srv.Store.ActiveBanners(ctx, aliceUser.ID); len(bs) != 0 {
			t.Errorf("the storm banner is still shown: %+v", bs)
		}
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/regions/prn/recover", Token: admin, Body: `{}`})
		if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "not_in_storm") {
			t.Errorf("second recover: %d %s", resp.StatusCode, body)
		}
	})
}

func TestDarkStormLossWindows(t *testing.T) {
	srv := handlertest.New(t)
	ctx := context.Background()
	admin := srv.Token(t, "admin@example.com", store.RoleAdmin)
	alice := srv.Token(t, "alice@example.com")
	bob := srv.Token(t, "bob@example.com")
	aliceDS := backedUp(t, srv, alice, "notes.txt", "alice's")
	bobDS := readyDevserver(t, srv, bob)
	b, err := srv.Store.Backups(ctx, store.BackupFilter{DevserverID: devserverState(t, srv, aliceDS).ID, State: store.BackupDone})
	if err != nil || len(b) != 1 {
		t.Fatalf("backups %v %v", b, err)
	}
	// The dark storm strikes 3 hours and 20 minutes after the backup.
	struck := b[0].FinishedAt.Add(3*time.Hour + 20*time.Minute)
	srv.Store.Now = func() time.Time { return struck }

	t.Run("refuses a dark storm without the typed region code or with a bad count", func(t *testing.T) {
		for _, body := range []string{`{"count":1,"confirm":"ftw"}`, `{"count":0,"confirm":"prn"}`, `{"count":1001,"confirm":"prn"}`} {
			resp, out := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/regions/prn/dark-storm", Token: admin, Body: body})
			if resp.StatusCode != http.StatusUnprocessableEntity {
				t.Errorf("%s: %d %s", body, resp.StatusCode, out)
			}
		}
		if st, sv := stormCount(t, srv); st != 0 || sv != 0 {
			t.Errorf("storms %d, sevs %d", st, sv)
		}
	})

	var storm store.Storm
	t.Run("wipes the devservers and records each data-loss window", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/regions/prn/dark-storm", Token: admin, Body: `{"count":2,"confirm":"prn"}`})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("dark storm: %d %s", resp.StatusCode, body)
		}
		storm = decode[store.Storm](t, body)
		waitRun(t, srv, *storm.RunID)
		for _, name := range []string{aliceDS, bobDS} {
			d := devserverState(t, srv, name)
			if d.State != store.StateLost {
				t.Errorf("%s is %s", name, d.State)
			}
			handlertest.Eventually(t, 10*time.Second, "the instance wiped", func() bool {
				in, err := srv.Store.SimInstance(ctx, d.InstanceID)
				return err == nil && in.State == "destroyed" && in.Home == "{}"
			})
		}
		if regionStatus(t, srv, "prn") != "active" {
			t.Errorf("a dark storm took the region down")
		}
		items, err := srv.Store.SevTimeline(ctx, *storm.SevID)
		if err != nil {
			t.Fatal(err)
		}
		var texts []string
		for _, it := range items {
			texts = append(texts, it.Text)
		}
		all := strings.Join(texts, "\n")
		if !strings.Contains(all, aliceDS+" (alice@example.com) wiped: 3h 20m of work lost") {
			t.Errorf("no 3h 20m window for %s in:\n%s", aliceDS, all)
		}
		if !strings.Contains(all, bobDS+" (bob@example.com) wiped: no backup: everything lost") {
			t.Errorf("no everything-lost entry for %s in:\n%s", bobDS, all)
		}
	})

	t.Run("owners are told, with a restore task where there is a backup", func(t *testing.T) {
		aliceUser, _ := srv.Store.UserByEmail(ctx, "alice@example.com")
		bobUser, _ := srv.Store.UserByEmail(ctx, "bob@example.com")
		if tasks, _ := srv.Store.Tasks(ctx, aliceUser.ID, 0, 50); len(tasks) != 1 || !strings.Contains(tasks[0].Title, "Restore "+aliceDS) {
			t.Errorf("alice's tasks %+v", tasks)
		}
		if tasks, _ := srv.Store.Tasks(ctx, bobUser.ID, 0, 50); len(tasks) != 0 {
			t.Errorf("bob's tasks %+v", tasks)
		}
		if ns, _ := srv.Store.Notifications(ctx, bobUser.ID, 0, 50); len(ns) == 0 || !strings.Contains(ns[0].Body, "everything lost") {
			t.Errorf("bob's notifications %+v", ns)
		}
	})

	t.Run("the SEV report's impact lists the data-loss windows", func(t *testing.T) {
		if err := srv.Store.InTx(ctx, func(tx *store.Tx) error {
			for _, st := range []string{store.SevMitigated, store.SevClosed} {
				if _, err := tx.UpdateSev(ctx, store.System, *storm.SevID, store.SevInput{State: &st}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		rep, err := srv.Store.SevReport(ctx, *storm.SevID)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(rep.Impact, aliceDS+" (alice@example.com): 3h 20m of work lost") || !strings.Contains(rep.Impact, "no backup: everything lost") {
			t.Errorf("impact:\n%s", rep.Impact)
		}
	})

	t.Run("restore from the latest backup onto a new devserver", func(t *testing.T) {
		srv.Store.Now = func() time.Time { return time.Now().UTC() }
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + aliceDS + "/storm/replace", Token: alice, Body: `{}`})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("restore: %d %s", resp.StatusCode, body)
		}
		var e store.StormDevserver
		handlertest.Eventually(t, 20*time.Second, "the restore", func() bool {
			e, _ = srv.Store.StormDevserverOf(ctx, devserverState(t, srv, aliceDS).ID)
			return e.State == store.StormReplaced || e.State == store.StormReplaceFailed
		})
		if e.State != store.StormReplaced {
			t.Fatalf("%s: %s", e.State, e.Note)
		}
		d := devserverState(t, srv, e.Replacement)
		if res, err := srv.Sim.Exec(ctx, d.InstanceID, []string{"cat", "notes.txt"}); err != nil || res.Output != "alice's" {
			t.Errorf("notes.txt: %v %+v", err, res)
		}
	})
}
