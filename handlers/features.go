package handlers

import (
	"context"
	"errors"
	"fmt"
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

// setUp asks for what a new devserver gets on top of its flavour: the
// features named at reservation and the owner's one-offs. Their jobs wait
// until the devserver is ready.
func setUp(ctx context.Context, s *store.Store, tx *store.Tx, q Enqueuer, who store.Actor, d store.Devserver, features []string) error {
	if err := addFeatures(ctx, tx, q, who, d, features); err != nil {
		return err
	}
	o, err := s.Oneoffs(ctx, d.OwnerID)
	if err != nil || o.Empty() {
		return err
	}
	if err := tx.RequestOneoffs(ctx, who, d); err != nil {
		return err
	}
	return q.Enqueue(ctx, tx, jobs.OneoffsArgs{DevserverID: d.ID})
}

func addFeatures(ctx context.Context, tx *store.Tx, q Enqueuer, who store.Actor, d store.Devserver, features []string) error {
	queued, err := tx.RequestFeatures(ctx, who, d, features)
	if err != nil {
		return err
	}
	for _, f := range queued {
		if err := q.Enqueue(ctx, tx, jobs.FeatureArgs{DevserverID: d.ID, Feature: f}); err != nil {
			return err
		}
	}
	return nil
}

// managedDevserver returns a devserver the user may change: strangers get
// 404, people who may only look get 403.
func managedDevserver(ctx context.Context, s *store.Store, u store.User, name string) (store.Devserver, error) {
	return allowedDevserver(ctx, s, u, name, store.CanManageDevserver)
}

// changeFeature adds (feature != "" and add) or removes a feature, with its job.
func changeFeature(ctx context.Context, s *store.Store, q Enqueuer, who store.Actor, u store.User, name, feature string, add bool) (store.Devserver, error) {
	d, err := managedDevserver(ctx, s, u, name)
	if err != nil {
		return d, err
	}
	switch d.State {
	case store.StateReleasing, store.StateReleased, store.StateFailed, store.StateLost:
		return d, store.Conflict("invalid_state", "Devserver "+d.Name+" is "+d.State+"; its features cannot change.")
	}
	err = s.InTx(ctx, func(tx *store.Tx) error {
		if add {
			return addFeatures(ctx, tx, q, who, d, []string{feature})
		}
		if err := tx.RequestFeatureRemoval(ctx, who, d, feature); err != nil {
			return err
		}
		return q.Enqueue(ctx, tx, jobs.FeatureArgs{DevserverID: d.ID, Feature: feature})
	})
	return d, err
}

// reapplyOneoffs applies the owner's current one-offs to a devserver again.
func reapplyOneoffs(ctx context.Context, s *store.Store, q Enqueuer, who store.Actor, u store.User, name string) (store.Devserver, error) {
	d, err := managedDevserver(ctx, s, u, name)
	if err != nil {
		return d, err
	}
	if d.State != store.StateReady && d.State != store.StateProvisioning {
		return d, store.Conflict("invalid_state", "Devserver "+d.Name+" is "+d.State+"; one-offs are applied to ready devservers.")
	}
	o, err := s.Oneoffs(ctx, d.OwnerID)
	if err != nil {
		return d, err
	}
	if o.Empty() {
		return d, store.Conflict("no_oneoffs", "The owner has no one-offs to apply. Add dotfiles, a setup script or environment variables in the profile first.")
	}
	err = s.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.RequestOneoffs(ctx, who, d); err != nil {
			return err
		}
		return q.Enqueue(ctx, tx, jobs.OneoffsArgs{DevserverID: d.ID})
	})
	return d, err
}

func featuresSection(ctx context.Context, s *store.Store, u store.User, d store.Devserver) (views.DevserverView, error) {
	v := views.DevserverView{Devserver: d, CanManage: store.CanManageDevserver(u, d)}
	var err error
	if v.Features, err = s.DevserverFeatures(ctx, d.ID); err != nil {
		return v, err
	}
	if v.CanManage && !d.Pooled() {
		o, err := s.Oneoffs(ctx, d.OwnerID)
		if err != nil {
			return v, err
		}
		v.OwnerHasOneoffs = !o.Empty()
	}
	v.Catalogue, err = s.Features(ctx)
	return v, err
}

// showFeatures is the features section alone, which polls itself while
// installs are in flight.
func showFeatures(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := web.User(r)
		d, err := visibleDevserver(r.Context(), s, *u, chi.URLParam(r, "name"))
		if err == nil {
			var v views.DevserverView
			if v, err = featuresSection(r.Context(), s, *u, d); err == nil {
				web.Render(w, r, log, views.DevserverFeatures(v), views.DevserverFeatures(v))
				return
			}
		}
		web.Error(w, r, log, err)
	}
}

