package store

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// TokenPrefix starts every personal access token, so a leaked one is easy to
// recognise by secret scanners.
const TokenPrefix = "dpt_"

// Errors TokenBySecret returns for a token that exists but no longer works;
// both are ErrNotFound too.
var (
	ErrTokenExpired = fmt.Errorf("token expired: %w", ErrNotFound)
	ErrTokenRevoked = fmt.Errorf("token revoked: %w", ErrNotFound)
)

// Token is a personal access token. The secret is shown once, at creation.
type Token struct {
	ID         int64      `db:"id" json:"id"`
	UserID     int64      `db:"user_id" json:"-"`
	Name       string     `db:"name" json:"name"`
	Prefix     string     `db:"prefix" json:"prefix"`
	Scope      string     `db:"scope" json:"scope"`
	CreatedAt  time.Time  `db:"created_at" json:"created_at"`
	ExpiresAt  *time.Time `db:"expires_at" json:"expires_at,omitempty"`
	LastUsedAt *time.Time `db:"last_used_at" json:"last_used_at,omitempty"`
	RevokedAt  *time.Time `db:"revoked_at" json:"-"`
}

// Limits on personal access tokens.
const (
	// MaxTokenLifetime is the longest a token may live: a year and a day, so
	// "a year from now" is always accepted.
	MaxTokenLifetime = 366 * 24 * time.Hour
	// DefaultTokenLifetime is a token's lifetime when none is asked for.
	DefaultTokenLifetime = 90 * 24 * time.Hour
	// MaxTokens is how many live tokens one person may hold.
	MaxTokens    = 100
	maxTokenName = 100
)

// Token scopes: a read-only token may only read.
const (
	ScopeRead = "read"
	ScopeFull = "full"
)

// Expired reports whether the token has expired at now.
func (t Token) Expired(now time.Time) bool {
	return t.ExpiresAt != nil && !now.Before(*t.ExpiresAt)
}

// NewSecret returns n random bytes as lower-case base32 text.
func NewSecret(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand never fails on supported platforms
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

const (
	tokenColumns   = `id, user_id, name, prefix, scope, created_at, expires_at, last_used_at, revoked_at`
	insertTokenSQL = `
INSERT INTO tokens (user_id, name, hash, prefix, scope, created_at, expires_at)
VALUES (:user_id, :name, :hash, :prefix, :scope, :now, :expires_at)
RETURNING ` + tokenColumns
	tokenByHashSQL = `SELECT ` + tokenColumns + ` FROM tokens WHERE hash = :hash`
)

// CreateToken makes a token for the user and returns it with its secret,
// which is not kept.
func (tx *Tx) CreateToken(ctx context.Context, userID int64, name, scope string, expiresAt *time.Time) (Token, string, error) {
	p := Problems{}
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		p.Add("name", "is required")
	case utf8.RuneCountInString(name) > maxTokenName:
		p.Add("name", fmt.Sprintf("is longer than %d characters", maxTokenName))
	case !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl):
		p.Add("name", "has characters a name cannot have")
	}
	if scope != ScopeFull && scope != ScopeRead {
		p.Add("scope", "must be read or full")
	}
	switch {
	case expiresAt == nil:
	case !expiresAt.After(tx.Now()):
		p.Add("expires_at", "must be in the future")
	case expiresAt.After(tx.Now().Add(MaxTokenLifetime)):
		p.Add("expires_at", "must be at most 366 days from now")
	}
	if err := p.Err(); err != nil {
		return Token{}, "", err
	}
	secret := TokenPrefix + NewSecret(20)
	var t Token
	err := getNamed(ctx, tx, &t, insertTokenSQL, arg{
		"user_id": userID, "name": name, "hash": HashSecret(secret), "prefix": secret[:len(TokenPrefix)+4],
		"scope": scope, "now": tx.Now(), "expires_at": expiresAt,
	})
	if err != nil {
		return Token{}, "", fmt.Errorf("create token %s: %w", name, err)
	}
	return t, secret, nil
}

