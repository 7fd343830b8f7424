package handlers

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// requirePolicy refuses callers the policy does not allow (403).
func requirePolicy(log *slog.Logger, allowed func(store.User) bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u := web.User(r); u == nil || !allowed(*u) {
				web.Error(w, r, log, web.ErrForbidden)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// sevID reads the {id} of a SEV; one that is not a number does not exist.
func sevID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(strings.TrimPrefix(strings.ToUpper(chi.URLParam(r, "id")), "SEV-"), 10, 64)
	if err != nil || id <= 0 {
		return 0, store.ErrNotFound
	}
	return id, nil
}

// sevFilter reads the SEV list's filters and page.
func sevFilter(r *http.Request) (store.SevFilter, error) {
	limit, after, err := pagination(r)
	if err != nil {
		return store.SevFilter{}, err
	}
	q := r.URL.Query()
	f := store.SevFilter{State: q.Get("state"), Kind: q.Get("kind"), AfterID: after, Limit: limit}
	if v := strings.TrimPrefix(strings.ToUpper(q.Get("severity")), "SEV"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return f, web.BadRequest("invalid_severity", "severity must be 0 to 4 (or SEV0 to SEV4).")
		}
		f.Severity = &n
	}
	if err := f.Validate(); err != nil {
		var ve *store.ValidationError
		if errors.As(err, &ve) {
			return f, web.BadRequest("invalid_filter", web.FieldsText(ve.Fields)+".")
		}
		return f, err
	}
	return f, nil
}

func sevsPage(r *http.Request, s *store.Store) (page[store.Sev], store.SevFilter, error) {
	f, err := sevFilter(r)
	if err != nil {
		return page[store.Sev]{}, f, err
	}
	limit := f.Limit
	f.Limit++
	ss, err := s.Sevs(r.Context(), f)
	f.Limit = limit
	if err != nil {
		return page[store.Sev]{}, f, err
	}
	p := pageOf(ss, limit, func(v store.Sev) int64 { return v.ID })
	return p, f, nil
}

func listSevs(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, f, err := sevsPage(r, s)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		v := views.SevListView{Sevs: p.Items, State: f.State, Kind: f.Kind, CanWrite: store.CanWriteSev(*web.User(r))}
		if f.Severity != nil {
			v.Severity = strconv.Itoa(*f.Severity)
		}
		if p.NextCursor != "" {
			q := url.Values{"cursor": {p.NextCursor}}
			for k, val := range map[string]string{"state": v.State, "kind": v.Kind, "severity": v.Severity} {
				if val != "" {
					q.Set(k, val)
				}
			}
			v.Older = views.SevsURL + "?" + q.Encode()
		}
		web.Render(w, r, log, views.SevsPage(v), nil)
	}
}

// parseFormTime reads a datetime-local (UTC) value; "" is nil.
func parseFormTime(p store.Problems, field, v string) *time.Time {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil
	}
	for _, layout := range []string{views.SevFormTime, "2006-01-02T15:04:05", time.RFC3339} {
		if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
			t = t.UTC()
			return &t
		}
	}
	p.Add(field, "is not a date and time such as 2026-12-01T09:00")
	return nil
}

// sevFormInput reads the SEV form.
func sevFormInput(r *http.Request, id int64) (views.SevForm, store.SevInput, store.Problems) {
	pf := r.PostForm
	f := views.SevForm{ID: id, Title: pf.Get("title"), Severity: pf.Get("severity"), Kind: pf.Get("kind"), Services: pf.Get("services"),
		Commander: pf.Get("commander"), ImpactStartedAt: pf.Get("impact_started_at"), DetectedAt: pf.Get("detected_at"),
		MitigatedAt: pf.Get("mitigated_at"), ClosedAt: pf.Get("closed_at"), Regions: pf["regions"]}
	p := store.Problems{}
	in := store.SevInput{Title: &f.Title, Kind: &f.Kind, Commander: &f.Commander}
	regions := slices.Clone(f.Regions)
	if regions == nil {
		regions = []string{}
	}
	in.Regions = &regions
	services := strings.Split(f.Services, ",")
	in.Services = &services
	if n, err := strconv.Atoi(strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(f.Severity)), "SEV")); err != nil {
		p.Add("severity", "choose a severity, SEV0 to SEV4")
	} else {
		in.Severity = &n
	}
	in.ImpactStartedAt = parseFormTime(p, "impact_started_at", f.ImpactStartedAt)
	in.DetectedAt = parseFormTime(p, "detected_at", f.DetectedAt)
	if id != 0 {
		in.MitigatedAt = parseFormTime(p, "mitigated_at", f.MitigatedAt)
		in.ClosedAt = parseFormTime(p, "closed_at", f.ClosedAt)
	}
	return f, in, p
}

