package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// IdempotencyTTL is how long the first answer to a keyed request is kept.
const IdempotencyTTL = 24 * time.Hour

// IdempotentAnswer is the first answer to a request sent with an Idempotency-Key.
type IdempotentAnswer struct {
	Method      string    `db:"method"`
	Path        string    `db:"path"`
	RequestHash string    `db:"request_hash"`
	Status      int       `db:"status"` // 0 while the first request is in flight
	Body        string    `db:"body"`
	CreatedAt   time.Time `db:"created_at"`
}

// ClaimIdempotencyKey records that a request with this key is starting. It
// returns (nil, nil) when the key is new (or its answer expired), and the
// stored answer when the key was used before: the caller replays it, or
// refuses when it is still in flight or was for another request.
func (s *Store) ClaimIdempotencyKey(ctx context.Context, userID int64, key, method, path, requestHash string) (*IdempotentAnswer, error) {
	var prior *IdempotentAnswer
	err := s.InTx(ctx, func(tx *Tx) error {
		now := tx.Now()
		a := arg{"user": userID, "key": key, "method": method, "path": path, "hash": requestHash, "now": now, "expired": now.Add(-IdempotencyTTL)}
		if _, err := execNamed(ctx, tx, `DELETE FROM idempotency_keys WHERE user_id = :user AND key = :key AND created_at < :expired`, a); err != nil {
			return err
		}
		var got IdempotentAnswer
		err := getNamed(ctx, tx, &got, `SELECT method, path, request_hash, status, body, created_at FROM idempotency_keys WHERE user_id = :user AND key = :key`, a)
		if err == nil {
			prior = &got
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		_, err = execNamed(ctx, tx, `INSERT INTO idempotency_keys (user_id, key, method, path, request_hash, status, body, created_at)
VALUES (:user, :key, :method, :path, :hash, 0, '', :now)`, a)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("idempotency key: %w", err)
	}
	return prior, nil
}

// SettleIdempotencyKey stores the answer to a keyed request. A server error
// is not kept: the key is freed so the client can try again.
func (s *Store) SettleIdempotencyKey(ctx context.Context, userID int64, key string, status int, body string) error {
	return s.InTx(ctx, func(tx *Tx) error {
		a := arg{"user": userID, "key": key, "status": status, "body": body}
		var err error
		if status >= 500 {
			_, err = execNamed(ctx, tx, `DELETE FROM idempotency_keys WHERE user_id = :user AND key = :key`, a)
		} else {
			_, err = execNamed(ctx, tx, `UPDATE idempotency_keys SET status = :status, body = :body WHERE user_id = :user AND key = :key`, a)
		}
		if err != nil {
			return fmt.Errorf("settle idempotency key: %w", err)
		}
		return nil
	})
}

// DeleteExpiredIdempotencyKeys removes answers older than IdempotencyTTL.
func (s *Store) DeleteExpiredIdempotencyKeys(ctx context.Context) (int64, error) {
	var n int64
	err := s.InTx(ctx, func(tx *Tx) error {
		var err error
		n, err = execNamed(ctx, tx, `DELETE FROM idempotency_keys WHERE created_at < :expired`, arg{"expired": tx.Now().Add(-IdempotencyTTL)})
		return err
	})
	return n, err
}