// afterChange answers a form on the devserver page: a flash and back to the
// page, or for a conflict the reason as a flash.
func afterChange(w http.ResponseWriter, r *http.Request, log *slog.Logger, sessions *web.SessionStore, name, success string, err error) {
	switch {
	case err == nil:
		sessions.Flash(w, r, "success", success)
	case !flashProblem(w, r, sessions, err, "Not done"):
		web.Error(w, r, log, err)
		return
	}
	web.Redirect(w, r, views.DevserverURL(name))
}

// flashProblem puts what is wrong with a form post in a flash for the next
// page, and reports whether err was the user's to fix.
func flashProblem(w http.ResponseWriter, r *http.Request, sessions *web.SessionStore, err error, prefix string) bool {
	fields, message, _, ok := web.FormProblem(err)
	if !ok {
		return false
	}
	if message == "" {
		message = prefix + ": " + web.FieldsText(fields) + "."
	}
	sessions.Flash(w, r, "error", message)
	return true
}

func addFeature(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		name, feature := chi.URLParam(r, "name"), r.PostForm.Get("feature")
		_, err := changeFeature(r.Context(), s, q, web.Actor(r), *web.User(r), name, feature, true)
		afterChange(w, r, log, sessions, name, "Installing "+feature+".", err)
	}
}

func removeFeature(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name, feature := chi.URLParam(r, "name"), chi.URLParam(r, "feature")
		_, err := changeFeature(r.Context(), s, q, web.Actor(r), *web.User(r), name, feature, false)
		afterChange(w, r, log, sessions, name, "Removing "+feature+".", err)
	}
}

func applyOneoffs(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := chi.URLParam(r, "name")
		_, err := reapplyOneoffs(r.Context(), s, q, web.Actor(r), *web.User(r), name)
		afterChange(w, r, log, sessions, name, "Applying your one-offs to "+name+".", err)
	}
}

func apiDevserverFeatures(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := visibleDevserver(r.Context(), s, *web.User(r), chi.URLParam(r, "name"))
		var fs []store.DevserverFeature
		if err == nil {
			fs, err = s.DevserverFeatures(r.Context(), d.ID)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		if fs == nil {
			fs = []store.DevserverFeature{}
		}
		web.WriteJSON(w, http.StatusOK, page[store.DevserverFeature]{Items: fs})
	}
}

// featureRequest is the body of POST /api/v1/devservers/{name}/features.
type featureRequest struct {
	Feature string `json:"feature" required:"true"`
}

func apiAddFeature(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in featureRequest
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		apiFeatureChange(w, r, log, s, q, in.Feature, true)
	}
}

func apiRemoveFeature(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		apiFeatureChange(w, r, log, s, q, chi.URLParam(r, "feature"), false)
	}
}

func apiFeatureChange(w http.ResponseWriter, r *http.Request, log *slog.Logger, s *store.Store, q Enqueuer, feature string, add bool) {
	d, err := changeFeature(r.Context(), s, q, web.Actor(r), *web.User(r), chi.URLParam(r, "name"), feature, add)
	var f store.DevserverFeature
	if err == nil {
		f, err = s.DevserverFeature(r.Context(), d.ID, feature)
	}
	if err != nil {
		web.Error(w, r, log, err)
		return
	}
	web.WriteJSON(w, http.StatusAccepted, f)
}

func apiApplyOneoffs(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := reapplyOneoffs(r.Context(), s, q, web.Actor(r), *web.User(r), chi.URLParam(r, "name"))
		if err == nil {
			d, err = s.DevserverByID(r.Context(), d.ID)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusAccepted, d)
	}
}

// One-offs in the profile.

func apiGetOneoffs(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		o, err := s.Oneoffs(r.Context(), web.User(r).ID)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		if o.Dotfiles == nil {
			o.Dotfiles = []store.Dotfile{}
		}
		web.WriteJSON(w, http.StatusOK, o)
	}
}

func apiPutOneoffs(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in store.Oneoffs
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		u := web.User(r)
		err := s.InTx(r.Context(), func(tx *store.Tx) error { return tx.SaveOneoffs(r.Context(), web.Actor(r), u.ID, in) })
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		apiGetOneoffs(log, s)(w, r)
	}
}

func oneoffsPage(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		o, err := s.Oneoffs(r.Context(), web.User(r).ID)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.OneoffsPage(views.OneoffsFormFrom(o, nil)), nil)
	}
}