func renderSevForm(w http.ResponseWriter, r *http.Request, log *slog.Logger, s *store.Store, status int, f views.SevForm) {
	regions, err := s.Regions(r.Context())
	if err != nil {
		web.Error(w, r, log, err)
		return
	}
	web.RenderStatus(w, r, log, status, views.SevFormPage(views.SevFormView{Form: f, Regions: regions}), nil)
}

func newSevForm(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		renderSevForm(w, r, log, s, http.StatusOK, views.SevForm{Severity: "2", Kind: store.SevIncident, Commander: web.User(r).Email})
	}
}

func editSevForm(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := sevID(r)
		var sv store.Sev
		if err == nil {
			sv, err = s.Sev(r.Context(), id)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		renderSevForm(w, r, log, s, http.StatusOK, views.SevFormOf(sv))
	}
}

func saveSevForm(log *slog.Logger, s *store.Store, sessions *web.SessionStore, create bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var id int64
		if !create {
			var err error
			if id, err = sevID(r); err != nil {
				web.Error(w, r, log, err)
				return
			}
		}
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		f, in, problems := sevFormInput(r, id)
		err := problems.Err()
		var sv store.Sev
		if err == nil {
			err = s.InTx(r.Context(), func(tx *store.Tx) error {
				var err error
				if create {
					sv, err = tx.CreateSev(r.Context(), web.Actor(r), in)
				} else {
					sv, err = tx.UpdateSev(r.Context(), web.Actor(r), id, in)
				}
				return err
			})
		}
		if err == nil {
			verb := "Saved "
			if create {
				verb = "Opened "
			}
			sessions.Flash(w, r, "success", verb+sv.Number()+".")
			web.Redirect(w, r, views.SevURL(sv.ID))
			return
		}
		fields, message, status, ok := web.FormProblem(err)
		if !ok {
			web.Error(w, r, log, err)
			return
		}
		f.Errors, f.Message = fields, message
		renderSevForm(w, r, log, s, status, f)
	}
}

// sevView loads what the SEV page shows.
func sevView(r *http.Request, s *store.Store, id int64) (views.SevView, error) {
	ctx := r.Context()
	u := web.User(r)
	v := views.SevView{CanWrite: store.CanWriteSev(*u), CanReview: store.CanReviewSev(*u), Now: s.Now()}
	var err error
	if v.Sev, err = s.Sev(ctx, id); err != nil {
		return v, err
	}
	if v.Timeline, err = s.SevTimeline(ctx, id); err != nil {
		return v, err
	}
	if v.Subscribers, err = s.SevSubscribers(ctx, id); err != nil {
		return v, err
	}
	v.Subscribed = slices.Contains(v.Subscribers, u.Email)
	if rep, err := s.SevReport(ctx, id); err == nil {
		v.Report = &rep
	} else if !errors.Is(err, store.ErrNotFound) {
		return v, err
	} else if v.Impact, err = s.SevImpact(ctx, v.Sev); err != nil {
		return v, err
	}
	if rev, err := s.SevReview(ctx, id); err == nil {
		v.Review = &rev
	} else if !errors.Is(err, store.ErrNotFound) {
		return v, err
	}
	// The follow-ups area draws its own section of the page.
	fv, err := sevFollowupsSection(ctx, s, *u, id)
	if err != nil {
		return v, err
	}
	v.Followups = views.SevFollowups(fv)
	return v, nil
}

