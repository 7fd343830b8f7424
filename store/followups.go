package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Follow-up kinds: what a follow-up changes, which sets how soon it is due.
const (
	FollowupCritical    = "critical"    // a root-cause fix
	FollowupMedium      = "medium"      // a mitigation
	FollowupExploratory = "exploratory" // an architectural change
)

// FollowupKinds lists the kinds in the order forms show them.
var FollowupKinds = []string{FollowupCritical, FollowupMedium, FollowupExploratory}

// Follow-up statuses.
const (
	FollowupOpen       = "open"
	FollowupInProgress = "in_progress"
	FollowupDone       = "done"
	FollowupWontDo     = "wont_do"
)

// FollowupStatuses lists the statuses in the order forms show them.
var FollowupStatuses = []string{FollowupOpen, FollowupInProgress, FollowupDone, FollowupWontDo}

// Limits on what people write into a follow-up.
const (
	MaxFollowupTitle  = 200
	MaxFollowupReason = 2000
)

// FollowupDueDays is how many days a follow-up of kind has by default: 7 for
// a critical one, 30 for a medium one, 90 for an exploratory one; 0 for an
// unknown kind.
func FollowupDueDays(kind string) int {
	switch kind {
	case FollowupCritical:
		return 7
	case FollowupMedium:
		return 30
	case FollowupExploratory:
		return 90
	}
	return 0
}

// FollowupDefaultDue is when a follow-up of kind filed at now is due unless
// its filer says otherwise.
func FollowupDefaultDue(kind string, now time.Time) time.Time {
	return now.UTC().AddDate(0, 0, FollowupDueDays(kind))
}

// FollowupStatusText is a status as people read it.
func FollowupStatusText(status string) string {
	if status == FollowupWontDo {
		return "won't do"
	}
	return strings.ReplaceAll(status, "_", " ")
}

// Followup is a task a SEV's review files: a fix, a mitigation or a change,
// with an owner and a due date, tracked until done.
type Followup struct {
	ID        int64      `db:"id" json:"id"`
	SevID     int64      `db:"sev_id" json:"sev_id"`
	SevTitle  string     `db:"sev_title" json:"sev_title"`
	Kind      string     `db:"kind" json:"kind"`
	Title     string     `db:"title" json:"title"`
	OwnerID   int64      `db:"owner_id" json:"-"`
	Owner     string     `db:"owner" json:"owner"`
	DueAt     time.Time  `db:"due_at" json:"due_at"`
	Status    string     `db:"status" json:"status"`
	Reason    string     `db:"reason" json:"reason,omitempty"`
	RunID     *int64     `db:"run_id" json:"run_id,omitempty"`
	RunStep   string     `db:"run_step" json:"run_step,omitempty"`
	CreatedBy string     `db:"created_by" json:"created_by"`
	CreatedAt time.Time  `db:"created_at" json:"created_at"`
	UpdatedAt time.Time  `db:"updated_at" json:"updated_at"`
	DoneAt    *time.Time `db:"done_at" json:"done_at,omitempty"`
	// Overdue is computed at the store's clock when the follow-up is read.
	Overdue bool `db:"-" json:"overdue"`
}

// Closed tells whether the follow-up needs no more work (done or won't do).
func (f Followup) Closed() bool { return f.Status == FollowupDone || f.Status == FollowupWontDo }

// IsOverdue tells whether the follow-up is still to do and past its due date at now.
func (f Followup) IsOverdue(now time.Time) bool { return !f.Closed() && now.After(f.DueAt) }

// SevNumber is the follow-up's SEV, SEV-N.
func (f Followup) SevNumber() string { return "SEV-" + strconv.FormatInt(f.SevID, 10) }

const followupSelect = `
SELECT f.id, f.sev_id, s.title AS sev_title, f.kind, f.title, f.owner_id, u.email AS owner, f.due_at, f.status, f.reason,
    f.run_id, f.run_step, f.created_by, f.created_at, f.updated_at, f.done_at
FROM followups f JOIN sevs s ON s.id = f.sev_id JOIN users u ON u.id = f.owner_id`

// FollowupInput is a new follow-up as a reviewer files it. Owner is an email;
// Due defaults by kind; RunStep names a step of RunID (default: the SEV's run).
type FollowupInput struct {
	Kind    string     `json:"kind"`
	Title   string     `json:"title"`
	Owner   string     `json:"owner"`
	Due     *time.Time `json:"due"`
	RunID   *int64     `json:"run_id"`
	RunStep string     `json:"run_step"`
}

// FollowupPatch is a change to a follow-up; nil fields stay as they are.
type FollowupPatch struct {
	Kind   *string    `json:"kind"`
	Title  *string    `json:"title"`
	Owner  *string    `json:"owner"`
	Due    *time.Time `json:"due"`
	Status *string    `json:"status"`
	Reason *string    `json:"reason"`
}

