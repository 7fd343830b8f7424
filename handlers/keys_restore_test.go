package handlers_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
)

// TestRestoreDoesNotBringBackOldKeys: a backup taken while a collaborator had
// access holds their key in authorized_keys; restoring it after they were
// removed, or migrating (which restores), must not let them back in.
func TestRestoreDoesNotBringBackOldKeys(t *testing.T) {
	srv := handlertest.New(t)
	owner := srv.Token(t, "ora@example.com")
	bob := srv.Token(t, "bob@example.com")
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/me/keys", Token: bob, Body: `{"public_key":"` + newKey(t, "bob@laptop") + `"}`})
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		t.Fatalf("add key: %d %s", resp.StatusCode, body)
	}
	bobKey := decode[keyJSON](t, body).PublicKey
	d := reserveReady(t, srv, owner)
	srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + d.Name + "/shares", Token: owner, Body: `{"email":"bob@example.com"}`})
	handlertest.Eventually(t, 20*time.Second, "bob's key on the devserver", func() bool {
		return strings.Contains(authorizedKeys(t, srv, d.Name), bobKey)
	})

	resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + d.Name + "/backups", Token: owner})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("backup: %d %s", resp.StatusCode, body)
	}
	backupID := decode[struct {
		ID int64 `json:"id"`
	}](t, body).ID
	handlertest.Eventually(t, 20*time.Second, "the backup", func() bool {
		b, err := srv.Store.Backup(t.Context(), backupID)
		return err == nil && b.State == store.BackupDone
	})

	resp, _ = srv.Do(t, nil, handlertest.Request{Method: "DELETE", Path: "/api/v1/devservers/" + d.Name + "/shares/bob@example.com", Token: owner})
	if resp.StatusCode >= 300 {
		t.Fatalf("unshare: %d", resp.StatusCode)
	}
	handlertest.Eventually(t, 20*time.Second, "bob's key gone", func() bool {
		return !strings.Contains(authorizedKeys(t, srv, d.Name), bobKey)
	})

	t.Run("after a restore", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + d.Name + "/restore", Token: owner, Body: `{"backup_id":` + strconv.FormatInt(backupID, 10) + `}`})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("restore: %d %s", resp.StatusCode, body)
		}
		handlertest.Eventually(t, 20*time.Second, "the restore and the key sync after it", func() bool {
			rs, err := srv.Store.Restores(t.Context(), d.ID, 1)
			return err == nil && len(rs) == 1 && rs[0].State == "done" && !strings.Contains(authorizedKeys(t, srv, d.Name), bobKey)
		})
	})
	t.Run("after a migration", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/devservers/" + d.Name + "/migrate", Token: owner, Body: `{"region":"ftw"}`})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("migrate: %d %s", resp.StatusCode, body)
		}
		if m := waitMigration(t, srv, d.Name); m.State != "done" {
			t.Fatalf("migration %s: %s", m.State, m.Error)
		}
		srv.WaitState(t, d.Name, store.StateReady)
		handlertest.Eventually(t, 20*time.Second, "the keys of today on the migrated devserver", func() bool {
			keys := authorizedKeys(t, srv, d.Name)
			return !strings.Contains(keys, bobKey)
		})
	})
}
