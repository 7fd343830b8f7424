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

// SEV states, in the order a SEV goes through them.
const (
	SevOpen      = "open"
	SevMitigated = "mitigated"
	SevClosed    = "closed"
	SevInReview  = "in_review"
	SevReviewed  = "reviewed"
)

// SEV kinds.
const (
	SevIncident = "incident"
	SevExercise = "exercise"
)

// SevStates and SevKinds list the states and kinds in display order.
var (
	SevStates = []string{SevOpen, SevMitigated, SevClosed, SevInReview, SevReviewed}
	SevKinds  = []string{SevIncident, SevExercise}
)

// SeverityDefinitions says what each severity means; the index is the severity.
var SeverityDefinitions = []string{
	"Critical: the whole company is affected, or data was lost.",
	"Major: a region is down or many engineers are blocked.",
	"Significant degradation; a workaround exists.",
	"Minor: a few people are affected.",
	"No user impact: an exercise, or noise worth recording.",
}

// SeverityText is the severity's name, SEV0 to SEV4.
func SeverityText(n int) string { return "SEV" + strconv.Itoa(n) }

// SeverityDefinition is what severity n means, "" for an unknown one.
func SeverityDefinition(n int) string {
	if n < 0 || n >= len(SeverityDefinitions) {
		return ""
	}
	return SeverityDefinitions[n]
}

// Limits on what people write into a SEV.
const (
	MaxSevTitle    = 200
	MaxSevTimeline = 4000
	MaxSevServices = 20
	MaxSevSection  = 20000
)

// sevNext is the state machine: the states a SEV may enter from each state.
var sevNext = map[string][]string{
	SevOpen:      {SevMitigated},
	SevMitigated: {SevClosed},
	SevClosed:    {SevInReview},
	SevInReview:  {SevReviewed},
	SevReviewed:  {},
}

// SevNextStates lists the states a SEV in state may move to.
func SevNextStates(state string) []string { return sevNext[state] }

// SevTransitionAllowed tells whether a SEV may move from one state to another.
func SevTransitionAllowed(from, to string) bool { return slices.Contains(sevNext[from], to) }

// StateText is a state as people read it.
func SevStateText(state string) string { return strings.ReplaceAll(state, "_", " ") }

// Sev is an incident or an exercise; its ID is its number, SEV-N.
type Sev struct {
	ID              int64      `db:"id" json:"id"`
	Title           string     `db:"title" json:"title"`
	Severity        int        `db:"severity" json:"severity"`
	Kind            string     `db:"kind" json:"kind"`
	State           string     `db:"state" json:"state"`
	Regions         []string   `db:"-" json:"regions"`
	Services        []string   `db:"-" json:"services"`
	ImpactStartedAt *time.Time `db:"impact_started_at" json:"impact_started_at"`
	DetectedAt      *time.Time `db:"detected_at" json:"detected_at"`
	ReportedAt      time.Time  `db:"reported_at" json:"reported_at"`
	MitigatedAt     *time.Time `db:"mitigated_at" json:"mitigated_at"`
	ClosedAt        *time.Time `db:"closed_at" json:"closed_at"`
	ReviewedAt      *time.Time `db:"reviewed_at" json:"reviewed_at"`
	CommanderID     int64      `db:"commander_id" json:"commander_id"`
	Commander       string     `db:"commander" json:"commander"`
	RunID           *int64     `db:"run_id" json:"run_id"`
	CreatedBy       string     `db:"created_by" json:"created_by"`
	CreatedAt       time.Time  `db:"created_at" json:"created_at"`
	UpdatedAt       time.Time  `db:"updated_at" json:"updated_at"`
}

// Number is the SEV's name, SEV-N.
func (s Sev) Number() string { return "SEV-" + strconv.FormatInt(s.ID, 10) }

// SeverityName is the SEV's severity, SEV0 to SEV4.
func (s Sev) SeverityName() string { return SeverityText(s.Severity) }

// sevRow is a SEV as the database holds it.
type sevRow struct {
	Sev
	ServicesText string `db:"services"`
}

const sevSelect = `
SELECT s.id, s.title, s.severity, s.kind, s.state, s.services, s.impact_started_at, s.detected_at, s.reported_at,
    s.mitigated_at, s.closed_at, s.reviewed_at, COALESCE(s.commander_id, 0) AS commander_id, COALESCE(u.email, '') AS commander,
    s.run_id, s.created_by, s.created_at, s.updated_at
FROM sevs s LEFT JOIN users u ON u.id = s.commander_id`

