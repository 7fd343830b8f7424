package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// A devserver's health as its owner and sharees see it, and the restart its
// owner asks for (which goes through the remediation steps: restart, then
// check, then recreate from backup, then escalate).

// CauseRestartRequested is the cause of an episode someone asked for.
const CauseRestartRequested = "restart_requested"

// Health summaries of a devserver.
const (
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
	HealthUnknown   = "unknown"
)

// OwnerHealth is what GET /api/v1/devservers/{name}/health answers.
type OwnerHealth struct {
	Devserver string     `json:"devserver"`
	State     string     `json:"state"`
	Health    string     `json:"health"`
	CheckedAt *time.Time `json:"checked_at,omitempty"`
	Detail    string     `json:"detail,omitempty"`
	// Remediation is the devserver's latest remediation episode, open or not.
	Remediation *RemediationSummary `json:"remediation,omitempty"`
}

// RemediationSummary is an episode as the devserver's people see it.
type RemediationSummary struct {
	ID       int64      `json:"id"`
	State    string     `json:"state"`
	Step     string     `json:"step"`
	Cause    string     `json:"cause"`
	Reason   string     `json:"reason"`
	OpenedAt time.Time  `json:"opened_at"`
	ClosedAt *time.Time `json:"closed_at,omitempty"`
}

// Summary is the episode for its devserver's people.
func (r Remediation) Summary() *RemediationSummary {
	reason := r.Detail
	if reason == "" {
		reason = r.Cause
	}
	return &RemediationSummary{ID: r.ID, State: r.State, Step: r.Step, Cause: r.Cause, Reason: reason, OpenedAt: r.OpenedAt, ClosedAt: r.ClosedAt}
}

// DevserverHealthOf sums up a devserver's latest check and remediation.
func (s *Store) DevserverHealthOf(ctx context.Context, d Devserver) (OwnerHealth, error) {
	h := OwnerHealth{Devserver: d.Name, State: d.State, Health: HealthUnknown}
	latest, err := s.LatestHealth(ctx, d.ID)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return h, err
	default:
		at := latest.CheckedAt
		h.CheckedAt, h.Detail = &at, latest.Detail
		if d.State == StateReady {
			h.Health = HealthUnhealthy
			if latest.OK {
				h.Health = HealthHealthy
			}
		}
	}
	rs, err := s.Remediations(ctx, d.ID, 1)
	if err != nil {
		return h, err
	}
	if len(rs) > 0 {
		h.Remediation = rs[0].Summary()
	}
	return h, nil
}

// RequestRestart opens a remediation episode for a ready devserver someone
// asked to restart, or returns the episode already open (opened false). The
// caller enqueues the remediation job when opened.
func (tx *Tx) RequestRestart(ctx context.Context, who Actor, d Devserver) (Remediation, bool, error) {
	if d.State != StateReady || d.InstanceID == "" {
		return Remediation{}, false, Conflict("not_restartable", fmt.Sprintf("Devserver %s is %s, not ready: only a ready devserver can be restarted.", d.Name, d.State))
	}
	var open Remediation
	err := getNamed(ctx, tx, &open, remediationSelect+` WHERE r.devserver_id = :d AND r.state = 'open'`, arg{"d": d.ID})
	if err == nil {
		return open, false, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return Remediation{}, false, fmt.Errorf("restart %s: %w", d.Name, err)
	}
	var hostState string
	if err := getNamed(ctx, tx, &hostState, `SELECT state FROM hosts WHERE id = :id`, arg{"id": d.HostID}); err != nil {
		return Remediation{}, false, fmt.Errorf("restart %s: %w", d.Name, err)
	}
	if hostState == HostUnreachable {
		return Remediation{}, false, Conflict("not_restartable", fmt.Sprintf("The host of %s is unreachable; the platform team is recovering it.", d.Name))
	}
	reason := "restart requested by " + who.Name
	var id int64
	err = getNamed(ctx, tx, &id, `
INSERT INTO remediations (devserver_id, cause, detail, step, state, opened_at) VALUES (:d, :cause, :detail, 'restart', 'open', :at)
RETURNING id`, arg{"d": d.ID, "cause": CauseRestartRequested, "detail": reason, "at": tx.Now()})
	if err != nil {
		return Remediation{}, false, fmt.Errorf("restart %s: %w", d.Name, err)
	}
	if err := tx.Audit(ctx, who, "devserver.restart", "devserver", d.Name, map[string]any{"remediation": id}); err != nil {
		return Remediation{}, false, err
	}
	r, err := remediationBy(ctx, tx, id)
	return r, err == nil, err
}
