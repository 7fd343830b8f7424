package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

func addShare(s *store.Store, who store.User, d store.Devserver, email string) (store.Share, error) {
	var sh store.Share
	err := s.InTx(context.Background(), func(tx *store.Tx) error {
		var err error
		sh, err = tx.AddShare(context.Background(), store.UserActor(who, "test", ""), d, email)
		return err
	})
	return sh, err
}

func TestShares(t *testing.T) {
	ctx := context.Background()
	s := storetest.Seeded(t, nil)
	owner := storetest.User(t, s, "owner@example.com")
	bob := storetest.User(t, s, "bob@example.com")
	admin := storetest.User(t, s, "admin@example.com", store.RoleAdmin)
	d, err := reserve(t, s, store.Reservation{Owner: owner, Flavor: "vm.small"})
	if err != nil {
		t.Fatal(err)
	}

	sh, err := addShare(s, owner, d, "  Bob@Example.com ")
	if err != nil {
		t.Fatal(err)
	}
	if sh.Email != "bob@example.com" || sh.CreatedBy != "owner@example.com" {
		t.Errorf("share = %+v", sh)
	}
	d, _ = s.DevserverByID(ctx, d.ID)
	if !d.SharedWith(bob.ID) || store.RelationOf(bob, d) != store.RelationSharee || store.RelationOf(owner, d) != store.RelationOwner || store.RelationOf(admin, d) != "" {
		t.Errorf("sharees = %v", d.ShareeIDs)
	}
	if !store.CanSeeDevserver(bob, d) || store.CanManageDevserver(bob, d) {
		t.Error("a sharee must see the devserver and not manage it")
	}

	t.Run("lists own and shared devservers with the viewer's relation", func(t *testing.T) {
		own, err := reserve(t, s, store.Reservation{Owner: bob, Flavor: "vm.small"})
		if err != nil {
			t.Fatal(err)
		}
		ds, err := s.Devservers(ctx, store.DevserverFilter{Viewer: bob.ID, OwnOrShared: true})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, x := range ds {
			got[x.Name] = x.Relation
		}
		if len(got) != 2 || got[d.Name] != store.RelationSharee || got[own.Name] != store.RelationOwner {
			t.Errorf("bob's list = %v", got)
		}
		ds, _ = s.Devservers(ctx, store.DevserverFilter{Viewer: owner.ID, OwnOrShared: true})
		if len(ds) != 1 || ds[0].Name != d.Name || ds[0].Relation != store.RelationOwner {
			t.Errorf("owner's list = %+v", ds)
		}
	})

	for _, c := range []struct {
		name, email string
		who         store.User
		field, code string
	}{
		{"refuses an unknown email", "nobody@example.com", owner, "email", ""},
		{"refuses sharing with oneself", "owner@example.com", owner, "email", ""},
		{"refuses the owner as collaborator", "owner@example.com", admin, "email", ""},
		{"refuses an admin sharing with themselves", "admin@example.com", admin, "email", ""},
		{"refuses what is not an email", "not an email", owner, "email", ""},
		{"refuses an empty email", "", owner, "email", ""},
		{"refuses sharing twice", "BOB@example.com", owner, "", "already_shared"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before, _ := s.Shares(ctx, d.ID)
			eventsBefore, _ := s.AuditEvents(ctx, "devserver", d.Name)
			_, err := addShare(s, c.who, d, c.email)
			var ve *store.ValidationError
			var ce *store.ConflictError
			switch {
			case c.field != "" && (!errors.As(err, &ve) || ve.Fields[c.field] == ""):
				t.Errorf("err = %v, want a problem with %s", err, c.field)
			case c.code != "" && (!errors.As(err, &ce) || ce.Code != c.code):
				t.Errorf("err = %v, want %s", err, c.code)
			}
			after, _ := s.Shares(ctx, d.ID)
			eventsAfter, _ := s.AuditEvents(ctx, "devserver", d.Name)
			if len(after) != len(before) || len(eventsAfter) != len(eventsBefore) {
				t.Errorf("changed: shares %d → %d, events %d → %d", len(before), len(after), len(eventsBefore), len(eventsAfter))
			}
		})
	}
	t.Run("says an unknown person must sign in first", func(t *testing.T) {
		_, err := addShare(s, owner, d, "nobody@example.com")
		var ve *store.ValidationError
		if !errors.As(err, &ve) || !strings.Contains(ve.Fields["email"], "sign in") {
			t.Errorf("err = %v", err)
		}
	})

	t.Run("puts the owner's and sharees' keys in authorized_keys, sorted", func(t *testing.T) {
		bobKey := ed25519Key(t, "bob@laptop")
		ownerKey := ed25519Key(t, "owner@laptop")
		strangerKey := ed25519Key(t, "x")
		stranger := storetest.User(t, s, "stranger@example.com")
		for _, k := range []struct {
			u   store.User
			key string
		}{{bob, bobKey}, {owner, ownerKey}, {stranger, strangerKey}} {
			if _, err := addKey(s, k.u, "", k.key); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.AuthorizedKeys(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		bobLine := strings.Join(strings.Fields(bobKey)[:2], " ") + " bob@example.com\n"
		ownerLine := strings.Join(strings.Fields(ownerKey)[:2], " ") + " owner@example.com\n"
		if want := store.AuthorizedKeysHeader + bobLine + ownerLine; got != want {
			t.Errorf("authorized_keys =\n%s\nwant\n%s", got, want)
		}
		again, _ := s.AuthorizedKeys(ctx, d.ID)
		if again != got {
			t.Error("authorized_keys is not stable")
		}
	})

	t.Run("removes a share", func(t *testing.T) {
		err := s.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.RemoveShare(ctx, store.UserActor(owner, "", ""), d, "bob@example.com")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		d, _ := s.DevserverByID(ctx, d.ID)
		if d.SharedWith(bob.ID) || store.CanSeeDevserver(bob, d) {
			t.Error("bob still sees it")
		}
		keys, _ := s.AuthorizedKeys(ctx, d.ID)
		if strings.Contains(keys, "bob@example.com") {
			t.Errorf("bob's key is still in authorized_keys:\n%s", keys)
		}
		err = s.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.RemoveShare(ctx, store.UserActor(owner, "", ""), d, "bob@example.com")
			return err
		})
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("removing a non-sharee: %v", err)
		}
		events, _ := s.AuditEvents(ctx, "devserver", d.Name)
		var actions []string
		for _, e := range events {
			actions = append(actions, e.Action)
		}
		if got := strings.Join(actions, ","); !strings.HasSuffix(got, "devserver.share,devserver.unshare") {
			t.Errorf("audit = %s", got)
		}
	})
}