// renderSev draws the SEV page, with status for a refused change.
func renderSev(w http.ResponseWriter, r *http.Request, log *slog.Logger, s *store.Store, status int, id int64, edit func(*views.SevView)) {
	v, err := sevView(r, s, id)
	if err != nil {
		web.Error(w, r, log, err)
		return
	}
	if edit != nil {
		edit(&v)
	}
	web.RenderStatus(w, r, log, status, views.SevPage(v), nil)
}

func showSev(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := sevID(r)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		renderSev(w, r, log, s, http.StatusOK, id, nil)
	}
}

// sevFormAction runs a form action on a SEV: on success it flashes and goes
// back to the SEV page; a refused one redraws the page with the reason.
func sevFormAction(log *slog.Logger, s *store.Store, sessions *web.SessionStore,
	act func(r *http.Request, tx *store.Tx, id int64) (string, error), onError func(*views.SevView, map[string]string, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := sevID(r)
		if err == nil {
			err = web.ParseForm(w, r)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		var flash string
		err = s.InTx(r.Context(), func(tx *store.Tx) error {
			var err error
			flash, err = act(r, tx, id)
			return err
		})
		if err == nil {
			sessions.Flash(w, r, "success", flash)
			web.Redirect(w, r, views.SevURL(id))
			return
		}
		fields, message, status, ok := web.FormProblem(err)
		if !ok {
			web.Error(w, r, log, err)
			return
		}
		renderSev(w, r, log, s, status, id, func(v *views.SevView) { onError(v, fields, message) })
	}
}

func problemText(fields map[string]string, message string) string {
	if message != "" {
		return message
	}
	return "Nothing was changed: " + web.FieldsText(fields) + "."
}

func sevStateForm(log *slog.Logger, s *store.Store, sessions *web.SessionStore) http.HandlerFunc {
	return sevFormAction(log, s, sessions, func(r *http.Request, tx *store.Tx, id int64) (string, error) {
		state := r.PostForm.Get("state")
		sv, err := tx.UpdateSev(r.Context(), web.Actor(r), id, store.SevInput{State: &state})
		if err != nil {
			return "", err
		}
		return sv.Number() + " is " + store.SevStateText(sv.State) + ".", nil
	}, func(v *views.SevView, fields map[string]string, message string) {
		v.Problem = problemText(fields, message)
	})
}

func noteInput(r *http.Request, p store.Problems) store.SevTimelineEntry {
	e := store.SevTimelineEntry{Text: r.PostForm.Get("text")}
	if at := parseFormTime(p, "at", r.PostForm.Get("at")); at != nil {
		e.At = *at
	}
	return e
}

func sevNoteForm(log *slog.Logger, s *store.Store, sessions *web.SessionStore) http.HandlerFunc {
	return sevFormAction(log, s, sessions, func(r *http.Request, tx *store.Tx, id int64) (string, error) {
		p := store.Problems{}
		e := noteInput(r, p)
		if err := p.Err(); err != nil {
			return "", err
		}
		_, err := tx.AddSevTimeline(r.Context(), web.Actor(r), id, e)
		return "Added the note to the timeline.", err
	}, func(v *views.SevView, fields map[string]string, message string) {
		v.Note = views.NoteForm{Text: "", Errors: fields}
		if message != "" {
			v.Problem = message
		}
	})
}

func broadcastInput(r *http.Request) store.SevBroadcast {
	pf := r.PostForm
	return store.SevBroadcast{Text: pf.Get("text"), Subscribers: pf.Get("subscribers") == "1", Affected: pf.Get("affected") == "1",
		Banner: pf.Get("banner") == "1", BannerSeverity: pf.Get("banner_severity")}
}

func sevBroadcastForm(log *slog.Logger, s *store.Store, sessions *web.SessionStore) http.HandlerFunc {
	return sevFormAction(log, s, sessions, func(r *http.Request, tx *store.Tx, id int64) (string, error) {
		res, err := tx.BroadcastSev(r.Context(), web.Actor(r), id, broadcastInput(r))
		if err != nil {
			return "", err
		}
		msg := "Sent the update to " + strconv.Itoa(res.Notified) + " people"
		if len(res.Banners) > 0 {
			msg += " and showed it as a banner"
		}
		return msg + ".", nil
	}, func(v *views.SevView, fields map[string]string, message string) {
		b := views.BroadcastForm{Errors: fields}
		if message != "" {
			b.Errors = map[string]string{"update": message}
		}
		v.Broadcast = b
	})
}

func sevSubscriptionForm(log *slog.Logger, s *store.Store, sessions *web.SessionStore) http.HandlerFunc {
	return sevFormAction(log, s, sessions, func(r *http.Request, tx *store.Tx, id int64) (string, error) {
		on := r.PostForm.Get("subscribe") != "0"
		if err := tx.SetSevSubscription(r.Context(), web.Actor(r), id, web.User(r).ID, on); err != nil {
			return "", err
		}
		if on {
			return "You are subscribed to SEV-" + strconv.FormatInt(id, 10) + ".", nil
		}
		return "You are unsubscribed from SEV-" + strconv.FormatInt(id, 10) + ".", nil
	}, func(v *views.SevView, fields map[string]string, message string) {
		v.Problem = problemText(fields, message)
	})
}

// The report.

func sevReportEdit(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := sevID(r)
		var sv store.Sev
		var rep store.SevReport
		if err == nil {
			sv, err = s.Sev(r.Context(), id)
		}
		if err == nil {
			rep, err = s.SevReport(r.Context(), id)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.SevReportPage(views.ReportFormOf(sv, rep)), nil)
	}
}

