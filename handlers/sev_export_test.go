package handlers_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
)

func TestSevExport(t *testing.T) {
	srv := handlertest.New(t)
	rev := srv.Token(t, "rita@example.com", store.RoleReviewer)
	eng := srv.Token(t, "ed@example.com")
	browser := srv.SignIn(t, "ed@example.com")
	sev := openSev(t, srv, rev, `{"title":"prn | down # [click](javascript:alert(1)) <script>x</script>","severity":1,"regions":["prn"],"services":["devservers","ssh_gateway"],"commander":"rita@example.com",`+
		`"impact_started_at":"`+time.Now().UTC().Add(-3*time.Hour).Format(time.RFC3339)+`","detected_at":"`+time.Now().UTC().Add(-2*time.Hour).Format(time.RFC3339)+`"}`)
	id := strconv.FormatInt(sev, 10)
	api := "/api/v1/sevs/" + id
	do := func(method, path, body string) {
		t.Helper()
		resp, b := srv.Do(t, nil, handlertest.Request{Method: method, Path: path, Token: rev, Body: body})
		if resp.StatusCode >= 300 {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
	}
	do("POST", api+"/timeline", `{"text":"Paged | the on-call\nsecond line"}`)
	do("PATCH", api, `{"state":"mitigated"}`)
	do("PATCH", api, `{"state":"closed"}`)
	do("PUT", api+"/report", `{"summary":"# Big heading\nThe breaker tripped.\nUnderlined\n---\n","impact":"","detection":"","root_cause":"`+"```"+`\nunclosed fence","mitigation":"","went_well":"","went_wrong":"","lessons":"Buy breakers."}`)
	do("POST", api+"/followups", `{"kind":"critical","title":"Replace | the *breaker*","owner":"ed@example.com"}`)

	for _, path := range []string{"/sevs/" + id + "/export.md", api + "/export"} {
		t.Run("GET "+path, func(t *testing.T) {
			var resp *http.Response
			var md string
			if strings.HasPrefix(path, "/api/") {
				resp, md = srv.Do(t, nil, handlertest.Request{Path: path, Token: eng})
			} else {
				resp, md = srv.Do(t, browser, handlertest.Request{Path: path})
			}
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, md)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/markdown; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			if cd := resp.Header.Get("Content-Disposition"); cd != `attachment; filename="SEV-`+id+`.md"` {
				t.Errorf("Content-Disposition %q", cd)
			}
			lines := strings.Split(md, "\n")
			if want := `# SEV-` + id + `: prn \| down \# \[click\](javascript:alert(1)) \<script\>x\</script\>`; lines[0] != want {
				t.Errorf("title line\n%s\nwant\n%s", lines[0], want)
			}
			for _, want := range []string{
				"| Severity | SEV1: Major: a region is down or many engineers are blocked. |",
				"| Kind | incident |",
				"| State | closed |",
				"| Regions | prn |",
				"| Services | devservers, ssh\\_gateway |",
				"| Commander | rita@example.com |",
				"\n## Report\n",
				"\n### Summary\n\n#### Big heading\nThe breaker tripped.\nUnderlined\n\\---\n",
				"\n### Root cause\n\n```\nunclosed fence\n```\n",
				"\n### Lessons\n\nBuy breakers.\n",
				"\n### Detection\n\n_Not written._\n",
				"\n## Timeline\n\n| Time | Kind | Entry | By |\n|---|---|---|---|\n",
				"| note | Paged \\| the on-call second line | rita@example.com |",
				"\n## Follow-ups\n\n| Kind | Follow-up | Owner | Due | Status | Failed step |\n",
				"| critical | Replace \\| the \\*breaker\\* | ed@example.com |",
			} {
				if !strings.Contains(md, want) {
					t.Errorf("export lacks %q:\n%s", want, md)
				}
			}
			// Every table row has as many cells as its header: no user text split one.
			for _, l := range lines {
				if strings.HasPrefix(l, "| note") || strings.HasPrefix(l, "| critical") {
					if n := strings.Count(strings.ReplaceAll(l, `\|`, ""), "|"); n != 5 && n != 7 {
						t.Errorf("a row with %d separators: %s", n, l)
					}
				}
			}
		})
	}
	t.Run("an unknown SEV is not found", func(t *testing.T) {
		if resp, _ := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/sevs/999999/export", Token: eng}); resp.StatusCode != 404 {
			t.Errorf("%d", resp.StatusCode)
		}
		if resp, _ := srv.Do(t, browser, handlertest.Request{Path: "/sevs/nope/export.md"}); resp.StatusCode != 404 {
			t.Errorf("%d", resp.StatusCode)
		}
	})
}

