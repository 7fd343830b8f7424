package handlers_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/fleet/sim"
	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
)

func waitMigration(t *testing.T, srv *handlertest.Server, name string) store.DevserverMigration {
	t.Helper()
	var m store.DevserverMigration
	handlertest.Eventually(t, 30*time.Second, "the migration of "+name+" to end", func() bool {
		d, err := srv.Store.Devserver(context.Background(), name)
		if err != nil {
			return false
		}
		m, err = srv.Store.LatestMigration(context.Background(), d.ID)
		return err == nil && m.State != "running"
	})
	return m
}

func hostUse(t *testing.T, s *store.Store) map[string]int {
	t.Helper()
	hosts, err := s.Hosts(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, h := range hosts {
		if h.UsedCPUs > 0 {
			out[h.Name] = h.UsedCPUs
		}
	}
	return out
}

func TestMigration(t *testing.T) {
	srv := handlertest.New(t)
	tok := srv.Token(t, "mia@example.com")
	_, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: tok, Body: `{"flavor":"vm.small","region":"prn"}`})
	name := decode[devserverJSON](t, body).Name
	d := srv.WaitState(t, name, store.StateReady)
	if _, err := srv.Sim.Exec(context.Background(), d.InstanceID, []string{"write", "notes.txt", "keep me\n"}); err != nil {
		t.Fatal(err)
	}

	t.Run("moves to another region and flavour with its data and hostname", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + name + "/migrate", Token: tok, Body: `{"region":"ftw","flavor":"vm.medium"}`})
		if resp.StatusCode != http.StatusAccepted || !strings.Contains(body, `"state": "running"`) {
			t.Fatalf("migrate: %d %s", resp.StatusCode, body)
		}
		m := waitMigration(t, srv, name)
		if m.State != "done" {
			t.Fatalf("migration %s at %s: %s", m.State, m.Step, m.Error)
		}
		after := srv.WaitState(t, name, store.StateReady)
		if after.Region != "ftw" || after.Flavor != "vm.medium" || after.Hostname != name+".ftw.devport.internal" || after.InstanceID == d.InstanceID || after.Address == d.Address {
			t.Errorf("after migration = %+v", after)
		}
		if got, _ := simFile(t, srv, name, "notes.txt"); got != "keep me\n" {
			t.Errorf("notes.txt after migration = %q", got)
		}
		if in, _ := srv.Store.SimInstance(context.Background(), d.InstanceID); in.State != "destroyed" {
			t.Errorf("the source instance is %s, want destroyed", in.State)
		}
		use := hostUse(t, srv.Store)
		if use[d.Host] != 0 || use[after.Host] != 4 {
			t.Errorf("capacity after migration: %v (source %s, target %s)", use, d.Host, after.Host)
		}
		events, _ := srv.Store.AuditEvents(context.Background(), "devserver", name)
		var actions []string
		for _, e := range events {
			actions = append(actions, e.Action)
		}
		want := []string{"devserver.migrate", "devserver.backup_done", "devserver.migrate_switch", "devserver.migrated"}
		i := 0
		for _, a := range actions {
			if i < len(want) && a == want[i] {
				i++
			}
		}
		if i != len(want) {
			t.Errorf("audit = %v, want %v in that order", actions, want)
		}
	})

	for _, c := range []struct{ step, op string }{
		{"backup", sim.OpBackup},
		{"provision", sim.OpCreate},
		{"provision (start)", sim.OpStart},
		{"restore", sim.OpRestore},
		{"switch", sim.OpHealth},
	} {
		t.Run("rolls back to the untouched source when "+c.step+" fails", func(t *testing.T) {
			before, _ := srv.Store.Devserver(context.Background(), name)
			use := hostUse(t, srv.Store)
			srv.Sim.FailNext(c.op, 1)
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + name + "/migrate", Token: tok, Body: `{"region":"lla"}`})
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("migrate: %d %s", resp.StatusCode, body)
			}
			m := waitMigration(t, srv, name)
			want := strings.Fields(c.step)[0]
			if m.State != "rolled_back" || m.Step != want || !strings.Contains(m.Error, "simulated failure") {
				t.Fatalf("migration = %s at %s (%s), want rolled_back at %s", m.State, m.Step, m.Error, want)
			}
			after := srv.WaitState(t, name, store.StateReady)
			if after.Region != before.Region || after.InstanceID != before.InstanceID || after.Host != before.Host || after.Address != before.Address {
				t.Errorf("the source changed: before %+v after %+v", before, after)
			}
			if !strings.Contains(after.StatusNote, "rolled back") {
				t.Errorf("the devserver does not say why: %q", after.StatusNote)
			}
			if got, _ := simFile(t, srv, name, "notes.txt"); got != "keep me\n" {
				t.Errorf("notes.txt = %q", got)
			}
			if got := hostUse(t, srv.Store); len(got) != len(use) || got[before.Host] != use[before.Host] {
				t.Errorf("capacity after rollback %v, before %v", got, use)
			}
			if m.ToInstanceID != "" {
				if in, _ := srv.Store.SimInstance(context.Background(), m.ToInstanceID); in.State != "destroyed" {
					t.Errorf("the target instance is %s after rollback", in.State)
				}
			}
		})
	}

	t.Run("the page shows the last migration and offers another", func(t *testing.T) {
		c := srv.SignIn(t, "mia@example.com")
		_, body := srv.Do(t, c, handlertest.Request{Path: "/devservers/" + name})
		doc := handlertest.Doc(t, body)
		if doc.Find(`#devserver-migration [data-migration-state=rolled_back]`).Length() != 1 {
			t.Errorf("no rolled-back migration on the page: %s", doc.Find("#devserver-migration").Text())
		}
		resp, _ := srv.Do(t, c, handlertest.Request{Method: "POST", Path: "/devservers/" + name + "/migrate", Form: url.Values{"region": {"prn"}, "flavor": {"vm.medium"}}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("form: %d", resp.StatusCode)
		}
		if m := waitMigration(t, srv, name); m.State != "done" || m.ToRegion != "prn" {
			t.Errorf("migration from the page: %+v", m)
		}
	})

	t.Run("refuses bad migrations and changes nothing", func(t *testing.T) {
		other := srv.Token(t, "nina@example.com")
		// A draining region, for the region_not_active case.
		err := srv.Store.InTx(context.Background(), func(tx *store.Tx) error {
			_, err := tx.ExecContext(context.Background(), `UPDATE regions SET status = 'draining' WHERE code = 'lla'`)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		before := counts(t, srv.Store)
		for _, c := range []struct {
			token, body string
			status      int
			code        string
		}{
			{tok, `{"region":"lla"}`, 409, "region_not_active"},
			{tok, `{"region":"mars"}`, 422, "invalid"},
			{tok, `{"flavor":"vm.huge"}`, 422, "invalid"},
			{tok, `{}`, 422, "invalid"},
			{tok, `{"region":"ftw"`, 400, "malformed_json"},
			{other, `{"region":"ftw"}`, 404, "not_found"},
		} {
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + name + "/migrate", Token: c.token, Body: c.body})
			if resp.StatusCode != c.status || decode[apiError](t, body).Error.Code != c.code {
				t.Errorf("%s: %d %s, want %d %s", c.body, resp.StatusCode, body, c.status, c.code)
			}
		}
		if after := counts(t, srv.Store); after != before {
			t.Errorf("changed: %s -> %s", before, after)
		}
	})
}
