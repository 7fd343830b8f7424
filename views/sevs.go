package views

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/a-h/templ"

	"github.com/devport/devport/store"
)

// SEV pages: URLs and element IDs.
const (
	SevsURL    = "/sevs"
	NewSevURL  = "/sevs/new"
	ReviewsURL = "/reviews"
	// SevFollowupsID is the SEV page's follow-ups section; the follow-ups
	// area fills it.
	SevFollowupsID = "sev-followups"
	SevTimelineID  = "sev-timeline"
	SevReportID    = "sev-report"
	SevReviewID    = "sev-review"
	SevStateID     = "sev-state"
	ReviewQueueID  = "review-queue"
)

// SevURL is a SEV's page.
func SevURL(id int64) string { return SevsURL + "/" + strconv.FormatInt(id, 10) }

// SevEditURL is a SEV's edit form; the edit is posted to SevURL.
func SevEditURL(id int64) string { return SevURL(id) + "/edit" }

// SevStateURL is where a state change is posted.
func SevStateURL(id int64) string { return SevURL(id) + "/state" }

// SevTimelineURL is where a timeline note is posted.
func SevTimelineURL(id int64) string { return SevURL(id) + "/timeline" }

// SevBroadcastURL is where an update is broadcast.
func SevBroadcastURL(id int64) string { return SevURL(id) + "/broadcast" }

// SevSubscriptionURL is where a person subscribes or unsubscribes.
func SevSubscriptionURL(id int64) string { return SevURL(id) + "/subscription" }

// SevReportEditURL is the report's form; it is posted to SevReportURL.
func SevReportEditURL(id int64) string { return SevURL(id) + "/report/edit" }

// SevReportURL is where the report is posted.
func SevReportURL(id int64) string { return SevURL(id) + "/report" }

// SevReviewURL is the review meeting form, and where it is posted.
func SevReviewURL(id int64) string { return SevURL(id) + "/review" }

// SevRowID is the id of a SEV's row in a list.
func SevRowID(id int64) string { return "sev-row-" + strconv.FormatInt(id, 10) }

// ReviewRowID is the id of a SEV's row in the review queue.
func ReviewRowID(id int64) string { return "review-row-" + strconv.FormatInt(id, 10) }

// SevFormTime is how forms write times (datetime-local, in UTC).
const SevFormTime = "2006-01-02T15:04"

func formTime(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(SevFormTime)
}

func showTime(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

func showDay(t time.Time) string { return t.UTC().Format("2006-01-02") }

func sevIDText(id int64) string { return strconv.FormatInt(id, 10) }

// SevListView is the SEV list with its filters.
type SevListView struct {
	Sevs                  []store.Sev
	State, Kind, Severity string
	Older                 string
	CanWrite              bool
}

// SevForm is the SEV form as sent, with what is wrong with it.
type SevForm struct {
	ID                                                 int64 // 0 for a new SEV
	Title, Severity, Kind, Services, Commander         string
	ImpactStartedAt, DetectedAt, MitigatedAt, ClosedAt string
	Regions                                            []string
	Errors                                             map[string]string
	Message                                            string
}

// SevFormOf fills the form from a SEV.
func SevFormOf(s store.Sev) SevForm {
	return SevForm{ID: s.ID, Title: s.Title, Severity: strconv.Itoa(s.Severity), Kind: s.Kind, Services: strings.Join(s.Services, ", "),
		Commander: s.Commander, ImpactStartedAt: formTime(s.ImpactStartedAt), DetectedAt: formTime(s.DetectedAt),
		MitigatedAt: formTime(s.MitigatedAt), ClosedAt: formTime(s.ClosedAt), Regions: s.Regions}
}

func (f SevForm) action() string {
	if f.ID == 0 {
		return SevsURL
	}
	return SevURL(f.ID)
}

func (f SevForm) id(field string) string {
	if f.ID == 0 {
		return "sev-new-" + field
	}
	return "sev-" + strconv.FormatInt(f.ID, 10) + "-" + field
}

func (f SevForm) invalid(field string) templ.Attributes {
	if f.Errors[field] != "" {
		return templ.Attributes{"aria-invalid": "true", "aria-describedby": f.id(field) + "-error"}
	}
	return templ.Attributes{}
}

func (f SevForm) hasRegion(code string) bool {
	for _, r := range f.Regions {
		if r == code {
			return true
		}
	}
	return false
}

// SevFormView is the new or edit page.
type SevFormView struct {
	Form    SevForm
	Regions []store.Region
}

// NoteForm is the timeline note form.
type NoteForm struct {
	Text, At string
	Errors   map[string]string
}

// BroadcastForm is the update form.
type BroadcastForm struct {
	Text                          string
	Subscribers, Affected, Banner bool
	BannerSeverity                string
	Errors                        map[string]string
}

// SevView is everything the SEV page shows.
type SevView struct {
	Sev         store.Sev
	Timeline    []store.SevTimelineItem
	Subscribers []string
	Subscribed  bool
	Report      *store.SevReport
	Review      *store.SevReview
	Impact      store.SevImpact
	CanWrite    bool
	CanReview   bool
	Note        NoteForm
	Broadcast   BroadcastForm
	Problem     string // why the last state change was refused
	// Followups is the follow-ups section (id SevFollowupsID), drawn by the
	// follow-ups area; nil draws an empty one.
	Followups templ.Component
	Now       time.Time
}

// ReportForm is the report form: one textarea per section.
type ReportForm struct {
	Sev      store.Sev
	Sections map[string]string
	Errors   map[string]string
	Message  string
}

// ReportFormOf fills the form from a report.
func ReportFormOf(s store.Sev, r store.SevReport) ReportForm {
	f := ReportForm{Sev: s, Sections: map[string]string{}}
	for _, sec := range store.ReportSections {
		f.Sections[sec.Key] = r.Section(sec.Key)
	}
	return f
}

// ReviewForm is the review meeting form.
type ReviewForm struct {
	Sev                               store.Sev
	MeetingAt, Facilitator, Attendees string
	Notes                             string
	Checklist                         map[string]bool
	Errors                            map[string]string
	Message                           string
}

// ReviewFormOf fills the form from a review record (or starts one).
func ReviewFormOf(s store.Sev, r *store.SevReview, me string, now time.Time) ReviewForm {
	f := ReviewForm{Sev: s, MeetingAt: now.UTC().Format(SevFormTime), Facilitator: me, Checklist: map[string]bool{}}
	if r != nil {
		f.MeetingAt = r.MeetingAt.UTC().Format(SevFormTime)
		f.Facilitator = r.Facilitator
		f.Attendees = strings.Join(r.Attendees, ", ")
		f.Notes = r.Notes
		f.Checklist = r.Checklist
	}
	return f
}

// ReviewCheckID is the id of a checklist box.
func ReviewCheckID(i int) string { return "review-check-" + strconv.Itoa(i) }

// ReviewQueueView is the review queue.
type ReviewQueueView struct {
	Items []store.ReviewQueueItem
	Now   time.Time
}

func sevStateLabel(state string) string {
	switch state {
	case store.SevMitigated:
		return "Mark mitigated"
	case store.SevClosed:
		return "Close the SEV"
	case store.SevInReview:
		return "Start the review"
	}
	return "Move to " + store.SevStateText(state)
}

func severityBadge(n int) string { return "badge badge-sev" + strconv.Itoa(n) }

func kindText(k string) string {
	if k == store.SevExercise {
		return "exercise"
	}
	return "incident"
}

func sortedErrors(fields map[string]string) string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, strings.ReplaceAll(k, "_", " ")+" "+fields[k])
	}
	return strings.Join(parts, "; ")
}
