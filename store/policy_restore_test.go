package store_test

import (
	"testing"

	"github.com/devport/devport/store"
)

func TestCanRestoreBackup(t *testing.T) {
	owner := store.User{ID: 1, Roles: []string{"engineer"}}
	other := store.User{ID: 2, Roles: []string{"engineer"}}
	admin := store.User{ID: 3, Roles: []string{"engineer", "admin"}}
	mine := store.Devserver{OwnerID: 1}
	theirs := store.Devserver{OwnerID: 2}
	backup := store.Backup{OwnerID: 1, State: store.BackupDone}
	gone := store.Backup{OwnerID: 1, State: store.BackupDeleted}
	for _, c := range []struct {
		name   string
		u      store.User
		b      store.Backup
		target store.Devserver
		want   bool
	}{
		{"the owner onto their own devserver", owner, backup, mine, true},
		{"the owner onto someone else's devserver", owner, backup, theirs, false},
		{"someone else onto the owner's devserver", other, backup, mine, false},
		{"someone else's backup onto their own devserver", other, backup, theirs, false},
		{"an admin onto the owner's devserver", admin, backup, mine, true},
		{"an admin mixing owners", admin, backup, theirs, false},
		{"a deleted backup", owner, gone, mine, false},
	} {
		if got := store.CanRestoreBackup(c.u, c.b, c.target); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