// StatusOnly tells whether the patch changes nothing but the status and its reason,
// which is all a follow-up's owner may change.
func (p FollowupPatch) StatusOnly() bool {
	return p.Kind == nil && p.Title == nil && p.Owner == nil && p.Due == nil
}

func followupBy(ctx context.Context, q queryer, id int64, now time.Time) (Followup, error) {
	var f Followup
	if err := getNamed(ctx, q, &f, followupSelect+` WHERE f.id = :id`, arg{"id": id}); err != nil {
		return Followup{}, fmt.Errorf("follow-up %d: %w", id, err)
	}
	f.Overdue = f.IsOverdue(now)
	return f, nil
}

// Followup returns a follow-up; ErrNotFound when there is none.
func (s *Store) Followup(ctx context.Context, id int64) (Followup, error) {
	return followupBy(ctx, s.read, id, s.Now())
}

// SevFollowups lists a SEV's follow-ups, by due date.
func (s *Store) SevFollowups(ctx context.Context, sevID int64) ([]Followup, error) {
	return s.Followups(ctx, FollowupFilter{SevID: sevID, Limit: 1000})
}

// FollowupFilter selects follow-ups for the board. Zero values select everything.
type FollowupFilter struct {
	SevID   int64
	Kind    string
	Owner   string // an email
	Status  string
	Overdue bool
	Offset  int
	Limit   int // default 50
}

// Validate refuses a filter that names an unknown kind or status.
func (f FollowupFilter) Validate() error {
	p := Problems{}
	if f.Kind != "" && !slices.Contains(FollowupKinds, f.Kind) {
		p.Add("kind", fmt.Sprintf("%q is not a follow-up kind (%s)", clip(f.Kind), strings.Join(FollowupKinds, ", ")))
	}
	if f.Status != "" && !slices.Contains(FollowupStatuses, f.Status) {
		p.Add("status", fmt.Sprintf("%q is not a follow-up status (%s)", clip(f.Status), strings.Join(FollowupStatuses, ", ")))
	}
	if f.Offset < 0 {
		p.Add("offset", "must not be negative")
	}
	return p.Err()
}

// Followups lists the follow-ups the filter selects, by due date: the board.
func (s *Store) Followups(ctx context.Context, f FollowupFilter) ([]Followup, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	now := s.Now()
	if f.Limit <= 0 {
		f.Limit = 50
	}
	where := []string{"1 = 1"}
	a := arg{"limit": f.Limit, "offset": f.Offset, "now": now}
	if f.SevID != 0 {
		where = append(where, "f.sev_id = :sev")
		a["sev"] = f.SevID
	}
	if f.Kind != "" {
		where = append(where, "f.kind = :kind")
		a["kind"] = f.Kind
	}
	if f.Owner != "" {
		where = append(where, "u.email = :owner")
		a["owner"] = NormalizeEmail(f.Owner)
	}
	if f.Status != "" {
		where = append(where, "f.status = :status")
		a["status"] = f.Status
	}
	if f.Overdue {
		where = append(where, "f.status IN ('open', 'in_progress') AND f.due_at < :now")
	}
	var out []Followup
	if err := selectNamed(ctx, s.read, &out, followupSelect+` WHERE `+strings.Join(where, " AND ")+`
ORDER BY CASE WHEN f.status IN ('open', 'in_progress') THEN 0 ELSE 1 END, f.due_at, f.id LIMIT :limit OFFSET :offset`, a); err != nil {
		return nil, fmt.Errorf("follow-ups: %w", err)
	}
	for i := range out {
		out[i].Overdue = out[i].IsOverdue(now)
	}
	return out, nil
}

// followupOwner resolves an owner's email to a user, as a validation problem when there is none.
func (tx *Tx) followupOwner(ctx context.Context, email string, p Problems) int64 {
	email = NormalizeEmail(email)
	if email == "" {
		p.Add("owner", "is required (the email of a devport user)")
		return 0
	}
	var id int64
	err := getNamed(ctx, tx, &id, `SELECT id FROM users WHERE email = :email`, arg{"email": email})
	if err != nil {
		p.Add("owner", fmt.Sprintf("%q is not a devport user", clip(email)))
		return 0
	}
	return id
}

func checkFollowupTitle(title string, p Problems) string {
	title = strings.TrimSpace(title)
	switch {
	case title == "":
		p.Add("title", "is required")
	case len([]rune(title)) > MaxFollowupTitle:
		p.Add("title", fmt.Sprintf("is longer than %d characters", MaxFollowupTitle))
	case strings.ContainsAny(title, "\r\n"):
		p.Add("title", "must be one line")
	}
	return title
}

func checkFollowupKind(kind string, p Problems) {
	if !slices.Contains(FollowupKinds, kind) {
		p.Add("kind", fmt.Sprintf("%q is not a follow-up kind (%s)", clip(kind), strings.Join(FollowupKinds, ", ")))
	}
}

