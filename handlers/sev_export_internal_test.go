package handlers

import (
	"strings"
	"testing"
	"time"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
	east "github.com/yuin/goldmark/extension/ast"
	"github.com/yuin/goldmark/text"

	"github.com/devport/devport/store"
)

// exportShape is what a Markdown parser finds at the top of an export: its
// headings by level and the cells of each table row.
type exportShape struct {
	h1, h2 []string
	rows   [][]int // per table, the cell count of each body row
}

func parseExport(t *testing.T, md string) exportShape {
	t.Helper()
	src := []byte(md)
	doc := goldmark.New(goldmark.WithExtensions(extension.GFM)).Parser().Parse(text.NewReader(src))
	var sh exportShape
	for n := doc.FirstChild(); n != nil; n = n.NextSibling() {
		switch n := n.(type) {
		case *ast.Heading:
			txt := string(n.Lines().Value(src))
			switch n.Level {
			case 1:
				sh.h1 = append(sh.h1, txt)
			case 2:
				sh.h2 = append(sh.h2, txt)
			}
		case *east.Table:
			var rows []int
			for r := n.FirstChild(); r != nil; r = r.NextSibling() {
				if _, ok := r.(*east.TableRow); ok {
					rows = append(rows, r.ChildCount())
				}
			}
			sh.rows = append(sh.rows, rows)
		}
	}
	return sh
}

func fuzzExport(title, section, note, followup string) sevExport {
	at := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	return sevExport{
		Sev: store.Sev{ID: 7, Title: title, Severity: 2, Kind: store.SevIncident, State: store.SevClosed, ReportedAt: at,
			Regions: []string{"prn"}, Services: []string{section}, Commander: note},
		Report:    &store.SevReport{SevID: 7, Summary: section, RootCause: section, Lessons: "Done."},
		Timeline:  []store.SevTimelineItem{{SevID: 7, At: at, Kind: store.TimelineNote, Text: note, Actor: followup}},
		Followups: []store.Followup{{ID: 1, SevID: 7, Kind: store.FollowupCritical, Title: followup, Owner: note, DueAt: at, Status: store.FollowupOpen}},
		Now:       at,
	}
}

// checkExportShape holds what no user text may change: one title, the
// export's own sections in order, a facts table, a timeline row of four
// cells and a follow-up row of six.
func checkExportShape(t *testing.T, e sevExport) {
	t.Helper()
	md := sevMarkdown(e)
	sh := parseExport(t, md)
	if len(sh.h1) != 1 || !strings.HasPrefix(sh.h1[0], "SEV-7:") {
		t.Fatalf("titles %q in\n%s", sh.h1, md)
	}
	if got := strings.Join(sh.h2, "|"); got != "Report|Timeline|Follow-ups" {
		t.Fatalf("sections %q in\n%s", got, md)
	}
	if len(sh.rows) != 3 || len(sh.rows[1]) != 1 || sh.rows[1][0] != 4 || len(sh.rows[2]) != 1 || sh.rows[2][0] != 6 {
		t.Fatalf("tables %v in\n%s", sh.rows, md)
	}
	for _, c := range sh.rows[0] {
		if c != 2 {
			t.Fatalf("facts table %v in\n%s", sh.rows[0], md)
		}
	}
}

func TestSevMarkdownKeepsItsShape(t *testing.T) {
	for _, c := range []struct{ name, title, section, note, followup string }{
		{"plain", "prn is down", "The breaker tripped.", "Paged", "Fix it"},
		{"pipes and newlines", "a | b", "x", "one | two\nthree", "c | d\n| e |"},
		{"headings", "# not a heading", "# Summary\n## Timeline\nText\n===\nMore\n---", "## Follow-ups", "### x"},
		{"an unclosed fence", "t", "```go\nfunc main() {\n## Timeline", "n", "f"},
		{"a longer fence closed short", "t", "````\ncode\n```\n## Timeline", "n", "f"},
		{"a tilde fence", "t", "~~~\ncode", "n", "f"},
		{"raw HTML that never ends", "<script>", "<!-- comment\n## Timeline", "<pre>", "<style>"},
		{"links and emphasis", "[x](javascript:alert(1))", "*a* _b_ [c](d)", "![img](x)", "`code` **b**"},
		{"list markers", "- item", "1. one", "+ plus", "42) answer"},
		{"empty", "", "", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) { checkExportShape(t, fuzzExport(c.title, c.section, c.note, c.followup)) })
	}
}

func FuzzSevMarkdown(f *testing.F) {
	f.Add("prn is down", "# Summary\n```\nx", "a | b", "c\nd")
	f.Add("<!--", "<script>\n## Timeline", "~~~", "````")
	f.Fuzz(func(t *testing.T, title, section, note, followup string) {
		checkExportShape(t, fuzzExport(title, section, note, followup))
	})
}
