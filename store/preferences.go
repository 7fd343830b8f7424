package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Channels a notification can reach a person over.
const (
	ChannelInbox = "inbox"
	ChannelEmail = "email"
	ChannelChat  = "chat"
)

// Channels lists the channels in the order the UI shows them.
var Channels = []string{ChannelInbox, ChannelEmail, ChannelChat}

// Preferences are the channels a person wants notifications on. The in-app
// inbox is always on; email and chat are chosen.
type Preferences struct {
	Inbox     bool       `json:"inbox"`
	Email     bool       `db:"email" json:"email"`
	Chat      bool       `db:"chat" json:"chat"`
	UpdatedAt *time.Time `db:"updated_at" json:"updated_at,omitempty"`
}

// Offered says which channels this portal can send over (its settings).
type Offered struct {
	Email bool
	Chat  bool
}

// Validate refuses turning the inbox off and a channel the portal does not offer.
func (p Preferences) Validate(offer Offered) error {
	probs := Problems{}
	if !p.Inbox {
		probs.Add("inbox", "is always on: every notification is kept in the inbox")
	}
	if p.Email && !offer.Email {
		probs.Add("email", "is not set up on this portal (no SMTP server configured)")
	}
	if p.Chat && !offer.Chat {
		probs.Add("chat", "is not set up on this portal (no chat webhook configured)")
	}
	return probs.Err()
}

func preferences(ctx context.Context, q queryer, userID int64) (Preferences, error) {
	var p Preferences
	err := getNamed(ctx, q, &p, `SELECT email, chat, updated_at FROM notification_preferences WHERE user_id = :id`, arg{"id": userID})
	if errors.Is(err, ErrNotFound) {
		return Preferences{Inbox: true}, nil
	}
	if err != nil {
		return Preferences{}, fmt.Errorf("preferences of user %d: %w", userID, err)
	}
	p.Inbox = true
	return p, nil
}

// Preferences returns a person's channel preferences (the inbox alone when never set).
func (s *Store) Preferences(ctx context.Context, userID int64) (Preferences, error) {
	return preferences(ctx, s.read, userID)
}

// SetPreferences stores a person's channel preferences. Notifications already
// recorded keep the deliveries they were given.
func (tx *Tx) SetPreferences(ctx context.Context, who Actor, userID int64, p Preferences, offer Offered) (Preferences, error) {
	if err := p.Validate(offer); err != nil {
		return Preferences{}, err
	}
	cur, err := preferences(ctx, tx, userID)
	if err != nil {
		return Preferences{}, err
	}
	if cur.Email == p.Email && cur.Chat == p.Chat && cur.UpdatedAt != nil {
		return cur, nil
	}
	now := tx.Now()
	_, err = execNamed(ctx, tx, `
INSERT INTO notification_preferences (user_id, email, chat, updated_at) VALUES (:id, :email, :chat, :now)
ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, chat = excluded.chat, updated_at = excluded.updated_at`,
		arg{"id": userID, "email": p.Email, "chat": p.Chat, "now": now})
	if err != nil {
		return Preferences{}, fmt.Errorf("set preferences of user %d: %w", userID, err)
	}
	if err := tx.Audit(ctx, who, "preferences.update", "user", strconv.FormatInt(userID, 10),
		map[string]any{"email": p.Email, "chat": p.Chat}); err != nil {
		return Preferences{}, err
	}
	return Preferences{Inbox: true, Email: p.Email, Chat: p.Chat, UpdatedAt: &now}, nil
}
