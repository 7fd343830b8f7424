package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Roles a person can hold. Everyone is an engineer.
const (
	RoleEngineer = "engineer"
	RoleAdmin    = "admin"
	RoleReviewer = "reviewer"
)

// AllRoles lists the roles in the order the UI shows them.
var AllRoles = []string{RoleEngineer, RoleAdmin, RoleReviewer}

// User is a person who signs in to devport.
type User struct {
	ID          int64      `db:"id" json:"-"`
	Email       string     `db:"email" json:"email"`
	Name        string     `db:"name" json:"name"`
	HomeRegion  string     `db:"home_region" json:"home_region"`
	CreatedAt   time.Time  `db:"created_at" json:"created_at"`
	LastLoginAt *time.Time `db:"last_login_at" json:"last_login_at,omitempty"`
	Roles       []string   `db:"-" json:"roles"`
}

// Has tells whether the user holds role.
func (u User) Has(role string) bool { return slices.Contains(u.Roles, role) }

// DisplayName is the name, or the email where there is none.
func (u User) DisplayName() string {
	if u.Name != "" {
		return u.Name
	}
	return u.Email
}

// NormalizeEmail lower-cases and trims an email address.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// ValidateEmail checks that email looks like an address a person has.
func ValidateEmail(email string) string {
	switch {
	case email == "":
		return "is required"
	case len(email) > 254:
		return "is longer than 254 characters"
	case strings.ContainsAny(email, " \t\r\n<>\",;"):
		return "has characters an email address cannot have"
	}
	at := strings.LastIndexByte(email, '@')
	if at <= 0 || at == len(email)-1 || !strings.Contains(email[at+1:], ".") && email[at+1:] != "localhost" {
		return "is not an email address"
	}
	return ""
}

// ValidRole tells whether role is one devport knows.
func ValidRole(role string) bool { return slices.Contains(AllRoles, role) }

const (
	userColumns = `id, email, name, home_region, created_at, last_login_at`

	upsertUserSQL = `
INSERT INTO users (email, name, home_region, created_at, last_login_at)
VALUES (:email, :name, :home_region, :now, :login_at)
ON CONFLICT (email) DO UPDATE SET
    name = CASE WHEN excluded.name <> '' THEN excluded.name ELSE users.name END,
    last_login_at = COALESCE(excluded.last_login_at, users.last_login_at)
RETURNING ` + userColumns

	userByIDSQL    = `SELECT ` + userColumns + ` FROM users WHERE id = :id`
	userByEmailSQL = `SELECT ` + userColumns + ` FROM users WHERE email = :email`
	userRolesSQL   = `SELECT role FROM user_roles WHERE user_id = :id ORDER BY role`
)

// UpsertUser creates the user with that email, or updates the name of an
// existing one. When login is true the login time is recorded. The roles are
// not touched: SetRoles does that.
func (tx *Tx) UpsertUser(ctx context.Context, email, name string, login bool) (User, error) {
	email = NormalizeEmail(email)
	if p := ValidateEmail(email); p != "" {
		return User{}, &ValidationError{Fields: map[string]string{"email": p}}
	}
	if len(name) > 200 {
		return User{}, &ValidationError{Fields: map[string]string{"name": "is longer than 200 characters"}}
	}
	now := tx.Now()
	var loginAt *time.Time
	if login {
		loginAt = &now
	}
	home, err := tx.defaultHomeRegion(ctx)
	if err != nil {
		return User{}, err
	}
	var u User
	if err := getNamed(ctx, tx, &u, upsertUserSQL, arg{"email": email, "name": strings.TrimSpace(name), "home_region": home, "now": now, "login_at": loginAt}); err != nil {
		return User{}, fmt.Errorf("upsert user %s: %w", email, err)
	}
	u.Roles, err = userRoles(ctx, tx, u.ID)
	return u, err
}