func reportFormInput(r *http.Request) store.SevReportInput {
	pf := r.PostForm
	return store.SevReportInput{Summary: pf.Get("summary"), Impact: pf.Get("impact"), Detection: pf.Get("detection"), RootCause: pf.Get("root_cause"),
		Mitigation: pf.Get("mitigation"), WentWell: pf.Get("went_well"), WentWrong: pf.Get("went_wrong"), Lessons: pf.Get("lessons")}
}

func saveSevReportForm(log *slog.Logger, s *store.Store, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := sevID(r)
		var sv store.Sev
		if err == nil {
			sv, err = s.Sev(r.Context(), id)
		}
		if err == nil {
			r.Body = http.MaxBytesReader(w, r.Body, 256<<10)
			if perr := r.ParseForm(); perr != nil {
				err = web.BadRequest("malformed_form", "The form could not be read (at most 256 KiB).")
			}
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		in := reportFormInput(r)
		err = s.InTx(r.Context(), func(tx *store.Tx) error {
			_, err := tx.PutSevReport(r.Context(), web.Actor(r), id, in)
			return err
		})
		if err == nil {
			sessions.Flash(w, r, "success", "Saved the report of "+sv.Number()+".")
			web.Redirect(w, r, views.SevURL(id))
			return
		}
		fields, message, status, ok := web.FormProblem(err)
		if !ok {
			web.Error(w, r, log, err)
			return
		}
		f := views.ReportForm{Sev: sv, Sections: map[string]string{}, Errors: fields, Message: message}
		for _, sec := range store.ReportSections {
			f.Sections[sec.Key] = r.PostForm.Get(sec.Key)
		}
		web.RenderStatus(w, r, log, status, views.SevReportPage(f), nil)
	}
}

// The review.

