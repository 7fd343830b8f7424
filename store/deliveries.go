package store

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// Delivery states.
const (
	DeliveryPending = "pending"
	DeliverySent    = "sent"
	DeliveryFailed  = "failed"
)

// DeliveryMaxAttempts is how many times a delivery is tried before it fails for good.
const DeliveryMaxAttempts = 5

// DeliveryBackoff is how long to wait after the attempts-th failed attempt:
// 30 s, doubling, at most an hour.
func DeliveryBackoff(attempts int) time.Duration {
	d := 30 * time.Second
	for i := 1; i < attempts && d < time.Hour; i++ {
		d *= 2
	}
	return min(d, time.Hour)
}

// Delivery is one notification on one channel, with what happened to it.
type Delivery struct {
	ID             int64      `db:"id" json:"id"`
	NotificationID int64      `db:"notification_id" json:"notification_id"`
	Channel        string     `db:"channel" json:"channel"`
	State          string     `db:"state" json:"state"`
	Attempts       int        `db:"attempts" json:"attempts"`
	LastError      string     `db:"last_error" json:"last_error,omitempty"`
	NextAttemptAt  *time.Time `db:"next_attempt_at" json:"next_attempt_at,omitempty"`
	ClaimedUntil   *time.Time `db:"claimed_until" json:"-"`
	CreatedAt      time.Time  `db:"created_at" json:"created_at"`
	UpdatedAt      time.Time  `db:"updated_at" json:"updated_at"`
	SentAt         *time.Time `db:"sent_at" json:"sent_at,omitempty"`
	// From the notification and its person.
	Email          string `db:"email" json:"email"`
	Kind           string `db:"kind" json:"kind"`
	Title          string `db:"title" json:"title"`
	Body           string `db:"body" json:"-"`
	Link           string `db:"link" json:"link,omitempty"`
	IdempotencyKey string `db:"idempotency_key" json:"idempotency_key"`
}

const deliverySelect = `
SELECT dl.*, u.email, n.kind, n.title, n.body, n.link, n.idempotency_key
FROM deliveries dl JOIN notifications n ON n.id = dl.notification_id JOIN users u ON u.id = n.user_id`

// recordDeliveries records a new notification's deliveries: the inbox has it
// already; email and chat wait for the sender, per the person's preferences.
func (tx *Tx) recordDeliveries(ctx context.Context, notificationID, userID int64) error {
	p, err := preferences(ctx, tx, userID)
	if err != nil {
		return err
	}
	now := tx.Now()
	add := func(channel, state string, next, sent *time.Time) error {
		attempts := 0
		if sent != nil {
			attempts = 1 // the inbox has it as soon as it is recorded
		}
		_, err := execNamed(ctx, tx, `
INSERT INTO deliveries (notification_id, channel, state, attempts, next_attempt_at, created_at, updated_at, sent_at)
VALUES (:nid, :channel, :state, :attempts, :next, :now, :now, :sent)`,
			arg{"nid": notificationID, "channel": channel, "state": state, "attempts": attempts, "next": next, "now": now, "sent": sent})
		if err != nil {
			return fmt.Errorf("record %s delivery of notification %d: %w", channel, notificationID, err)
		}
		return nil
	}
	if err := add(ChannelInbox, DeliverySent, nil, &now); err != nil {
		return err
	}
	if p.Email {
		if err := add(ChannelEmail, DeliveryPending, &now, nil); err != nil {
			return err
		}
	}
	if p.Chat {
		if err := add(ChannelChat, DeliveryPending, &now, nil); err != nil {
			return err
		}
	}
	return nil
}

// DueDeliveries lists pending deliveries whose time has come and that no
// sender holds, oldest first. A sender must still claim each one.
func (s *Store) DueDeliveries(ctx context.Context, now time.Time, limit int) ([]Delivery, error) {
	if limit <= 0 {
		limit = 100
	}
	var ds []Delivery
	err := selectNamed(ctx, s.read, &ds, deliverySelect+`
WHERE dl.state = 'pending' AND dl.next_attempt_at <= :now AND (dl.claimed_until IS NULL OR dl.claimed_until <= :now)
ORDER BY dl.next_attempt_at, dl.id LIMIT :limit`, arg{"now": now.UTC(), "limit": limit})
	if err != nil {
		return nil, fmt.Errorf("due deliveries: %w", err)
	}
	return ds, nil
}

// ClaimDelivery takes a due delivery for one attempt until the given time,
// with a conditional update: of two senders, one gets it and the other is
// told false. The attempt is counted at the claim, so a sender that dies
// mid-send still uses up an attempt.
func (tx *Tx) ClaimDelivery(ctx context.Context, id int64, until time.Time) (Delivery, bool, error) {
	now := tx.Now()
	n, err := execNamed(ctx, tx, `
UPDATE deliveries SET claimed_until = :until, attempts = attempts + 1, updated_at = :now
WHERE id = :id AND state = 'pending' AND next_attempt_at <= :now AND (claimed_until IS NULL OR claimed_until <= :now)`,
		arg{"id": id, "until": until.UTC(), "now": now})
	if err != nil {
		return Delivery{}, false, fmt.Errorf("claim delivery %d: %w", id, err)
	}
	if n == 0 {
		return Delivery{}, false, nil
	}
	d, err := delivery(ctx, tx, id)
	return d, err == nil, err
}

func delivery(ctx context.Context, q queryer, id int64) (Delivery, error) {
	var d Delivery
	if err := getNamed(ctx, q, &d, deliverySelect+` WHERE dl.id = :id`, arg{"id": id}); err != nil {
		return Delivery{}, fmt.Errorf("delivery %d: %w", id, err)
	}
	return d, nil
}

