package handlers

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// followupID reads the {id} of a follow-up; one that is not a number does not exist.
func followupID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, store.ErrNotFound
	}
	return id, nil
}

// parseDue reads a due date: a day (2026-12-01, due by the end of it, UTC)
// or an RFC 3339 time. Empty is nil: the default by kind.
func parseDue(p store.Problems, v string) *time.Time {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil
	}
	if d, err := time.ParseInLocation("2006-01-02", v, time.UTC); err == nil {
		end := d.Add(24*time.Hour - time.Second)
		return &end
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		t = t.UTC()
		return &t
	}
	p.Add("due", "is not a date such as 2026-12-01")
	return nil
}

// canSetMap holds which of the follow-ups the user may change the status of.
func canSetMap(u store.User, fs []store.Followup) map[int64]bool {
	m := make(map[int64]bool, len(fs))
	for _, f := range fs {
		m[f.ID] = store.CanSetFollowupStatus(u, f)
	}
	return m
}

// sevFollowupsSection loads a SEV's follow-ups section as u sees it: the
// list, the status forms u may use and, for reviewers and admins, the form
// that files one (with the steps of the SEV's runbook run to link).
func sevFollowupsSection(ctx context.Context, s *store.Store, u store.User, sevID int64) (views.SevFollowupsView, error) {
	v := views.SevFollowupsView{CanFile: store.CanFileFollowup(u), RunLinks: u.Has(store.RoleAdmin), Now: s.Now(),
		Form: views.FollowupForm{SevID: sevID, Kind: store.FollowupCritical}}
	var err error
	if v.Sev, err = s.Sev(ctx, sevID); err != nil {
		return v, err
	}
	if v.Followups, err = s.SevFollowups(ctx, sevID); err != nil {
		return v, err
	}
	v.CanSet = canSetMap(u, v.Followups)
	if v.CanFile && v.Sev.RunID != nil {
		if v.Steps, err = s.RunSteps(ctx, *v.Sev.RunID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return v, err
		}
	}
	return v, nil
}

// followupFormInput reads the form that files a follow-up.
func followupFormInput(r *http.Request, sevID int64) (views.FollowupForm, store.FollowupInput, store.Problems) {
	f := views.FollowupForm{SevID: sevID, Kind: r.PostForm.Get("kind"), Title: r.PostForm.Get("title"), Owner: r.PostForm.Get("owner"),
		Due: strings.TrimSpace(r.PostForm.Get("due")), RunStep: strings.TrimSpace(r.PostForm.Get("run_step"))}
	p := store.Problems{}
	in := store.FollowupInput{Kind: f.Kind, Title: f.Title, Owner: f.Owner, Due: parseDue(p, f.Due), RunStep: f.RunStep}
	return f, in, p
}

// newFollowupPage shows the form that files a follow-up of a SEV on a page of its own.
func newFollowupPage(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := sevID(r)
		var v views.SevFollowupsView
		if err == nil {
			v, err = sevFollowupsSection(r.Context(), s, *web.User(r), id)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.SevFollowupNewPage(v), nil)
	}
}

// fileFollowupForm files a follow-up from a SEV's page and goes back to it; a
// refused form comes back on a page of its own with its problems.
func fileFollowupForm(log *slog.Logger, s *store.Store, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := sevID(r)
		if err == nil {
			err = web.ParseForm(w, r)
		}
		if err == nil {
			_, err = s.Sev(r.Context(), id)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		f, in, problems := followupFormInput(r, id)
		err = problems.Err()
		var fu store.Followup
		if err == nil {
			err = s.InTx(r.Context(), func(tx *store.Tx) error {
				var err error
				fu, err = tx.CreateFollowup(r.Context(), web.Actor(r), id, in)
				return err
			})
		}
		if err == nil {
			sessions.Flash(w, r, "success", "Filed the "+fu.Kind+" follow-up “"+fu.Title+"” for "+fu.Owner+", due "+fu.DueAt.UTC().Format("2006-01-02")+".")
			web.Redirect(w, r, views.SevURL(id)+"#"+views.SevFollowupsID)
			return
		}
		fields, message, status, ok := web.FormProblem(err)
		if !ok {
			web.Error(w, r, log, err)
			return
		}
		if message != "" {
			fields = map[string]string{"title": message}
		}
		v, verr := sevFollowupsSection(r.Context(), s, *web.User(r), id)
		if verr != nil {
			web.Error(w, r, log, verr)
			return
		}
		f.Errors = fields
		v.Form = f
		web.RenderStatus(w, r, log, status, views.SevFollowupNewPage(v), nil)
	}
}

