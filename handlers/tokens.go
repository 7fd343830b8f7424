package handlers

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// Personal access tokens: the profile's section and /api/v1/me/tokens.

// tokensShown bounds the tokens the profile lists (live ones are at most
// store.MaxTokens; the rest have expired).
const tokensShown = 200

// tokensView loads the profile's tokens section.
func tokensView(ctx context.Context, s *store.Store, u store.User) (views.TokensView, error) {
	ts, err := s.Tokens(ctx, u.ID, 0, tokensShown)
	return views.TokensView{Tokens: ts, Now: s.Now()}, err
}

func createToken(ctx context.Context, s *store.Store, who store.Actor, u store.User, name, scope string, expiresAt *time.Time) (store.Token, string, error) {
	var t store.Token
	var secret string
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		t, secret, err = tx.CreateUserToken(ctx, who, u, name, scope, expiresAt)
		return err
	})
	return t, secret, err
}

// revokeToken revokes one of u's tokens; an ID that is not one of their live
// tokens is not found.
func revokeToken(ctx context.Context, s *store.Store, who store.Actor, u store.User, idText string) (store.Token, error) {
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil || id <= 0 {
		return store.Token{}, store.ErrNotFound
	}
	var t store.Token
	err = s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		t, err = tx.RevokeToken(ctx, who, u, id)
		return err
	})
	return t, err
}

// portalURL is the portal's address as the request reached it, for the
// usage examples shown with a new token.
func portalURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// createTokenForm creates a token from the profile and answers with the
// profile page itself (not a redirect), which shows the secret once: it is
// kept nowhere, not even in the session.
func createTokenForm(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		u := web.User(r)
		form := views.TokenForm{Name: r.PostForm.Get("name"), Scope: r.PostForm.Get("scope"), Days: r.PostForm.Get("expires_in_days")}
		var t store.Token
		var secret string
		days, err := strconv.Atoi(form.Days)
		if err != nil || !slices.Contains(views.TokenLifetimes, days) {
			err = &store.ValidationError{Fields: map[string]string{"expires_in_days": "must be one of 7, 30, 90 or 365 days"}}
		} else {
			exp := s.Now().Add(time.Duration(days) * 24 * time.Hour)
			t, secret, err = createToken(r.Context(), s, web.Actor(r), *u, form.Name, form.Scope, &exp)
		}
		status := http.StatusOK
		if err != nil {
			fields, message, st, ok := web.FormProblem(err)
			if !ok {
				web.Error(w, r, log, err)
				return
			}
			if message != "" {
				fields = map[string]string{"name": message}
			}
			if p, ok := fields["expires_at"]; ok {
				fields["expires_in_days"] = p
			}
			form.Errors, status = fields, st
		}
		v, verr := profileView(r.Context(), s, *u)
		if verr != nil {
			web.Error(w, r, log, verr)
			return
		}
		if err == nil {
			v.Tokens.Created = &views.CreatedToken{Token: t, Secret: secret, Portal: portalURL(r)}
		} else {
			v.Tokens.Form = form
		}
		web.RenderStatus(w, r, log, status, views.ProfilePage(v), views.ProfileTokens(v.Tokens))
	}
}

func revokeTokenForm(log *slog.Logger, s *store.Store, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t, err := revokeToken(r.Context(), s, web.Actor(r), *web.User(r), chi.URLParam(r, "id"))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		sessions.Flash(w, r, "success", "Revoked the token "+t.Name+". Anything that uses it is refused from now on.")
		web.Redirect(w, r, views.ProfileURL+"#"+views.TokensID)
	}
}

// The API.

func apiListTokens(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		limit, after, err := pagination(r)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		ts, err := s.Tokens(r.Context(), web.User(r).ID, after, limit+1)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, pageOf(ts, limit, func(t store.Token) int64 { return t.ID }))
	}
}

type tokenRequest struct {
	Name  string `json:"name"`
	Scope string `json:"scope"`
	// ExpiresAt is read as text, so a malformed time is a field problem
	// rather than a malformed body.
	ExpiresAt *string `json:"expires_at"`
}

// createdToken is the answer to a token's creation: the only time its secret is shown.
type createdToken struct {
	Token  store.Token `json:"token"`
	Secret string      `json:"secret"`
}

func apiCreateToken(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in tokenRequest
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		exp := s.Now().Add(store.DefaultTokenLifetime)
		if in.ExpiresAt != nil {
			t, err := time.Parse(time.RFC3339, *in.ExpiresAt)
			if err != nil {
				web.Error(w, r, log, &store.ValidationError{Fields: map[string]string{"expires_at": "must be an RFC 3339 time such as 2030-01-02T15:04:05Z"}})
				return
			}
			exp = t.UTC()
		}
		t, secret, err := createToken(r.Context(), s, web.Actor(r), *web.User(r), in.Name, in.Scope, &exp)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.AnswerHoldsSecret(r)
		web.WriteJSON(w, http.StatusCreated, createdToken{Token: t, Secret: secret})
	}
}

// apiRevokeCurrentToken revokes the token the request is made with: what
// "devport logout" does.
func apiRevokeCurrentToken(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := web.PrincipalOf(r)
		if p == nil || p.Via != "token" {
			web.Error(w, r, log, store.Conflict("not_a_token", "This request is signed in with a session, not a token: there is no current token to revoke."))
			return
		}
		if _, err := revokeToken(r.Context(), s, web.Actor(r), *web.User(r), strconv.FormatInt(p.TokenID, 10)); err != nil {
			web.Error(w, r, log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func apiRevokeToken(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, err := revokeToken(r.Context(), s, web.Actor(r), *web.User(r), chi.URLParam(r, "id")); err != nil {
			web.Error(w, r, log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}
