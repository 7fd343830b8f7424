package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ReviewCriteria is the review checklist: every criterion is checked before sign-off.
var ReviewCriteria = []string{
	"Timeline complete",
	"Impact quantified",
	"Root cause identified",
	"Detection gap understood",
	"Follow-ups filed for every root cause",
	"Report reviewed by the commander",
}

// MaxReviewNotes bounds a review's notes.
const MaxReviewNotes = 20000

// ReviewDueDays is how long after closing a SEV of each severity must be reviewed.
func ReviewDueDays(severity int) int {
	switch severity {
	case 0, 1:
		return 3
	case 2:
		return 5
	}
	return 10
}

// ReviewDue is when a closed SEV's review is due; zero when it has not closed.
func ReviewDue(s Sev) time.Time {
	if s.ClosedAt == nil {
		return time.Time{}
	}
	return s.ClosedAt.AddDate(0, 0, ReviewDueDays(s.Severity))
}

// ReviewOverdue tells whether an unreviewed SEV is past its review due date at now.
func ReviewOverdue(s Sev, now time.Time) bool {
	due := ReviewDue(s)
	return !due.IsZero() && s.State != SevReviewed && now.After(due)
}

// SevReview is a SEV's review meeting record.
type SevReview struct {
	SevID         int64           `db:"sev_id" json:"sev_id"`
	MeetingAt     time.Time       `db:"meeting_at" json:"meeting_at"`
	FacilitatorID int64           `db:"facilitator_id" json:"-"`
	Facilitator   string          `db:"facilitator" json:"facilitator"`
	AttendeesText string          `db:"attendees" json:"-"`
	Attendees     []string        `db:"-" json:"attendees"`
	Notes         string          `db:"notes" json:"notes"`
	ChecklistJSON string          `db:"checklist" json:"-"`
	Checklist     map[string]bool `db:"-" json:"checklist"`
	SignedOffAt   *time.Time      `db:"signed_off_at" json:"signed_off_at"`
	SignedOffBy   string          `db:"signed_off_by" json:"signed_off_by"`
	CreatedAt     time.Time       `db:"created_at" json:"created_at"`
	UpdatedAt     time.Time       `db:"updated_at" json:"updated_at"`
}

// SevReviewInput is a review meeting record as a reviewer writes it.
type SevReviewInput struct {
	MeetingAt   *time.Time      `json:"meeting_at"`  // default now
	Facilitator string          `json:"facilitator"` // an email; default the reviewer
	Attendees   []string        `json:"attendees"`   // emails of devport users
	Notes       string          `json:"notes"`
	Checklist   map[string]bool `json:"checklist"` // criterion → done
	SignOff     bool            `json:"sign_off"`
}

func sevReview(ctx context.Context, q queryer, sevID int64) (SevReview, error) {
	var r SevReview
	if err := getNamed(ctx, q, &r, `SELECT r.sev_id, r.meeting_at, r.facilitator_id, u.email AS facilitator, r.attendees, r.notes, r.checklist,
    r.signed_off_at, r.signed_off_by, r.created_at, r.updated_at
FROM sev_reviews r JOIN users u ON u.id = r.facilitator_id WHERE r.sev_id = :sev`, arg{"sev": sevID}); err != nil {
		return SevReview{}, fmt.Errorf("review of SEV-%d: %w", sevID, err)
	}
	r.Attendees = splitServices(r.AttendeesText)
	r.Checklist = map[string]bool{}
	if err := json.Unmarshal([]byte(r.ChecklistJSON), &r.Checklist); err != nil {
		return SevReview{}, fmt.Errorf("review of SEV-%d: checklist: %w", sevID, err)
	}
	return r, nil
}

// SevReview returns a SEV's review record; ErrNotFound before the review starts.
func (s *Store) SevReview(ctx context.Context, sevID int64) (SevReview, error) {
	return sevReview(ctx, s.read, sevID)
}

