package handlers

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// profileView loads everything the profile page shows.
func profileView(ctx context.Context, s *store.Store, u store.User) (views.ProfileView, error) {
	v := views.ProfileView{User: u}
	var err error
	if v.Keys, err = s.SSHKeys(ctx, u.ID); err != nil {
		return v, err
	}
	if v.Tokens, err = tokensView(ctx, s, u); err != nil {
		return v, err
	}
	if v.Home.Regions, err = s.Regions(ctx); err != nil {
		return v, err
	}
	v.Home.Current = u.HomeRegion
	if v.Channels.Prefs, err = s.Preferences(ctx, u.ID); err != nil {
		return v, err
	}
	v.Channels.Offered = views.ChromeFrom(ctx).Channels
	v.Oneoffs, err = s.Oneoffs(ctx, u.ID)
	return v, err
}

// syncKeysOf enqueues the rewrite of authorized_keys on every devserver that
// holds u's keys, in the transaction that changed them.
func syncKeysOf(ctx context.Context, tx *store.Tx, q Enqueuer, u store.User) error {
	ids, err := tx.DevserversReachedBy(ctx, u.ID)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := q.Enqueue(ctx, tx, jobs.SyncKeysArgs{DevserverID: id}); err != nil {
			return err
		}
	}
	return nil
}

func addKey(ctx context.Context, s *store.Store, q Enqueuer, who store.Actor, u store.User, name, publicKey string) (store.SSHKey, error) {
	var k store.SSHKey
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if k, err = tx.AddSSHKey(ctx, who, u, name, publicKey); err != nil {
			return err
		}
		return syncKeysOf(ctx, tx, q, u)
	})
	return k, err
}

// deleteKey removes one of u's keys; an ID that is not one of theirs is not found.
func deleteKey(ctx context.Context, s *store.Store, q Enqueuer, who store.Actor, u store.User, idText string) (store.SSHKey, error) {
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil || id <= 0 {
		return store.SSHKey{}, store.ErrNotFound
	}
	var k store.SSHKey
	err = s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if k, err = tx.DeleteSSHKey(ctx, who, u, id); err != nil {
			return err
		}
		return syncKeysOf(ctx, tx, q, u)
	})
	return k, err
}

func profilePage(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := profileView(r.Context(), s, *web.User(r))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.ProfilePage(v), views.ProfileKeys(v))
	}
}

func addKeyForm(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		u := web.User(r)
		form := views.KeyForm{Name: r.PostForm.Get("name"), PublicKey: r.PostForm.Get("public_key")}
		k, err := addKey(r.Context(), s, q, web.Actor(r), *u, form.Name, form.PublicKey)
		if err == nil {
			sessions.Flash(w, r, "success", "Added the key "+k.Name+" ("+k.Fingerprint+"). It is being put on your devservers.")
			web.Redirect(w, r, views.ProfileURL)
			return
		}
		fields, message, status, ok := web.FormProblem(err)
		if !ok {
			web.Error(w, r, log, err)
			return
		}
		form.Errors, form.Message = fields, message
		v, verr := profileView(r.Context(), s, *u)
		if verr != nil {
			web.Error(w, r, log, verr)
			return
		}
		v.KeyForm = form
		web.RenderStatus(w, r, log, status, views.ProfilePage(v), views.ProfileKeys(v))
	}
}

func deleteKeyForm(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		k, err := deleteKey(r.Context(), s, q, web.Actor(r), *web.User(r), chi.URLParam(r, "id"))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		sessions.Flash(w, r, "success", "Deleted the key "+k.Name+". It is being taken off your devservers.")
		web.Redirect(w, r, views.ProfileURL)
	}
}

// The API.

func apiListKeys(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ks, err := s.SSHKeys(r.Context(), web.User(r).ID)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		if ks == nil {
			ks = []store.SSHKey{}
		}
		web.WriteJSON(w, http.StatusOK, page[store.SSHKey]{Items: ks})
	}
}

type keyRequest struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
}

func apiAddKey(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in keyRequest
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		k, err := addKey(r.Context(), s, q, web.Actor(r), *web.User(r), in.Name, in.PublicKey)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusCreated, k)
	}
}

func apiDeleteKey(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, err := deleteKey(r.Context(), s, q, web.Actor(r), *web.User(r), chi.URLParam(r, "id")); err != nil {
			web.Error(w, r, log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}
