package handlers

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

func loginPage(log *slog.Logger, oidc, dev bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		next := web.SafeNext(r.URL.Query().Get("next"))
		// reauth=1 asks a signed-in person to sign in again (a storm needs a recent sign-in).
		if web.User(r) != nil && r.URL.Query().Get("reauth") == "" {
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
		web.Render(w, r, log, views.LoginPage(views.LoginForm{Next: next, OIDC: oidc, DevLogin: dev}), nil)
	}
}

// devLogin signs in as whoever the form names. It exists only when the dev
// login is enabled, and every page then says so.
func devLogin(log *slog.Logger, s *store.Store, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		form := views.LoginForm{
			Next: web.SafeNext(r.PostForm.Get("next")), DevLogin: true,
			Email: strings.TrimSpace(r.PostForm.Get("email")), Name: r.PostForm.Get("name"), Roles: r.PostForm["roles"],
		}
		u, err := recordSignIn(r, s, form.Email, form.Name, form.Roles, map[string]any{"method": "dev"})
		var ve *store.ValidationError
		if errors.As(err, &ve) {
			form.Errors = ve.Fields
			web.RenderStatus(w, r, log, http.StatusUnprocessableEntity, views.LoginPage(form), nil)
			return
		}
		if err == nil {
			err = sessions.SignIn(w, r, u.ID)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		http.Redirect(w, r, form.Next, http.StatusSeeOther)
	}
}

// recordSignIn creates or updates the person who signed in, sets their roles
// (as the identity provider or the dev login says) and audits the sign-in.
func recordSignIn(r *http.Request, s *store.Store, email, name string, roles []string, detail map[string]any) (store.User, error) {
	ctx := r.Context()
	var u store.User
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if u, err = tx.UpsertUser(ctx, email, name, true); err != nil {
			return err
		}
		if err := tx.SetRoles(ctx, u.ID, roles); err != nil {
			return err
		}
		detail["roles"] = roles
		return tx.Audit(ctx, store.UserActor(u, r.RemoteAddr, web.RequestID(r)), "user.login", "user", u.Email, detail)
	})
	return u, err
}

const oidcChallengeKey = "oidc_challenge"

type pendingSignIn struct {
	web.Challenge
	Next string
}

func oidcStart(log *slog.Logger, o *web.OIDC, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := pendingSignIn{Challenge: web.NewChallenge(), Next: web.SafeNext(r.URL.Query().Get("next"))}
		url, err := o.AuthURL(r.Context(), p.Challenge)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		b, _ := json.Marshal(p)
		if err := sessions.Put(w, r, oidcChallengeKey, string(b)); err != nil {
			web.Error(w, r, log, err)
			return
		}
		http.Redirect(w, r, url, http.StatusFound)
	}
}

func oidcCallback(log *slog.Logger, s *store.Store, o *web.OIDC, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		raw, err := sessions.Take(w, r, oidcChallengeKey)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		var p pendingSignIn
		if raw == "" || json.Unmarshal([]byte(raw), &p) != nil {
			web.Error(w, r, log, web.BadRequest("sign_in_expired", "This sign-in was not started here or has already been used. Start again from the sign-in page."))
			return
		}
		if e := q.Get("error"); e != "" {
			msg := "The identity provider refused the sign-in (" + clipText(e, 64) + ")."
			if d := q.Get("error_description"); d != "" {
				msg += " " + clipText(d, 200)
			}
			web.Error(w, r, log, &web.RequestError{Status: http.StatusUnauthorized, Code: "sign_in_refused", Message: msg})
			return
		}
		if q.Get("state") == "" || q.Get("state") != p.State {
			web.Error(w, r, log, web.BadRequest("state_mismatch", "The sign-in response does not match the sign-in that was started. Start again from the sign-in page."))
			return
		}
		if q.Get("code") == "" {
			web.Error(w, r, log, web.BadRequest("missing_code", "The sign-in response has no authorization code."))
			return
		}
		id, err := o.Exchange(r.Context(), q.Get("code"), p.Challenge)
		if errors.Is(err, web.ErrSignIn) {
			log.Warn("Sign-in refused", "error", err, "request_id", web.RequestID(r))
			web.Error(w, r, log, &web.RequestError{Status: http.StatusUnauthorized, Code: "sign_in_refused", Message: "The sign-in could not be verified. Start again from the sign-in page."})
			return
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		u, err := recordSignIn(r, s, id.Email, id.Name, o.Roles(id), map[string]any{"method": "oidc", "subject": id.Subject})
		if err == nil {
			err = sessions.SignIn(w, r, u.ID)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		http.Redirect(w, r, p.Next, http.StatusSeeOther)
	}
}

func logout(log *slog.Logger, s *store.Store, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if u := web.User(r); u != nil {
			err := s.InTx(r.Context(), func(tx *store.Tx) error {
				return tx.Audit(r.Context(), web.Actor(r), "user.logout", "user", u.Email, nil)
			})
			if err != nil {
				web.Error(w, r, log, err)
				return
			}
		}
		if err := sessions.SignOut(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	}
}

func clipText(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
