package handlers

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// Storms (a region down), dark storms (devservers wiped) and recoveries, for
// admins; and for owners, the replacement of a devserver a storm touched.
// A storm and a dark storm need the region code typed and, from a browser,
// a sign-in within the last 15 minutes.

// reauthError is the refusal of a storm from a sign-in that is too old.
type reauthError struct{ link string }

func (e *reauthError) Error() string {
	return "A storm needs a sign-in within the last 15 minutes: sign in again at " + e.link + ", then try again."
}

// reauthLink is the sign-in that forces a new sign-in and comes back to next.
func reauthLink(next string) string {
	return views.LoginURL(next) + sep(views.LoginURL(next)) + "reauth=1"
}

func sep(u string) string {
	if strings.Contains(u, "?") {
		return "&"
	}
	return "?"
}

// recentSignIn refuses a browser session whose sign-in is older than the
// reauthentication window. Tokens are automation: their typed confirm is
// their check.
func recentSignIn(r *http.Request, s *store.Store, next string) error {
	p := web.PrincipalOf(r)
	if p == nil || p.Via != "session" {
		return nil
	}
	if p.SignedInAt.IsZero() || s.Now().Sub(p.SignedInAt) > store.ReauthWindow {
		return &reauthError{link: reauthLink(next)}
	}
	return nil
}

// checkConfirm refuses a storm whose typed confirmation is not the region code.
func checkConfirm(code, confirm string) error {
	if strings.TrimSpace(confirm) != code {
		return &store.ValidationError{Fields: map[string]string{"confirm": "must be the region code, " + code + ", typed to confirm"}}
	}
	return nil
}

// stormError answers an error of a storm request: the reauthentication
// refusal as 403 reauth_required with the sign-in link, anything else as usual.
func stormError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var re *reauthError
	if errors.As(err, &re) {
		if web.WantsJSON(r) {
			web.WriteJSON(w, http.StatusForbidden, map[string]any{"error": map[string]any{
				"code": "reauth_required", "message": re.Error(), "sign_in": re.link}})
			return
		}
		web.Error(w, r, log, &web.RequestError{Status: http.StatusForbidden, Code: "reauth_required", Message: re.Error()})
		return
	}
	web.Error(w, r, log, err)
}

// startStorm checks a storm request and starts it.
func startStorm(ctx context.Context, r *http.Request, s *store.Store, q Enqueuer, in store.StormInput, confirm string) (store.Storm, error) {
	if _, err := s.Region(ctx, in.Region); err != nil {
		return store.Storm{}, err
	}
	if err := checkConfirm(in.Region, confirm); err != nil {
		return store.Storm{}, err
	}
	if err := recentSignIn(r, s, views.AdminStormURL(in.Region)); err != nil {
		return store.Storm{}, err
	}
	return jobs.StartStorm(ctx, s, q, web.Actor(r), in)
}

// stormRequest is the body of POST /api/v1/regions/{code}/storm and dark-storm.
type stormRequest struct {
	Reason   string `json:"reason"`
	Confirm  string `json:"confirm" required:"true" description:"The region's code, to confirm."`
	Count    int    `json:"count" description:"Dark storm: how many devservers to wipe."`
	Exercise bool   `json:"exercise"`
}

func apiStorm(log *slog.Logger, s *store.Store, q Enqueuer, kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body stormRequest
		if err := web.DecodeJSON(w, r, &body); err != nil {
			web.Error(w, r, log, err)
			return
		}
		in := store.StormInput{Region: chi.URLParam(r, "code"), Kind: kind, Reason: body.Reason, Count: body.Count, Exercise: body.Exercise}
		st, err := startStorm(r.Context(), r, s, q, in, body.Confirm)
		if err != nil {
			stormError(w, r, log, err)
			return
		}
		if st.RunID != nil {
			w.Header().Set("Location", apiRunURL(*st.RunID))
		}
		web.WriteJSON(w, http.StatusAccepted, st)
	}
}

// recoverRequest is the body of POST /api/v1/regions/{code}/recover.
type recoverRequest struct {
	Replacements string `json:"replacements"`
}

func apiRecover(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body recoverRequest
		if err := web.DecodeJSON(w, r, &body); err != nil {
			web.Error(w, r, log, err)
			return
		}
		rec, err := jobs.RecoverStorm(r.Context(), s, q, web.Actor(r), chi.URLParam(r, "code"), body.Replacements)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, rec)
	}
}