func checkFollowupDue(due time.Time, now time.Time, p Problems) {
	if due.Before(now) {
		p.Add("due", "is in the past")
	}
}

// CreateFollowup files a follow-up of a SEV. An unknown SEV is ErrNotFound;
// everything else wrong is a validation error, and nothing is saved.
func (tx *Tx) CreateFollowup(ctx context.Context, who Actor, sevID int64, in FollowupInput) (Followup, error) {
	sev, err := tx.SevByID(ctx, sevID)
	if err != nil {
		return Followup{}, err
	}
	now := tx.Now()
	p := Problems{}
	in.Kind = strings.TrimSpace(in.Kind)
	checkFollowupKind(in.Kind, p)
	in.Title = checkFollowupTitle(in.Title, p)
	ownerID := tx.followupOwner(ctx, in.Owner, p)
	due := FollowupDefaultDue(in.Kind, now)
	if in.Due != nil {
		due = in.Due.UTC()
		checkFollowupDue(due, now, p)
	}
	runID, step := in.RunID, strings.TrimSpace(in.RunStep)
	switch {
	case step == "" && runID != nil:
		p.Add("run_step", "is required with run_id")
	case step != "" && runID == nil && sev.RunID == nil:
		p.Add("run_id", "is required: "+sev.Number()+" has no runbook run of its own")
	case step != "":
		if runID == nil {
			runID = sev.RunID
		}
		if _, err := tx.RunStep(ctx, *runID, step); errors.Is(err, ErrNotFound) {
			p.Add("run_step", fmt.Sprintf("run %d has no step %q", *runID, clip(step)))
		} else if err != nil {
			return Followup{}, err
		}
	}
	if err := p.Err(); err != nil {
		return Followup{}, err
	}
	var id int64
	err = getNamed(ctx, tx, &id, `
INSERT INTO followups (sev_id, kind, title, owner_id, due_at, status, reason, run_id, run_step, created_by, created_at, updated_at)
VALUES (:sev, :kind, :title, :owner, :due, 'open', '', :run, :step, :by, :now, :now) RETURNING id`,
		arg{"sev": sevID, "kind": in.Kind, "title": in.Title, "owner": ownerID, "due": due, "run": runID, "step": step, "by": who.Name, "now": now})
	if err != nil {
		return Followup{}, fmt.Errorf("file follow-up of SEV-%d: %w", sevID, err)
	}
	f, err := followupBy(ctx, tx, id, now)
	if err != nil {
		return Followup{}, err
	}
	if err := tx.Audit(ctx, who, "followup.create", "followup", strconv.FormatInt(id, 10), followupDetail(f)); err != nil {
		return Followup{}, err
	}
	return f, nil
}

func followupDetail(f Followup) map[string]any {
	d := map[string]any{"sev": f.SevID, "kind": f.Kind, "title": f.Title, "owner": f.Owner, "due": f.DueAt, "status": f.Status}
	if f.Reason != "" {
		d["reason"] = f.Reason
	}
	if f.RunID != nil {
		d["run"], d["run_step"] = *f.RunID, f.RunStep
	}
	return d
}

// UpdateFollowup changes a follow-up. Authorization is the caller's (see
// CanEditFollowup and CanSetFollowupStatus); this checks the values: a known
// kind and status, a reason exactly for won't do, a due date not in the past.
func (tx *Tx) UpdateFollowup(ctx context.Context, who Actor, id int64, patch FollowupPatch) (Followup, error) {
	now := tx.Now()
	f, err := followupBy(ctx, tx, id, now)
	if err != nil {
		return Followup{}, err
	}
	before := f
	p := Problems{}
	if patch.Kind != nil {
		f.Kind = strings.TrimSpace(*patch.Kind)
		checkFollowupKind(f.Kind, p)
	}
	if patch.Title != nil {
		f.Title = checkFollowupTitle(*patch.Title, p)
	}
	if patch.Owner != nil {
		f.OwnerID = tx.followupOwner(ctx, *patch.Owner, p)
	}
	if patch.Due != nil {
		f.DueAt = patch.Due.UTC()
		checkFollowupDue(f.DueAt, now, p)
	}
	if patch.Status != nil {
		f.Status = strings.TrimSpace(*patch.Status)
		if !slices.Contains(FollowupStatuses, f.Status) {
			p.Add("status", fmt.Sprintf("%q is not a follow-up status (%s)", clip(f.Status), strings.Join(FollowupStatuses, ", ")))
		}
		if f.Status != FollowupWontDo {
			f.Reason = "" // a reason belongs to won't do alone
		}
	}
	if patch.Reason != nil {
		f.Reason = strings.TrimSpace(*patch.Reason)
	}
	switch {
	case f.Status == FollowupWontDo && f.Reason == "":
		p.Add("reason", "is required for won't do: say why")
	case f.Status != FollowupWontDo && f.Reason != "":
		p.Add("reason", "applies only to won't do")
	case len([]rune(f.Reason)) > MaxFollowupReason:
		p.Add("reason", fmt.Sprintf("is longer than %d characters", MaxFollowupReason))
	}
	if err := p.Err(); err != nil {
		return Followup{}, err
	}
	switch {
	case f.Status == FollowupDone && before.Status != FollowupDone:
		f.DoneAt = &now
	case f.Status != FollowupDone:
		f.DoneAt = nil
	}
	_, err = execNamed(ctx, tx, `
UPDATE followups SET kind = :kind, title = :title, owner_id = :owner, due_at = :due, status = :status, reason = :reason,
    done_at = :done, updated_at = :now WHERE id = :id`,
		arg{"id": id, "kind": f.Kind, "title": f.Title, "owner": f.OwnerID, "due": f.DueAt, "status": f.Status, "reason": f.Reason, "done": f.DoneAt, "now": now})
	if err != nil {
		return Followup{}, fmt.Errorf("update follow-up %d: %w", id, err)
	}
	f, err = followupBy(ctx, tx, id, now)
	if err != nil {
		return Followup{}, err
	}
	d := followupDetail(f)
	d["from_status"] = before.Status
	if err := tx.Audit(ctx, who, "followup.update", "followup", strconv.FormatInt(id, 10), d); err != nil {
		return Followup{}, err
	}
	return f, nil
}