func (tx *Tx) defaultHomeRegion(ctx context.Context) (string, error) {
	var codes []string
	if err := tx.SelectContext(ctx, &codes, `SELECT code FROM regions ORDER BY position, code LIMIT 1`); err != nil {
		return "", fmt.Errorf("default home region: %w", err)
	}
	if len(codes) == 0 {
		return "", nil
	}
	return codes[0], nil
}

// SetHomeRegion makes region the home region of u: the reservation form
// preselects it and orders the other regions by nearness from it.
func (tx *Tx) SetHomeRegion(ctx context.Context, who Actor, u User, region string) (User, error) {
	if _, err := regionByCode(ctx, tx, region); errors.Is(err, ErrNotFound) {
		return User{}, &ValidationError{Fields: map[string]string{"home_region": fmt.Sprintf("%q is not a region", clip(region))}}
	} else if err != nil {
		return User{}, err
	}
	cur, err := tx.User(ctx, u.ID)
	if err != nil {
		return User{}, err
	}
	if cur.HomeRegion == region {
		return cur, nil
	}
	if _, err := execNamed(ctx, tx, `UPDATE users SET home_region = :region WHERE id = :id`, arg{"region": region, "id": u.ID}); err != nil {
		return User{}, fmt.Errorf("set home region of %s: %w", u.Email, err)
	}
	if err := tx.Audit(ctx, who, "user.home_region", "user", cur.Email, map[string]any{"from": cur.HomeRegion, "to": region}); err != nil {
		return User{}, err
	}
	return tx.User(ctx, u.ID)
}

// SetRoles replaces the user's roles; engineer is always kept.
func (tx *Tx) SetRoles(ctx context.Context, userID int64, roles []string) error {
	if _, err := execNamed(ctx, tx, `DELETE FROM user_roles WHERE user_id = :id`, arg{"id": userID}); err != nil {
		return fmt.Errorf("set roles: %w", err)
	}
	set := []string{RoleEngineer}
	for _, r := range roles {
		if !ValidRole(r) {
			return &ValidationError{Fields: map[string]string{"roles": fmt.Sprintf("%q is not a role (engineer, admin, reviewer)", r)}}
		}
		if !slices.Contains(set, r) {
			set = append(set, r)
		}
	}
	for _, r := range set {
		if _, err := execNamed(ctx, tx, `INSERT INTO user_roles (user_id, role) VALUES (:id, :role)`, arg{"id": userID, "role": r}); err != nil {
			return fmt.Errorf("set roles: %w", err)
		}
	}
	return nil
}

// User returns the user with that ID, with roles.
func (s *Store) User(ctx context.Context, id int64) (User, error) {
	return userBy(ctx, s.read, userByIDSQL, arg{"id": id})
}

// UserByEmail returns the user with that email, with roles.
func (s *Store) UserByEmail(ctx context.Context, email string) (User, error) {
	return userBy(ctx, s.read, userByEmailSQL, arg{"email": NormalizeEmail(email)})
}

// User returns the user with that ID inside the transaction.
func (tx *Tx) User(ctx context.Context, id int64) (User, error) {
	return userBy(ctx, tx, userByIDSQL, arg{"id": id})
}

func userBy(ctx context.Context, q queryer, query string, a arg) (User, error) {
	var u User
	if err := getNamed(ctx, q, &u, query, a); err != nil {
		return User{}, fmt.Errorf("user: %w", err)
	}
	roles, err := userRoles(ctx, q, u.ID)
	if err != nil {
		return User{}, err
	}
	u.Roles = roles
	return u, nil
}

func userRoles(ctx context.Context, q queryer, id int64) ([]string, error) {
	var roles []string
	if err := selectNamed(ctx, q, &roles, userRolesSQL, arg{"id": id}); err != nil {
		return nil, fmt.Errorf("user roles: %w", err)
	}
	// Show roles in their canonical order.
	slices.SortFunc(roles, func(a, b string) int { return slices.Index(AllRoles, a) - slices.Index(AllRoles, b) })
	return roles, nil
}
