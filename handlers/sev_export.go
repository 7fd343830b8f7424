package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/devport/devport/store"
	"github.com/devport/devport/web"
)

// sevExport is what a SEV's Markdown export holds.
type sevExport struct {
	Sev       store.Sev
	Report    *store.SevReport
	Review    *store.SevReview
	Timeline  []store.SevTimelineItem
	Followups []store.Followup
	Now       time.Time
}

func loadSevExport(ctx context.Context, s *store.Store, id int64) (sevExport, error) {
	e := sevExport{Now: s.Now()}
	var err error
	if e.Sev, err = s.Sev(ctx, id); err != nil {
		return e, err
	}
	if rep, err := s.SevReport(ctx, id); err == nil {
		e.Report = &rep
	} else if !errors.Is(err, store.ErrNotFound) {
		return e, err
	}
	if rev, err := s.SevReview(ctx, id); err == nil {
		e.Review = &rev
	} else if !errors.Is(err, store.ErrNotFound) {
		return e, err
	}
	if e.Timeline, err = s.SevTimeline(ctx, id); err != nil {
		return e, err
	}
	e.Followups, err = s.SevFollowups(ctx, id)
	return e, err
}

// mdSpecial are the characters that could start Markdown structure inside a line.
var mdSpecial = strings.NewReplacer(
	`\`, `\\`, "`", "\\`", `*`, `\*`, `_`, `\_`, `[`, `\[`, `]`, `\]`, `<`, `\<`, `>`, `\>`,
	`|`, `\|`, `~`, `\~`, `!`, `\!`, `#`, `\#`, "\r\n", " ", "\n", " ", "\r", " ",
)

// mdText is user text as one line of Markdown that shows as written: the
// characters that would make a link, emphasis, HTML, a heading or a table
// cell boundary are escaped, and line breaks become spaces.
func mdText(s string) string {
	s = mdSpecial.Replace(strings.TrimSpace(s))
	// A line that starts like a list item or a numbered one stays text.
	if strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") {
		s = `\` + s
	}
	if m := orderedItem.FindStringSubmatch(s); m != nil {
		s = m[1] + `\` + s[len(m[1]):]
	}
	return s
}

var (
	orderedItem = regexp.MustCompile(`^(\d+)([.)])`)
	atxHeading  = regexp.MustCompile(`^( {0,3})(#{1,6})(\s|$)`)
	setextLine  = regexp.MustCompile(`^ {0,3}(=+|-+)\s*$`)
	fenceLine   = regexp.MustCompile("^ {0,3}(`{3,}|~{3,})(.*)$")
	htmlStart   = regexp.MustCompile(`^ {0,3}<`)
)