// Delivery returns one delivery with its notification.
func (s *Store) Delivery(ctx context.Context, id int64) (Delivery, error) {
	return delivery(ctx, s.read, id)
}

// DeliverySent records that the claimed attempt sent the delivery. It tells
// false when the claim was lost (another sender took over after it ran out).
func (tx *Tx) DeliverySent(ctx context.Context, d Delivery) (bool, error) {
	now := tx.Now()
	n, err := execNamed(ctx, tx, `
UPDATE deliveries SET state = 'sent', sent_at = :now, updated_at = :now, claimed_until = NULL, next_attempt_at = NULL, last_error = ''
WHERE id = :id AND state = 'pending' AND claimed_until = :claim`, arg{"id": d.ID, "now": now, "claim": d.ClaimedUntil})
	if err != nil {
		return false, fmt.Errorf("delivery %d sent: %w", d.ID, err)
	}
	if n == 0 {
		return false, nil
	}
	return true, tx.Audit(ctx, System, "delivery.sent", "delivery", strconv.FormatInt(d.ID, 10),
		map[string]any{"channel": d.Channel, "notification": d.NotificationID, "attempts": d.Attempts})
}

// DeliveryAttemptFailed records a failed attempt: another one after the
// backoff, or failed for good after DeliveryMaxAttempts.
func (tx *Tx) DeliveryAttemptFailed(ctx context.Context, d Delivery, cause error) (Delivery, error) {
	now := tx.Now()
	msg := clipError(cause.Error())
	state, next := DeliveryPending, now.Add(DeliveryBackoff(d.Attempts))
	var nextAt *time.Time = &next
	if d.Attempts >= DeliveryMaxAttempts {
		state, nextAt = DeliveryFailed, nil
	}
	n, err := execNamed(ctx, tx, `
UPDATE deliveries SET state = :state, last_error = :err, next_attempt_at = :next, claimed_until = NULL, updated_at = :now
WHERE id = :id AND state = 'pending' AND claimed_until = :claim`,
		arg{"id": d.ID, "state": state, "err": msg, "next": nextAt, "now": now, "claim": d.ClaimedUntil})
	if err != nil {
		return Delivery{}, fmt.Errorf("delivery %d failed: %w", d.ID, err)
	}
	if n == 0 {
		return delivery(ctx, tx, d.ID)
	}
	action := "delivery.attempt_failed"
	if state == DeliveryFailed {
		action = "delivery.failed"
	}
	if err := tx.Audit(ctx, System, action, "delivery", strconv.FormatInt(d.ID, 10),
		map[string]any{"channel": d.Channel, "notification": d.NotificationID, "attempts": d.Attempts, "error": msg}); err != nil {
		return Delivery{}, err
	}
	return delivery(ctx, tx, d.ID)
}

func clipError(s string) string {
	if len(s) > 500 {
		return s[:500] + "…"
	}
	return s
}

// RetryDelivery puts a failed delivery back in the queue with a fresh set of
// attempts. Only a failed delivery can be retried.
func (tx *Tx) RetryDelivery(ctx context.Context, who Actor, id int64) (Delivery, error) {
	d, err := delivery(ctx, tx, id)
	if err != nil {
		return Delivery{}, err
	}
	if d.State != DeliveryFailed {
		return Delivery{}, Conflict("delivery_not_failed", fmt.Sprintf("Delivery %d is %s: only a failed delivery can be retried.", id, d.State))
	}
	now := tx.Now()
	if _, err := execNamed(ctx, tx, `
UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = :now, claimed_until = NULL, updated_at = :now
WHERE id = :id AND state = 'failed'`, arg{"id": id, "now": now}); err != nil {
		return Delivery{}, fmt.Errorf("retry delivery %d: %w", id, err)
	}
	if err := tx.Audit(ctx, who, "delivery.retry", "delivery", strconv.FormatInt(id, 10),
		map[string]any{"channel": d.Channel, "notification": d.NotificationID, "last_error": d.LastError}); err != nil {
		return Delivery{}, err
	}
	return delivery(ctx, tx, id)
}

// DeliveryFilter narrows the delivery log.
type DeliveryFilter struct {
	State   string // "" for all
	Channel string // "" for all
	AfterID int64  // cursor: the smallest ID of the previous page
	Limit   int
}

// Deliveries lists the delivery log, newest first, a page at a time.
func (s *Store) Deliveries(ctx context.Context, f DeliveryFilter) ([]Delivery, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	var ds []Delivery
	err := selectNamed(ctx, s.read, &ds, deliverySelect+`
WHERE (:state = '' OR dl.state = :state) AND (:channel = '' OR dl.channel = :channel) AND (:after = 0 OR dl.id < :after)
ORDER BY dl.id DESC LIMIT :limit`, arg{"state": f.State, "channel": f.Channel, "after": f.AfterID, "limit": f.Limit})
	if err != nil {
		return nil, fmt.Errorf("deliveries: %w", err)
	}
	return ds, nil
}

// NotificationDeliveries lists one notification's deliveries by channel.
func (s *Store) NotificationDeliveries(ctx context.Context, notificationID int64) ([]Delivery, error) {
	var ds []Delivery
	err := selectNamed(ctx, s.read, &ds, deliverySelect+` WHERE dl.notification_id = :nid ORDER BY dl.id`, arg{"nid": notificationID})
	if err != nil {
		return nil, fmt.Errorf("deliveries of notification %d: %w", notificationID, err)
	}
	return ds, nil
}
