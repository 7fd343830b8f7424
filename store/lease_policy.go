package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// LeasePolicy is how long a flavour may be held: the longest short lease,
// and which roles may hold it permanently.
type LeasePolicy struct {
	Flavor       string `db:"flavor" json:"flavor"`
	MaxLeaseDays int    `db:"max_lease_days" json:"max_lease_days"`
	// PermanentRoles lists (comma-separated) the roles that may hold a
	// permanent lease: "" is nobody, "engineer" is everyone.
	PermanentRoles string `db:"permanent_roles" json:"permanent_roles"`
}

// Lease policy defaults, for a flavour without a row in flavor_policies.
const (
	DefaultMaxLeaseDays    = 30
	DefaultGPUMaxLeaseDays = 14
	// MinLease is the shortest lease: a lease must end at least this far ahead.
	MinLease = time.Hour
)

// DefaultLeasePolicy is the policy of a flavour nobody wrote one for: 30
// days (GPU flavours 14, they are scarce), permanent for admins only.
func DefaultLeasePolicy(f Flavor) LeasePolicy {
	p := LeasePolicy{Flavor: f.Name, MaxLeaseDays: DefaultMaxLeaseDays, PermanentRoles: RoleAdmin}
	if f.GPUs > 0 {
		p.MaxLeaseDays = DefaultGPUMaxLeaseDays
	}
	return p
}

// MaxUntil is the latest end a short lease may have when asked for at now:
// the end of the UTC day that is MaxLeaseDays ahead, so a date picked in a
// form never falls a few hours short of the limit.
func (p LeasePolicy) MaxUntil(now time.Time) time.Time {
	d := now.UTC().Add(time.Duration(p.MaxLeaseDays) * 24 * time.Hour)
	return time.Date(d.Year(), d.Month(), d.Day(), 23, 59, 59, 0, time.UTC)
}

// DefaultUntil is the end of a short lease asked for without a date: the
// default lease, or the policy's maximum when that is shorter.
func (p LeasePolicy) DefaultUntil(now time.Time) time.Time {
	return now.UTC().Add(min(DefaultLease, time.Duration(p.MaxLeaseDays)*24*time.Hour))
}

// AllowsPermanent tells whether u may hold a permanent lease of the flavour.
func (p LeasePolicy) AllowsPermanent(u User) bool {
	for _, r := range strings.Split(p.PermanentRoles, ",") {
		if r = strings.TrimSpace(r); r != "" && (r == RoleEngineer || u.Has(r)) {
			return true
		}
	}
	return false
}

// PermanentText says who may hold a permanent lease, for messages.
func (p LeasePolicy) PermanentText() string {
	var roles []string
	for _, r := range strings.Split(p.PermanentRoles, ",") {
		if r = strings.TrimSpace(r); r != "" {
			roles = append(roles, r+"s")
		}
	}
	switch {
	case len(roles) == 0:
		return "nobody"
	case slices.Contains(roles, RoleEngineer+"s"):
		return "everyone"
	}
	return strings.Join(roles, " and ")
}

// CheckUntil records what is wrong with a short lease ending at until,
// asked for at now, under field.
func (p LeasePolicy) CheckUntil(problems Problems, field string, now, until time.Time) {
	switch {
	case !until.After(now):
		problems.Add(field, "is in the past")
	case until.Before(now.Add(MinLease)):
		problems.Add(field, "must be at least an hour from now")
	case until.After(p.MaxUntil(now)):
		of := p.Flavor
		if of == "" {
			of = "a devserver"
		}
		problems.Add(field, fmt.Sprintf("must be no later than %s: the longest lease of %s is %d days",
			p.MaxUntil(now).Format(time.DateOnly), of, p.MaxLeaseDays))
	}
}

const leasePolicySQL = `SELECT flavor, max_lease_days, permanent_roles FROM flavor_policies WHERE flavor = :flavor`

func leasePolicyOf(ctx context.Context, q queryer, f Flavor) (LeasePolicy, error) {
	var p LeasePolicy
	err := getNamed(ctx, q, &p, leasePolicySQL, arg{"flavor": f.Name})
	if errors.Is(err, ErrNotFound) {
		return DefaultLeasePolicy(f), nil
	}
	if err != nil {
		return LeasePolicy{}, fmt.Errorf("lease policy %s: %w", f.Name, err)
	}
	return p, nil
}

// LeasePolicy is the lease policy of flavour f.
func (s *Store) LeasePolicy(ctx context.Context, f Flavor) (LeasePolicy, error) {
	return leasePolicyOf(ctx, s.read, f)
}

