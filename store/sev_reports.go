package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SevReport is a SEV's report: one template, each section Markdown.
type SevReport struct {
	SevID      int64     `db:"sev_id" json:"sev_id"`
	Summary    string    `db:"summary" json:"summary"`
	Impact     string    `db:"impact" json:"impact"`
	Detection  string    `db:"detection" json:"detection"`
	RootCause  string    `db:"root_cause" json:"root_cause"`
	Mitigation string    `db:"mitigation" json:"mitigation"`
	WentWell   string    `db:"went_well" json:"went_well"`
	WentWrong  string    `db:"went_wrong" json:"went_wrong"`
	Lessons    string    `db:"lessons" json:"lessons"`
	CreatedAt  time.Time `db:"created_at" json:"created_at"`
	UpdatedAt  time.Time `db:"updated_at" json:"updated_at"`
	UpdatedBy  string    `db:"updated_by" json:"updated_by"`
}

// ReportSection is one section of the report template.
type ReportSection struct {
	Key, Title, Hint string
}

// ReportSections is the report template, in order.
var ReportSections = []ReportSection{
	{"summary", "Summary", "What happened, in a few sentences."},
	{"impact", "Impact", "Who and what was affected, and for how long."},
	{"detection", "Detection", "How we found out, and how long it took."},
	{"root_cause", "Root cause", "Why it happened; ask why until the answer is a fix."},
	{"mitigation", "Mitigation", "What stopped the impact."},
	{"went_well", "What went well", ""},
	{"went_wrong", "What went wrong", ""},
	{"lessons", "Lessons", "What we take away; each lesson should have a follow-up."},
}

// Section is the Markdown of the section with key.
func (r SevReport) Section(key string) string {
	switch key {
	case "summary":
		return r.Summary
	case "impact":
		return r.Impact
	case "detection":
		return r.Detection
	case "root_cause":
		return r.RootCause
	case "mitigation":
		return r.Mitigation
	case "went_well":
		return r.WentWell
	case "went_wrong":
		return r.WentWrong
	case "lessons":
		return r.Lessons
	}
	return ""
}

// SevReportInput is the whole of an edited report.
type SevReportInput struct {
	Summary    string `json:"summary"`
	Impact     string `json:"impact"`
	Detection  string `json:"detection"`
	RootCause  string `json:"root_cause"`
	Mitigation string `json:"mitigation"`
	WentWell   string `json:"went_well"`
	WentWrong  string `json:"went_wrong"`
	Lessons    string `json:"lessons"`
}

// SevImpact is what the inventory and events say about a SEV's impact.
type SevImpact struct {
	UsersAffected      int           `json:"users_affected"`
	UsersWithResources int           `json:"users_with_resources"` // owners of live devservers/containers in the regions at close
	UsersNotified      int           `json:"users_notified"`       // people notified under the SEV's broadcast keys
	DevserversMigrated int           `json:"devservers_migrated"`  // migrations out of the regions finished in the window
	MigrationsFailed   int           `json:"migrations_failed"`    // migrations out of the regions rolled back in the window
	DevserversLost     int           `json:"devservers_lost"`      // devservers in the regions now lost, changed within the window
	TimeToDetect       time.Duration `json:"time_to_detect"`
	TimeToMitigate     time.Duration `json:"time_to_mitigate"`
	TimeToClose        time.Duration `json:"time_to_close"`
}

// SevBroadcastKeyPrefix is the prefix of the notification keys of a SEV's broadcasts.
func SevBroadcastKeyPrefix(sevID int64) string { return "sev:" + strconv.FormatInt(sevID, 10) + ":" }