// patchFollowup changes a follow-up as the caller may: reviewers and admins
// anything, its owner the status and its reason alone. Problems found while
// reading the request are answered after who may change what.
func patchFollowup(r *http.Request, s *store.Store, id int64, p store.FollowupPatch, problems store.Problems) (store.Followup, error) {
	u := *web.User(r)
	var f store.Followup
	err := s.InTx(r.Context(), func(tx *store.Tx) error {
		cur, err := s.Followup(r.Context(), id)
		if err != nil {
			return err
		}
		switch {
		case !store.CanSetFollowupStatus(u, cur):
			return web.ErrForbidden
		case !store.CanEditFollowup(u) && !p.StatusOnly():
			return &web.RequestError{Status: http.StatusForbidden, Code: "forbidden", Message: "A follow-up's owner may change its status and reason only."}
		}
		if err := problems.Err(); err != nil {
			return err
		}
		f, err = tx.UpdateFollowup(r.Context(), web.Actor(r), id, p)
		return err
	})
	return f, err
}

// setFollowupStatusForm changes a follow-up's status from a form on the
// board or a SEV's page, and goes back there.
func setFollowupStatusForm(log *slog.Logger, s *store.Store, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := followupID(r)
		if err == nil {
			err = web.ParseForm(w, r)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		back := web.SafeNext(r.PostForm.Get("next"))
		if back == "/" {
			back = views.FollowupsURL
		}
		status, reason := r.PostForm.Get("status"), strings.TrimSpace(r.PostForm.Get("reason"))
		p := store.FollowupPatch{Status: &status}
		if status == store.FollowupWontDo {
			p.Reason = &reason
		}
		f, err := patchFollowup(r, s, id, p, nil)
		if err == nil {
			sessions.Flash(w, r, "success", "“"+f.Title+"” is now "+store.FollowupStatusText(f.Status)+".")
			web.Redirect(w, r, back)
			return
		}
		fields, message, _, ok := web.FormProblem(err)
		if !ok {
			web.Error(w, r, log, err)
			return
		}
		if message == "" {
			message = "Nothing was changed: " + web.FieldsText(fields) + "."
		}
		sessions.Flash(w, r, "error", message)
		web.Redirect(w, r, back)
	}
}

// boardFilter reads the board's filters from the query.
func boardFilter(r *http.Request) (views.FollowupBoardFilter, store.FollowupFilter, error) {
	q := r.URL.Query()
	vf := views.FollowupBoardFilter{Kind: q.Get("kind"), Owner: strings.TrimSpace(q.Get("owner")), Status: q.Get("status")}
	f := store.FollowupFilter{Kind: vf.Kind, Owner: vf.Owner, Status: vf.Status}
	switch q.Get("overdue") {
	case "", "0":
	case "1", "on", "true":
		vf.Overdue, f.Overdue = true, true
	default:
		return vf, f, web.BadRequest("invalid_overdue", "overdue must be 1 or 0.")
	}
	return vf, f, f.Validate()
}

// boardPageSize is how many follow-ups a page of the board shows.
const boardPageSize = 100

func showFollowupBoard(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := *web.User(r)
		vf, f, err := boardFilter(r)
		v := views.FollowupBoardView{Filter: vf, RunLinks: u.Has(store.RoleAdmin), Now: s.Now()}
		if err == nil && r.URL.Query().Get("offset") != "" {
			f.Offset, err = strconv.Atoi(r.URL.Query().Get("offset"))
			if err != nil || f.Offset < 0 {
				err = web.BadRequest("invalid_offset", "offset must be a whole number, 0 or more.")
			}
		}
		if err == nil {
			f.Limit = boardPageSize + 1
			v.Items, err = s.Followups(r.Context(), f)
		}
		if fields, message, status, ok := web.FormProblem(err); err != nil && ok {
			if message == "" {
				message = "The filter is not valid: " + web.FieldsText(fields) + "."
			}
			v.Problem = message
			web.RenderStatus(w, r, log, status, views.FollowupBoardPage(v), nil)
			return
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		if len(v.Items) > boardPageSize {
			v.Items = v.Items[:boardPageSize]
			v.Next = views.FollowupsURL + "?" + vf.Query(f.Offset+boardPageSize)
		}
		if f.Offset > 0 {
			v.Prev = views.FollowupsURL + "?" + vf.Query(max(0, f.Offset-boardPageSize))
		}
		v.CanSet = canSetMap(u, v.Items)
		web.Render(w, r, log, views.FollowupBoardPage(v), nil)
	}
}