func splitServices(s string) []string {
	out := []string{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// fillSevs turns rows into SEVs with their regions.
func fillSevs(ctx context.Context, q queryer, rows []sevRow) ([]Sev, error) {
	out := make([]Sev, len(rows))
	if len(rows) == 0 {
		return out, nil
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.Sev
		out[i].Services = splitServices(r.ServicesText)
		out[i].Regions = []string{}
		ids[i] = strconv.FormatInt(r.ID, 10)
	}
	var regs []struct {
		SevID  int64  `db:"sev_id"`
		Region string `db:"region"`
	}
	// The IDs are integers formatted here, never user text.
	if err := q.SelectContext(ctx, &regs, `SELECT sr.sev_id, sr.region FROM sev_regions sr JOIN regions r ON r.code = sr.region
WHERE sr.sev_id IN (`+strings.Join(ids, ",")+`) ORDER BY r.position, r.code`); err != nil {
		return nil, fmt.Errorf("regions of sevs: %w", err)
	}
	for i := range out {
		for _, r := range regs {
			if r.SevID == out[i].ID {
				out[i].Regions = append(out[i].Regions, r.Region)
			}
		}
	}
	return out, nil
}

func sevByID(ctx context.Context, q queryer, id int64) (Sev, error) {
	var r sevRow
	if err := getNamed(ctx, q, &r, sevSelect+` WHERE s.id = :id`, arg{"id": id}); err != nil {
		return Sev{}, fmt.Errorf("SEV-%d: %w", id, err)
	}
	ss, err := fillSevs(ctx, q, []sevRow{r})
	if err != nil {
		return Sev{}, err
	}
	return ss[0], nil
}

// Sev returns one SEV, ErrNotFound when there is no such SEV.
func (s *Store) Sev(ctx context.Context, id int64) (Sev, error) { return sevByID(ctx, s.read, id) }

// SevByID returns one SEV inside a transaction.
func (tx *Tx) SevByID(ctx context.Context, id int64) (Sev, error) { return sevByID(ctx, tx, id) }

// SevFilter narrows the SEV list.
type SevFilter struct {
	State    string // "" for all
	Kind     string // "" for all
	Severity *int   // nil for all
	AfterID  int64  // cursor: the smallest ID of the previous page
	Limit    int
}

// Validate checks the filter's values.
func (f SevFilter) Validate() error {
	p := Problems{}
	if f.State != "" && !slices.Contains(SevStates, f.State) {
		p.Add("state", fmt.Sprintf("%q is not a SEV state (%s)", clip(f.State), strings.Join(SevStates, ", ")))
	}
	if f.Kind != "" && !slices.Contains(SevKinds, f.Kind) {
		p.Add("kind", fmt.Sprintf("%q is not a SEV kind (incident, exercise)", clip(f.Kind)))
	}
	if f.Severity != nil && (*f.Severity < 0 || *f.Severity > 4) {
		p.Add("severity", "must be 0 to 4 (SEV0 to SEV4)")
	}
	return p.Err()
}

// Sevs lists SEVs, newest first, a page at a time.
func (s *Store) Sevs(ctx context.Context, f SevFilter) ([]Sev, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if f.Limit <= 0 {
		f.Limit = 50
	}
	sev := -1
	if f.Severity != nil {
		sev = *f.Severity
	}
	var rows []sevRow
	err := selectNamed(ctx, s.read, &rows, sevSelect+`
WHERE (:state = '' OR s.state = :state) AND (:kind = '' OR s.kind = :kind) AND (:sev < 0 OR s.severity = :sev)
  AND (:after = 0 OR s.id < :after)
ORDER BY s.id DESC LIMIT :limit`, arg{"state": f.State, "kind": f.Kind, "sev": sev, "after": f.AfterID, "limit": f.Limit})
	if err != nil {
		return nil, fmt.Errorf("sevs: %w", err)
	}
	return fillSevs(ctx, s.read, rows)
}

// SevInput is a new SEV, or the fields of an edit (nil: unchanged).
type SevInput struct {
	Title           *string    `json:"title"`
	Severity        *int       `json:"severity"`
	Kind            *string    `json:"kind"`
	State           *string    `json:"state"`
	Regions         *[]string  `json:"regions"`
	Services        *[]string  `json:"services"`
	ImpactStartedAt *time.Time `json:"impact_started_at"`
	DetectedAt      *time.Time `json:"detected_at"`
	MitigatedAt     *time.Time `json:"mitigated_at"`
	ClosedAt        *time.Time `json:"closed_at"`
	Commander       *string    `json:"commander"` // an email
	RunID           *int64     `json:"run_id"`
}

// checkSevFields validates the fields of in into s (the SEV as it will be),
// collecting problems. The commander is resolved by email.
func (tx *Tx) checkSevFields(ctx context.Context, in SevInput, s *Sev, p Problems) error {
	if in.Title != nil {
		t := strings.TrimSpace(*in.Title)
		switch {
		case t == "":
			p.Add("title", "is required")
		case len(t) > MaxSevTitle:
			p.Add("title", fmt.Sprintf("is longer than %d characters", MaxSevTitle))
		}
		s.Title = t
	}
	if in.Severity != nil {
		if *in.Severity < 0 || *in.Severity > 4 {
			p.Add("severity", fmt.Sprintf("%d is not a severity: use 0 to 4 (SEV0 to SEV4)", *in.Severity))
		}
		s.Severity = *in.Severity
	}
	if in.Kind != nil {
		if !slices.Contains(SevKinds, *in.Kind) {
			p.Add("kind", fmt.Sprintf("%q is not a SEV kind (incident, exercise)", clip(*in.Kind)))
		}
		s.Kind = *in.Kind
	}
	if in.Regions != nil {
		regs := []string{}
		for _, code := range *in.Regions {
			code = strings.TrimSpace(code)
			if code == "" || slices.Contains(regs, code) {
				continue
			}
			if _, err := regionByCode(ctx, tx, code); errors.Is(err, ErrNotFound) {
				p.Add("regions", fmt.Sprintf("%q is not a region", clip(code)))
				continue
			} else if err != nil {
				return err
			}
			regs = append(regs, code)
		}
		s.Regions = regs
	}
	if in.Services != nil {
		svcs := []string{}
		for _, v := range *in.Services {
			v = strings.TrimSpace(v)
			switch {
			case v == "" || slices.Contains(svcs, v):
				continue
			case len(v) > 64 || strings.ContainsAny(v, ",\n\r"):
				p.Add("services", fmt.Sprintf("%q is not a service name (at most 64 characters, no commas)", clip(v)))
			}
			svcs = append(svcs, v)
		}
		if len(svcs) > MaxSevServices {
			p.Add("services", fmt.Sprintf("has more than %d services", MaxSevServices))
		}
		s.Services = svcs
	}
	if in.Commander != nil {
		email := NormalizeEmail(*in.Commander)
		if email == "" {
			s.CommanderID, s.Commander = 0, ""
		} else {
			u, err := userBy(ctx, tx, `SELECT `+userColumns+` FROM users WHERE email = :email`, arg{"email": email})
			switch {
			case errors.Is(err, ErrNotFound):
				p.Add("commander", fmt.Sprintf("%q is not a devport user", clip(*in.Commander)))
			case err != nil:
				return err
			default:
				s.CommanderID, s.Commander = u.ID, u.Email
			}
		}
	}
	setTime := func(dst **time.Time, v *time.Time) {
		if v != nil {
			t := v.UTC()
			*dst = &t
		}
	}
	setTime(&s.ImpactStartedAt, in.ImpactStartedAt)
	setTime(&s.DetectedAt, in.DetectedAt)
	setTime(&s.MitigatedAt, in.MitigatedAt)
	setTime(&s.ClosedAt, in.ClosedAt)
	return nil
}

// checkSevTimes checks that the SEV's times are in order and none is in the future.
func checkSevTimes(s Sev, now time.Time, p Problems) {
	times := []struct {
		field string
		t     *time.Time
	}{{"impact_started_at", s.ImpactStartedAt}, {"detected_at", s.DetectedAt}, {"mitigated_at", s.MitigatedAt}, {"closed_at", s.ClosedAt}}
	var prev *time.Time
	prevField := ""
	for _, x := range times {
		if x.t == nil {
			continue
		}
		if x.t.After(now.Add(time.Minute)) {
			p.Add(x.field, "is in the future")
		}
		if prev != nil && x.t.Before(*prev) {
			p.Add(x.field, "is before "+strings.ReplaceAll(prevField, "_", " ")+": impact start ≤ detection ≤ mitigation ≤ closing")
		}
		prev, prevField = x.t, x.field
	}
}

func sevArgs(s Sev) arg {
	var commander *int64
	if s.CommanderID != 0 {
		c := s.CommanderID
		commander = &c
	}
	return arg{"id": s.ID, "title": s.Title, "severity": s.Severity, "kind": s.Kind, "state": s.State, "services": strings.Join(s.Services, ","),
		"impact": s.ImpactStartedAt, "detected": s.DetectedAt, "reported": s.ReportedAt, "mitigated": s.MitigatedAt, "closed": s.ClosedAt,
		"reviewed": s.ReviewedAt, "commander": commander, "run": s.RunID, "by": s.CreatedBy, "created": s.CreatedAt, "updated": s.UpdatedAt}
}

func sevDetail(s Sev) map[string]any {
	return map[string]any{"title": s.Title, "severity": SeverityText(s.Severity), "kind": s.Kind, "state": s.State, "regions": s.Regions,
		"services": s.Services, "commander": s.Commander, "impact_started_at": s.ImpactStartedAt, "detected_at": s.DetectedAt,
		"mitigated_at": s.MitigatedAt, "closed_at": s.ClosedAt}
}

func (tx *Tx) setSevRegions(ctx context.Context, id int64, regions []string) error {
	if _, err := execNamed(ctx, tx, `DELETE FROM sev_regions WHERE sev_id = :id`, arg{"id": id}); err != nil {
		return fmt.Errorf("regions of SEV-%d: %w", id, err)
	}
	for _, r := range regions {
		if _, err := execNamed(ctx, tx, `INSERT INTO sev_regions (sev_id, region) VALUES (:id, :r)`, arg{"id": id, "r": r}); err != nil {
			return fmt.Errorf("regions of SEV-%d: %w", id, err)
		}
	}
	return nil
}

// CreateSev opens a SEV after validation. The creator and the commander are subscribed.
func (tx *Tx) CreateSev(ctx context.Context, who Actor, in SevInput) (Sev, error) {
	now := tx.Now()
	s := Sev{State: SevOpen, ReportedAt: now, CreatedBy: who.Name, CreatedAt: now, UpdatedAt: now, Regions: []string{}, Services: []string{}}
	p := Problems{}
	if in.Title == nil {
		p.Add("title", "is required")
	}
	if in.Severity == nil {
		p.Add("severity", "is required: 0 to 4 (SEV0 to SEV4)")
	}
	if in.Kind == nil {
		k := SevIncident
		in.Kind = &k
	}
	if in.State != nil && *in.State != SevOpen {
		p.Add("state", "a new SEV is open")
	}
	if in.ClosedAt != nil {
		p.Add("closed_at", "is set when the SEV closes")
	}
	if err := tx.checkSevFields(ctx, in, &s, p); err != nil {
		return Sev{}, err
	}
	if s.MitigatedAt != nil {
		p.Add("mitigated_at", "is set when the SEV is mitigated")
	}
	if in.RunID != nil {
		if *in.RunID <= 0 {
			p.Add("run_id", "must be a runbook run")
		} else {
			s.RunID = in.RunID
		}
	}
	checkSevTimes(s, now, p)
	if err := p.Err(); err != nil {
		return Sev{}, err
	}
	a := sevArgs(s)
	if err := getNamed(ctx, tx, &s.ID, `
INSERT INTO sevs (title, severity, kind, state, services, impact_started_at, detected_at, reported_at, commander_id, run_id, created_by, created_at, updated_at)
VALUES (:title, :severity, :kind, :state, :services, :impact, :detected, :reported, :commander, :run, :by, :created, :updated) RETURNING id`, a); err != nil {
		return Sev{}, fmt.Errorf("create SEV: %w", err)
	}
	if err := tx.setSevRegions(ctx, s.ID, s.Regions); err != nil {
		return Sev{}, err
	}
	if who.UserID != nil {
		if err := tx.subscribe(ctx, s.ID, *who.UserID); err != nil {
			return Sev{}, err
		}
	}
	if s.CommanderID != 0 {
		if err := tx.subscribe(ctx, s.ID, s.CommanderID); err != nil {
			return Sev{}, err
		}
	}
	if _, err := tx.AddSevTimeline(ctx, who, s.ID, SevTimelineEntry{At: now, Kind: TimelineState,
		Text: fmt.Sprintf("%s opened as %s (%s)", s.Number(), SeverityText(s.Severity), s.Kind), EventKey: "state:open"}); err != nil {
		return Sev{}, err
	}
	if err := tx.Audit(ctx, who, "sev.create", "sev", strconv.FormatInt(s.ID, 10), sevDetail(s)); err != nil {
		return Sev{}, err
	}
	return tx.SevByID(ctx, s.ID)
}

// UpdateSev changes a SEV's fields and, with in.State, moves it to its next
// state. An illegal transition is a conflict naming the allowed next states;
// closing needs the impact start and detection times. Entering a state records
// its time; state and severity changes go on the timeline.
func (tx *Tx) UpdateSev(ctx context.Context, who Actor, id int64, in SevInput) (Sev, error) {
	old, err := tx.SevByID(ctx, id)
	if err != nil {
		return Sev{}, err
	}
	if in.State != nil && *in.State != old.State {
		to := *in.State
		if !slices.Contains(SevStates, to) {
			return Sev{}, &ValidationError{Fields: map[string]string{"state": fmt.Sprintf("%q is not a SEV state (%s)", clip(to), strings.Join(SevStates, ", "))}}
		}
		if err := sevTransitionError(old, to); err != nil {
			return Sev{}, err
		}
		if to == SevReviewed {
			return Sev{}, Conflict("review_sign_off_required", fmt.Sprintf("%s becomes reviewed when a reviewer signs off its review.", old.Number()))
		}
	}
	if in.RunID != nil {
		return Sev{}, &ValidationError{Fields: map[string]string{"run_id": "is set when the SEV is opened"}}
	}
	s := old
	s.Regions = slices.Clone(old.Regions)
	s.Services = slices.Clone(old.Services)
	p := Problems{}
	if err := tx.checkSevFields(ctx, in, &s, p); err != nil {
		return Sev{}, err
	}
	now := tx.Now()
	to := old.State
	if in.State != nil {
		to = *in.State
	}
	if to != old.State {
		s.State = to
		switch to {
		case SevMitigated:
			if s.MitigatedAt == nil {
				s.MitigatedAt = &now
			}
		case SevClosed:
			if s.ClosedAt == nil {
				s.ClosedAt = &now
			}
			if s.MitigatedAt == nil {
				s.MitigatedAt = s.ClosedAt
			}
			if s.ImpactStartedAt == nil {
				p.Add("impact_started_at", "is required to close the SEV")
			}
			if s.DetectedAt == nil {
				p.Add("detected_at", "is required to close the SEV")
			}
		}
	}
	if s.State == SevOpen && in.MitigatedAt != nil {
		p.Add("mitigated_at", "is set when the SEV is mitigated")
	}
	if (s.State == SevOpen || s.State == SevMitigated) && in.ClosedAt != nil {
		p.Add("closed_at", "is set when the SEV closes")
	}
	checkSevTimes(s, now, p)
	if err := p.Err(); err != nil {
		return Sev{}, err
	}
	s.UpdatedAt = now
	if _, err := execNamed(ctx, tx, `
UPDATE sevs SET title = :title, severity = :severity, kind = :kind, state = :state, services = :services,
    impact_started_at = :impact, detected_at = :detected, mitigated_at = :mitigated, closed_at = :closed,
    commander_id = :commander, updated_at = :updated
WHERE id = :id`, sevArgs(s)); err != nil {
		return Sev{}, fmt.Errorf("update SEV-%d: %w", id, err)
	}
	if in.Regions != nil {
		if err := tx.setSevRegions(ctx, id, s.Regions); err != nil {
			return Sev{}, err
		}
	}
	if s.CommanderID != 0 && s.CommanderID != old.CommanderID {
		if err := tx.subscribe(ctx, id, s.CommanderID); err != nil {
			return Sev{}, err
		}
		if _, err := tx.AddSevTimeline(ctx, who, id, SevTimelineEntry{At: now, Kind: TimelineEvent, Text: s.Commander + " is the commander"}); err != nil {
			return Sev{}, err
		}
	}
	if s.Severity != old.Severity {
		if _, err := tx.AddSevTimeline(ctx, who, id, SevTimelineEntry{At: now, Kind: TimelineSeverity,
			Text: fmt.Sprintf("Severity changed from %s to %s", SeverityText(old.Severity), SeverityText(s.Severity))}); err != nil {
			return Sev{}, err
		}
	}
	if s.State != old.State {
		if err := tx.enteredState(ctx, who, s, old.State, now); err != nil {
			return Sev{}, err
		}
	}
	if err := tx.Audit(ctx, who, "sev.update", "sev", strconv.FormatInt(id, 10), sevDetail(s)); err != nil {
		return Sev{}, err
	}
	return tx.SevByID(ctx, id)
}

// sevTransitionError is the conflict for an illegal move, nil for a legal one.
func sevTransitionError(s Sev, to string) error {
	if SevTransitionAllowed(s.State, to) {
		return nil
	}
	next := SevNextStates(s.State)
	allowed := "none: it is " + SevStateText(s.State) + ", the last state"
	if len(next) > 0 {
		allowed = strings.Join(next, ", ")
	}
	return Conflict("illegal_transition", fmt.Sprintf("%s cannot move from %s to %s; allowed next states: %s.",
		s.Number(), s.State, to, allowed))
}

// enteredState writes the timeline entry of a state change, and does what
// the new state needs: a closing SEV gets its report.
func (tx *Tx) enteredState(ctx context.Context, who Actor, s Sev, from string, now time.Time) error {
	if _, err := tx.AddSevTimeline(ctx, who, s.ID, SevTimelineEntry{At: now, Kind: TimelineState,
		Text: fmt.Sprintf("State changed from %s to %s", SevStateText(from), SevStateText(s.State)), EventKey: "state:" + s.State}); err != nil {
		return err
	}
	if s.State == SevClosed {
		if _, err := tx.createSevReport(ctx, who, s); err != nil {
			return err
		}
	}
	return nil
}

// setSevState moves a SEV to a state from its current one, for the review flow.
func (tx *Tx) setSevState(ctx context.Context, who Actor, s Sev, to string) (Sev, error) {
	if err := sevTransitionError(s, to); err != nil {
		return Sev{}, err
	}
	now := tx.Now()
	a := arg{"id": s.ID, "state": to, "now": now, "from": s.State}
	q := `UPDATE sevs SET state = :state, updated_at = :now WHERE id = :id AND state = :from`
	if to == SevReviewed {
		q = `UPDATE sevs SET state = :state, reviewed_at = :now, updated_at = :now WHERE id = :id AND state = :from`
	}
	n, err := execNamed(ctx, tx, q, a)
	if err != nil {
		return Sev{}, fmt.Errorf("SEV-%d to %s: %w", s.ID, to, err)
	}
	if n == 0 {
		return Sev{}, Conflict("illegal_transition", fmt.Sprintf("%s changed meanwhile; reload it.", s.Number()))
	}
	from := s.State
	s.State = to
	if err := tx.enteredState(ctx, who, s, from, now); err != nil {
		return Sev{}, err
	}
	if err := tx.Audit(ctx, who, "sev."+to, "sev", strconv.FormatInt(s.ID, 10), map[string]any{"from": from, "to": to}); err != nil {
		return Sev{}, err
	}
	return tx.SevByID(ctx, s.ID)
}

// Subscribers.

func (tx *Tx) subscribe(ctx context.Context, sevID, userID int64) error {
	_, err := execNamed(ctx, tx, `INSERT INTO sev_subscribers (sev_id, user_id) VALUES (:sev, :user) ON CONFLICT DO NOTHING`,
		arg{"sev": sevID, "user": userID})
	if err != nil {
		return fmt.Errorf("subscribe to SEV-%d: %w", sevID, err)
	}
	return nil
}

// SetSevSubscription subscribes or unsubscribes the person to a SEV's updates.
func (tx *Tx) SetSevSubscription(ctx context.Context, who Actor, sevID, userID int64, on bool) error {
	if _, err := tx.SevByID(ctx, sevID); err != nil {
		return err
	}
	action := "sev.subscribe"
	if on {
		if err := tx.subscribe(ctx, sevID, userID); err != nil {
			return err
		}
	} else {
		action = "sev.unsubscribe"
		if _, err := execNamed(ctx, tx, `DELETE FROM sev_subscribers WHERE sev_id = :sev AND user_id = :user`, arg{"sev": sevID, "user": userID}); err != nil {
			return fmt.Errorf("unsubscribe from SEV-%d: %w", sevID, err)
		}
	}
	return tx.Audit(ctx, who, action, "sev", strconv.FormatInt(sevID, 10), map[string]any{"user_id": userID})
}

// SevSubscribers lists the emails of a SEV's subscribers.
func (s *Store) SevSubscribers(ctx context.Context, sevID int64) ([]string, error) {
	out := []string{}
	if err := selectNamed(ctx, s.read, &out, `SELECT u.email FROM sev_subscribers ss JOIN users u ON u.id = ss.user_id
WHERE ss.sev_id = :sev ORDER BY u.email`, arg{"sev": sevID}); err != nil {
		return nil, fmt.Errorf("subscribers of SEV-%d: %w", sevID, err)
	}
	return out, nil
}

// Timeline.

// Timeline entry kinds.
const (
	TimelineNote      = "note"
	TimelineEvent     = "event"
	TimelineState     = "state"
	TimelineSeverity  = "severity"
	TimelineBroadcast = "broadcast"
)

// TimelineKinds lists the timeline entry kinds.
var TimelineKinds = []string{TimelineNote, TimelineEvent, TimelineState, TimelineSeverity, TimelineBroadcast}

// SevTimelineEntry is what to add to a SEV's timeline. An automatic entry has
// an EventKey and is added once per SEV and key.
type SevTimelineEntry struct {
	At       time.Time
	Kind     string // default note
	Text     string
	Source   string
	EventKey string
}

// SevTimelineItem is one entry of a SEV's timeline.
type SevTimelineItem struct {
	ID        int64     `db:"id" json:"id"`
	SevID     int64     `db:"sev_id" json:"sev_id"`
	At        time.Time `db:"at" json:"at"`
	Kind      string    `db:"kind" json:"kind"`
	Text      string    `db:"text" json:"text"`
	Actor     string    `db:"actor" json:"actor"`
	Source    string    `db:"source" json:"source"`
	EventKey  *string   `db:"event_key" json:"event_key,omitempty"`
	CreatedAt time.Time `db:"created_at" json:"created_at"`
}

// AddSevTimeline appends an entry to a SEV's timeline. It returns false when an
// entry with the same EventKey is already there.
func (tx *Tx) AddSevTimeline(ctx context.Context, who Actor, sevID int64, e SevTimelineEntry) (bool, error) {
	now := tx.Now()
	if e.At.IsZero() {
		e.At = now
	}
	if e.Kind == "" {
		e.Kind = TimelineNote
	}
	e.Text = strings.TrimSpace(e.Text)
	p := Problems{}
	switch {
	case e.Text == "":
		p.Add("text", "is required")
	case len(e.Text) > MaxSevTimeline:
		p.Add("text", fmt.Sprintf("is longer than %d characters", MaxSevTimeline))
	}
	if !slices.Contains(TimelineKinds, e.Kind) {
		p.Add("kind", fmt.Sprintf("%q is not a timeline entry kind", clip(e.Kind)))
	}
	if e.At.After(now.Add(time.Minute)) {
		p.Add("at", "is in the future")
	}
	if err := p.Err(); err != nil {
		return false, err
	}
	if _, err := tx.SevByID(ctx, sevID); err != nil {
		return false, err
	}
	var key *string
	if e.EventKey != "" {
		key = &e.EventKey
	}
	n, err := execNamed(ctx, tx, `
INSERT INTO sev_timeline (sev_id, at, kind, text, actor, source, event_key, created_at)
VALUES (:sev, :at, :kind, :text, :actor, :source, :key, :now)
ON CONFLICT (sev_id, event_key) WHERE event_key IS NOT NULL DO NOTHING`,
		arg{"sev": sevID, "at": e.At.UTC(), "kind": e.Kind, "text": e.Text, "actor": who.Name, "source": e.Source, "key": key, "now": now})
	if err != nil {
		return false, fmt.Errorf("timeline of SEV-%d: %w", sevID, err)
	}
	if n == 0 {
		return false, nil
	}
	if err := tx.Audit(ctx, who, "sev.timeline_add", "sev", strconv.FormatInt(sevID, 10),
		map[string]any{"kind": e.Kind, "at": e.At.UTC(), "source": e.Source, "event_key": e.EventKey}); err != nil {
		return false, err
	}
	return true, nil
}

// SevTimeline lists a SEV's timeline in time order.
func (s *Store) SevTimeline(ctx context.Context, sevID int64) ([]SevTimelineItem, error) {
	out := []SevTimelineItem{}
	if err := selectNamed(ctx, s.read, &out, `SELECT * FROM sev_timeline WHERE sev_id = :sev ORDER BY at, id`, arg{"sev": sevID}); err != nil {
		return nil, fmt.Errorf("timeline of SEV-%d: %w", sevID, err)
	}
	return out, nil
}

// RunSevNumber is the SEV a run belongs to: its "sev" parameter, a number
// ("12"), or a SEV name ("SEV-12"); 0 when it has none.
func RunSevNumber(r Run) int64 {
	v, ok := r.Params()["sev"]
	if !ok {
		return 0
	}
	var n int64
	switch x := v.(type) {
	case int64:
		n = x
	case float64:
		n = int64(x)
	case string:
		x = strings.TrimSpace(strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(x)), "SEV-"))
		n, _ = strconv.ParseInt(x, 10, 64)
	}
	if n < 0 {
		return 0
	}
	return n
}

