package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Share gives a collaborator access to someone else's devserver: they see it,
// its connection details and backups, and their SSH keys are put on it.
type Share struct {
	DevserverID int64     `db:"devserver_id" json:"-"`
	UserID      int64     `db:"user_id" json:"-"`
	Email       string    `db:"email" json:"email"`
	CreatedAt   time.Time `db:"created_at" json:"created_at"`
	CreatedBy   string    `db:"created_by" json:"created_by"`
}

// A viewer's relation to a devserver.
const (
	RelationOwner  = "owner"
	RelationSharee = "sharee"
)

// RelationOf is u's relation to d: owner, sharee, or "" (an admin looking, or
// nobody). d's ShareeIDs must be loaded.
func RelationOf(u User, d Devserver) string {
	switch {
	case d.OwnerID != 0 && u.ID == d.OwnerID:
		return RelationOwner
	case d.SharedWith(u.ID):
		return RelationSharee
	}
	return ""
}

const shareSelect = `
SELECT s.devserver_id, s.user_id, u.email, s.created_at, s.created_by
FROM devserver_shares s
JOIN users u ON u.id = s.user_id`

// Shares lists a devserver's collaborators by email.
func (s *Store) Shares(ctx context.Context, devserverID int64) ([]Share, error) {
	var ss []Share
	if err := selectNamed(ctx, s.read, &ss, shareSelect+` WHERE s.devserver_id = :id ORDER BY u.email`, arg{"id": devserverID}); err != nil {
		return nil, fmt.Errorf("shares of devserver %d: %w", devserverID, err)
	}
	return ss, nil
}

// shareeIDs lists the IDs of the people a devserver is shared with.
func shareeIDs(ctx context.Context, q queryer, devserverID int64) ([]int64, error) {
	var ids []int64
	if err := selectNamed(ctx, q, &ids, `SELECT user_id FROM devserver_shares WHERE devserver_id = :id ORDER BY user_id`, arg{"id": devserverID}); err != nil {
		return nil, fmt.Errorf("sharees of devserver %d: %w", devserverID, err)
	}
	return ids, nil
}

// sharedWith lists the IDs of the devservers shared with a user.
func sharedWith(ctx context.Context, q queryer, userID int64) (map[int64]bool, error) {
	var ids []int64
	if err := selectNamed(ctx, q, &ids, `SELECT devserver_id FROM devserver_shares WHERE user_id = :id`, arg{"id": userID}); err != nil {
		return nil, fmt.Errorf("devservers shared with user %d: %w", userID, err)
	}
	set := make(map[int64]bool, len(ids))
	for _, id := range ids {
		set[id] = true
	}
	return set, nil
}

// maxShares bounds the collaborators of one devserver.
const maxShares = 100

// AddShare shares d with the devport user who has email. The email must be
// someone who has signed in (or been created) before; sharing with the owner
// or oneself is invalid, and sharing twice is a conflict (already_shared).
func (tx *Tx) AddShare(ctx context.Context, who Actor, d Devserver, email string) (Share, error) {
	email = NormalizeEmail(email)
	if p := ValidateEmail(email); p != "" {
		return Share{}, &ValidationError{Fields: map[string]string{"email": p}}
	}
	u, err := userBy(ctx, tx, userByEmailSQL, arg{"email": email})
	if errors.Is(err, ErrNotFound) {
		return Share{}, &ValidationError{Fields: map[string]string{"email": fmt.Sprintf("%s is not a devport user: they must sign in to devport once before a devserver can be shared with them", clip(email))}}
	}
	if err != nil {
		return Share{}, err
	}
	switch {
	case who.UserID != nil && *who.UserID == u.ID:
		return Share{}, &ValidationError{Fields: map[string]string{"email": "is your own address: you cannot share a devserver with yourself"}}
	case u.ID == d.OwnerID:
		return Share{}, &ValidationError{Fields: map[string]string{"email": fmt.Sprintf("%s owns %s already", u.Email, d.Name)}}
	}
	switch d.State {
	case StateReleasing, StateReleased, StateFailed:
		return Share{}, Conflict("invalid_state", fmt.Sprintf("Devserver %s is %s and cannot be shared.", d.Name, d.State))
	}
	var n int
	if err := getNamed(ctx, tx, &n, `SELECT COUNT(*) FROM devserver_shares WHERE devserver_id = :id`, arg{"id": d.ID}); err != nil {
		return Share{}, fmt.Errorf("share %s: %w", d.Name, err)
	}
	if n >= maxShares {
		return Share{}, Conflict("too_many_shares", fmt.Sprintf("Devserver %s is shared with %d people, the most allowed.", d.Name, n))
	}
	_, err = execNamed(ctx, tx, `
INSERT INTO devserver_shares (devserver_id, user_id, created_at, created_by)
VALUES (:devserver_id, :user_id, :now, :by)`, arg{"devserver_id": d.ID, "user_id": u.ID, "now": tx.Now(), "by": who.Name})
	if isUniqueViolation(err) {
		return Share{}, Conflict("already_shared", fmt.Sprintf("%s is shared with %s already.", d.Name, u.Email))
	}
	if err != nil {
		return Share{}, fmt.Errorf("share %s: %w", d.Name, err)
	}
	var sh Share
	if err := getNamed(ctx, tx, &sh, shareSelect+` WHERE s.devserver_id = :id AND s.user_id = :user_id`, arg{"id": d.ID, "user_id": u.ID}); err != nil {
		return Share{}, fmt.Errorf("share %s: %w", d.Name, err)
	}
	err = tx.Audit(ctx, who, "devserver.share", "devserver", d.Name, map[string]any{"with": u.Email})
	return sh, err
}

// RemoveShare stops sharing d with the person who has email. Someone d is
// not shared with is not found.
func (tx *Tx) RemoveShare(ctx context.Context, who Actor, d Devserver, email string) (Share, error) {
	email = NormalizeEmail(email)
	var sh Share
	err := getNamed(ctx, tx, &sh, shareSelect+` WHERE s.devserver_id = :id AND u.email = :email`, arg{"id": d.ID, "email": email})
	if err != nil {
		return Share{}, fmt.Errorf("unshare %s: %w", d.Name, err)
	}
	if _, err := execNamed(ctx, tx, `DELETE FROM devserver_shares WHERE devserver_id = :id AND user_id = :user_id`, arg{"id": d.ID, "user_id": sh.UserID}); err != nil {
		return Share{}, fmt.Errorf("unshare %s: %w", d.Name, err)
	}
	err = tx.Audit(ctx, who, "devserver.unshare", "devserver", d.Name, map[string]any{"with": sh.Email})
	return sh, err
}

// DevserversReachedBy lists the devservers whose authorized_keys hold a
// user's keys: those they own or that are shared with them, not yet gone.
func (tx *Tx) DevserversReachedBy(ctx context.Context, userID int64) ([]int64, error) {
	var ids []int64
	err := selectNamed(ctx, tx, &ids, `
SELECT id FROM devservers
WHERE state NOT IN ('released', 'failed')
  AND (owner_id = :user_id OR id IN (SELECT devserver_id FROM devserver_shares WHERE user_id = :user_id))
ORDER BY id`, arg{"user_id": userID})
	if err != nil {
		return nil, fmt.Errorf("devservers reached by user %d: %w", userID, err)
	}
	return ids, nil
}
