package views

import (
	"strings"
	"testing"
)

func TestMarkdownSanitizing(t *testing.T) {
	cases := []struct {
		name, src string
		want      []string // in the HTML
		forbid    []string // never in the HTML (case-insensitive)
	}{
		{"plain Markdown renders", "# Root cause\n\n*disk* **full**\n\n- one\n- two", []string{"<h1", "<em>disk</em>", "<strong>full</strong>", "<li>one</li>"}, nil},
		{"a table renders", "| a | b |\n|---|---|\n| 1 | 2 |", []string{"<table>", "<td>1</td>"}, nil},
		{"a script tag is removed", "before\n\n<script>alert(1)</script>\n\nafter", []string{"before", "after"}, []string{"<script", "alert(1)"}},
		{"an inline script tag is removed", "x <script>alert(2)</script> y", []string{"x"}, []string{"<script"}},
		{"an on* attribute is removed", `<img src="https://example.com/a.png" onerror="alert(3)">`, nil, []string{"onerror", "alert(3)"}},
		{"an on* attribute in a link is removed", `<a href="https://example.com" onclick="steal()">x</a>`, nil, []string{"onclick", "steal()"}},
		{"a javascript: Markdown link loses its URL", "[click](javascript:alert(4))", []string{"click"}, []string{"javascript:"}},
		{"a javascript: HTML link loses its URL", `<a href="javascript:alert(5)">y</a>`, nil, []string{"javascript:"}},
		{"a mixed-case JavaScript: URL is removed", "[z](JaVaScRiPt:alert(6))", []string{"z"}, []string{"javascript:"}},
		{"an iframe is removed", `<iframe src="https://evil.example"></iframe>`, nil, []string{"<iframe"}},
		{"a style attribute is removed", `<p style="background:url(x)">s</p>`, nil, []string{"style="}},
		{"a safe link keeps its URL", "[docs](https://example.com/docs)", []string{`href="https://example.com/docs"`, `rel="nofollow"`}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := MarkdownHTML(c.src)
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("HTML lacks %q:\n%s", w, got)
				}
			}
			for _, f := range c.forbid {
				if strings.Contains(strings.ToLower(got), strings.ToLower(f)) {
					t.Errorf("HTML holds %q:\n%s", f, got)
				}
			}
		})
	}
}