// mdSection is a report section's Markdown, nested under the export's own
// headings: its headings move down three levels (at most to level 6), a line
// that would turn the one above into a heading is escaped, raw HTML at the
// start of a line (which could run to the end of the document) is escaped,
// and an unclosed code fence is closed so it cannot swallow the rest.
func mdSection(s string) string {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	inFence, fence := false, ""
	for i, l := range lines {
		if m := fenceLine.FindStringSubmatch(l); m != nil {
			run, rest := m[1], m[2]
			switch {
			case !inFence && !(run[0] == '`' && strings.Contains(rest, "`")):
				inFence, fence = true, run
				continue
			case inFence && run[0] == fence[0] && len(run) >= len(fence) && strings.TrimSpace(rest) == "":
				inFence = false
				continue
			}
		}
		if inFence {
			continue
		}
		if htmlStart.MatchString(l) {
			lines[i] = strings.Replace(l, "<", `\<`, 1)
			continue
		}
		if m := atxHeading.FindStringSubmatch(l); m != nil {
			level := min(len(m[2])+3, 6)
			lines[i] = m[1] + strings.Repeat("#", level) + l[len(m[1])+len(m[2]):]
			continue
		}
		if i > 0 && strings.TrimSpace(lines[i-1]) != "" && setextLine.MatchString(l) {
			lines[i] = `\` + strings.TrimLeft(l, " ")
		}
	}
	out := strings.Join(lines, "\n")
	if strings.TrimSpace(out) == "" {
		return ""
	}
	if inFence {
		out += "\n" + fence
	}
	return out
}

func mdTime(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

func mdList(xs []string) string {
	if len(xs) == 0 {
		return "—"
	}
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = mdText(x)
	}
	return strings.Join(out, ", ")
}

// sevMarkdown writes a SEV as Markdown: its facts, report, review, timeline
// and follow-ups.
func sevMarkdown(e sevExport) string {
	var b strings.Builder
	sv := e.Sev
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# %s: %s\n\n", sv.Number(), mdText(sv.Title))
	p("| Field | Value |\n|---|---|\n")
	row := func(k, v string) { p("| %s | %s |\n", k, v) }
	row("Severity", sv.SeverityName()+": "+mdText(store.SeverityDefinition(sv.Severity)))
	row("Kind", sv.Kind)
	row("State", store.SevStateText(sv.State))
	row("Impact started", mdTime(sv.ImpactStartedAt))
	row("Detected", mdTime(sv.DetectedAt))
	row("Reported", mdTime(&sv.ReportedAt))
	row("Mitigated", mdTime(sv.MitigatedAt))
	row("Closed", mdTime(sv.ClosedAt))
	row("Reviewed", mdTime(sv.ReviewedAt))
	row("Regions", mdList(sv.Regions))
	row("Services", mdList(sv.Services))
	commander := "—"
	if sv.Commander != "" {
		commander = mdText(sv.Commander)
	}
	row("Commander", commander)
	if sv.RunID != nil {
		row("Runbook run", fmt.Sprint(*sv.RunID))
	}

	p("\n## Report\n\n")
	if e.Report == nil {
		p("No report yet: it is created when the SEV closes.\n")
	} else {
		for _, sec := range store.ReportSections {
			p("### %s\n\n", sec.Title)
			if text := mdSection(e.Report.Section(sec.Key)); text != "" {
				p("%s\n\n", text)
			} else {
				p("_Not written._\n\n")
			}
		}
	}

	if e.Review != nil {
		r := e.Review
		p("\n## Review\n\n")
		p("- Meeting: %s\n", mdTime(&r.MeetingAt))
		p("- Facilitator: %s\n", mdText(r.Facilitator))
		p("- Attendees: %s\n", mdList(r.Attendees))
		if r.SignedOffAt != nil {
			p("- Signed off: %s by %s\n", mdTime(r.SignedOffAt), mdText(r.SignedOffBy))
		}
		for _, c := range store.ReviewCriteria {
			mark := " "
			if r.Checklist[c] {
				mark = "x"
			}
			p("- [%s] %s\n", mark, mdText(c))
		}
		if notes := mdSection(r.Notes); notes != "" {
			p("\n### Notes\n\n%s\n", notes)
		}
	}

	p("\n## Timeline\n\n")
	if len(e.Timeline) == 0 {
		p("No entries.\n")
	} else {
		p("| Time | Kind | Entry | By |\n|---|---|---|---|\n")
		tl := slices.Clone(e.Timeline)
		slices.SortStableFunc(tl, func(a, b store.SevTimelineItem) int { return a.At.Compare(b.At) })
		for _, t := range tl {
			text := mdText(t.Text)
			if t.Source != "" {
				text += " (" + mdText(t.Source) + ")"
			}
			p("| %s | %s | %s | %s |\n", mdTime(&t.At), t.Kind, text, mdText(t.Actor))
		}
	}

	p("\n## Follow-ups\n\n")
	if len(e.Followups) == 0 {
		p("None.\n")
	} else {
		p("| Kind | Follow-up | Owner | Due | Status | Failed step |\n|---|---|---|---|---|---|\n")
		for _, f := range e.Followups {
			status := store.FollowupStatusText(f.Status)
			if f.Reason != "" {
				status += ": " + mdText(f.Reason)
			}
			if f.IsOverdue(e.Now) {
				status += " (overdue)"
			}
			step := "—"
			if f.RunID != nil {
				step = fmt.Sprintf("run %d, step %s", *f.RunID, mdText(f.RunStep))
			}
			p("| %s | %s | %s | %s | %s | %s |\n", f.Kind, mdText(f.Title), mdText(f.Owner), f.DueAt.UTC().Format("2006-01-02"), status, step)
		}
	}
	p("\n_Exported from devport at %s._\n", mdTime(&e.Now))
	return b.String()
}

// exportSev answers a SEV as a Markdown file, SEV-N.md; for pages and the API alike.
func exportSev(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := sevID(r)
		var e sevExport
		if err == nil {
			e, err = loadSevExport(r.Context(), s, id)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		w.Header().Set("Content-Type", "text/markdown; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="`+e.Sev.Number()+`.md"`)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(sevMarkdown(e)))
	}
}