func saveOneoffs(log *slog.Logger, s *store.Store, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		form := views.OneoffsForm{
			Paths: r.PostForm["dotfile_path"], Contents: r.PostForm["dotfile_content"],
			SetupScript: r.PostForm.Get("setup_script"), Env: r.PostForm.Get("env"),
		}
		o, problems := oneoffsFromForm(form)
		var ve *store.ValidationError
		if errors.As(o.Validate(), &ve) {
			for field, problem := range ve.Fields {
				problems.Add(field, problem)
			}
		}
		err := problems.Err()
		if err == nil {
			err = s.InTx(r.Context(), func(tx *store.Tx) error { return tx.SaveOneoffs(r.Context(), web.Actor(r), web.User(r).ID, o) })
		}
		if errors.As(err, &ve) {
			form.Errors = ve.Fields
			web.RenderStatus(w, r, log, http.StatusUnprocessableEntity, views.OneoffsPage(form), nil)
			return
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		sessions.Flash(w, r, "success", "Saved your one-offs. New devservers get them; apply them to an existing one from its page.")
		web.Redirect(w, r, views.OneoffsURL)
	}
}

// The catalogue and rolling updates (admins).

func adminFeatures(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		catalogue, err := s.Features(r.Context())
		var rollouts []store.FeatureRollout
		if err == nil {
			rollouts, err = s.Rollouts(r.Context(), 20)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Chrome(r).Refresh = store.AnyRolloutRunning(rollouts)
		web.Render(w, r, log, views.AdminFeaturesPage(catalogue, rollouts, nil, ""), views.Rollouts(rollouts))
	}
}

// bumpFeature sets a new catalogue version and starts its rolling update.
func bumpFeature(ctx context.Context, s *store.Store, q Enqueuer, who store.Actor, feature, version string, batch int) (store.FeatureRollout, error) {
	var ro store.FeatureRollout
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if ro, err = tx.BumpFeature(ctx, who, feature, version, batch); err != nil {
			return err
		}
		return q.Enqueue(ctx, tx, jobs.RolloutArgs{RolloutID: ro.ID})
	})
	return ro, err
}

func adminBumpFeature(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		feature := chi.URLParam(r, "feature")
		batch, convErr := strconv.Atoi(strings.TrimSpace(r.PostForm.Get("batch_size")))
		if convErr != nil {
			batch = -1
		}
		_, err := bumpFeature(r.Context(), s, q, web.Actor(r), feature, strings.TrimSpace(r.PostForm.Get("version")), batch)
		if fields, msg, status, ok := web.FormProblem(err); ok {
			catalogue, ferr := s.Features(r.Context())
			rollouts, rerr := s.Rollouts(r.Context(), 20)
			if ferr != nil || rerr != nil {
				web.Error(w, r, log, errors.Join(ferr, rerr))
				return
			}
			web.RenderStatus(w, r, log, status, views.AdminFeaturesPage(catalogue, rollouts, map[string]map[string]string{feature: fields}, msg), nil)
			return
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		sessions.Flash(w, r, "success", "Rolling "+feature+" out to its devservers.")
		web.Redirect(w, r, views.AdminFeaturesURL)
	}
}

// bumpFeatureRequest is the body of PUT /api/v1/features/{feature}.
type bumpFeatureRequest struct {
	Version   string `json:"version" required:"true"`
	BatchSize *int   `json:"batch_size"`
}

func apiBumpFeature(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in bumpFeatureRequest
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		batch := 10
		if in.BatchSize != nil {
			batch = *in.BatchSize
		}
		ro, err := bumpFeature(r.Context(), s, q, web.Actor(r), chi.URLParam(r, "feature"), in.Version, batch)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusAccepted, ro)
	}
}

// oneoffsFromForm reads the one-offs editor: rows with an empty path and content are dropped;
// env lines are NAME=value, blank lines and # comments skipped.
func oneoffsFromForm(f views.OneoffsForm) (store.Oneoffs, store.Problems) {
	p := store.Problems{}
	o := store.Oneoffs{SetupScript: f.SetupScript, Env: map[string]string{}}
	for i, path := range f.Paths {
		content := ""
		if i < len(f.Contents) {
			content = f.Contents[i]
		}
		if strings.TrimSpace(path) == "" && strings.TrimSpace(content) == "" {
			continue
		}
		o.Dotfiles = append(o.Dotfiles, store.Dotfile{Path: path, Content: strings.ReplaceAll(content, "\r\n", "\n")})
	}
	for n, line := range strings.Split(strings.ReplaceAll(f.Env, "\r\n", "\n"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			p.Add("env", fmt.Sprintf("line %d is not NAME=value", n+1))
			continue
		}
		o.Env[strings.TrimSpace(strings.TrimPrefix(k, "export "))] = v
	}
	o.SetupScript = strings.ReplaceAll(o.SetupScript, "\r\n", "\n")
	return o, p
}
