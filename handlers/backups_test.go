package handlers_test

import (
	"context"
	"fmt"
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

type backupJSON struct {
	ID         int64  `json:"id"`
	Devserver  string `json:"devserver"`
	Kind       string `json:"kind"`
	State      string `json:"state"`
	SizeBytes  int64  `json:"size_bytes"`
	SHA256     string `json:"sha256"`
	Error      string `json:"error"`
	CreatedAt  string `json:"created_at"`
	FinishedAt string `json:"finished_at"`
}

type restoreJSON struct {
	ID        int64  `json:"id"`
	BackupID  int64  `json:"backup_id"`
	Devserver string `json:"devserver"`
	Source    string `json:"source"`
	State     string `json:"state"`
	Step      string `json:"step"`
	Progress  int    `json:"progress"`
	Error     string `json:"error"`
}

type listJSON[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}

// reserveReady reserves a vm.small through the API and waits until it is ready.
func readyDevserver(t *testing.T, srv *handlertest.Server, token string) string {
	t.Helper()
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers", Token: token, Body: `{"flavor":"vm.small"}`})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("reserve: %d %s", resp.StatusCode, body)
	}
	name := decode[devserverJSON](t, body).Name
	srv.WaitState(t, name, store.StateReady)
	return name
}

func simWrite(t *testing.T, srv *handlertest.Server, name, path, content string) {
	t.Helper()
	d, err := srv.Store.Devserver(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	res, err := srv.Sim.Exec(context.Background(), d.InstanceID, []string{"write", path, content})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("write %s: %v %+v", path, err, res)
	}
}

func waitBackupDone(t *testing.T, srv *handlertest.Server, token, name string, id int64) backupJSON {
	t.Helper()
	var b backupJSON
	handlertest.Eventually(t, 20*time.Second, "backup to finish", func() bool {
		_, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/devservers/" + name + "/backups", Token: token})
		for _, x := range decode[listJSON[backupJSON]](t, body).Items {
			if x.ID == id {
				b = x
			}
		}
		return b.State != "" && b.State != store.BackupPending
	})
	return b
}

func waitRestoreDone(t *testing.T, srv *handlertest.Server, token, name string, id int64) restoreJSON {
	t.Helper()
	var r restoreJSON
	handlertest.Eventually(t, 20*time.Second, "restore to finish", func() bool {
		_, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/devservers/" + name + "/restores", Token: token})
		for _, x := range decode[listJSON[restoreJSON]](t, body).Items {
			if x.ID == id {
				r = x
			}
		}
		return r.State == store.RestoreDone || r.State == store.RestoreFailed
	})
	return r
}

