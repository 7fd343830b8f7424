package web

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
)

// Auth finds who makes each request: a bearer token for the API, or the
// session cookie.
type Auth struct {
	Store    *store.Store
	Sessions *SessionStore
	Log      *slog.Logger
	// DevLogin and Fleet are shown in every page's frame.
	DevLogin bool
	Fleet    string
	// Channels are the notification channels this portal sends over.
	Channels store.Offered
}

// Middleware resolves the principal and prepares the page frame. It never
// refuses a request on its own: RequireUser does.
func (a *Auth) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), sessionStoreKey{}, a.Sessions)
		ctx = context.WithValue(ctx, sessionExpiredKey, &expiredFlag{})
		chrome := &views.Chrome{DevLogin: a.DevLogin, Fleet: a.Fleet, Channels: a.Channels}
		ctx = views.WithChrome(ctx, chrome)
		r = r.WithContext(ctx)

		p, err := a.principal(r)
		if err != nil {
			Error(w, r, a.Log, err)
			return
		}
		if p != nil {
			chrome.User = &p.User
			uid, ctx := p.User.ID, r.Context()
			chrome.Unread = func() int {
				n, err := a.Store.UnreadNotifications(ctx, uid)
				if err != nil {
					a.Log.Warn("Could not count unread notifications", "error", err)
				}
				return n
			}
			chrome.OpenTasks = func() int {
				n, err := a.Store.OpenTasks(ctx, uid)
				if err != nil {
					a.Log.Warn("Could not count open tasks", "error", err)
				}
				return n
			}
			chrome.Banners = func() []store.Banner {
				bs, err := a.Store.ActiveBanners(ctx, uid)
				if err != nil {
					a.Log.Warn("Could not list active banners", "error", err)
				}
				return bs
			}
			r = r.WithContext(withPrincipal(r.Context(), p))
		}
		next.ServeHTTP(w, r)
	})
}

func (a *Auth) principal(r *http.Request) (*Principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, secret, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") || secret == "" {
			return nil, &RequestError{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "Send a personal access token as: Authorization: Bearer <token>."}
		}
		t, err := a.Store.TokenBySecret(r.Context(), strings.TrimSpace(secret))
		switch {
		case errors.Is(err, store.ErrTokenExpired):
			return nil, &RequestError{Status: http.StatusUnauthorized, Code: "invalid_token", Message: "The token has expired: create a new one on your profile page."}
		case errors.Is(err, store.ErrTokenRevoked):
			return nil, &RequestError{Status: http.StatusUnauthorized, Code: "invalid_token", Message: "The token has been revoked: create a new one on your profile page."}
		case errors.Is(err, store.ErrNotFound):
			return nil, &RequestError{Status: http.StatusUnauthorized, Code: "invalid_token", Message: "The token is unknown, expired or revoked."}
		}
		if err != nil {
			return nil, err
		}
		u, err := a.Store.User(r.Context(), t.UserID)
		if err != nil {
			return nil, err
		}
		return &Principal{User: u, Via: "token", Scope: t.Scope, TokenID: t.ID}, nil
	}
	sess, err := a.Sessions.Get(r, SessionCookie)
	if err != nil {
		return nil, err
	}
	id, ok := sess.Values[userIDValue].(int64)
	if !ok {
		return nil, nil
	}
	u, err := a.Store.User(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	signedIn, _ := sess.Values[createdAtValue].(time.Time)
	return &Principal{User: u, Via: "session", Scope: "full", SignedInAt: signedIn}, nil
}

// RequireUser refuses anonymous requests: 401 for the API, and for pages a
// trip to the sign-in page that comes back afterwards.
func RequireUser(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if User(r) != nil {
				next.ServeHTTP(w, r)
				return
			}
			if WantsJSON(r) {
				Error(w, r, log, ErrUnauthenticated)
				return
			}
			next := r.URL.RequestURI()
			if r.Method != http.MethodGet {
				next = "/"
			}
			if SessionExpired(r) {
				if st, ok := r.Context().Value(sessionStoreKey{}).(*SessionStore); ok {
					st.Flash(w, r, "info", "Your session has ended. Sign in again.")
				}
			}
			Redirect(w, r, views.LoginURL(next))
		})
	}
}

// RequireRole refuses users without role with 403.
func RequireRole(log *slog.Logger, role string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u := User(r); u == nil || !u.Has(role) {
				Error(w, r, log, ErrForbidden)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// RequireWriteScope refuses changes made with a read-only token.
func RequireWriteScope(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.Method {
			case http.MethodGet, http.MethodHead, http.MethodOptions:
			default:
				if p := PrincipalOf(r); p != nil && p.Scope == "read" {
					Error(w, r, log, &RequestError{Status: http.StatusForbidden, Code: "read_only_token", Message: "This token is read-only."})
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}