func sevReviewForm(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := sevID(r)
		var sv store.Sev
		if err == nil {
			sv, err = s.Sev(r.Context(), id)
		}
		var rev *store.SevReview
		if err == nil {
			if x, rerr := s.SevReview(r.Context(), id); rerr == nil {
				rev = &x
			} else if !errors.Is(rerr, store.ErrNotFound) {
				err = rerr
			}
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.SevReviewPage(views.ReviewFormOf(sv, rev, web.User(r).Email, s.Now())), nil)
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ';' || r == '\n' || r == ' ' }) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func saveSevReviewForm(log *slog.Logger, s *store.Store, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := sevID(r)
		var sv store.Sev
		if err == nil {
			sv, err = s.Sev(r.Context(), id)
		}
		if err == nil {
			err = web.ParseForm(w, r)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		pf := r.PostForm
		f := views.ReviewForm{Sev: sv, MeetingAt: pf.Get("meeting_at"), Facilitator: pf.Get("facilitator"), Attendees: pf.Get("attendees"),
			Notes: pf.Get("notes"), Checklist: map[string]bool{}}
		for _, c := range pf["checklist"] {
			f.Checklist[c] = true
		}
		p := store.Problems{}
		in := store.SevReviewInput{MeetingAt: parseFormTime(p, "meeting_at", f.MeetingAt), Facilitator: f.Facilitator,
			Attendees: splitList(f.Attendees), Notes: f.Notes, Checklist: f.Checklist, SignOff: pf.Get("sign_off") == "1"}
		err = p.Err()
		if err == nil {
			err = s.InTx(r.Context(), func(tx *store.Tx) error {
				var err error
				_, sv, err = tx.SaveSevReview(r.Context(), web.Actor(r), id, in)
				return err
			})
		}
		if err == nil {
			msg := "Saved the review of " + sv.Number() + "; it is " + store.SevStateText(sv.State) + "."
			if in.SignOff {
				msg = "Signed off the review of " + sv.Number() + "; it is reviewed."
			}
			sessions.Flash(w, r, "success", msg)
			web.Redirect(w, r, views.SevURL(id))
			return
		}
		fields, message, status, ok := web.FormProblem(err)
		if !ok {
			web.Error(w, r, log, err)
			return
		}
		f.Errors, f.Message = fields, message
		web.RenderStatus(w, r, log, status, views.SevReviewPage(f), nil)
	}
}

func showReviews(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		items, err := s.ReviewQueue(r.Context())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.ReviewsPage(views.ReviewQueueView{Items: items, Now: s.Now()}), nil)
	}
}

// The API.

// sevDocument is a SEV as the API shows it.
type sevDocument struct {
	store.Sev
	SeverityName       string   `json:"severity_name"`
	SeverityDefinition string   `json:"severity_definition"`
	NextStates         []string `json:"next_states"`
	Subscribers        []string `json:"subscribers"`
	ReviewDueAt        *string  `json:"review_due_at"`
	ReviewOverdue      bool     `json:"review_overdue"`
}

func sevDoc(s *store.Store, r *http.Request, sv store.Sev) (sevDocument, error) {
	d := sevDocument{Sev: sv, SeverityName: sv.SeverityName(), SeverityDefinition: store.SeverityDefinition(sv.Severity),
		NextStates: store.SevNextStates(sv.State), ReviewOverdue: store.ReviewOverdue(sv, s.Now())}
	if d.NextStates == nil {
		d.NextStates = []string{}
	}
	if due := store.ReviewDue(sv); !due.IsZero() {
		t := due.UTC().Format(time.RFC3339)
		d.ReviewDueAt = &t
	}
	var err error
	d.Subscribers, err = s.SevSubscribers(r.Context(), sv.ID)
	return d, err
}

func apiListSevs(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, _, err := sevsPage(r, s)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, p)
	}
}

func writeSev(w http.ResponseWriter, r *http.Request, log *slog.Logger, s *store.Store, status int, sv store.Sev) {
	d, err := sevDoc(s, r, sv)
	if err != nil {
		web.Error(w, r, log, err)
		return
	}
	web.WriteJSON(w, status, d)
}

// sevAnswer writes a SEV as the API shows it (sevDoc).
func sevAnswer(log *slog.Logger, s *store.Store) func(http.ResponseWriter, *http.Request, int, store.Sev) {
	return func(w http.ResponseWriter, r *http.Request, status int, sv store.Sev) {
		writeSev(w, r, log, s, status, sv)
	}
}

// asJSON writes an answer as it is.
func asJSON[T any](w http.ResponseWriter, _ *http.Request, status int, v T) {
	web.WriteJSON(w, status, v)
}

func apiCreateSev(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in store.SevInput
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		var sv store.Sev
		err := s.InTx(r.Context(), func(tx *store.Tx) error {
			var err error
			sv, err = tx.CreateSev(r.Context(), web.Actor(r), in)
			return err
		})
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		writeSev(w, r, log, s, http.StatusCreated, sv)
	}
}

func apiShowSev(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return apiSevPart(log, s.Sev, sevAnswer(log, s))
}

func apiPatchSev(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return apiSevChange(log, s, http.StatusOK, (*store.Tx).UpdateSev, sevAnswer(log, s))
}