// sevImpact counts the impact from the inventory and the events. The window
// is the impact start to the close (or now).
func sevImpact(ctx context.Context, q queryer, s Sev, now time.Time) (SevImpact, error) {
	var im SevImpact
	start := s.ReportedAt
	if s.ImpactStartedAt != nil {
		start = *s.ImpactStartedAt
	}
	end := now
	if s.ClosedAt != nil {
		end = *s.ClosedAt
	}
	a := arg{"sev": s.ID, "start": start, "end": end, "keys": SevBroadcastKeyPrefix(s.ID) + "%"}
	inRegions := `(SELECT region FROM sev_regions WHERE sev_id = :sev)`
	owners := `SELECT d.owner_id AS uid FROM devservers d WHERE d.owner_id IS NOT NULL AND d.state NOT IN ('released', 'failed') AND d.region IN ` + inRegions + `
UNION SELECT c.owner_id FROM containers c WHERE c.owner_id IS NOT NULL AND c.state IN ('provisioning', 'ready') AND c.region IN ` + inRegions
	notified := `SELECT n.user_id AS uid FROM notifications n WHERE n.idempotency_key LIKE :keys`
	counts := []struct {
		dst   *int
		query string
	}{
		{&im.UsersWithResources, `SELECT COUNT(*) FROM (` + owners + `) o`},
		{&im.UsersNotified, `SELECT COUNT(DISTINCT uid) FROM (` + notified + `) n`},
		{&im.UsersAffected, `SELECT COUNT(*) FROM (` + owners + ` UNION ` + notified + `) a`},
		{&im.DevserversMigrated, `SELECT COUNT(DISTINCT devserver_id) FROM devserver_migrations WHERE from_region IN ` + inRegions + `
  AND state = 'done' AND created_at >= :start AND created_at <= :end`},
		{&im.MigrationsFailed, `SELECT COUNT(*) FROM devserver_migrations WHERE from_region IN ` + inRegions + `
  AND state = 'rolled_back' AND created_at >= :start AND created_at <= :end`},
		{&im.DevserversLost, `SELECT COUNT(*) FROM devservers WHERE region IN ` + inRegions + `
  AND state = 'lost' AND updated_at >= :start AND updated_at <= :end`},
	}
	for _, c := range counts {
		if err := getNamed(ctx, q, c.dst, c.query, a); err != nil {
			return im, fmt.Errorf("impact of SEV-%d: %w", s.ID, err)
		}
	}
	if s.ImpactStartedAt != nil {
		if s.DetectedAt != nil {
			im.TimeToDetect = s.DetectedAt.Sub(*s.ImpactStartedAt)
		}
		if s.MitigatedAt != nil {
			im.TimeToMitigate = s.MitigatedAt.Sub(*s.ImpactStartedAt)
		}
		if s.ClosedAt != nil {
			im.TimeToClose = s.ClosedAt.Sub(*s.ImpactStartedAt)
		}
	}
	return im, nil
}

// SevImpact counts a SEV's impact now.
func (s *Store) SevImpact(ctx context.Context, sev Sev) (SevImpact, error) {
	return sevImpact(ctx, s.read, sev, s.Now())
}

// HumanDuration writes a duration as people read it: "2h 5m", "40m", "0m".
func HumanDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	d = d.Round(time.Minute)
	days := int(d / (24 * time.Hour))
	h := int(d/time.Hour) % 24
	m := int(d/time.Minute) % 60
	var parts []string
	if days > 0 {
		parts = append(parts, strconv.Itoa(days)+"d")
	}
	if h > 0 {
		parts = append(parts, strconv.Itoa(h)+"h")
	}
	if m > 0 || len(parts) == 0 {
		parts = append(parts, strconv.Itoa(m)+"m")
	}
	return strings.Join(parts, " ")
}

// impactMarkdown is the impact section as the report starts it.
func impactMarkdown(s Sev, im SevImpact) string {
	var b strings.Builder
	regions := "no region recorded"
	if len(s.Regions) > 0 {
		regions = strings.Join(s.Regions, ", ")
	}
	fmt.Fprintf(&b, "Counted by devport when %s closed (regions: %s; window: impact start to close).\n\n", s.Number(), regions)
	fmt.Fprintf(&b, "- Users affected: %d (%d with live devservers or containers in the regions, %d notified under this SEV's broadcasts)\n",
		im.UsersAffected, im.UsersWithResources, im.UsersNotified)
	fmt.Fprintf(&b, "- Devservers migrated out of the regions: %d (migrations rolled back: %d)\n", im.DevserversMigrated, im.MigrationsFailed)
	fmt.Fprintf(&b, "- Devservers lost in the regions: %d\n", im.DevserversLost)
	fmt.Fprintf(&b, "- Time to detect: %s; to mitigate: %s; to close: %s\n",
		HumanDuration(im.TimeToDetect), HumanDuration(im.TimeToMitigate), HumanDuration(im.TimeToClose))
	if len(s.Services) > 0 {
		fmt.Fprintf(&b, "- Services: %s\n", strings.Join(s.Services, ", "))
	}
	return b.String()
}

