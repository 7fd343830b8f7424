package web

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
)

// RequestError is a request the server will not act on, with the status and
// the API error code to answer with.
type RequestError struct {
	Status  int
	Code    string
	Message string
}

func (e *RequestError) Error() string { return e.Message }

// Errors handlers return for requests that cannot proceed.
var (
	ErrUnauthenticated = &RequestError{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "Sign in or send a valid personal access token."}
	ErrForbidden       = &RequestError{Status: http.StatusForbidden, Code: "forbidden", Message: "You are not allowed to do that."}
	ErrCrossOrigin     = &RequestError{Status: http.StatusForbidden, Code: "cross_origin", Message: "Cross-origin requests that change things are refused."}
	ErrRouteNotFound   = &RequestError{Status: http.StatusNotFound, Code: "not_found", Message: "There is no such page."}
	ErrMethod          = &RequestError{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: "That method is not allowed here."}
)

// BadRequest is a malformed request.
func BadRequest(code, message string) error {
	return &RequestError{Status: http.StatusBadRequest, Code: code, Message: message}
}

// errorBody is the API's error envelope.
type errorBody struct {
	Error apiError `json:"error"`
}

type apiError struct {
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
}

// classify maps an error to a status and the API error.
func classify(err error) (int, apiError) {
	var re *RequestError
	var ce *store.ConflictError
	var ve *store.ValidationError
	var qe *store.QuotaError
	switch {
	case errors.As(err, &re):
		return re.Status, apiError{Code: re.Code, Message: re.Message}
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, apiError{Code: "not_found", Message: "There is no such thing, or you may not see it."}
	case errors.As(err, &ce):
		return http.StatusConflict, apiError{Code: ce.Code, Message: ce.Message}
	case errors.As(err, &qe):
		return http.StatusTooManyRequests, apiError{Code: "quota_exceeded", Message: qe.Message}
	case errors.As(err, &ve):
		return http.StatusUnprocessableEntity, apiError{Code: "invalid", Message: "Some fields are not valid.", Fields: ve.Fields}
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, apiError{Code: "timeout", Message: "The server took too long; try again."}
	}
	return http.StatusInternalServerError, apiError{Code: "internal_error", Message: "Something went wrong on our side. It has been logged."}
}

var statusTitles = map[int]string{
	http.StatusBadRequest:            "Bad request",
	http.StatusUnauthorized:          "Sign in required",
	http.StatusForbidden:             "Not allowed",
	http.StatusNotFound:              "Not found",
	http.StatusMethodNotAllowed:      "Method not allowed",
	http.StatusConflict:              "Cannot do that now",
	http.StatusUnprocessableEntity:   "Not valid",
	http.StatusRequestEntityTooLarge: "Too large",
	http.StatusUnsupportedMediaType:  "Unsupported content type",
	http.StatusTooManyRequests:       "Too many requests",
	http.StatusServiceUnavailable:    "Unavailable",
	http.StatusInternalServerError:   "Server error",
}

// Error answers a request with err, as JSON or HTML by what the request
// accepts. It logs only server errors and never shows a stack or SQL.
func Error(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	status, body := classify(err)
	if status >= 500 {
		log.Error("Request failed", "method", r.Method, "path", r.URL.Path, "request_id", RequestID(r), "error", err)
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="devport"`)
	}
	if WantsJSON(r) {
		WriteJSON(w, status, errorBody{Error: body})
		return
	}
	msg := body.Message
	for _, f := range slices.Sorted(maps.Keys(body.Fields)) {
		msg += " " + f + " " + body.Fields[f] + "."
	}
	title := statusTitles[status]
	if title == "" {
		title = http.StatusText(status)
	}
	renderStatus(w, r, log, status, views.ErrorPage(status, title, msg, RequestID(r)), views.ErrorPanel(status, title, msg, RequestID(r)))
}

// FormProblem says how a form shows err: the fields that are wrong (422), or
// a message (409 for a conflict, 429 for a quota), with the status to answer
// with. ok is false for errors that are not the user's to fix.
func FormProblem(err error) (fields map[string]string, message string, status int, ok bool) {
	status, body := classify(err)
	switch status {
	case http.StatusUnprocessableEntity:
		return body.Fields, "", status, true
	case http.StatusConflict, http.StatusTooManyRequests:
		return nil, body.Message, status, true
	}
	return nil, "", 0, false
}

// FieldsText is field problems as one sentence, fields in order.
func FieldsText(fields map[string]string) string {
	var parts []string
	for _, f := range slices.Sorted(maps.Keys(fields)) {
		parts = append(parts, f+" "+fields[f])
	}
	return strings.Join(parts, "; ")
}

// WriteJSON writes v as a JSON response.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