// TokenBySecret returns the live token whose secret is secret, and records its use.
func (s *Store) TokenBySecret(ctx context.Context, secret string) (Token, error) {
	if !strings.HasPrefix(secret, TokenPrefix) || len(secret) > 200 {
		return Token{}, fmt.Errorf("token: %w", ErrNotFound)
	}
	var t Token
	if err := getNamed(ctx, s.read, &t, tokenByHashSQL, arg{"hash": HashSecret(secret)}); err != nil {
		return Token{}, fmt.Errorf("token: %w", err)
	}
	now := s.Now()
	if t.RevokedAt != nil {
		return Token{}, ErrTokenRevoked
	}
	if t.Expired(now) {
		return Token{}, ErrTokenExpired
	}
	// Record use at most once a minute, so API traffic does not become write traffic.
	if t.LastUsedAt == nil || now.Sub(*t.LastUsedAt) > time.Minute {
		err := s.InTx(ctx, func(tx *Tx) error {
			_, err := execNamed(ctx, tx, `UPDATE tokens SET last_used_at = :now WHERE id = :id`, arg{"now": now, "id": t.ID})
			return err
		})
		if err != nil {
			return Token{}, fmt.Errorf("token: record use: %w", err)
		}
	}
	return t, nil
}

// CreateUserToken makes a token that u asked for (on the profile page or
// through the API) and records it in the audit log. It refuses a token past
// MaxTokens live ones.
func (tx *Tx) CreateUserToken(ctx context.Context, who Actor, u User, name, scope string, expiresAt *time.Time) (Token, string, error) {
	if err := tx.checkTokenLimit(ctx, u.ID); err != nil {
		return Token{}, "", err
	}
	t, secret, err := tx.CreateToken(ctx, u.ID, name, scope, expiresAt)
	if err != nil {
		return Token{}, "", err
	}
	detail := map[string]any{"user": u.Email, "name": t.Name, "prefix": t.Prefix, "scope": t.Scope}
	if t.ExpiresAt != nil {
		detail["expires_at"] = t.ExpiresAt.UTC()
	}
	if err := tx.Audit(ctx, who, "token.create", "token", fmt.Sprint(t.ID), detail); err != nil {
		return Token{}, "", err
	}
	return t, secret, nil
}

// checkTokenLimit refuses a new token to someone who holds MaxTokens live ones.
func (tx *Tx) checkTokenLimit(ctx context.Context, userID int64) error {
	var n int
	err := getNamed(ctx, tx, &n, `
SELECT COUNT(*) FROM tokens
WHERE user_id = :user_id AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > :now)`, arg{"user_id": userID, "now": tx.Now()})
	if err != nil {
		return fmt.Errorf("create token: %w", err)
	}
	if n >= MaxTokens {
		return &ValidationError{Fields: map[string]string{"name": fmt.Sprintf("cannot be added: you have %d live tokens, the most allowed; revoke one first", n)}}
	}
	return nil
}

// Tokens lists a person's tokens that are not revoked, newest first, at most
// limit of them with IDs below afterID (0: from the newest). Expired tokens
// are listed too, so the profile can say they have expired.
func (s *Store) Tokens(ctx context.Context, userID, afterID int64, limit int) ([]Token, error) {
	var ts []Token
	err := selectNamed(ctx, s.read, &ts, `SELECT `+tokenColumns+` FROM tokens
WHERE user_id = :user_id AND revoked_at IS NULL AND (:after_id = 0 OR id < :after_id)
ORDER BY id DESC LIMIT :limit`, arg{"user_id": userID, "after_id": afterID, "limit": limit})
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	return ts, nil
}

// RevokeToken revokes one of u's tokens at once: the next request with it is
// refused. Another person's token, or one already revoked, is not found.
func (tx *Tx) RevokeToken(ctx context.Context, who Actor, u User, id int64) (Token, error) {
	var t Token
	err := getNamed(ctx, tx, &t, `SELECT `+tokenColumns+` FROM tokens WHERE id = :id AND user_id = :user_id AND revoked_at IS NULL`,
		arg{"id": id, "user_id": u.ID})
	if err != nil {
		return Token{}, fmt.Errorf("revoke token %d: %w", id, err)
	}
	now := tx.Now()
	if _, err := execNamed(ctx, tx, `UPDATE tokens SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL`, arg{"now": now, "id": id}); err != nil {
		return Token{}, fmt.Errorf("revoke token %d: %w", id, err)
	}
	t.RevokedAt = &now
	err = tx.Audit(ctx, who, "token.revoke", "token", fmt.Sprint(t.ID), map[string]any{"user": u.Email, "name": t.Name, "prefix": t.Prefix, "scope": t.Scope})
	return t, err
}
