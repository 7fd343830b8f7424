package store_test

import (
	"context"
	"testing"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// CanShellDevserver: the owner and sharees; not admins, reviewers or
// strangers, and nobody on a pooled devserver.
func TestCanShellDevserver(t *testing.T) {
	owner := store.User{ID: 1}
	sharee := store.User{ID: 2}
	admin := store.User{ID: 3, Roles: []string{store.RoleAdmin}}
	reviewer := store.User{ID: 4, Roles: []string{store.RoleReviewer}}
	stranger := store.User{ID: 5}
	d := store.Devserver{OwnerID: 1, ShareeIDs: []int64{2}}
	for _, tc := range []struct {
		who  string
		u    store.User
		d    store.Devserver
		want bool
	}{
		{"owner", owner, d, true},
		{"sharee", sharee, d, true},
		{"admin", admin, d, false},
		{"admin who owns it", store.User{ID: 1, Roles: []string{store.RoleAdmin}}, d, true},
		{"reviewer", reviewer, d, false},
		{"stranger", stranger, d, false},
		{"no one", store.User{}, store.Devserver{}, false},
		{"anyone on a pooled devserver", owner, store.Devserver{}, false},
	} {
		if got := store.CanShellDevserver(tc.u, tc.d); got != tc.want {
			t.Errorf("%s: CanShellDevserver = %v, want %v", tc.who, got, tc.want)
		}
	}
}

// SSHKeyUsers finds everyone who registered a key, by the key itself.
func TestSSHKeyUsers(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	ada := storetest.User(t, s, "ada@example.com", store.RoleAdmin)
	bob := storetest.User(t, s, "bob@example.com")
	shared := ed25519Key(t, "shared@laptop")
	own := ed25519Key(t, "")
	err := s.InTx(ctx, func(tx *store.Tx) error {
		for _, k := range []struct {
			u   store.User
			key string
		}{{ada, shared}, {bob, shared}, {bob, own}} {
			if _, err := tx.AddSSHKey(ctx, store.UserActor(k.u, "", ""), k.u, "", k.key); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	us, err := s.SSHKeyUsers(ctx, shared)
	if err != nil || len(us) != 2 || us[0].Email != "ada@example.com" || !us[0].Has(store.RoleAdmin) || us[1].Email != "bob@example.com" {
		t.Errorf("users of the shared key = %+v, %v", us, err)
	}
	if us, err := s.SSHKeyUsers(ctx, own); err != nil || len(us) != 1 || us[0].ID != bob.ID {
		t.Errorf("users of bob's key = %+v, %v", us, err)
	}
	if us, err := s.SSHKeyUsers(ctx, ed25519Key(t, "")); err != nil || len(us) != 0 {
		t.Errorf("users of an unknown key = %+v, %v", us, err)
	}
	if us, err := s.SSHKeyUsers(ctx, "not a key"); err != nil || len(us) != 0 {
		t.Errorf("users of garbage = %+v, %v", us, err)
	}
}