// createSevReport starts a closing SEV's report with the impact filled in. It
// does nothing when the SEV already has one.
func (tx *Tx) createSevReport(ctx context.Context, who Actor, s Sev) (bool, error) {
	now := tx.Now()
	if s.ClosedAt == nil {
		s.ClosedAt = &now
	}
	im, err := sevImpact(ctx, tx, s, now)
	if err != nil {
		return false, err
	}
	loss, err := StormLossMarkdown(ctx, tx, s.ID)
	if err != nil {
		return false, err
	}
	n, err := execNamed(ctx, tx, `
INSERT INTO sev_reports (sev_id, impact, created_at, updated_at, updated_by) VALUES (:sev, :impact, :now, :now, :by)
ON CONFLICT (sev_id) DO NOTHING`, arg{"sev": s.ID, "impact": impactMarkdown(s, im) + loss, "now": now, "by": who.Name})
	if err != nil {
		return false, fmt.Errorf("report of SEV-%d: %w", s.ID, err)
	}
	if n == 0 {
		return false, nil
	}
	return true, tx.Audit(ctx, who, "sev.report_create", "sev", strconv.FormatInt(s.ID, 10), map[string]any{
		"users_affected": im.UsersAffected, "devservers_migrated": im.DevserversMigrated, "devservers_lost": im.DevserversLost})
}

func sevReport(ctx context.Context, q queryer, sevID int64) (SevReport, error) {
	var r SevReport
	if err := getNamed(ctx, q, &r, `SELECT * FROM sev_reports WHERE sev_id = :sev`, arg{"sev": sevID}); err != nil {
		return SevReport{}, fmt.Errorf("report of SEV-%d: %w", sevID, err)
	}
	return r, nil
}

// SevReport returns a SEV's report; ErrNotFound before the SEV closes.
func (s *Store) SevReport(ctx context.Context, sevID int64) (SevReport, error) {
	return sevReport(ctx, s.read, sevID)
}

// PutSevReport replaces a SEV's report. The report exists once the SEV has
// closed; before that it is a conflict.
func (tx *Tx) PutSevReport(ctx context.Context, who Actor, sevID int64, in SevReportInput) (SevReport, error) {
	s, err := tx.SevByID(ctx, sevID)
	if err != nil {
		return SevReport{}, err
	}
	p := Problems{}
	fields := []struct {
		key string
		v   *string
	}{{"summary", &in.Summary}, {"impact", &in.Impact}, {"detection", &in.Detection}, {"root_cause", &in.RootCause},
		{"mitigation", &in.Mitigation}, {"went_well", &in.WentWell}, {"went_wrong", &in.WentWrong}, {"lessons", &in.Lessons}}
	for _, f := range fields {
		*f.v = strings.TrimSpace(strings.ReplaceAll(*f.v, "\r\n", "\n"))
		if len(*f.v) > MaxSevSection {
			p.Add(f.key, fmt.Sprintf("is longer than %d characters", MaxSevSection))
		}
	}
	if err := p.Err(); err != nil {
		return SevReport{}, err
	}
	if s.State == SevOpen || s.State == SevMitigated {
		return SevReport{}, Conflict("sev_not_closed", fmt.Sprintf("%s has no report until it closes; it is %s.", s.Number(), SevStateText(s.State)))
	}
	if _, err := tx.createSevReport(ctx, who, s); err != nil {
		return SevReport{}, err
	}
	_, err = execNamed(ctx, tx, `
UPDATE sev_reports SET summary = :summary, impact = :impact, detection = :detection, root_cause = :root_cause, mitigation = :mitigation,
    went_well = :went_well, went_wrong = :went_wrong, lessons = :lessons, updated_at = :now, updated_by = :by
WHERE sev_id = :sev`, arg{"sev": sevID, "summary": in.Summary, "impact": in.Impact, "detection": in.Detection, "root_cause": in.RootCause,
		"mitigation": in.Mitigation, "went_well": in.WentWell, "went_wrong": in.WentWrong, "lessons": in.Lessons, "now": tx.Now(), "by": who.Name})
	if err != nil {
		return SevReport{}, fmt.Errorf("report of SEV-%d: %w", sevID, err)
	}
	if err := tx.Audit(ctx, who, "sev.report_update", "sev", strconv.FormatInt(sevID, 10), map[string]any{"sections": len(fields)}); err != nil {
		return SevReport{}, err
	}
	return sevReport(ctx, tx, sevID)
}