// OverdueFollowup is an overdue critical follow-up with the people it
// escalates to: its owner and its SEV's review facilitator, when there is one.
type OverdueFollowup struct {
	Followup
	FacilitatorID *int64 `db:"facilitator_id"`
}

// OverdueCriticalFollowups lists the critical follow-ups still to do and past
// their due date at now, a page at a time after the ID afterID.
func (s *Store) OverdueCriticalFollowups(ctx context.Context, now time.Time, afterID int64, limit int) ([]OverdueFollowup, error) {
	var out []OverdueFollowup
	err := selectNamed(ctx, s.read, &out, `
SELECT f.id, f.sev_id, s.title AS sev_title, f.kind, f.title, f.owner_id, u.email AS owner, f.due_at, f.status, f.reason,
    f.run_id, f.run_step, f.created_by, f.created_at, f.updated_at, f.done_at, r.facilitator_id
FROM followups f JOIN sevs s ON s.id = f.sev_id JOIN users u ON u.id = f.owner_id LEFT JOIN sev_reviews r ON r.sev_id = f.sev_id
WHERE f.kind = 'critical' AND f.status IN ('open', 'in_progress') AND f.due_at < :now AND f.id > :after
ORDER BY f.id LIMIT :limit`, arg{"now": now, "after": afterID, "limit": limit})
	if err != nil {
		return nil, fmt.Errorf("overdue critical follow-ups: %w", err)
	}
	for i := range out {
		out[i].Overdue = true
	}
	return out, nil
}

// EscalateOverdueFollowup notifies the owner of an overdue critical follow-up
// and its SEV's review facilitator, each once per follow-up per UTC date (the
// idempotency key carries the date). It returns how many people it notified now.
func (tx *Tx) EscalateOverdueFollowup(ctx context.Context, f OverdueFollowup, now time.Time) (int, error) {
	day := now.UTC().Format("2006-01-02")
	people := []int64{f.OwnerID}
	if f.FacilitatorID != nil && *f.FacilitatorID != f.OwnerID {
		people = append(people, *f.FacilitatorID)
	}
	body := fmt.Sprintf("The critical follow-up %q of %s (%s), owned by %s, was due %s and is %s late. "+
		"Mark it done, or won't do with a reason, once it is settled.",
		f.Title, f.SevNumber(), f.SevTitle, f.Owner, f.DueAt.UTC().Format("2006-01-02 15:04 UTC"), HumanDuration(now.Sub(f.DueAt)))
	n := 0
	for _, uid := range people {
		sent, err := tx.Notify(ctx, Notification{
			UserID: uid, Kind: "followup_overdue",
			Title:          clip200("Overdue critical follow-up: " + f.Title),
			Body:           body,
			Link:           "/sevs/" + strconv.FormatInt(f.SevID, 10),
			IdempotencyKey: "followup-overdue:" + strconv.FormatInt(f.ID, 10) + ":" + strconv.FormatInt(uid, 10) + ":" + day,
		})
		if err != nil {
			return n, err
		}
		if sent {
			n++
		}
	}
	return n, nil
}

// clip200 shortens a title to 200 characters.
func clip200(s string) string {
	r := []rune(s)
	if len(r) <= 200 {
		return s
	}
	return string(r[:199]) + "…"
}
