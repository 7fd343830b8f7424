package store

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MetricMonths is how many months the SEV metrics cover, this one included.
const MetricMonths = 12

// DurationStat summarizes durations: how many, their median and 90th percentile.
type DurationStat struct {
	N      int           `json:"n"`
	Median time.Duration `json:"median"`
	P90    time.Duration `json:"p90"`
}

// Percentile is the nearest-rank p-th percentile (0 < p ≤ 100) of ds; 0 for none.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// StatOf summarizes durations.
func StatOf(ds []time.Duration) DurationStat {
	return DurationStat{N: len(ds), Median: Percentile(ds, 50), P90: Percentile(ds, 90)}
}

// SeverityCounts counts SEVs by severity; the index is the severity.
type SeverityCounts [5]int

// Total is the number of SEVs of every severity.
func (c SeverityCounts) Total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// MonthMetrics is one month of the incident series.
type MonthMetrics struct {
	Month      string         `json:"month"` // 2026-01
	BySeverity SeverityCounts `json:"by_severity"`
	// From impact start (or the report, when the start is not known), for
	// incidents that started this month.
	Mitigate DurationStat `json:"time_to_mitigate"`
	Close    DurationStat `json:"time_to_close"`
	// From closing to sign-off, for SEVs reviewed this month.
	ReviewLead DurationStat `json:"review_lead_time"`
}

// FollowupCompletion counts the follow-ups of a kind by where they stand.
type FollowupCompletion struct {
	Kind    string `json:"kind"`
	Done    int    `json:"done"`
	WontDo  int    `json:"wont_do"`
	Open    int    `json:"open"`    // open or in progress, not yet due
	Overdue int    `json:"overdue"` // open or in progress, past due
}

// ExerciseMetrics is one exercise's series.
type ExerciseMetrics struct {
	SevID   int64    `json:"sev_id"`
	Title   string   `json:"title"`
	Regions []string `json:"regions"`
	// Drain is from the exercise's runbook run's start to its end when it has
	// a finished run, else from its report to its mitigation; nil when
	// neither is known yet. DrainFrom says which ("run" or "mitigation").
	Drain     *time.Duration `json:"time_to_drain"`
	DrainFrom string         `json:"drain_from"`
	// Users moved out of the exercise's regions during it (migrations that
	// finished), and those of them who did not have to act: they requested
	// none of those migrations themselves and were given no task.
	UsersMoved         int `json:"users_moved"`
	UsersMovedNoAction int `json:"users_moved_without_acting"`
	// UsersTasked is how many people with devservers in the regions were given a task during the exercise.
	UsersTasked int `json:"users_tasked"`
	Followups   int `json:"followups"`
}

// MovedShare is the share of moved users who did not have to act; ok is
// false when nobody was moved.
func (e ExerciseMetrics) MovedShare() (share float64, ok bool) {
	if e.UsersMoved == 0 {
		return 0, false
	}
	return float64(e.UsersMovedNoAction) / float64(e.UsersMoved), true
}

// SevMetrics is what the metrics page charts: incidents by month, follow-up
// completion by kind, and the exercises as their own series.
type SevMetrics struct {
	Months    []MonthMetrics       `json:"months"`
	Followups []FollowupCompletion `json:"followups"`
	Exercises []ExerciseMetrics    `json:"exercises"`
	Now       time.Time            `json:"now"`
}

// metricMonthStarts is the first instant of each of the n months ending with now's.
func metricMonthStarts(now time.Time, n int) []time.Time {
	now = now.UTC()
	first := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	out := make([]time.Time, n)
	for i := range n {
		out[i] = first.AddDate(0, i-(n-1), 0)
	}
	return out
}