// AddSevTimelineFromRun puts a run's start, failed steps and end on the
// timeline of the SEV the run carries in its "sev" parameter, once each (a
// retried job adds nothing twice). Other run events, runs without a SEV and
// SEVs that do not exist are left alone: a run never fails for its SEV.
func (tx *Tx) AddSevTimelineFromRun(ctx context.Context, e RunEvent) error {
	var key, text, source string
	switch e.Kind {
	case EventRunStarted:
		key, text = fmt.Sprintf("run:%d:started", e.RunID), "started"
	case EventRunFinished:
		key, text = fmt.Sprintf("run:%d:finished", e.RunID), "ended"
	case EventFailed:
		key, text = fmt.Sprintf("run:%d:step:%s:failed", e.RunID, e.Step), fmt.Sprintf("step %q failed", e.Step)
	default:
		return nil
	}
	run, err := tx.Run(ctx, e.RunID)
	if err != nil {
		return err
	}
	sevID := RunSevNumber(run)
	if sevID == 0 {
		return nil
	}
	if _, err := tx.SevByID(ctx, sevID); errors.Is(err, ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	source = fmt.Sprintf("run %d", e.RunID)
	if e.Step != "" {
		source += " step " + e.Step
	}
	msg := fmt.Sprintf("Runbook %s run %d %s", run.Runbook, run.ID, text)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if len(msg) > MaxSevTimeline {
		msg = msg[:MaxSevTimeline]
	}
	_, err = tx.AddSevTimeline(ctx, System, sevID, SevTimelineEntry{At: e.At, Kind: TimelineEvent, Text: msg, Source: source, EventKey: key})
	return err
}

// SevBroadcast is an update sent about a SEV.
type SevBroadcast struct {
	Text           string `json:"text"`
	Subscribers    bool   `json:"subscribers"`     // notify the SEV's subscribers
	Affected       bool   `json:"affected"`        // notify the owners of devservers and containers in the SEV's regions
	Banner         bool   `json:"banner"`          // also show it as a banner (per region, for the affected; global without regions)
	BannerSeverity string `json:"banner_severity"` // info, warning, critical (default warning)
}

// SevBroadcastResult says whom a broadcast reached.
type SevBroadcastResult struct {
	Notified int     `json:"notified"`
	Banners  []int64 `json:"banners"`
}

// BroadcastSev sends an update about a SEV to its subscribers and/or the
// affected people (once per person and update), optionally as banners, and
// records it on the timeline as a broadcast.
func (tx *Tx) BroadcastSev(ctx context.Context, who Actor, sevID int64, b SevBroadcast) (SevBroadcastResult, error) {
	res := SevBroadcastResult{Banners: []int64{}}
	s, err := tx.SevByID(ctx, sevID)
	if err != nil {
		return res, err
	}
	b.Text = strings.TrimSpace(b.Text)
	p := Problems{}
	switch {
	case b.Text == "":
		p.Add("text", "is required")
	case len(b.Text) > MaxBannerMessage:
		p.Add("text", fmt.Sprintf("is longer than %d characters", MaxBannerMessage))
	}
	if !b.Subscribers && !b.Affected && !b.Banner {
		p.Add("subscribers", "choose whom the update is for: subscribers, affected people, or a banner")
	}
	if b.Affected && len(s.Regions) == 0 {
		p.Add("affected", "the SEV has no regions, so nobody is affected by region")
	}
	if b.BannerSeverity == "" {
		b.BannerSeverity = "warning"
	}
	if !slices.Contains(BannerSeverities, b.BannerSeverity) {
		p.Add("banner_severity", fmt.Sprintf("%q is not a severity (info, warning, critical)", clip(b.BannerSeverity)))
	}
	if s.State == SevReviewed {
		p.Add("text", "the SEV is reviewed; its updates are over")
	}
	if err := p.Err(); err != nil {
		return res, err
	}
	var n int
	if err := getNamed(ctx, tx, &n, `SELECT COUNT(*) FROM sev_timeline WHERE sev_id = :sev AND kind = 'broadcast'`, arg{"sev": sevID}); err != nil {
		return res, fmt.Errorf("broadcasts of SEV-%d: %w", sevID, err)
	}
	update := n + 1
	key := fmt.Sprintf("%supdate:%d", SevBroadcastKeyPrefix(sevID), update)
	msg := Message{Kind: "sev", Title: fmt.Sprintf("%s update: %s", s.Number(), clipTitle(s.Title)), Body: b.Text,
		Link: "/sevs/" + strconv.FormatInt(sevID, 10), Key: key}
	var audiences []Audience
	if b.Subscribers {
		subs := []string{}
		if err := selectNamed(ctx, tx, &subs, `SELECT u.email FROM sev_subscribers ss JOIN users u ON u.id = ss.user_id WHERE ss.sev_id = :sev ORDER BY u.email`,
			arg{"sev": sevID}); err != nil {
			return res, fmt.Errorf("subscribers of SEV-%d: %w", sevID, err)
		}
		if len(subs) > 0 {
			audiences = append(audiences, Audience{Kind: AudienceUsers, Emails: subs})
		}
	}
	if b.Affected {
		for _, r := range s.Regions {
			audiences = append(audiences, Audience{Kind: AudienceRegionDevservers, Region: r}, Audience{Kind: AudienceRegionContainers, Region: r})
		}
	}
	for _, a := range audiences {
		k, err := tx.NotifyAudience(ctx, who, a, msg)
		if err != nil {
			return res, err
		}
		res.Notified += k
	}
	if b.Banner {
		in := BannerInput{Message: s.Number() + ": " + b.Text, Severity: b.BannerSeverity, Audience: "all", SevID: &sevID}
		if len(in.Message) > MaxBannerMessage {
			in.Message = in.Message[:MaxBannerMessage]
		}
		var ins []BannerInput
		if len(s.Regions) == 0 {
			ins = append(ins, in)
		}
		for _, r := range s.Regions {
			x := in
			x.Region, x.Audience = r, "affected"
			ins = append(ins, x)
		}
		for _, x := range ins {
			bn, err := tx.CreateBanner(ctx, who, x)
			if err != nil {
				return res, err
			}
			res.Banners = append(res.Banners, bn.ID)
		}
	}
	var to []string
	if b.Subscribers {
		to = append(to, "subscribers")
	}
	if b.Affected {
		to = append(to, "affected people in "+strings.Join(s.Regions, ", "))
	}
	text := fmt.Sprintf("Update %d", update)
	if len(to) > 0 {
		text += " to " + strings.Join(to, " and ")
	}
	text += fmt.Sprintf(" (%d notified", res.Notified)
	if len(res.Banners) > 0 {
		text += fmt.Sprintf(", %d banner(s)", len(res.Banners))
	}
	text += "): " + b.Text
	if _, err := tx.AddSevTimeline(ctx, who, sevID, SevTimelineEntry{Kind: TimelineBroadcast, Text: text, EventKey: "broadcast:" + strconv.Itoa(update)}); err != nil {
		return res, err
	}
	return res, tx.Audit(ctx, who, "sev.broadcast", "sev", strconv.FormatInt(sevID, 10),
		map[string]any{"update": update, "subscribers": b.Subscribers, "affected": b.Affected, "banners": res.Banners, "notified": res.Notified})
}

func clipTitle(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}
