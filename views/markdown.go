package views

import (
	"bytes"
	"context"
	"io"

	"github.com/a-h/templ"
	"github.com/microcosm-cc/bluemonday"
	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"
)

// markdown turns people's Markdown into HTML (GitHub-flavoured tables,
// strikethrough, autolinks); the HTML is always sanitized afterwards.
var markdown = goldmark.New(goldmark.WithExtensions(extension.GFM))

// sanitizer keeps what user-generated content may hold: no scripts, no event
// handler attributes, no javascript: URLs, no styles.
var sanitizer = func() *bluemonday.Policy {
	p := bluemonday.UGCPolicy()
	p.RequireNoFollowOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(false)
	return p
}()

// MarkdownHTML renders Markdown as sanitized HTML.
func MarkdownHTML(src string) string {
	var buf bytes.Buffer
	if err := markdown.Convert([]byte(src), &buf); err != nil {
		// Convert only fails on a writer error; show the text escaped.
		return sanitizer.Sanitize(templ.EscapeString(src))
	}
	return sanitizer.Sanitize(buf.String())
}

// Markdown is a component that writes Markdown as sanitized HTML.
func Markdown(src string) templ.Component {
	return templ.ComponentFunc(func(ctx context.Context, w io.Writer) error {
		_, err := io.WriteString(w, MarkdownHTML(src))
		return err
	})
}