func countRows(t *testing.T, srv *handlertest.Server, table string) int {
	t.Helper()
	var n int
	if err := srv.Store.InTx(context.Background(), func(tx *store.Tx) error {
		return tx.GetContext(context.Background(), &n, "SELECT COUNT(*) FROM "+table)
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestBackupsAPI(t *testing.T) {
	srv := handlertest.New(t)
	owner := srv.Token(t, "owner@example.com")
	stranger := srv.Token(t, "stranger@example.com")
	admin := srv.Token(t, "admin@example.com", store.RoleAdmin)
	a := readyDevserver(t, srv, owner)
	b := readyDevserver(t, srv, owner)
	theirs := readyDevserver(t, srv, stranger)
	simWrite(t, srv, a, "project/README.md", "# Project\nline two\n")
	simWrite(t, srv, theirs, "secret.txt", "the stranger's own")

	var backup backupJSON
	t.Run("the owner backs up on demand: 202 with a pending backup, then done with size and checksum", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + a + "/backups", Token: owner})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		got := decode[backupJSON](t, body)
		if got.State != store.BackupPending || got.Kind != store.BackupManual || got.Devserver != a {
			t.Errorf("answer %+v", got)
		}
		backup = waitBackupDone(t, srv, owner, a, got.ID)
		if backup.State != store.BackupDone || backup.SizeBytes == 0 || len(backup.SHA256) != 64 || backup.FinishedAt == "" {
			t.Errorf("backup %+v", backup)
		}
	})
	t.Run("an admin may back up the owner's devserver", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + b + "/backups", Token: admin})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		waitBackupDone(t, srv, owner, b, decode[backupJSON](t, body).ID)
	})
	t.Run("backing up someone else's devserver is not found and takes nothing", func(t *testing.T) {
		before := countRows(t, srv, "backups")
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + a + "/backups", Token: stranger})
		if resp.StatusCode != http.StatusNotFound || decode[apiError](t, body).Error.Code != "not_found" {
			t.Errorf("status %d: %s", resp.StatusCode, body)
		}
		if after := countRows(t, srv, "backups"); after != before {
			t.Errorf("backups %d → %d", before, after)
		}
	})
	t.Run("a stranger cannot list the backups", func(t *testing.T) {
		resp, _ := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/devservers/" + a + "/backups", Token: stranger})
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("the list pages with limit and cursor", func(t *testing.T) {
		resp, _ := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + a + "/backups", Token: owner})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("second backup: %d", resp.StatusCode)
		}
		_, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/devservers/" + a + "/backups?limit=1", Token: owner})
		first := decode[listJSON[backupJSON]](t, body)
		if len(first.Items) != 1 || first.NextCursor == "" {
			t.Fatalf("first page %+v", first)
		}
		_, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/devservers/" + a + "/backups?limit=1&cursor=" + first.NextCursor, Token: owner})
		second := decode[listJSON[backupJSON]](t, body)
		if len(second.Items) != 1 || second.Items[0].ID != backup.ID {
			t.Errorf("second page %+v, want backup %d", second, backup.ID)
		}
		resp, _ = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/devservers/" + a + "/backups?cursor=nope", Token: owner})
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("bad cursor: status %d", resp.StatusCode)
		}
	})

	t.Run("restore onto another of the owner's devservers, byte for byte", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + b + "/restore", Token: owner, Body: fmt.Sprintf(`{"backup_id":%d}`, backup.ID)})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		r := decode[restoreJSON](t, body)
		if r.State != store.RestorePending || r.Devserver != b || r.Source != a {
			t.Errorf("answer %+v", r)
		}
		r = waitRestoreDone(t, srv, owner, b, r.ID)
		if r.State != store.RestoreDone || r.Progress != 100 {
			t.Fatalf("restore %+v", r)
		}
		if got, ok := simFile(t, srv, b, "project/README.md"); !ok || got != "# Project\nline two\n" {
			t.Errorf("README.md on %s = %q", b, got)
		}
	})

	bad := []struct {
		name, who, target, body string
		status                  int
		code                    string
	}{
		{"restoring a backup that is not yours", "stranger", theirs, fmt.Sprintf(`{"backup_id":%d}`, backup.ID), 404, "not_found"},
		{"restoring onto someone else's devserver", "stranger", a, fmt.Sprintf(`{"backup_id":%d}`, backup.ID), 404, "not_found"},
		{"an admin restoring one owner's backup onto another owner's devserver", "admin", theirs, fmt.Sprintf(`{"backup_id":%d}`, backup.ID), 404, "not_found"},
		{"an unknown backup id", "owner", a, `{"backup_id":987654}`, 404, "not_found"},
		{"malformed JSON", "owner", a, `{"backup_id":`, 400, "malformed_json"},
		{"a backup id that is not a number", "owner", a, `{"backup_id":"one"}`, 400, "malformed_json"},
		{"no backup id", "owner", a, `{}`, 422, "invalid"},
		{"an unknown field", "owner", a, `{"backup":1}`, 400, "malformed_json"},
	}
	tokens := map[string]string{"owner": owner, "stranger": stranger, "admin": admin}
	for _, c := range bad {
		t.Run(c.name+" is refused and changes nothing", func(t *testing.T) {
			restores, audits := countRows(t, srv, "restores"), countRows(t, srv, "audit_events")
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + c.target + "/restore", Token: tokens[c.who], Body: c.body})
			if resp.StatusCode != c.status || decode[apiError](t, body).Error.Code != c.code {
				t.Errorf("status %d, want %d %s: %s", resp.StatusCode, c.status, c.code, body)
			}
			if countRows(t, srv, "restores") != restores || countRows(t, srv, "audit_events") != audits {
				t.Errorf("a refused restore changed something")
			}
			if got, _ := simFile(t, srv, theirs, "secret.txt"); got != "the stranger's own" {
				t.Errorf("the stranger's data changed: %q", got)
			}
		})
	}

	t.Run("backing up a devserver that is not ready is a conflict with a clear message", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + a + "/release", Token: owner})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("release: %d %s", resp.StatusCode, body)
		}
		before := countRows(t, srv, "backups")
		resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + a + "/backups", Token: owner})
		e := decode[apiError](t, body)
		if resp.StatusCode != http.StatusConflict || e.Error.Code != "not_ready" || !strings.Contains(e.Error.Message, "only a ready devserver can be backed up") {
			t.Errorf("status %d: %s", resp.StatusCode, body)
		}
		srv.WaitState(t, a, store.StateReleased)
		// The release took its own backup first; the refused request added none.
		_, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/devservers/" + a + "/backups", Token: owner})
		var kinds []string
		for _, x := range decode[listJSON[backupJSON]](t, body).Items {
			kinds = append(kinds, x.Kind)
		}
		if countRows(t, srv, "backups") != before+1 || len(kinds) == 0 || kinds[0] != store.BackupPreRelease {
			t.Errorf("backups after release: %v", kinds)
		}
	})
	t.Run("restoring onto a devserver that is not ready is a conflict", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + a + "/restore", Token: owner, Body: fmt.Sprintf(`{"backup_id":%d}`, backup.ID)})
		if resp.StatusCode != http.StatusConflict || decode[apiError](t, body).Error.Code != "not_ready" {
			t.Errorf("status %d: %s", resp.StatusCode, body)
		}
	})
}

