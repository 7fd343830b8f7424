package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Actor is who did something: a signed-in user, or the system itself.
type Actor struct {
	UserID     *int64
	Name       string // an email, or "system"
	RemoteAddr string
	RequestID  string
}

// System is the actor for what devport does on its own (jobs, schedules).
var System = Actor{Name: "system"}

// UserActor is the actor for a signed-in user.
func UserActor(u User, remoteAddr, requestID string) Actor {
	id := u.ID
	return Actor{UserID: &id, Name: u.Email, RemoteAddr: remoteAddr, RequestID: requestID}
}

// AuditEvent is one recorded change: who did what to which object, when, from where.
type AuditEvent struct {
	ID         int64     `db:"id" json:"id"`
	At         time.Time `db:"at" json:"at"`
	ActorID    *int64    `db:"actor_id" json:"-"`
	Actor      string    `db:"actor" json:"actor"`
	Action     string    `db:"action" json:"action"`
	ObjectType string    `db:"object_type" json:"object_type"`
	ObjectID   string    `db:"object_id" json:"object_id"`
	Detail     string    `db:"detail" json:"detail"`
	RemoteAddr string    `db:"remote_addr" json:"remote_addr"`
	RequestID  string    `db:"request_id" json:"request_id"`
}

const insertAuditSQL = `
INSERT INTO audit_events (at, actor_id, actor, action, object_type, object_id, detail, remote_addr, request_id)
VALUES (:at, :actor_id, :actor, :action, :object_type, :object_id, :detail, :remote_addr, :request_id)`

// Audit records an event in the same transaction as the change it describes.
func (tx *Tx) Audit(ctx context.Context, who Actor, action, objectType, objectID string, detail map[string]any) error {
	if detail == nil {
		detail = map[string]any{}
	}
	d, err := json.Marshal(detail)
	if err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	_, err = execNamed(ctx, tx, insertAuditSQL, AuditEvent{
		At: tx.Now(), ActorID: who.UserID, Actor: who.Name, Action: action, ObjectType: objectType,
		ObjectID: objectID, Detail: string(d), RemoteAddr: who.RemoteAddr, RequestID: who.RequestID,
	})
	if err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}

// AuditEvents lists the events about one object, oldest first.
func (s *Store) AuditEvents(ctx context.Context, objectType, objectID string) ([]AuditEvent, error) {
	var es []AuditEvent
	err := selectNamed(ctx, s.read, &es, `SELECT * FROM audit_events WHERE object_type = :type AND object_id = :id ORDER BY id`, arg{"type": objectType, "id": objectID})
	if err != nil {
		return nil, fmt.Errorf("audit events: %w", err)
	}
	return es, nil
}