func apiSevTimeline(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := sevID(r)
		if err == nil {
			_, err = s.Sev(r.Context(), id)
		}
		var items []store.SevTimelineItem
		if err == nil {
			items, err = s.SevTimeline(r.Context(), id)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, page[store.SevTimelineItem]{Items: items})
	}
}

// sevNoteRequest is the body of POST /api/v1/sevs/{id}/timeline.
type sevNoteRequest struct {
	Text string     `json:"text" required:"true"`
	At   *time.Time `json:"at"`
}

func apiAddSevTimeline(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := sevID(r)
		var in sevNoteRequest
		if err == nil {
			err = web.DecodeJSON(w, r, &in)
		}
		var items []store.SevTimelineItem
		if err == nil {
			e := store.SevTimelineEntry{Text: in.Text}
			if in.At != nil {
				e.At = in.At.UTC()
			}
			err = s.InTx(r.Context(), func(tx *store.Tx) error {
				_, err := tx.AddSevTimeline(r.Context(), web.Actor(r), id, e)
				return err
			})
		}
		if err == nil {
			items, err = s.SevTimeline(r.Context(), id)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusCreated, page[store.SevTimelineItem]{Items: items})
	}
}

func apiBroadcastSev(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return apiSevChange(log, s, http.StatusCreated, (*store.Tx).BroadcastSev, asJSON)
}

// apiSevChange answers a change to a SEV from a JSON body, made in one
// transaction: the SEV's number from the path, the body decoded into In,
// the result written by answer.
func apiSevChange[In, Out any](log *slog.Logger, s *store.Store, status int,
	change func(*store.Tx, context.Context, store.Actor, int64, In) (Out, error),
	answer func(http.ResponseWriter, *http.Request, int, Out)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := sevID(r)
		var in In
		if err == nil {
			err = web.DecodeJSON(w, r, &in)
		}
		var out Out
		if err == nil {
			err = s.InTx(r.Context(), func(tx *store.Tx) error {
				var err error
				out, err = change(tx, r.Context(), web.Actor(r), id, in)
				return err
			})
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		answer(w, r, status, out)
	}
}

func apiSevSubscription(log *slog.Logger, s *store.Store, on bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := sevID(r)
		if err == nil {
			err = s.InTx(r.Context(), func(tx *store.Tx) error {
				return tx.SetSevSubscription(r.Context(), web.Actor(r), id, web.User(r).ID, on)
			})
		}
		var sv store.Sev
		if err == nil {
			sv, err = s.Sev(r.Context(), id)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		writeSev(w, r, log, s, http.StatusOK, sv)
	}
}

func apiSevReport(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return apiSevPart(log, s.SevReport, asJSON)
}

// apiSevPart answers the GET of a SEV or of one part of it (its report,
// its review), written by answer.
func apiSevPart[T any](log *slog.Logger, get func(context.Context, int64) (T, error),
	answer func(http.ResponseWriter, *http.Request, int, T)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := sevID(r)
		var v T
		if err == nil {
			v, err = get(r.Context(), id)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		answer(w, r, http.StatusOK, v)
	}
}

func apiPutSevReport(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return apiSevChange(log, s, http.StatusOK, (*store.Tx).PutSevReport, asJSON)
}

func apiSevReview(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return apiSevPart(log, s.SevReview, asJSON)
}

func apiPostSevReview(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := sevID(r)
		var in store.SevReviewInput
		if err == nil {
			err = web.DecodeJSON(w, r, &in)
		}
		var rev store.SevReview
		var sv store.Sev
		if err == nil {
			err = s.InTx(r.Context(), func(tx *store.Tx) error {
				var err error
				rev, sv, err = tx.SaveSevReview(r.Context(), web.Actor(r), id, in)
				return err
			})
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		d, err := sevDoc(s, r, sv)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, struct {
			Review store.SevReview `json:"review"`
			Sev    sevDocument     `json:"sev"`
		}{rev, d})
	}
}

func apiReviewQueue(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		items, err := s.ReviewQueue(r.Context())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, page[store.ReviewQueueItem]{Items: items})
	}
}