func adminStormsPage(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		regions, err := s.Regions(r.Context())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		storms, err := s.Storms(r.Context(), "")
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		open := map[string]store.Storm{}
		for _, st := range storms {
			if st.Open() {
				open[st.Region] = st
			}
		}
		web.Render(w, r, log, views.AdminStormsPage(regions, open), nil)
	}
}

// adminStormView loads a region's storm page.
func adminStormView(ctx context.Context, s *store.Store, code string) (views.AdminStormView, error) {
	v := views.AdminStormView{Storm: views.StormForm{Kind: store.StormKind}, Dark: views.StormForm{Kind: store.DarkStormKind, Count: "1"},
		Recover: views.StormForm{Kind: "recover"}}
	var err error
	if v.Region, err = s.Region(ctx, code); err != nil {
		return v, err
	}
	if v.Storms, err = s.Storms(ctx, code); err != nil {
		return v, err
	}
	for i := range v.Storms {
		if v.Storms[i].Open() {
			v.Open = &v.Storms[i]
			break
		}
	}
	if len(v.Storms) > 0 {
		if v.Affected, err = s.StormDevservers(ctx, v.Storms[0].ID); err != nil {
			return v, err
		}
	}
	return v, nil
}

func adminStormPage(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := adminStormView(r.Context(), s, chi.URLParam(r, "code"))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.AdminStormPage(v), nil)
	}
}

// stormForm starts a storm or a dark storm from the region's page; a
// problem shows the page again with the form as sent and nothing changed.
func stormForm(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore, kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		code := chi.URLParam(r, "code")
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		f := views.StormForm{Kind: kind, Reason: r.PostForm.Get("reason"), Confirm: r.PostForm.Get("confirm"), Count: r.PostForm.Get("count"),
			Exercise: r.PostForm.Get("exercise") != ""}
		in := store.StormInput{Region: code, Kind: kind, Reason: f.Reason, Exercise: f.Exercise}
		var err error
		if kind == store.DarkStormKind {
			if in.Count, err = strconv.Atoi(strings.TrimSpace(f.Count)); err != nil {
				err = &store.ValidationError{Fields: map[string]string{"count": "must be a whole number"}}
			}
		}
		var st store.Storm
		if err == nil {
			st, err = startStorm(r.Context(), r, s, q, in, f.Confirm)
		}
		if err == nil {
			sessions.Flash(w, r, "success", "Started "+st.KindText()+" "+strconv.FormatInt(st.ID, 10)+" in "+code+" (SEV-"+strconv.FormatInt(*st.SevID, 10)+").")
			web.Redirect(w, r, views.AdminStormURL(code))
			return
		}
		status := http.StatusForbidden
		var re *reauthError
		if errors.As(err, &re) {
			f.Reauth = re.link
		} else {
			fields, message, st, ok := web.FormProblem(err)
			if !ok {
				web.Error(w, r, log, err)
				return
			}
			status, f.Errors = st, fields
			if message != "" {
				f.Errors = map[string]string{"message": message}
			}
		}
		v, verr := adminStormView(r.Context(), s, code)
		if verr != nil {
			web.Error(w, r, log, verr)
			return
		}
		if kind == store.DarkStormKind {
			v.Dark = f
		} else {
			v.Storm = f
		}
		web.RenderStatus(w, r, log, status, views.AdminStormPage(v), nil)
	}
}

func recoverForm(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		code := chi.URLParam(r, "code")
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		rec, err := jobs.RecoverStorm(r.Context(), s, q, web.Actor(r), code, r.PostForm.Get("replacements"))
		if err == nil {
			sessions.Flash(w, r, "success", "Recovered "+code+": "+strconv.Itoa(rec.Back)+" devservers back, "+strconv.Itoa(rec.Kept)+" replacements kept, "+
				strconv.Itoa(rec.Released)+" released.")
			web.Redirect(w, r, views.AdminStormURL(code))
			return
		}
		fields, message, status, ok := web.FormProblem(err)
		if !ok {
			web.Error(w, r, log, err)
			return
		}
		v, verr := adminStormView(r.Context(), s, code)
		if verr != nil {
			web.Error(w, r, log, verr)
			return
		}
		v.Recover.Errors = fields
		if message != "" {
			v.Recover.Errors = map[string]string{"message": message}
		}
		web.RenderStatus(w, r, log, status, views.AdminStormPage(v), nil)
	}
}

