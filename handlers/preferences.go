package handlers

import (
	"log/slog"
	"net/http"

	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

func setPreferences(r *http.Request, s *store.Store, offered store.Offered, p store.Preferences) (store.Preferences, error) {
	var out store.Preferences
	err := s.InTx(r.Context(), func(tx *store.Tx) error {
		var err error
		out, err = tx.SetPreferences(r.Context(), web.Actor(r), web.User(r).ID, p, offered)
		return err
	})
	return out, err
}

func postPreferences(log *slog.Logger, s *store.Store, offered store.Offered, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		want := store.Preferences{Inbox: true, Email: r.PostForm.Get("email") == "on", Chat: r.PostForm.Get("chat") == "on"}
		_, err := setPreferences(r, s, offered, want)
		if err == nil {
			sessions.Flash(w, r, "success", "Saved your notification channels.")
			web.Redirect(w, r, views.ProfileURL+"#"+views.ChannelsID)
			return
		}
		fields, message, status, ok := web.FormProblem(err)
		if !ok {
			web.Error(w, r, log, err)
			return
		}
		u := *web.User(r)
		v, verr := profileView(r.Context(), s, u)
		if verr != nil {
			web.Error(w, r, log, verr)
			return
		}
		if message == "" {
			message = web.FieldsText(fields)
		}
		v.Channels = views.ChannelsForm{Prefs: want, Offered: offered, Problem: message}
		web.RenderStatus(w, r, log, status, views.ProfilePage(v), views.ProfileChannels(v.Channels))
	}
}

func apiGetPreferences(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := s.Preferences(r.Context(), web.User(r).ID)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, p)
	}
}

// preferencesRequest is the body of PUT /me/preferences: the whole set.
type preferencesRequest struct {
	Inbox *bool `json:"inbox"`
	Email bool  `json:"email"`
	Chat  bool  `json:"chat"`
}

func apiPutPreferences(log *slog.Logger, s *store.Store, offered store.Offered) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in preferencesRequest
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		p := store.Preferences{Inbox: in.Inbox == nil || *in.Inbox, Email: in.Email, Chat: in.Chat}
		out, err := setPreferences(r, s, offered, p)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, out)
	}
}
