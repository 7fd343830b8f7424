package web

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/devport/devport/store"
)

// OIDCConfig is how devport signs people in through an OpenID Provider.
type OIDCConfig struct {
	Issuer         string
	ClientID       string
	ClientSecret   string
	RedirectURL    string
	AdminGroups    []string
	ReviewerGroups []string
	// HTTPClient talks to the provider (tests use the provider's own).
	HTTPClient *http.Client
}

// OIDC signs people in with the authorization code flow (PKCE, state and
// nonce). Discovery happens at the first sign-in and is retried until it
// works, so the portal starts even while the provider is down.
type OIDC struct {
	cfg OIDCConfig

	mu       sync.Mutex
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
}

// NewOIDC returns a client for the provider.
func NewOIDC(cfg OIDCConfig) *OIDC { return &OIDC{cfg: cfg} }

// Identity is what the provider says about the person who signed in.
type Identity struct {
	Subject string
	Email   string
	Name    string
	Groups  []string
}

// Roles maps the person's groups to devport roles.
func (o *OIDC) Roles(id Identity) []string {
	return RolesFromGroups(id.Groups, o.cfg.AdminGroups, o.cfg.ReviewerGroups)
}

// RolesFromGroups maps identity-provider groups to devport roles: everyone is
// an engineer; membership of an admin or reviewer group adds that role.
func RolesFromGroups(groups, adminGroups, reviewerGroups []string) []string {
	roles := []string{store.RoleEngineer}
	for _, g := range groups {
		if slices.Contains(adminGroups, g) && !slices.Contains(roles, store.RoleAdmin) {
			roles = append(roles, store.RoleAdmin)
		}
		if slices.Contains(reviewerGroups, g) && !slices.Contains(roles, store.RoleReviewer) {
			roles = append(roles, store.RoleReviewer)
		}
	}
	return roles
}

func (o *OIDC) ctx(ctx context.Context) context.Context {
	if o.cfg.HTTPClient != nil {
		return oidc.ClientContext(ctx, o.cfg.HTTPClient)
	}
	return ctx
}

func (o *OIDC) discover(ctx context.Context) (*oidc.Provider, *oidc.IDTokenVerifier, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider != nil {
		return o.provider, o.verifier, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(o.ctx(ctx), o.cfg.Issuer)
	if err != nil {
		return nil, nil, &RequestError{Status: http.StatusServiceUnavailable, Code: "identity_provider_unavailable",
			Message: "The identity provider cannot be reached; try again in a moment."}
	}
	o.provider = p
	o.verifier = p.Verifier(&oidc.Config{ClientID: o.cfg.ClientID})
	return o.provider, o.verifier, nil
}

func (o *OIDC) oauth2(p *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{
		ClientID: o.cfg.ClientID, ClientSecret: o.cfg.ClientSecret, RedirectURL: o.cfg.RedirectURL,
		Endpoint: p.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "profile", "email", "groups"},
	}
}

// Challenge is what a sign-in must bring back: the state, the nonce and the
// PKCE verifier, kept in the visitor's session until the callback.
type Challenge struct {
	State, Nonce, Verifier string
}

// NewChallenge makes a fresh sign-in challenge.
func NewChallenge() Challenge {
	r := func() string {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return Challenge{State: r(), Nonce: r(), Verifier: oauth2.GenerateVerifier()}
}

// AuthURL is where to send the browser to sign in.
func (o *OIDC) AuthURL(ctx context.Context, c Challenge) (string, error) {
	p, _, err := o.discover(ctx)
	if err != nil {
		return "", err
	}
	return o.oauth2(p).AuthCodeURL(c.State, oidc.Nonce(c.Nonce), oauth2.S256ChallengeOption(c.Verifier)), nil
}

// ErrSignIn is a sign-in that must not be accepted.
var ErrSignIn = errors.New("sign-in refused")

// Exchange turns the callback's code into a verified identity. The ID
// token's signature, issuer, audience, expiry and nonce are all checked.
func (o *OIDC) Exchange(ctx context.Context, code string, c Challenge) (Identity, error) {
	p, verifier, err := o.discover(ctx)
	if err != nil {
		return Identity{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	tok, err := o.oauth2(p).Exchange(o.ctx(ctx), code, oauth2.VerifierOption(c.Verifier))
	if err != nil {
		return Identity{}, fmt.Errorf("%w: code exchange: %v", ErrSignIn, err)
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok {
		return Identity{}, fmt.Errorf("%w: no ID token in the response", ErrSignIn)
	}
	idt, err := verifier.Verify(o.ctx(ctx), raw)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: ID token: %v", ErrSignIn, err)
	}
	if sha256.Sum256([]byte(idt.Nonce)) != sha256.Sum256([]byte(c.Nonce)) {
		return Identity{}, fmt.Errorf("%w: nonce mismatch", ErrSignIn)
	}
	var claims struct {
		Email         string   `json:"email"`
		EmailVerified *bool    `json:"email_verified"`
		Name          string   `json:"name"`
		Groups        []string `json:"groups"`
	}
	if err := idt.Claims(&claims); err != nil {
		return Identity{}, fmt.Errorf("%w: claims: %v", ErrSignIn, err)
	}
	// Some providers put groups and email only in the userinfo answer. An
	// answer about another subject must not be used (OIDC Core 5.3.2), and an
	// email taken from it comes with its own email_verified.
	if claims.Email == "" || claims.Groups == nil {
		if ui, err := p.UserInfo(o.ctx(ctx), oauth2.StaticTokenSource(tok)); err == nil && ui.Subject == idt.Subject {
			var extra struct {
				Email         string   `json:"email"`
				EmailVerified *bool    `json:"email_verified"`
				Name          string   `json:"name"`
				Groups        []string `json:"groups"`
			}
			if ui.Claims(&extra) == nil {
				if claims.Email == "" {
					claims.Email, claims.EmailVerified = extra.Email, extra.EmailVerified
				}
				claims.Name = cmp.Or(claims.Name, extra.Name)
				if claims.Groups == nil {
					claims.Groups = extra.Groups
				}
			}
		}
	}
	if claims.Email == "" {
		return Identity{}, fmt.Errorf("%w: the provider gave no email address", ErrSignIn)
	}
	if claims.EmailVerified != nil && !*claims.EmailVerified {
		return Identity{}, fmt.Errorf("%w: the email address %s is not verified", ErrSignIn, claims.Email)
	}
	return Identity{Subject: idt.Subject, Email: strings.ToLower(claims.Email), Name: claims.Name, Groups: claims.Groups}, nil
}