// stormEntry returns the storm entry of a devserver the user may see; acting
// on it (own is true) is for its owner alone.
func stormEntry(ctx context.Context, s *store.Store, u store.User, name string, own bool) (store.StormDevserver, store.Storm, error) {
	d, err := visibleDevserver(ctx, s, u, name)
	if err != nil {
		return store.StormDevserver{}, store.Storm{}, err
	}
	e, err := s.StormDevserverOf(ctx, d.ID)
	if err != nil {
		return e, store.Storm{}, err
	}
	if own && !store.CanReplaceAfterStorm(u, e) {
		return e, store.Storm{}, web.ErrForbidden
	}
	st, err := s.Storm(ctx, e.StormID)
	return e, st, err
}

func ownerStormPage(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		e, st, err := stormEntry(r.Context(), s, *web.User(r), chi.URLParam(r, "name"), false)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.OwnerStormPage(views.OwnerStormView{Entry: e, RegionDown: st.Open()}), nil)
	}
}

// replaceFromBackup asks for the replacement of the named devserver.
func replaceFromBackup(ctx context.Context, r *http.Request, s *store.Store, q Enqueuer) (store.StormDevserver, store.Devserver, error) {
	u := *web.User(r)
	e, _, err := stormEntry(ctx, s, u, chi.URLParam(r, "name"), true)
	if err != nil {
		return e, store.Devserver{}, err
	}
	return jobs.ReplaceFromBackup(ctx, s, q, web.Actor(r), u, e.DevserverID)
}

func setStormChoice(ctx context.Context, r *http.Request, s *store.Store, choice string) (store.StormDevserver, error) {
	u := *web.User(r)
	e, _, err := stormEntry(ctx, s, u, chi.URLParam(r, "name"), true)
	if err != nil {
		return e, err
	}
	err = s.InTx(ctx, func(tx *store.Tx) error {
		e, err = tx.SetStormChoice(ctx, web.Actor(r), u, e.DevserverID, choice)
		return err
	})
	return e, err
}

func stormReplaceForm(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := chi.URLParam(r, "name")
		e, d, err := replaceFromBackup(r.Context(), r, s, q)
		if err == nil {
			sessions.Flash(w, r, "success", "Replacing "+name+" by "+d.Name+" in "+d.Region+", restored from backup "+strconv.FormatInt(*e.BackupID, 10)+".")
			web.Redirect(w, r, views.StormDevserverURL(name))
			return
		}
		ownerStormProblem(w, r, log, s, err)
	}
}

func stormChoiceForm(log *slog.Logger, s *store.Store, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		e, err := setStormChoice(r.Context(), r, s, r.PostForm.Get("choice"))
		if err == nil {
			sessions.Flash(w, r, "success", "Saved: "+e.Choice+" the replacement "+e.Replacement+" when "+e.Region+" recovers.")
			web.Redirect(w, r, views.StormDevserverURL(e.Devserver))
			return
		}
		ownerStormProblem(w, r, log, s, err)
	}
}

// ownerStormProblem shows the owner's page again with what went wrong.
func ownerStormProblem(w http.ResponseWriter, r *http.Request, log *slog.Logger, s *store.Store, err error) {
	fields, message, status, ok := web.FormProblem(err)
	if !ok {
		web.Error(w, r, log, err)
		return
	}
	if message == "" {
		message = web.FieldsText(fields)
	}
	e, st, lerr := stormEntry(r.Context(), s, *web.User(r), chi.URLParam(r, "name"), false)
	if lerr != nil {
		web.Error(w, r, log, lerr)
		return
	}
	web.RenderStatus(w, r, log, status, views.OwnerStormPage(views.OwnerStormView{Entry: e, RegionDown: st.Open(), Error: message}), nil)
}

// stormReplaceRequest is the body of POST /api/v1/devservers/{name}/storm/replace: {}.
type stormReplaceRequest struct{}

func apiStormReplace(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body stormReplaceRequest
		if err := web.DecodeJSON(w, r, &body); err != nil {
			web.Error(w, r, log, err)
			return
		}
		e, d, err := replaceFromBackup(r.Context(), r, s, q)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusAccepted, map[string]any{"storm_devserver": e, "replacement": d})
	}
}

// stormChoiceRequest is the body of POST /api/v1/devservers/{name}/storm/choice.
type stormChoiceRequest struct {
	Choice string `json:"choice" required:"true"`
}

func apiStormChoice(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body stormChoiceRequest
		if err := web.DecodeJSON(w, r, &body); err != nil {
			web.Error(w, r, log, err)
			return
		}
		e, err := setStormChoice(r.Context(), r, s, body.Choice)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, e)
	}
}