func TestSevMetricsPage(t *testing.T) {
	srv := handlertest.New(t)
	rev := srv.Token(t, "rita@example.com", store.RoleReviewer)
	browser := srv.SignIn(t, "ed@example.com")
	openSev(t, srv, rev, `{"title":"prn is down","severity":1,"regions":["prn"]}`)
	openSev(t, srv, rev, `{"title":"ftw is slow","severity":3,"regions":["ftw"]}`)
	drill := openSev(t, srv, rev, `{"title":"Drain lla","severity":4,"kind":"exercise","regions":["lla"]}`)
	resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/sevs/" + strconv.FormatInt(drill, 10) + "/followups", Token: rev,
		Body: `{"kind":"exploratory","title":"Drain faster","owner":"rita@example.com"}`})
	if resp.StatusCode != 201 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}

	resp, body = srv.Do(t, browser, handlertest.Request{Path: "/sevs/metrics"})
	if resp.StatusCode != 200 {
		t.Fatalf("%d", resp.StatusCode)
	}
	doc := handlertest.Doc(t, body)
	for _, id := range []string{"chart-sevs-per-month", "chart-time-to-mitigate", "chart-time-to-close", "chart-review-lead-time", "chart-followups",
		"chart-exercise-drain", "chart-exercise-moved", "chart-exercise-followups"} {
		fig := doc.Find("figure#" + id)
		if fig.Length() != 1 {
			t.Errorf("no chart %s", id)
			continue
		}
		if fig.Find("svg title").First().Text() == "" || fig.Find("svg .chart-x-label").Text() == "" || fig.Find("svg .chart-y-label").Text() == "" ||
			fig.Find("svg .chart-legend text").Length() == 0 || fig.Find("details table").Length() != 1 {
			t.Errorf("chart %s lacks a title, axis labels, a legend or its table", id)
		}
	}
	if n := doc.Find("[style]").Length(); n != 0 {
		t.Errorf("%d inline style attributes", n)
	}
	// This month's row of the incidents table: one SEV1 and one SEV3.
	row := doc.Find("#chart-sevs-per-month details tbody tr").Last()
	var cells []string
	row.Find("td").Each(func(_ int, s *goquery.Selection) { cells = append(cells, s.Text()) })
	if strings.Join(cells, ",") != "0,1,0,1,0" {
		t.Errorf("this month by severity: %v", cells)
	}
	if doc.Find("#chart-sevs-per-month svg rect.chart-bar").Length() != 2 {
		t.Errorf("%d bars", doc.Find("#chart-sevs-per-month svg rect.chart-bar").Length())
	}
	// The drill is an exercise with one follow-up, not an incident.
	ex := doc.Find("#exercise-table tbody tr")
	if ex.Length() != 1 || !strings.Contains(ex.Text(), "Drain lla") || ex.Find("td").Last().Text() != "1" || !strings.Contains(ex.Text(), "nobody moved") {
		t.Errorf("exercises: %s", ex.Text())
	}
	crit := doc.Find("#chart-followups details tbody tr").FilterFunction(func(_ int, s *goquery.Selection) bool { return s.Find("th").Text() == "exploratory" })
	var fc []string
	crit.Find("td").Each(func(_ int, s *goquery.Selection) { fc = append(fc, s.Text()) })
	if strings.Join(fc, ",") != "0,0,1,0" {
		t.Errorf("exploratory follow-ups: %v", fc)
	}
}
