package store

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"strings"
	"time"
)

// TokenPrefix starts every personal access token, so a leaked one is easy to
// recognise by secret scanners.
const TokenPrefix = "dpt_"

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
	if name == "" {
		p.Add("name", "is required")
	} else if len(name) > 100 {
		p.Add("name", "is longer than 100 characters")
	}
	if scope != "full" && scope != "read" {
		p.Add("scope", "must be full or read")
	}
	if expiresAt != nil && !expiresAt.After(tx.Now()) {
		p.Add("expires_at", "must be in the future")
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
	if t.RevokedAt != nil || (t.ExpiresAt != nil && !now.Before(*t.ExpiresAt)) {
		return Token{}, fmt.Errorf("token expired or revoked: %w", ErrNotFound)
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
