package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

const testVerifier = "a-verifier-of-the-cli-that-is-long-enough-0123456789"

func cliRequest() store.CLILoginRequest {
	return store.CLILoginRequest{Port: 43111, State: "st4te", Challenge: store.S256(testVerifier), Name: "laptop"}
}

func approveCLI(t *testing.T, s *store.Store, u store.User, c store.CLILoginRequest) string {
	t.Helper()
	var code string
	err := s.InTx(context.Background(), func(tx *store.Tx) (err error) {
		code, err = tx.CreateCLILoginCode(context.Background(), store.UserActor(u, "test", ""), u, c)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func exchangeCLI(s *store.Store, code, verifier string) (store.Token, string, store.User, error) {
	var (
		tok    store.Token
		secret string
		u      store.User
	)
	err := s.InTx(context.Background(), func(tx *store.Tx) (err error) {
		tok, secret, u, err = tx.ExchangeCLILoginCode(context.Background(), store.Actor{Name: "anonymous"}, code, verifier)
		return err
	})
	return tok, secret, u, err
}

func countTokens(t *testing.T, s *store.Store, userID int64) int {
	t.Helper()
	var n int
	if err := s.DB().QueryRow(s.DB().Rebind(`SELECT COUNT(*) FROM tokens WHERE user_id = ?`), userID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCLILoginRequestValidation(t *testing.T) {
	good := cliRequest()
	if err := good.Validate(); err != nil {
		t.Fatalf("a good request: %v", err)
	}
	for name, change := range map[string]func(*store.CLILoginRequest){
		"port below 1024":        func(c *store.CLILoginRequest) { c.Port = 80 },
		"port above 65535":       func(c *store.CLILoginRequest) { c.Port = 70000 },
		"no state":               func(c *store.CLILoginRequest) { c.State = "" },
		"state with a space":     func(c *store.CLILoginRequest) { c.State = "a b" },
		"short challenge":        func(c *store.CLILoginRequest) { c.Challenge = "abc" },
		"challenge not base64":   func(c *store.CLILoginRequest) { c.Challenge = strings.Repeat("!", 43) },
		"no name":                func(c *store.CLILoginRequest) { c.Name = " " },
		"name too long":          func(c *store.CLILoginRequest) { c.Name = strings.Repeat("h", 101) },
		"name with a control":    func(c *store.CLILoginRequest) { c.Name = "lap\ntop" },
		"challenge with a tilde": func(c *store.CLILoginRequest) { c.Challenge = strings.Repeat("~", 43) },
	} {
		c := good
		change(&c)
		var ve *store.ValidationError
		if err := c.Validate(); !errors.As(err, &ve) {
			t.Errorf("%s: %v, want a validation error", name, err)
		}
	}
}

func TestCLILoginExchange(t *testing.T) {
	s := storetest.Seeded(t, nil)
	u := storetest.User(t, s, "dev@example.com")
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	s.Now = func() time.Time { return now }

	t.Run("a code and its verifier give a full token for 90 days, once", func(t *testing.T) {
		code := approveCLI(t, s, u, cliRequest())
		before := countTokens(t, s, u.ID)
		tok, secret, who, err := exchangeCLI(s, code, testVerifier)
		if err != nil {
			t.Fatal(err)
		}
		if who.Email != u.Email || tok.Name != "devport CLI on laptop" || tok.Scope != "full" || !strings.HasPrefix(secret, store.TokenPrefix) {
			t.Errorf("%+v %q %s", tok, secret, who.Email)
		}
		if tok.ExpiresAt == nil || !tok.ExpiresAt.Equal(now.Add(90*24*time.Hour)) {
			t.Errorf("expires %v", tok.ExpiresAt)
		}
		if countTokens(t, s, u.ID) != before+1 {
			t.Error("no token stored")
		}
		var audit string
		if err := s.WriteDB().QueryRow(`SELECT detail FROM audit_events WHERE action = 'token.create' ORDER BY id DESC LIMIT 1`).Scan(&audit); err != nil || !strings.Contains(audit, `"via":"cli_login"`) {
			t.Errorf("audit %q %v", audit, err)
		}
		if _, _, _, err := exchangeCLI(s, code, testVerifier); !errors.Is(err, store.ErrInvalidGrant) {
			t.Errorf("a used code: %v", err)
		}
		if countTokens(t, s, u.ID) != before+1 {
			t.Error("a used code made a token")
		}
	})

	t.Run("codes past their expiry by a day are removed, newer ones kept", func(t *testing.T) {
		approveCLI(t, s, u, cliRequest())
		count := func() int {
			var n int
			if err := s.DB().QueryRow(`SELECT COUNT(*) FROM cli_login_codes`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		all := count()
		defer func() { s.Now = func() time.Time { return now } }()
		s.Now = func() time.Time { return now.Add(23 * time.Hour) }
		if n, err := s.DeleteExpiredCLILoginCodes(t.Context()); err != nil || n != 0 || count() != all {
			t.Errorf("within the day: removed %d (%v), %d of %d left", n, err, count(), all)
		}
		s.Now = func() time.Time { return now.Add(25 * time.Hour) }
		approveCLI(t, s, u, cliRequest())
		if n, err := s.DeleteExpiredCLILoginCodes(t.Context()); err != nil || int(n) != all || count() != 1 {
			t.Errorf("after the day: removed %d (%v), want %d; %d left, want the fresh one", n, err, all, count())
		}
	})

	t.Run("a wrong verifier, an unknown code or an expired code make nothing", func(t *testing.T) {
		code := approveCLI(t, s, u, cliRequest())
		before := countTokens(t, s, u.ID)
		for name, try := range map[string][2]string{
			"wrong verifier": {code, "not-the-verifier"},
			"no verifier":    {code, ""},
			"unknown code":   {"dpc_unknown", testVerifier},
			"not a code":     {"dpt_token", testVerifier},
		} {
			if _, _, _, err := exchangeCLI(s, try[0], try[1]); !errors.Is(err, store.ErrInvalidGrant) {
				t.Errorf("%s: %v", name, err)
			}
		}
		s.Now = func() time.Time { return now.Add(store.CLILoginCodeTTL + time.Second) }
		defer func() { s.Now = func() time.Time { return now } }()
		if _, _, _, err := exchangeCLI(s, code, testVerifier); !errors.Is(err, store.ErrInvalidGrant) {
			t.Errorf("expired: %v", err)
		}
		if countTokens(t, s, u.ID) != before {
			t.Error("a token was made")
		}
	})

	t.Run("of two exchanges at once, exactly one gets a token", func(t *testing.T) {
		code := approveCLI(t, s, u, cliRequest())
		before := countTokens(t, s, u.ID)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _, _, errs[i] = exchangeCLI(s, code, testVerifier)
			}()
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			if err == nil {
				ok++
			} else if !errors.Is(err, store.ErrInvalidGrant) {
				t.Errorf("unexpected error: %v", err)
			}
		}
		if ok != 1 || countTokens(t, s, u.ID) != before+1 {
			t.Errorf("%d exchanges succeeded, %d tokens made", ok, countTokens(t, s, u.ID)-before)
		}
	})
}

func TestClientBundles(t *testing.T) {
	ctx := context.Background()
	s := storetest.Seeded(t, nil)
	storetest.User(t, s, "admin@example.com", store.RoleAdmin)
	u := storetest.User(t, s, "dev@example.com")
	who := store.UserActor(u, "test", "")
	add := func(in store.ClientBundle) (store.DiagnosticBundle, error) {
		var b store.DiagnosticBundle
		err := s.InTx(ctx, func(tx *store.Tx) (err error) {
			b, err = tx.AddClientBundle(ctx, who, in)
			return err
		})
		return b, err
	}
	for name, in := range map[string]store.ClientBundle{
		"no parts":       {},
		"too many parts": {Parts: manyParts(21)},
		"a long note":    {Note: strings.Repeat("x", 2001), Parts: manyParts(1)},
		"an empty name":  {Parts: map[string]json.RawMessage{"": json.RawMessage(`1`)}},
		"not JSON":       {Parts: map[string]json.RawMessage{"x": json.RawMessage(`{`)}},
	} {
		var ve *store.ValidationError
		if _, err := add(in); !errors.As(err, &ve) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if bs, _ := s.Bundles(ctx, 10); len(bs) != 0 {
		t.Fatalf("bad bundles stored: %d", len(bs))
	}
	b, err := add(store.ClientBundle{Note: "login fails", Parts: map[string]json.RawMessage{"doctor": json.RawMessage(`{"ok":false}`), "version": json.RawMessage(`"1.2"`)}})
	if err != nil {
		t.Fatal(err)
	}
	if b.Source != store.BundleFromCLI || b.State != "ready" || b.DevserverID != nil || b.RequestedBy != u.Email || string(b.Parts()["doctor"]) != `{"ok":false}` {
		t.Errorf("%+v", b)
	}
	var tasks int
	if err := s.WriteDB().QueryRow(`SELECT COUNT(*) FROM notifications WHERE kind = 'support'`).Scan(&tasks); err != nil || tasks != 1 {
		t.Errorf("%d support notifications for the one admin (%v)", tasks, err)
	}
	var qe *store.QuotaError
	if _, err := add(store.ClientBundle{Parts: manyParts(1)}); !errors.As(err, &qe) {
		t.Errorf("a second bundle at once: %v", err)
	}
}

func manyParts(n int) map[string]json.RawMessage {
	ps := map[string]json.RawMessage{}
	for i := range n {
		ps[strings.Repeat("p", i+1)] = json.RawMessage(`true`)
	}
	return ps
}
