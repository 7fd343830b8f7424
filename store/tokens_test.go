package store_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

func TestTokens(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s.Now = func() time.Time { return now }
	ann := storetest.User(t, s, "ann@example.com")
	bob := storetest.User(t, s, "bob@example.com")
	who := store.UserActor(ann, "127.0.0.1", "req-1")
	at := func(d time.Duration) *time.Time { x := now.Add(d); return &x }
	create := func(u store.User, name, scope string, exp *time.Time) (store.Token, string, error) {
		var tok store.Token
		var secret string
		err := s.InTx(ctx, func(tx *store.Tx) error {
			var err error
			tok, secret, err = tx.CreateUserToken(ctx, store.UserActor(u, "", ""), u, name, scope, exp)
			return err
		})
		return tok, secret, err
	}
	count := func(q string) int {
		var n int
		if err := s.WriteDB().QueryRowContext(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("creates a token whose secret works and is not kept", func(t *testing.T) {
		tok, secret, err := create(ann, " laptop ", store.ScopeRead, at(7*24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if tok.Name != "laptop" || tok.Scope != "read" || !strings.HasPrefix(secret, "dpt_") || tok.Prefix != secret[:8] {
			t.Errorf("token %+v secret %q", tok, secret)
		}
		if n := count(`SELECT COUNT(*) FROM tokens WHERE hash LIKE '%` + secret[4:] + `%' OR prefix = '` + secret + `'`); n != 0 {
			t.Errorf("the secret is stored in %d rows", n)
		}
		got, err := s.TokenBySecret(ctx, secret)
		if err != nil || got.ID != tok.ID {
			t.Errorf("TokenBySecret: %+v %v", got, err)
		}
		if n := count(`SELECT COUNT(*) FROM audit_events WHERE action = 'token.create' AND object_id = '` + strconv.FormatInt(tok.ID, 10) + `'`); n != 1 {
			t.Errorf("%d token.create audit events", n)
		}
	})

	t.Run("refuses bad input and writes nothing", func(t *testing.T) {
		before := count(`SELECT COUNT(*) FROM tokens`) + count(`SELECT COUNT(*) FROM audit_events`)
		for _, c := range []struct {
			name, scope string
			exp         *time.Time
			field       string
		}{
			{"", "read", at(time.Hour), "name"},
			{"   ", "read", at(time.Hour), "name"},
			{strings.Repeat("x", 101), "read", at(time.Hour), "name"},
			{"tab\there", "read", at(time.Hour), "name"},
			{"ok", "write", at(time.Hour), "scope"},
			{"ok", "", at(time.Hour), "scope"},
			{"ok", "full", at(-time.Minute), "expires_at"},
			{"ok", "full", at(0), "expires_at"},
			{"ok", "full", at(366*24*time.Hour + time.Second), "expires_at"},
		} {
			_, _, err := create(ann, c.name, c.scope, c.exp)
			var ve *store.ValidationError
			if !errors.As(err, &ve) || ve.Fields[c.field] == "" {
				t.Errorf("%q %q %v: %v, want a problem with %s", c.name, c.scope, c.exp, err, c.field)
			}
		}
		if after := count(`SELECT COUNT(*) FROM tokens`) + count(`SELECT COUNT(*) FROM audit_events`); after != before {
			t.Errorf("rows went from %d to %d", before, after)
		}
		if _, _, err := create(ann, strings.Repeat("é", 100), "full", at(366*24*time.Hour)); err != nil {
			t.Errorf("100 characters and 366 days: %v", err)
		}
	})

	t.Run("lists own tokens newest first, expired ones too, revoked ones not", func(t *testing.T) {
		old, _, err := create(ann, "short-lived", "full", at(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		gone, _, err := create(ann, "to revoke", "full", at(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		newest, _, err := create(ann, "newest", "full", at(48*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := create(bob, "bob's", "full", at(time.Hour)); err != nil {
			t.Fatal(err)
		}
		err = s.InTx(ctx, func(tx *store.Tx) error { _, err := tx.RevokeToken(ctx, who, ann, gone.ID); return err })
		if err != nil {
			t.Fatal(err)
		}
		now = now.Add(2 * time.Hour) // old has expired
		ts, err := s.Tokens(ctx, ann.ID, 0, 50)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tok := range ts {
			names = append(names, tok.Name)
			if tok.ID == old.ID && !tok.Expired(now) {
				t.Errorf("%s is not expired", tok.Name)
			}
		}
		if len(ts) != 4 || ts[0].ID != newest.ID || ts[1].ID != old.ID || strings.Contains(strings.Join(names, ","), "revoke") || strings.Contains(strings.Join(names, ","), "bob") {
			t.Errorf("tokens %v", names)
		}
		page, err := s.Tokens(ctx, ann.ID, ts[1].ID, 1)
		if err != nil || len(page) != 1 || page[0].ID != ts[2].ID {
			t.Errorf("the page after %d: %+v %v", ts[1].ID, page, err)
		}
	})

	t.Run("revokes own tokens only, at once", func(t *testing.T) {
		tok, secret, err := create(ann, "ci", "full", at(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		bobs, bobSecret, err := create(bob, "bob ci", "full", at(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		err = s.InTx(ctx, func(tx *store.Tx) error { _, err := tx.RevokeToken(ctx, who, ann, bobs.ID); return err })
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("revoking someone else's token: %v, want not found", err)
		}
		if _, err := s.TokenBySecret(ctx, bobSecret); err != nil {
			t.Errorf("bob's token after ann's attempt: %v", err)
		}
		err = s.InTx(ctx, func(tx *store.Tx) error { _, err := tx.RevokeToken(ctx, who, ann, tok.ID); return err })
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.TokenBySecret(ctx, secret); !errors.Is(err, store.ErrTokenRevoked) || !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a revoked token: %v", err)
		}
		err = s.InTx(ctx, func(tx *store.Tx) error { _, err := tx.RevokeToken(ctx, who, ann, tok.ID); return err })
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("revoking twice: %v, want not found", err)
		}
		if n := count(`SELECT COUNT(*) FROM audit_events WHERE action = 'token.revoke' AND object_id = '` + strconv.FormatInt(tok.ID, 10) + `' AND actor = 'ann@example.com'`); n != 1 {
			t.Errorf("%d token.revoke audit events", n)
		}
	})

	t.Run("an expired token no longer works", func(t *testing.T) {
		_, secret, err := create(ann, "brief", "full", at(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Minute)
		if _, err := s.TokenBySecret(ctx, secret); !errors.Is(err, store.ErrTokenExpired) {
			t.Errorf("an expired token: %v", err)
		}
	})

	t.Run("the bootstrap command's tokens may have no expiry", func(t *testing.T) {
		err := s.InTx(ctx, func(tx *store.Tx) error {
			_, _, err := tx.CreateToken(ctx, ann.ID, "automation", "full", nil)
			return err
		})
		if err != nil {
			t.Error(err)
		}
	})
}
