package store

import (
	"context"
	"fmt"
)

// Quota is how many devservers a role may hold at once, and how many of
// them may have GPUs.
type Quota struct {
	Role          string `db:"role" json:"role"`
	Devservers    int    `db:"devservers" json:"devservers"`
	GPUDevservers int    `db:"gpu_devservers" json:"gpu_devservers"`
	// Containers is how many On Demand containers the role may hold at once.
	Containers int `db:"containers" json:"containers"`
}

// DefaultQuotas apply to a role without a row in quotas.
var DefaultQuotas = map[string]Quota{
	RoleEngineer: {Role: RoleEngineer, Devservers: 5, GPUDevservers: 1, Containers: 3},
	RoleReviewer: {Role: RoleReviewer, Devservers: 5, GPUDevservers: 1, Containers: 3},
	RoleAdmin:    {Role: RoleAdmin, Devservers: 20, GPUDevservers: 4, Containers: 10},
}

// MaxQuota bounds what an admin may set.
const MaxQuota = 1_000_000

// QuotaError is a request refused because it would take the caller over
// their quota (HTTP 429, code quota_exceeded).
type QuotaError struct {
	Message string
}

func (e *QuotaError) Error() string { return e.Message }

// QuotaUse is what a person holds against their quota.
type QuotaUse struct {
	Devservers    int   `db:"devservers" json:"devservers"`
	GPUDevservers int   `db:"gpu_devservers" json:"gpu_devservers"`
	Limit         Quota `db:"-" json:"limit"`
}

// Text says the use in words, such as "2 of 5 devservers, 0 of 1 GPU devservers".
func (u QuotaUse) Text() string {
	return fmt.Sprintf("%d of %d devservers, %d of %d GPU devservers", u.Devservers, u.Limit.Devservers, u.GPUDevservers, u.Limit.GPUDevservers)
}

// Full tells whether one more devserver (with GPUs when gpu) is over the quota.
func (u QuotaUse) Full(gpu bool) bool { return u.Check(gpu) != nil }

// Check is the QuotaError for one more devserver, or nil when it fits.
func (u QuotaUse) Check(gpu bool) error {
	switch {
	case u.Devservers >= u.Limit.Devservers:
		return &QuotaError{Message: fmt.Sprintf("You hold %d of your %d devservers; release one before reserving another.", u.Devservers, u.Limit.Devservers)}
	case gpu && u.GPUDevservers >= u.Limit.GPUDevservers:
		return &QuotaError{Message: fmt.Sprintf("You hold %d of your %d GPU devservers; release one before reserving another.", u.GPUDevservers, u.Limit.GPUDevservers)}
	}
	return nil
}

// QuotaOf is the most generous of the quotas of u's roles, each devserver
// count taken separately.
func QuotaOf(u User, byRole map[string]Quota) Quota {
	var q Quota
	roles := append([]string{RoleEngineer}, u.Roles...)
	for _, r := range roles {
		rq, ok := byRole[r]
		if !ok {
			rq = DefaultQuotas[r]
		}
		if rq.Devservers > q.Devservers || rq.Devservers == q.Devservers && q.Role == "" {
			q.Role = r
		}
		q.Devservers = max(q.Devservers, rq.Devservers)
		q.GPUDevservers = max(q.GPUDevservers, rq.GPUDevservers)
		q.Containers = max(q.Containers, rq.Containers)
	}
	return q
}

func quotas(ctx context.Context, q queryer) (map[string]Quota, error) {
	var rows []Quota
	if err := q.SelectContext(ctx, &rows, `SELECT role, devservers, gpu_devservers, containers FROM quotas`); err != nil {
		return nil, fmt.Errorf("quotas: %w", err)
	}
	out := map[string]Quota{}
	for _, r := range rows {
		out[r.Role] = r
	}
	return out, nil
}

// A devserver counts against its owner's quota until it is released or has failed.
const quotaUseSQL = `
SELECT COUNT(*) AS devservers, COALESCE(SUM(CASE WHEN f.gpus > 0 THEN 1 ELSE 0 END), 0) AS gpu_devservers
FROM devservers d JOIN flavors f ON f.name = d.flavor
WHERE d.owner_id = :owner_id AND d.state NOT IN ('released', 'failed')`

func quotaUse(ctx context.Context, q queryer, u User) (QuotaUse, error) {
	byRole, err := quotas(ctx, q)
	if err != nil {
		return QuotaUse{}, err
	}
	var use QuotaUse
	if err := getNamed(ctx, q, &use, quotaUseSQL, arg{"owner_id": u.ID}); err != nil {
		return QuotaUse{}, fmt.Errorf("quota use of %s: %w", u.Email, err)
	}
	use.Limit = QuotaOf(u, byRole)
	return use, nil
}

// QuotaUse is what u holds against their quota now.
func (s *Store) QuotaUse(ctx context.Context, u User) (QuotaUse, error) {
	return quotaUse(ctx, s.read, u)
}

// Quotas is every role's quota, defaults included.
func (s *Store) Quotas(ctx context.Context) ([]Quota, error) {
	byRole, err := quotas(ctx, s.read)
	if err != nil {
		return nil, err
	}
	out := make([]Quota, 0, len(AllRoles))
	for _, r := range AllRoles {
		q, ok := byRole[r]
		if !ok {
			q = DefaultQuotas[r]
		}
		out = append(out, q)
	}
	return out, nil
}

// SetQuota writes a role's quota.
func (tx *Tx) SetQuota(ctx context.Context, who Actor, q Quota) error {
	p := Problems{}
	if !ValidRole(q.Role) {
		p.Add("role", fmt.Sprintf("%q is not a role", clip(q.Role)))
	}
	if q.Devservers < 0 || q.Devservers > MaxQuota {
		p.Add("devservers", fmt.Sprintf("must be from 0 to %d", MaxQuota))
	}
	if q.GPUDevservers < 0 || q.GPUDevservers > MaxQuota {
		p.Add("gpu_devservers", fmt.Sprintf("must be from 0 to %d", MaxQuota))
	}
	if q.Containers < 0 || q.Containers > MaxQuota {
		p.Add("containers", fmt.Sprintf("must be from 0 to %d", MaxQuota))
	}
	if err := p.Err(); err != nil {
		return err
	}
	_, err := execNamed(ctx, tx, `
INSERT INTO quotas (role, devservers, gpu_devservers, containers) VALUES (:role, :devservers, :gpu_devservers, :containers)
ON CONFLICT (role) DO UPDATE SET devservers = excluded.devservers, gpu_devservers = excluded.gpu_devservers, containers = excluded.containers`, q)
	if err != nil {
		return fmt.Errorf("set quota %s: %w", q.Role, err)
	}
	return tx.Audit(ctx, who, "quota.set", "role", q.Role, map[string]any{"devservers": q.Devservers, "gpu_devservers": q.GPUDevservers, "containers": q.Containers})
}
