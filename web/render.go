package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/a-h/templ"

	"github.com/devport/devport/views"
)

// Render answers with page, or with partial alone for an HTMX request.
func Render(w http.ResponseWriter, r *http.Request, log *slog.Logger, page, partial templ.Component) {
	renderStatus(w, r, log, http.StatusOK, page, partial)
}

// RenderStatus is Render with a status, such as 422 for a form with errors.
func RenderStatus(w http.ResponseWriter, r *http.Request, log *slog.Logger, status int, page, partial templ.Component) {
	renderStatus(w, r, log, status, page, partial)
}

func renderStatus(w http.ResponseWriter, r *http.Request, log *slog.Logger, status int, page, partial templ.Component) {
	c := page
	if IsHTMX(r) && partial != nil {
		c = partial
	} else {
		takeFlashes(w, r, log)
	}
	var buf bytes.Buffer
	if err := c.Render(r.Context(), &buf); err != nil {
		log.Error("Render failed", "path", r.URL.Path, "request_id", RequestID(r), "error", err)
		http.Error(w, "Something went wrong on our side.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// Chrome returns the page frame's data for the request, for a handler to
// adjust (for example to make a page refresh itself without JavaScript).
func Chrome(r *http.Request) *views.Chrome { return views.ChromeFrom(r.Context()) }

// maxJSONBody bounds API request bodies.
const maxJSONBody = 1 << 20

// DecodeJSON reads one JSON object from the request body into v, refusing
// other content types, unknown fields, trailing data and bodies over 1 MiB.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return &RequestError{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: "Send JSON with Content-Type: application/json."}
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	// Only an object: null would decode as an empty one (a PUT of null
	// would clear what it replaces), and a string or a list has no fields.
	if first, err := firstJSONByte(dec); err == nil && first != '{' {
		return BadRequest("malformed_json", "The request body must be a JSON object, such as {}.")
	}
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mbe):
			return &RequestError{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: "The request body is larger than 1 MiB."}
		case errors.Is(err, io.EOF):
			return BadRequest("malformed_json", "The request body is empty; send a JSON object.")
		case errors.As(err, &se):
			return BadRequest("malformed_json", fmt.Sprintf("The request body is not valid JSON (at byte %d).", se.Offset))
		case errors.As(err, &te):
			return BadRequest("malformed_json", fmt.Sprintf("The field %q must be %s.", te.Field, jsonKind(te.Type.Kind().String())))
		case strings.HasPrefix(err.Error(), "json: unknown field"):
			return BadRequest("malformed_json", "The request has "+strings.TrimPrefix(err.Error(), "json: ")+".")
		}
		return BadRequest("malformed_json", "The request body is not valid JSON.")
	}
	if dec.More() {
		return BadRequest("malformed_json", "The request body has data after the JSON object.")
	}
	return nil
}

// firstJSONByte is the first byte of the decoder's next value, without
// consuming it (More skips the white space before it); errors are left for
// Decode to report.
func firstJSONByte(dec *json.Decoder) (byte, error) {
	if !dec.More() {
		return 0, io.EOF
	}
	var b [1]byte
	_, err := io.ReadFull(dec.Buffered(), b[:])
	return b[0], err
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "slice", "array":
		return "a list"
	case "struct", "map":
		return "an object"
	case "bool":
		return "true or false"
	}
	return "a number"
}

// ParseForm parses a form body of at most 64 KiB.
func ParseForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &RequestError{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: "The form is larger than 64 KiB."}
		}
		return BadRequest("malformed_form", "The form could not be read.")
	}
	return nil
}

// Redirect sends the browser to url after a form post (303), or tells HTMX to.
func Redirect(w http.ResponseWriter, r *http.Request, target string) {
	if r.Header.Get("HX-Request") == "true" {
		// A redirect to the page the browser shows (a fragment aside) would
		// only scroll; reload it instead, so it shows what just changed.
		cur, err1 := url.Parse(r.Header.Get("HX-Current-URL"))
		dst, err2 := url.Parse(target)
		if err1 == nil && err2 == nil && cur.Path == dst.Path && cur.RawQuery == dst.RawQuery {
			w.Header().Set("HX-Refresh", "true")
		} else {
			w.Header().Set("HX-Redirect", target)
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// SafeNext returns next if it is a path on this site, or "/" otherwise, so a
// crafted link cannot send a user elsewhere after sign-in.
func SafeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || strings.ContainsAny(next, "\r\n") || len(next) > 2000 {
		return "/"
	}
	if u, err := url.Parse(next); err != nil || u.Scheme != "" || u.Host != "" {
		return "/"
	}
	return next
}