// SaveSevReview records a SEV's review meeting. The first record of a closed
// SEV starts the review (the SEV moves to in_review); sign-off needs every
// criterion checked and a meeting that has happened, and moves the SEV to
// reviewed, recording who and when.
func (tx *Tx) SaveSevReview(ctx context.Context, who Actor, sevID int64, in SevReviewInput) (SevReview, Sev, error) {
	s, err := tx.SevByID(ctx, sevID)
	if err != nil {
		return SevReview{}, Sev{}, err
	}
	now := tx.Now()
	p := Problems{}
	meeting := now
	if in.MeetingAt != nil {
		meeting = in.MeetingAt.UTC()
	}
	// Forms give minutes: a meeting in the minute the SEV closed is fine.
	if s.ClosedAt != nil && meeting.Before(s.ClosedAt.Truncate(time.Minute)) {
		p.Add("meeting_at", "is before the SEV closed")
	}
	if in.SignOff && meeting.After(now.Add(time.Minute)) {
		p.Add("meeting_at", "is in the future: sign off after the meeting")
	}
	if meeting.After(now.AddDate(1, 0, 0)) {
		p.Add("meeting_at", "is more than a year ahead")
	}
	facilitator := NormalizeEmail(in.Facilitator)
	if facilitator == "" {
		facilitator = NormalizeEmail(who.Name)
	}
	var facilitatorID int64
	if u, err := userBy(ctx, tx, `SELECT `+userColumns+` FROM users WHERE email = :email`, arg{"email": facilitator}); errors.Is(err, ErrNotFound) {
		p.Add("facilitator", fmt.Sprintf("%q is not a devport user", clip(facilitator)))
	} else if err != nil {
		return SevReview{}, Sev{}, err
	} else {
		facilitatorID = u.ID
	}
	attendees := []string{}
	for _, e := range in.Attendees {
		e = NormalizeEmail(e)
		if e == "" || slices.Contains(attendees, e) {
			continue
		}
		if _, err := userBy(ctx, tx, `SELECT `+userColumns+` FROM users WHERE email = :email`, arg{"email": e}); errors.Is(err, ErrNotFound) {
			p.Add("attendees", fmt.Sprintf("%q is not a devport user", clip(e)))
		} else if err != nil {
			return SevReview{}, Sev{}, err
		}
		attendees = append(attendees, e)
	}
	if len(attendees) > 100 {
		p.Add("attendees", "has more than 100 people")
	}
	in.Notes = strings.TrimSpace(strings.ReplaceAll(in.Notes, "\r\n", "\n"))
	if len(in.Notes) > MaxReviewNotes {
		p.Add("notes", fmt.Sprintf("is longer than %d characters", MaxReviewNotes))
	}
	checklist := map[string]bool{}
	for k, v := range in.Checklist {
		if !slices.Contains(ReviewCriteria, k) {
			p.Add("checklist", fmt.Sprintf("%q is not a review criterion", clip(k)))
			continue
		}
		checklist[k] = v
	}
	if in.SignOff {
		var missing []string
		for _, c := range ReviewCriteria {
			if !checklist[c] {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			p.Add("checklist", "sign-off needs every criterion checked; not yet: "+strings.Join(missing, ", "))
		}
	}
	if err := p.Err(); err != nil {
		return SevReview{}, Sev{}, err
	}
	switch s.State {
	case SevClosed, SevInReview:
	case SevReviewed:
		return SevReview{}, Sev{}, Conflict("already_reviewed", fmt.Sprintf("%s was already reviewed and signed off.", s.Number()))
	default:
		return SevReview{}, Sev{}, Conflict("sev_not_closed", fmt.Sprintf("%s is %s; a SEV is reviewed after it closes.", s.Number(), SevStateText(s.State)))
	}
	cl, err := json.Marshal(checklist)
	if err != nil {
		return SevReview{}, Sev{}, err
	}
	a := arg{"sev": sevID, "meeting": meeting, "facilitator": facilitatorID, "attendees": strings.Join(attendees, ","), "notes": in.Notes,
		"checklist": string(cl), "now": now}
	if _, err := execNamed(ctx, tx, `
INSERT INTO sev_reviews (sev_id, meeting_at, facilitator_id, attendees, notes, checklist, created_at, updated_at)
VALUES (:sev, :meeting, :facilitator, :attendees, :notes, :checklist, :now, :now)
ON CONFLICT (sev_id) DO UPDATE SET meeting_at = excluded.meeting_at, facilitator_id = excluded.facilitator_id,
    attendees = excluded.attendees, notes = excluded.notes, checklist = excluded.checklist, updated_at = excluded.updated_at`, a); err != nil {
		return SevReview{}, Sev{}, fmt.Errorf("review of SEV-%d: %w", sevID, err)
	}
	if err := tx.Audit(ctx, who, "sev.review_record", "sev", strconv.FormatInt(sevID, 10), map[string]any{
		"meeting_at": meeting, "facilitator": facilitator, "attendees": attendees, "checklist": checklist, "sign_off": in.SignOff}); err != nil {
		return SevReview{}, Sev{}, err
	}
	if s.State == SevClosed {
		if s, err = tx.setSevState(ctx, who, s, SevInReview); err != nil {
			return SevReview{}, Sev{}, err
		}
	}
	if in.SignOff {
		if _, err := execNamed(ctx, tx, `UPDATE sev_reviews SET signed_off_at = :now, signed_off_by = :by WHERE sev_id = :sev`,
			arg{"sev": sevID, "now": now, "by": who.Name}); err != nil {
			return SevReview{}, Sev{}, fmt.Errorf("sign off SEV-%d: %w", sevID, err)
		}
		if s, err = tx.setSevState(ctx, who, s, SevReviewed); err != nil {
			return SevReview{}, Sev{}, err
		}
	}
	r, err := sevReview(ctx, tx, sevID)
	return r, s, err
}

// ReviewQueueItem is a SEV waiting for its review, with its due date.
type ReviewQueueItem struct {
	Sev     Sev       `json:"sev"`
	Due     time.Time `json:"due_at"`
	Overdue bool      `json:"overdue"`
}

// ReviewQueue lists closed, unreviewed SEVs (closed or in review), oldest closing first.
func (s *Store) ReviewQueue(ctx context.Context) ([]ReviewQueueItem, error) {
	var rows []sevRow
	if err := selectNamed(ctx, s.read, &rows, sevSelect+`
WHERE s.state IN ('closed', 'in_review') ORDER BY s.closed_at NULLS FIRST, s.id LIMIT 500`, arg{}); err != nil {
		return nil, fmt.Errorf("review queue: %w", err)
	}
	ss, err := fillSevs(ctx, s.read, rows)
	if err != nil {
		return nil, err
	}
	now := s.Now()
	out := make([]ReviewQueueItem, len(ss))
	for i, sv := range ss {
		out[i] = ReviewQueueItem{Sev: sv, Due: ReviewDue(sv), Overdue: ReviewOverdue(sv, now)}
	}
	return out, nil
}

// ReviewQueueCount is how many SEVs wait for review.
func (s *Store) ReviewQueueCount(ctx context.Context) (int, error) {
	var n int
	if err := s.read.GetContext(ctx, &n, `SELECT COUNT(*) FROM sevs WHERE state IN ('closed', 'in_review')`); err != nil {
		return 0, fmt.Errorf("review queue count: %w", err)
	}
	return n, nil
}
