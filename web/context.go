// Package web is devport's HTTP plumbing: middleware, sessions, sign-in,
// rendering and error helpers. Handlers build on it; it knows no routes.
package web

import (
	"context"
	"net/http"
	"time"

	"github.com/devport/devport/store"
)

type ctxKey int

const (
	principalKey ctxKey = iota
	requestIDKey
	sessionExpiredKey
)

// Principal is who makes a request and how they proved it.
type Principal struct {
	User store.User
	// Via is "session" or "token".
	Via string
	// Scope is the token's scope ("full" or "read"); sessions are "full".
	Scope string
	// TokenID is the token's ID when Via is "token".
	TokenID int64
	// SignedInAt is when a session's person signed in (zero for tokens):
	// dangerous actions ask for a recent one.
	SignedInAt time.Time
}

// User returns the signed-in user, or nil.
func User(r *http.Request) *store.User {
	if p, ok := r.Context().Value(principalKey).(*Principal); ok {
		return &p.User
	}
	return nil
}

// PrincipalOf returns how the request is authenticated, or nil.
func PrincipalOf(r *http.Request) *Principal {
	p, _ := r.Context().Value(principalKey).(*Principal)
	return p
}

func withPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey, p)
}

// RequestID returns the request's ID.
func RequestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey).(string)
	return id
}

// Actor is the audit actor for the request's user.
func Actor(r *http.Request) store.Actor {
	u := User(r)
	if u == nil {
		return store.Actor{Name: "anonymous", RemoteAddr: r.RemoteAddr, RequestID: RequestID(r)}
	}
	return store.UserActor(*u, r.RemoteAddr, RequestID(r))
}

// WantsJSON tells whether the caller speaks the JSON API rather than HTML.
func WantsJSON(r *http.Request) bool {
	if len(r.URL.Path) >= 8 && r.URL.Path[:8] == "/api/v1/" || r.URL.Path == "/api/v1" {
		return true
	}
	return r.Header.Get("Accept") == "application/json"
}

// IsHTMX tells whether the request comes from HTMX for a partial (not a boosted page).
func IsHTMX(r *http.Request) bool {
	return r.Header.Get("HX-Request") == "true" && r.Header.Get("HX-Boosted") != "true"
}