// The API.

// followupJSON is a follow-up as the API writes it, due date as a day too.
type followupJSON struct {
	store.Followup
	Due string `json:"due"`
}

func followupDoc(f store.Followup) followupJSON {
	return followupJSON{Followup: f, Due: f.DueAt.UTC().Format("2006-01-02")}
}

func followupDocs(fs []store.Followup) []followupJSON {
	out := make([]followupJSON, len(fs))
	for i, f := range fs {
		out[i] = followupDoc(f)
	}
	return out
}

// apiFollowupPage answers a page of follow-ups (an offset cursor: they sort by due date).
func apiFollowupPage(w http.ResponseWriter, r *http.Request, log *slog.Logger, s *store.Store, f store.FollowupFilter) {
	limit, offset, err := offsetPagination(r)
	var fs []store.Followup
	if err == nil {
		f.Offset, f.Limit = offset, limit+1
		fs, err = s.Followups(r.Context(), f)
	}
	if err != nil {
		web.Error(w, r, log, err)
		return
	}
	p := offsetPage(followupDocs(fs), limit, offset)
	web.WriteJSON(w, http.StatusOK, p)
}

func apiSevFollowups(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := sevID(r)
		if err == nil {
			_, err = s.Sev(r.Context(), id)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		apiFollowupPage(w, r, log, s, store.FollowupFilter{SevID: id})
	}
}

func apiFollowupBoard(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, f, err := boardFilter(r)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		apiFollowupPage(w, r, log, s, f)
	}
}

// followupRequest is the body of POST /sevs/{id}/followups: due is a day or an RFC 3339 time.
type followupRequest struct {
	Kind    string `json:"kind"`
	Title   string `json:"title"`
	Owner   string `json:"owner"`
	Due     string `json:"due"`
	RunID   *int64 `json:"run_id"`
	RunStep string `json:"run_step"`
}

func apiFileFollowup(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := sevID(r)
		var req followupRequest
		if err == nil {
			err = web.DecodeJSON(w, r, &req)
		}
		var f store.Followup
		if err == nil {
			p := store.Problems{}
			in := store.FollowupInput{Kind: req.Kind, Title: req.Title, Owner: req.Owner, Due: parseDue(p, req.Due), RunID: req.RunID, RunStep: req.RunStep}
			err = s.InTx(r.Context(), func(tx *store.Tx) error {
				if _, err := tx.SevByID(r.Context(), id); err != nil {
					return err
				}
				if err := p.Err(); err != nil {
					return err
				}
				var err error
				f, err = tx.CreateFollowup(r.Context(), web.Actor(r), id, in)
				return err
			})
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusCreated, followupDoc(f))
	}
}

// followupPatchRequest is the body of PATCH /followups/{id}; due is a day or an RFC 3339 time.
type followupPatchRequest struct {
	Kind   *string `json:"kind"`
	Title  *string `json:"title"`
	Owner  *string `json:"owner"`
	Due    *string `json:"due"`
	Status *string `json:"status"`
	Reason *string `json:"reason"`
}

func apiPatchFollowup(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := followupID(r)
		var req followupPatchRequest
		if err == nil {
			err = web.DecodeJSON(w, r, &req)
		}
		p := store.FollowupPatch{Kind: req.Kind, Title: req.Title, Owner: req.Owner, Status: req.Status, Reason: req.Reason}
		problems := store.Problems{}
		if err == nil && req.Due != nil {
			if p.Due = parseDue(problems, *req.Due); p.Due == nil {
				problems.Add("due", "is required: a date such as 2026-12-01")
			}
		}
		var f store.Followup
		if err == nil {
			f, err = patchFollowup(r, s, id, p, problems)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, followupDoc(f))
	}
}
