package store

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
)

// The browser sign-in of `devport login`: the CLI opens /cli/login with a
// PKCE challenge, the signed-in person approves, the portal hands the CLI a
// one-time code through its local callback, and the CLI exchanges the code
// and its verifier for a personal access token.

const (
	// CLILoginCodeTTL is how long a one-time code may be exchanged.
	CLILoginCodeTTL = 2 * time.Minute
	// CLITokenTTL is how long the token a CLI sign-in creates lasts.
	CLITokenTTL = 90 * 24 * time.Hour
	// cliCodePrefix marks one-time codes, so they are not mistaken for tokens.
	cliCodePrefix = "dpc_"
)

// ErrInvalidGrant is a code that is unknown, expired or used, or a verifier
// that does not match its challenge.
var ErrInvalidGrant = errors.New("invalid grant")

// CLILoginRequest is what the CLI asked for on /cli/login.
type CLILoginRequest struct {
	Port      int
	State     string
	Challenge string
	// Name is the host the CLI runs on.
	Name string
}

// TokenName is the name of the token a sign-in creates.
func (c CLILoginRequest) TokenName() string { return "devport CLI on " + c.Name }

// Validate reports what is wrong with the request, for a 400 page.
func (c CLILoginRequest) Validate() error {
	p := Problems{}
	if c.Port < 1024 || c.Port > 65535 {
		p.Add("port", "must be a port from 1024 to 65535")
	}
	if c.State == "" {
		p.Add("state", "is required")
	} else if len(c.State) > 200 || !cliURLSafe(c.State) {
		p.Add("state", "must be at most 200 letters, digits, '-', '_', '.' or '~'")
	}
	if !ValidChallenge(c.Challenge) {
		p.Add("challenge", "must be the 43-character base64url SHA-256 of the CLI's verifier")
	}
	if strings.TrimSpace(c.Name) == "" {
		p.Add("name", "is required")
	} else if len(c.Name) > 100 || !cliPrintable(c.Name) {
		p.Add("name", "must be at most 100 printable characters")
	}
	return p.Err()
}

// ValidChallenge reports whether c is a base64url (unpadded) SHA-256.
func ValidChallenge(c string) bool {
	if len(c) != 43 || !cliURLSafe(c) || strings.ContainsAny(c, ".~") {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	return err == nil && len(b) == sha256.Size
}

// S256 is the PKCE challenge of a verifier.
func S256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func cliURLSafe(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.~", r)) {
			return false
		}
	}
	return true
}

func cliPrintable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// CreateCLILoginCode records that u approved a CLI sign-in and returns the
// one-time code for the CLI (kept only hashed).
func (tx *Tx) CreateCLILoginCode(ctx context.Context, who Actor, u User, c CLILoginRequest) (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	code := cliCodePrefix + NewSecret(20)
	now := tx.Now()
	var id int64
	err := getNamed(ctx, tx, &id, `INSERT INTO cli_login_codes (user_id, code_hash, challenge, name, created_at, expires_at)
VALUES (:user, :hash, :challenge, :name, :now, :expires) RETURNING id`, arg{
		"user": u.ID, "hash": HashSecret(code), "challenge": c.Challenge, "name": c.TokenName(), "now": now, "expires": now.Add(CLILoginCodeTTL),
	})
	if err != nil {
		return "", fmt.Errorf("cli login code: %w", err)
	}
	if err := tx.Audit(ctx, who, "cli_login.approve", "user", u.Email, map[string]any{"code": id, "name": c.TokenName()}); err != nil {
		return "", err
	}
	return code, nil
}

type cliLoginCode struct {
	ID        int64      `db:"id"`
	UserID    int64      `db:"user_id"`
	Challenge string     `db:"challenge"`
	Name      string     `db:"name"`
	ExpiresAt time.Time  `db:"expires_at"`
	UsedAt    *time.Time `db:"used_at"`
}

// ExchangeCLILoginCode uses a one-time code once: with the verifier whose
// challenge the code was made for, before it expires, it creates a
// full-scope token for 90 days and returns it with its secret and its
// owner. Anything else is ErrInvalidGrant and changes nothing (the caller
// rolls the transaction back).
// The audit event names the token's owner as actor, with from's address and
// request ID (the exchange itself carries no session or token).
func (tx *Tx) ExchangeCLILoginCode(ctx context.Context, from Actor, code, verifier string) (Token, string, User, error) {
	if !strings.HasPrefix(code, cliCodePrefix) || len(code) > 200 || verifier == "" || len(verifier) > 200 {
		return Token{}, "", User{}, ErrInvalidGrant
	}
	now := tx.Now()
	var c cliLoginCode
	// The conditional update makes the code single-use: of two exchanges at
	// once, one updates the row and the other finds nothing.
	err := getNamed(ctx, tx, &c, `UPDATE cli_login_codes SET used_at = :now
WHERE code_hash = :hash AND used_at IS NULL AND expires_at > :now
RETURNING id, user_id, challenge, name, expires_at, used_at`, arg{"hash": HashSecret(code), "now": now})
	if errors.Is(err, ErrNotFound) {
		return Token{}, "", User{}, ErrInvalidGrant
	}
	if err != nil {
		return Token{}, "", User{}, fmt.Errorf("cli login: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(S256(verifier)), []byte(c.Challenge)) != 1 {
		return Token{}, "", User{}, ErrInvalidGrant
	}
	u, err := tx.User(ctx, c.UserID)
	if err != nil {
		return Token{}, "", User{}, err
	}
	if err := tx.checkTokenLimit(ctx, u.ID); err != nil {
		return Token{}, "", User{}, err
	}
	expires := now.Add(CLITokenTTL)
	t, secret, err := tx.CreateToken(ctx, u.ID, c.Name, "full", &expires)
	if err != nil {
		return Token{}, "", User{}, err
	}
	err = tx.Audit(ctx, UserActor(u, from.RemoteAddr, from.RequestID), "token.create", "token", fmt.Sprint(t.ID), map[string]any{
		"user": u.Email, "name": t.Name, "prefix": t.Prefix, "scope": t.Scope, "expires_at": expires.UTC(), "via": "cli_login", "code": c.ID,
	})
	if err != nil {
		return Token{}, "", User{}, err
	}
	return t, secret, u, nil
}

// DeleteExpiredCLILoginCodes removes the sign-in codes that can no longer
// be exchanged (used or expired) and are older than a day, kept that long
// for the audit trail's sake.
func (s *Store) DeleteExpiredCLILoginCodes(ctx context.Context) (int64, error) {
	var n int64
	err := s.InTx(ctx, func(tx *Tx) error {
		var err error
		n, err = execNamed(ctx, tx, `DELETE FROM cli_login_codes WHERE expires_at < :before`, arg{"before": tx.Now().Add(-24 * time.Hour)})
		return err
	})
	return n, err
}