type metricSev struct {
	ID              int64      `db:"id"`
	Title           string     `db:"title"`
	Severity        int        `db:"severity"`
	Kind            string     `db:"kind"`
	ImpactStartedAt *time.Time `db:"impact_started_at"`
	ReportedAt      time.Time  `db:"reported_at"`
	MitigatedAt     *time.Time `db:"mitigated_at"`
	ClosedAt        *time.Time `db:"closed_at"`
	ReviewedAt      *time.Time `db:"reviewed_at"`
	RunID           *int64     `db:"run_id"`
	RunStarted      *time.Time `db:"run_started"`
	RunFinished     *time.Time `db:"run_finished"`
}

func (s metricSev) start() time.Time {
	if s.ImpactStartedAt != nil {
		return *s.ImpactStartedAt
	}
	return s.ReportedAt
}

// SevMetrics computes the metrics at the store's clock.
func (s *Store) SevMetrics(ctx context.Context) (SevMetrics, error) {
	now := s.Now().UTC()
	m := SevMetrics{Now: now}
	var sevs []metricSev
	if err := s.read.SelectContext(ctx, &sevs, `
SELECT s.id, s.title, s.severity, s.kind, s.impact_started_at, s.reported_at, s.mitigated_at, s.closed_at, s.reviewed_at, s.run_id,
    r.created_at AS run_started, r.finished_at AS run_finished
FROM sevs s LEFT JOIN runbook_runs r ON r.id = s.run_id ORDER BY s.id`); err != nil {
		return m, fmt.Errorf("SEV metrics: %w", err)
	}
	m.Months = incidentMonths(sevs, now)

	var fus []struct {
		Kind   string    `db:"kind"`
		Status string    `db:"status"`
		DueAt  time.Time `db:"due_at"`
		SevID  int64     `db:"sev_id"`
	}
	if err := s.read.SelectContext(ctx, &fus, `SELECT kind, status, due_at, sev_id FROM followups`); err != nil {
		return m, fmt.Errorf("follow-up metrics: %w", err)
	}
	perSev := map[int64]int{}
	byKind := map[string]*FollowupCompletion{}
	for _, k := range FollowupKinds {
		m.Followups = append(m.Followups, FollowupCompletion{Kind: k})
	}
	for i := range m.Followups {
		byKind[m.Followups[i].Kind] = &m.Followups[i]
	}
	for _, f := range fus {
		perSev[f.SevID]++
		c := byKind[f.Kind]
		if c == nil {
			continue
		}
		switch {
		case f.Status == FollowupDone:
			c.Done++
		case f.Status == FollowupWontDo:
			c.WontDo++
		case now.After(f.DueAt):
			c.Overdue++
		default:
			c.Open++
		}
	}

	for _, sv := range sevs {
		if sv.Kind != SevExercise || sv.ReportedAt.Before(metricMonthStarts(now, MetricMonths)[0]) {
			continue
		}
		e, err := s.exerciseMetrics(ctx, sv, now)
		if err != nil {
			return m, err
		}
		e.Followups = perSev[sv.ID]
		m.Exercises = append(m.Exercises, e)
	}
	return m, nil
}

// incidentMonths buckets the incidents into the last MetricMonths months.
func incidentMonths(sevs []metricSev, now time.Time) []MonthMetrics {
	starts := metricMonthStarts(now, MetricMonths)
	index := map[string]int{}
	out := make([]MonthMetrics, len(starts))
	for i, st := range starts {
		out[i].Month = st.Format("2006-01")
		index[out[i].Month] = i
	}
	mitigate := make([][]time.Duration, len(starts))
	closing := make([][]time.Duration, len(starts))
	review := make([][]time.Duration, len(starts))
	for _, sv := range sevs {
		if sv.Kind != SevIncident {
			continue
		}
		start := sv.start()
		if i, ok := index[start.UTC().Format("2006-01")]; ok {
			if sv.Severity >= 0 && sv.Severity < len(out[i].BySeverity) {
				out[i].BySeverity[sv.Severity]++
			}
			if sv.MitigatedAt != nil && !sv.MitigatedAt.Before(start) {
				mitigate[i] = append(mitigate[i], sv.MitigatedAt.Sub(start))
			}
			if sv.ClosedAt != nil && !sv.ClosedAt.Before(start) {
				closing[i] = append(closing[i], sv.ClosedAt.Sub(start))
			}
		}
		if sv.ReviewedAt != nil && sv.ClosedAt != nil && !sv.ReviewedAt.Before(*sv.ClosedAt) {
			if i, ok := index[sv.ReviewedAt.UTC().Format("2006-01")]; ok {
				review[i] = append(review[i], sv.ReviewedAt.Sub(*sv.ClosedAt))
			}
		}
	}
	for i := range out {
		out[i].Mitigate, out[i].Close, out[i].ReviewLead = StatOf(mitigate[i]), StatOf(closing[i]), StatOf(review[i])
	}
	return out
}