func TestBackupsPage(t *testing.T) {
	srv := handlertest.New(t)
	owner := srv.SignIn(t, "owner@example.com")
	token := srv.Token(t, "owner@example.com")
	a := readyDevserver(t, srv, token)
	b := readyDevserver(t, srv, token)
	simWrite(t, srv, a, "notes.txt", "from the page")

	t.Run("the devserver page offers Back up now", func(t *testing.T) {
		_, body := srv.Do(t, owner, handlertest.Request{Path: "/devservers/" + a})
		doc := handlertest.Doc(t, body)
		if doc.Find("#devserver-backups").Length() != 1 {
			t.Fatal("no backups section")
		}
		if got := doc.Find(`#devserver-backups form[action="/devservers/` + a + `/backups"] button`).Text(); got != "Back up now" {
			t.Errorf("button %q", got)
		}
	})
	var id int64
	t.Run("Back up now posts, redirects and lists the backup", func(t *testing.T) {
		resp, _ := srv.Do(t, owner, handlertest.Request{Method: "POST", Path: "/devservers/" + a + "/backups", Form: url.Values{}})
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/devservers/"+a) {
			t.Fatalf("status %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		bs, err := srv.Store.Backups(context.Background(), store.BackupFilter{})
		if err != nil || len(bs) != 1 {
			t.Fatalf("backups %+v (%v)", bs, err)
		}
		id = bs[0].ID
		done := waitBackupDone(t, srv, token, a, id)
		_, body := srv.Do(t, owner, handlertest.Request{Path: "/devservers/" + a})
		doc := handlertest.Doc(t, body)
		row := doc.Find("#backup-" + strconv.FormatInt(id, 10))
		if row.AttrOr("data-state", "") != "done" || row.AttrOr("data-kind", "") != "manual" {
			t.Errorf("row %s", row.Text())
		}
		if sum := row.Find("code.checksum").AttrOr("data-sha256", ""); sum != done.SHA256 {
			t.Errorf("checksum %q, want %q", sum, done.SHA256)
		}
		if !strings.Contains(doc.Find(".flash-success").Text(), "Backing up "+a) {
			t.Errorf("flash %q", doc.Find(".flash").Text())
		}
		// Nothing in flight: the section does not poll.
		if trigger, _ := doc.Find("#devserver-backups").Attr("hx-trigger"); strings.Contains(trigger, "every") {
			t.Errorf("the backups section polls with nothing in flight (hx-trigger %q)", trigger)
		}
	})
	t.Run("the HTMX fragment is the section alone", func(t *testing.T) {
		resp, body := srv.Do(t, owner, handlertest.Request{Path: "/devservers/" + a + "/backups", Headers: map[string]string{"HX-Request": "true"}})
		if resp.StatusCode != 200 || strings.Contains(body, "<html") || !strings.Contains(body, `id="devserver-backups"`) {
			t.Errorf("status %d: %.200s", resp.StatusCode, body)
		}
	})
	t.Run("each backup offers a restore onto the owner's ready devservers", func(t *testing.T) {
		_, body := srv.Do(t, owner, handlertest.Request{Path: "/devservers/" + a})
		doc := handlertest.Doc(t, body)
		form := doc.Find(fmt.Sprintf(`form[action="/backups/%d/restore"]`, id))
		var options []string
		form.Find(`select[name="target"] option`).Each(func(_ int, o *goquery.Selection) { options = append(options, o.AttrOr("value", "")) })
		if len(options) != 2 || !containsAll(options, a, b) {
			t.Errorf("targets %v, want %s and %s", options, a, b)
		}
		label := doc.Find(`label[for="restore-target-` + strconv.FormatInt(id, 10) + `"]`)
		if label.Length() != 1 {
			t.Error("the target choice has no label")
		}
	})
	t.Run("restoring from the page shows the restore on the target's page", func(t *testing.T) {
		simWrite(t, srv, b, "notes.txt", "to be replaced")
		resp, _ := srv.Do(t, owner, handlertest.Request{Method: "POST", Path: fmt.Sprintf("/backups/%d/restore", id), Form: url.Values{"target": {b}}})
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/devservers/"+b) {
			t.Fatalf("status %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		handlertest.Eventually(t, 20*time.Second, "restore to show as done", func() bool {
			_, body := srv.Do(t, owner, handlertest.Request{Path: "/devservers/" + b + "/backups", Headers: map[string]string{"HX-Request": "true"}})
			return handlertest.Doc(t, body).Find(`.restore-status[data-state="done"]`).Length() == 1
		})
		if got, _ := simFile(t, srv, b, "notes.txt"); got != "from the page" {
			t.Errorf("notes.txt = %q", got)
		}
		// The target's page lists the pre_restore backup taken first.
		_, body := srv.Do(t, owner, handlertest.Request{Path: "/devservers/" + b})
		if handlertest.Doc(t, body).Find(`tr[data-kind="pre_restore"]`).Length() != 1 {
			t.Error("no pre_restore backup listed")
		}
	})
	t.Run("a restore with no target chosen is refused with a message", func(t *testing.T) {
		resp, _ := srv.Do(t, owner, handlertest.Request{Method: "POST", Path: fmt.Sprintf("/backups/%d/restore", id), Form: url.Values{}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("status %d", resp.StatusCode)
		}
		_, body := srv.Do(t, owner, handlertest.Request{Path: resp.Header.Get("Location")})
		if !strings.Contains(handlertest.Doc(t, body).Find(".flash-error").Text(), "choose the devserver") {
			t.Errorf("no message: %.300s", body)
		}
	})
	t.Run("a stranger's restore form post is not found", func(t *testing.T) {
		stranger := srv.SignIn(t, "stranger@example.com")
		restores := countRows(t, srv, "restores")
		resp, _ := srv.Do(t, stranger, handlertest.Request{Method: "POST", Path: fmt.Sprintf("/backups/%d/restore", id), Form: url.Values{"target": {b}}})
		if resp.StatusCode != http.StatusNotFound || countRows(t, srv, "restores") != restores {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
}

func containsAll(have []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}