// LeasePolicies is the policy of every flavour, by flavour name.
func (s *Store) LeasePolicies(ctx context.Context, flavors []Flavor) (map[string]LeasePolicy, error) {
	var rows []LeasePolicy
	if err := s.read.SelectContext(ctx, &rows, `SELECT flavor, max_lease_days, permanent_roles FROM flavor_policies`); err != nil {
		return nil, fmt.Errorf("lease policies: %w", err)
	}
	out := map[string]LeasePolicy{}
	for _, f := range flavors {
		out[f.Name] = DefaultLeasePolicy(f)
	}
	for _, p := range rows {
		out[p.Flavor] = p
	}
	return out, nil
}

// SetLeasePolicy writes a flavour's lease policy.
func (tx *Tx) SetLeasePolicy(ctx context.Context, who Actor, p LeasePolicy) error {
	problems := Problems{}
	if p.MaxLeaseDays < 1 || p.MaxLeaseDays > 365 {
		problems.Add("max_lease_days", "must be from 1 to 365")
	}
	for _, r := range strings.Split(p.PermanentRoles, ",") {
		if r = strings.TrimSpace(r); r != "" && !ValidRole(r) {
			problems.Add("permanent_roles", fmt.Sprintf("%q is not a role", clip(r)))
		}
	}
	if err := problems.Err(); err != nil {
		return err
	}
	_, err := execNamed(ctx, tx, `
INSERT INTO flavor_policies (flavor, max_lease_days, permanent_roles) VALUES (:flavor, :max_lease_days, :permanent_roles)
ON CONFLICT (flavor) DO UPDATE SET max_lease_days = excluded.max_lease_days, permanent_roles = excluded.permanent_roles`, p)
	if err != nil {
		return fmt.Errorf("set lease policy %s: %w", p.Flavor, err)
	}
	return tx.Audit(ctx, who, "lease_policy.set", "flavor", p.Flavor, map[string]any{
		"max_lease_days": p.MaxLeaseDays, "permanent_roles": p.PermanentRoles,
	})
}

// ExtendLease moves the end of a devserver's short lease to until, within its
// flavour's policy counted from now. A permanent lease has no end to move.
func (tx *Tx) ExtendLease(ctx context.Context, who Actor, d Devserver, until time.Time) (Devserver, error) {
	d, err := tx.DevserverByID(ctx, d.ID)
	if err != nil {
		return Devserver{}, err
	}
	switch {
	case d.Lease.ID == 0:
		return Devserver{}, Conflict("invalid_state", fmt.Sprintf("Devserver %s is %s and holds no lease to extend.", d.Name, d.State))
	case d.Lease.Kind == LeasePermanent:
		return Devserver{}, Conflict("permanent_lease", "Devserver "+d.Name+" has a permanent lease; permanent leases do not expire.")
	}
	f, err := flavorByName(ctx, tx, d.Flavor)
	if err != nil {
		return Devserver{}, err
	}
	policy, err := leasePolicyOf(ctx, tx, f)
	if err != nil {
		return Devserver{}, err
	}
	now := tx.Now()
	until = until.UTC()
	problems := Problems{}
	policy.CheckUntil(problems, "until", now, until)
	if d.Lease.EndsAt != nil && len(problems) == 0 && !until.After(*d.Lease.EndsAt) {
		problems.Add("until", "must be later than the lease's current end, "+d.Lease.EndsAt.UTC().Format("2006-01-02 15:04 UTC"))
	}
	if err := problems.Err(); err != nil {
		return Devserver{}, err
	}
	n, err := execNamed(ctx, tx, `UPDATE leases SET ends_at = :until WHERE id = :id AND ended_at IS NULL AND kind = 'short'`,
		arg{"id": d.Lease.ID, "until": until})
	if err != nil {
		return Devserver{}, fmt.Errorf("extend %s: %w", d.Name, err)
	}
	if n == 0 {
		return Devserver{}, Conflict("invalid_state", fmt.Sprintf("Devserver %s changed; try again.", d.Name))
	}
	from := ""
	if d.Lease.EndsAt != nil {
		from = d.Lease.EndsAt.UTC().Format(time.RFC3339)
	}
	if err := tx.Audit(ctx, who, "devserver.extend", "devserver", d.Name, map[string]any{
		"from": from, "until": until.Format(time.RFC3339),
	}); err != nil {
		return Devserver{}, err
	}
	return tx.DevserverByID(ctx, d.ID)
}