// exerciseMetrics computes one exercise's series from its run, the
// migrations out of its regions and the tasks given during it.
func (s *Store) exerciseMetrics(ctx context.Context, sv metricSev, now time.Time) (ExerciseMetrics, error) {
	e := ExerciseMetrics{SevID: sv.ID, Title: sv.Title, Regions: []string{}}
	switch {
	case sv.RunStarted != nil && sv.RunFinished != nil:
		d := sv.RunFinished.Sub(*sv.RunStarted)
		e.Drain, e.DrainFrom = &d, "run"
	case sv.MitigatedAt != nil:
		d := sv.MitigatedAt.Sub(sv.ReportedAt)
		e.Drain, e.DrainFrom = &d, "mitigation"
	}
	if err := selectNamed(ctx, s.read, &e.Regions, `SELECT region FROM sev_regions WHERE sev_id = :sev ORDER BY region`, arg{"sev": sv.ID}); err != nil {
		return e, fmt.Errorf("regions of SEV-%d: %w", sv.ID, err)
	}
	if len(e.Regions) == 0 {
		return e, nil
	}
	end := now
	if sv.ClosedAt != nil {
		end = *sv.ClosedAt
	}
	a := arg{"from": sv.ReportedAt, "to": end}
	ph := make([]string, len(e.Regions))
	for i, r := range e.Regions {
		k := "r" + strconv.Itoa(i)
		a[k], ph[i] = r, ":"+k
	}
	in := strings.Join(ph, ", ")
	var moves []struct {
		OwnerID     int64  `db:"owner_id"`
		Owner       string `db:"owner"`
		RequestedBy string `db:"requested_by"`
	}
	if err := selectNamed(ctx, s.read, &moves, `
SELECT d.owner_id, u.email AS owner, m.requested_by
FROM devserver_migrations m JOIN devservers d ON d.id = m.devserver_id JOIN users u ON u.id = d.owner_id
WHERE m.state = 'done' AND m.from_region IN (`+in+`) AND m.created_at >= :from AND m.created_at <= :to`, a); err != nil {
		return e, fmt.Errorf("moves of SEV-%d: %w", sv.ID, err)
	}
	var tasked []int64
	if err := selectNamed(ctx, s.read, &tasked, `
SELECT DISTINCT t.user_id FROM tasks t
WHERE t.created_at >= :from AND t.created_at <= :to AND t.user_id IN (
    SELECT d.owner_id FROM devservers d WHERE d.owner_id IS NOT NULL AND d.region IN (`+in+`)
    UNION SELECT d.owner_id FROM devserver_migrations m JOIN devservers d ON d.id = m.devserver_id
    WHERE d.owner_id IS NOT NULL AND m.from_region IN (`+in+`))`, a); err != nil {
		return e, fmt.Errorf("tasks of SEV-%d: %w", sv.ID, err)
	}
	e.UsersTasked = len(tasked)
	acted := map[int64]bool{}
	for _, id := range tasked {
		acted[id] = true
	}
	moved := map[int64]bool{}
	for _, mv := range moves {
		moved[mv.OwnerID] = true
		if NormalizeEmail(mv.RequestedBy) == mv.Owner {
			acted[mv.OwnerID] = true
		}
	}
	e.UsersMoved = len(moved)
	for id := range moved {
		if !acted[id] {
			e.UsersMovedNoAction++
		}
	}
	return e, nil
}
