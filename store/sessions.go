package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
)

// Session is a server-side web session. Its ID lives only in the visitor's
// cookie; the database keeps its hash.
type Session struct {
	IDHash     string    `db:"id_hash"`
	UserID     *int64    `db:"user_id"`
	Data       string    `db:"data"`
	CreatedAt  time.Time `db:"created_at"`
	LastSeenAt time.Time `db:"last_seen_at"`
	ExpiresAt  time.Time `db:"expires_at"`
	RemoteAddr string    `db:"remote_addr"`
	UserAgent  string    `db:"user_agent"`
}

// HashSecret is how session IDs and tokens are kept at rest.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

const (
	sessionColumns   = `id_hash, user_id, data, created_at, last_seen_at, expires_at, remote_addr, user_agent`
	sessionByHashSQL = `SELECT ` + sessionColumns + ` FROM sessions WHERE id_hash = :id_hash`
	saveSessionSQL   = `
INSERT INTO sessions (` + sessionColumns + `)
VALUES (:id_hash, :user_id, :data, :created_at, :last_seen_at, :expires_at, :remote_addr, :user_agent)
ON CONFLICT (id_hash) DO UPDATE SET
    user_id = excluded.user_id, data = excluded.data, last_seen_at = excluded.last_seen_at`
)

// SessionByID returns the live session whose cookie ID is id. A session past
// its absolute expiry or idle for longer than idle is not found.
func (s *Store) SessionByID(ctx context.Context, id string, idle time.Duration) (Session, error) {
	var sess Session
	if err := getNamed(ctx, s.read, &sess, sessionByHashSQL, arg{"id_hash": HashSecret(id)}); err != nil {
		return Session{}, fmt.Errorf("session: %w", err)
	}
	now := s.Now()
	if !now.Before(sess.ExpiresAt) || now.Sub(sess.LastSeenAt) > idle {
		return Session{}, fmt.Errorf("session expired: %w", ErrNotFound)
	}
	return sess, nil
}

// SaveSession writes a session, creating it when new.
func (s *Store) SaveSession(ctx context.Context, sess Session) error {
	return s.InTx(ctx, func(tx *Tx) error {
		_, err := execNamed(ctx, tx, saveSessionSQL, sess)
		if err != nil {
			return fmt.Errorf("save session: %w", err)
		}
		return nil
	})
}

// TouchSession records that the session was used now.
func (s *Store) TouchSession(ctx context.Context, idHash string) error {
	return s.InTx(ctx, func(tx *Tx) error {
		_, err := execNamed(ctx, tx, `UPDATE sessions SET last_seen_at = :now WHERE id_hash = :id_hash`, arg{"now": tx.Now(), "id_hash": idHash})
		return err
	})
}

// DeleteSession ends a session.
func (s *Store) DeleteSession(ctx context.Context, idHash string) error {
	return s.InTx(ctx, func(tx *Tx) error {
		_, err := execNamed(ctx, tx, `DELETE FROM sessions WHERE id_hash = :id_hash`, arg{"id_hash": idHash})
		return err
	})
}

// RevokeUserSessions ends every session of a user and returns how many there were.
func (tx *Tx) RevokeUserSessions(ctx context.Context, userID int64) (int64, error) {
	n, err := execNamed(ctx, tx, `DELETE FROM sessions WHERE user_id = :id`, arg{"id": userID})
	if err != nil {
		return 0, fmt.Errorf("revoke sessions: %w", err)
	}
	return n, nil
}

// DeleteExpiredSessions removes sessions past their absolute expiry or idle
// for longer than idle.
func (s *Store) DeleteExpiredSessions(ctx context.Context, idle time.Duration) (int64, error) {
	var n int64
	err := s.InTx(ctx, func(tx *Tx) error {
		now := tx.Now()
		var err error
		n, err = execNamed(ctx, tx, `DELETE FROM sessions WHERE expires_at <= :now OR last_seen_at < :idle_since`, arg{"now": now, "idle_since": now.Add(-idle)})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("delete expired sessions: %w", err)
	}
	return n, nil
}
