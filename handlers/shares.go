package handlers

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// shareableDevserver returns a devserver whose sharing u may change:
// strangers get 404, collaborators (who see it) 403.
func shareableDevserver(ctx context.Context, s *store.Store, u store.User, name string) (store.Devserver, error) {
	d, err := visibleDevserver(ctx, s, u, name)
	if err == nil && !store.CanManageDevserver(u, d) {
		err = web.ErrForbidden
	}
	return d, err
}

// share shares a devserver and enqueues the rewrite of its authorized_keys
// in the same transaction.
func share(ctx context.Context, s *store.Store, q Enqueuer, who store.Actor, u store.User, name, email string) (store.Devserver, store.Share, error) {
	d, err := shareableDevserver(ctx, s, u, name)
	if err != nil {
		return d, store.Share{}, err
	}
	var sh store.Share
	err = s.InTx(ctx, func(tx *store.Tx) error {
		if sh, err = tx.AddShare(ctx, who, d, email); err != nil {
			return err
		}
		return q.Enqueue(ctx, tx, jobs.SyncKeysArgs{DevserverID: d.ID})
	})
	return d, sh, err
}

// unshare stops sharing a devserver and takes the person's keys off it.
func unshare(ctx context.Context, s *store.Store, q Enqueuer, who store.Actor, u store.User, name, email string) (store.Devserver, store.Share, error) {
	d, err := shareableDevserver(ctx, s, u, name)
	if err != nil {
		return d, store.Share{}, err
	}
	var sh store.Share
	err = s.InTx(ctx, func(tx *store.Tx) error {
		if sh, err = tx.RemoveShare(ctx, who, d, email); err != nil {
			return err
		}
		return q.Enqueue(ctx, tx, jobs.SyncKeysArgs{DevserverID: d.ID})
	})
	if errors.Is(err, store.ErrNotFound) {
		err = &web.RequestError{Status: http.StatusNotFound, Code: "not_shared", Message: d.Name + " is not shared with " + clipText(store.NormalizeEmail(email), 64) + "."}
	}
	return d, sh, err
}

// emailParam is the {email} of the path, unescaped.
func emailParam(r *http.Request) string {
	e := chi.URLParam(r, "email")
	if u, err := url.PathUnescape(e); err == nil {
		return u
	}
	return e
}

// shareFailed shows the devserver page again with the sharing form's
// problem, with the status the API would answer.
func shareFailed(w http.ResponseWriter, r *http.Request, log *slog.Logger, s *store.Store, d store.Devserver, email string, err error) {
	fields, message, status, ok := web.FormProblem(err)
	if !ok {
		web.Error(w, r, log, err)
		return
	}
	form := views.SharingForm{Email: email, Errors: fields, Message: message}
	u := web.User(r)
	v, verr := devserverView(r.Context(), s, *u, d)
	if verr != nil {
		web.Error(w, r, log, verr)
		return
	}
	v.Sharing = form
	web.Chrome(r).Refresh = d.Transitional()
	web.RenderStatus(w, r, log, status, views.DevserverPage(v), views.DevserverSharing(v))
}

func shareDevserver(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		email := r.PostForm.Get("email")
		d, sh, err := share(r.Context(), s, q, web.Actor(r), *web.User(r), chi.URLParam(r, "name"), email)
		if err != nil {
			shareFailed(w, r, log, s, d, email, err)
			return
		}
		sessions.Flash(w, r, "success", "Shared "+d.Name+" with "+sh.Email+". Their SSH keys are being put on it.")
		web.Redirect(w, r, views.DevserverURL(d.Name))
	}
}

func unshareDevserver(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, sh, err := unshare(r.Context(), s, q, web.Actor(r), *web.User(r), chi.URLParam(r, "name"), emailParam(r))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		sessions.Flash(w, r, "success", "Stopped sharing "+d.Name+" with "+sh.Email+". Their SSH keys are being taken off it.")
		web.Redirect(w, r, views.DevserverURL(d.Name))
	}
}

// The API.

func apiListShares(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := visibleDevserver(r.Context(), s, *web.User(r), chi.URLParam(r, "name"))
		var ss []store.Share
		if err == nil {
			ss, err = s.Shares(r.Context(), d.ID)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		if ss == nil {
			ss = []store.Share{}
		}
		web.WriteJSON(w, http.StatusOK, page[store.Share]{Items: ss})
	}
}

type shareRequest struct {
	Email string `json:"email"`
}

func apiAddShare(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// Who may share is decided before the body is read, so a stranger
		// learns nothing from how their request is malformed.
		name := chi.URLParam(r, "name")
		if _, err := shareableDevserver(r.Context(), s, *web.User(r), name); err != nil {
			web.Error(w, r, log, err)
			return
		}
		var in shareRequest
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		d, sh, err := share(r.Context(), s, q, web.Actor(r), *web.User(r), name, in.Email)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		w.Header().Set("Location", "/api/v1/devservers/"+url.PathEscape(d.Name)+"/shares/"+url.PathEscape(sh.Email))
		web.WriteJSON(w, http.StatusCreated, sh)
	}
}

func apiRemoveShare(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _, err := unshare(r.Context(), s, q, web.Actor(r), *web.User(r), chi.URLParam(r, "name"), emailParam(r))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}
