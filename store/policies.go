package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Bounds of what an admin may set on the policies page and through the API.
const (
	MaxLatencyMS         = 10_000
	MaxPolicyLeaseDays   = 365
	MaxRoleDevservers    = 1_000
	MaxRoleGPUDevservers = 100
	MaxRoleContainers    = 100
)

// Who may hold a permanent lease of a flavour, as the policies page and the
// API name it.
const (
	PermanentNobody   = "nobody"
	PermanentAdmins   = "admins"
	PermanentEveryone = "everyone"
)

// PermanentChoices lists who may hold a permanent lease, in the order the UI shows them.
var PermanentChoices = []string{PermanentNobody, PermanentAdmins, PermanentEveryone}

// PermanentChoice names the policy's permanent roles as one of PermanentChoices.
func (p LeasePolicy) PermanentChoice() string {
	roles := strings.Split(p.PermanentRoles, ",")
	for i := range roles {
		roles[i] = strings.TrimSpace(roles[i])
	}
	switch {
	case slices.Contains(roles, RoleEngineer):
		return PermanentEveryone
	case slices.Contains(roles, RoleAdmin):
		return PermanentAdmins
	}
	return PermanentNobody
}

// PermanentRolesOf is the PermanentRoles a choice stands for; ok is false
// when choice is not one of PermanentChoices.
func PermanentRolesOf(choice string) (roles string, ok bool) {
	switch choice {
	case PermanentNobody:
		return "", true
	case PermanentAdmins:
		return RoleAdmin, true
	case PermanentEveryone:
		return RoleEngineer, true
	}
	return "", false
}

// AllLatencies lists every known latency, both ways, by region codes.
func (s *Store) AllLatencies(ctx context.Context) ([]RegionLatency, error) {
	var rows []RegionLatency
	if err := s.read.SelectContext(ctx, &rows, `SELECT from_region, to_region, ms FROM region_latencies ORDER BY from_region, to_region`); err != nil {
		return nil, fmt.Errorf("latencies: %w", err)
	}
	return rows, nil
}

// SetRegionLatency sets the latency between two distinct regions, both
// ways, as an admin: from 0 to MaxLatencyMS. A change is audited; setting
// what is already there changes nothing.
func (tx *Tx) SetRegionLatency(ctx context.Context, who Actor, from, to string, ms int) error {
	problems := Problems{}
	for field, code := range map[string]string{"from": from, "to": to} {
		if _, err := regionByCode(ctx, tx, code); errors.Is(err, ErrNotFound) {
			problems.Add(field, fmt.Sprintf("%q is not a region", clip(code)))
		} else if err != nil {
			return err
		}
	}
	if from == to {
		problems.Add("to", "must be another region: a region is 0 ms from itself")
	}
	if ms < 0 || ms > MaxLatencyMS {
		problems.Add("ms", fmt.Sprintf("must be a whole number of milliseconds from 0 to %d", MaxLatencyMS))
	}
	if err := problems.Err(); err != nil {
		return err
	}
	there, err := latenciesFrom(ctx, tx, from)
	if err != nil {
		return err
	}
	back, err := latenciesFrom(ctx, tx, to)
	if err != nil {
		return err
	}
	was, known := there[to]
	if wasBack, knownBack := back[from]; known && knownBack && was == ms && wasBack == ms {
		return nil
	}
	if err := tx.SetLatency(ctx, from, to, ms); err != nil {
		return err
	}
	detail := map[string]any{"from": from, "to": to, "ms": ms}
	if known {
		detail["was"] = was
	}
	return tx.Audit(ctx, who, "region_latency.set", "region", from, detail)
}

// SetFlavorLeasePolicy sets a flavour's lease policy as an admin: the
// longest short lease in days (1 to MaxPolicyLeaseDays) and who may hold a
// permanent lease (one of PermanentChoices). Fields: flavor, max_days,
// permanent. Setting what is already there changes nothing.
func (tx *Tx) SetFlavorLeasePolicy(ctx context.Context, who Actor, flavor string, maxDays int, permanent string) (LeasePolicy, error) {
	problems := Problems{}
	f, err := flavorByName(ctx, tx, flavor)
	if errors.Is(err, ErrNotFound) {
		problems.Add("flavor", fmt.Sprintf("%q is not a flavour", clip(flavor)))
	} else if err != nil {
		return LeasePolicy{}, err
	}
	if maxDays < 1 || maxDays > MaxPolicyLeaseDays {
		problems.Add("max_days", fmt.Sprintf("must be a whole number of days from 1 to %d", MaxPolicyLeaseDays))
	}
	roles, ok := PermanentRolesOf(permanent)
	if !ok {
		problems.Add("permanent", "must be nobody, admins or everyone")
	}
	if err := problems.Err(); err != nil {
		return LeasePolicy{}, err
	}
	p := LeasePolicy{Flavor: f.Name, MaxLeaseDays: maxDays, PermanentRoles: roles}
	// A flavour without a stored policy follows the default; saving it
	// writes the policy down even when the numbers are the same.
	var cur LeasePolicy
	err = getNamed(ctx, tx, &cur, leasePolicySQL, arg{"flavor": f.Name})
	if err == nil && cur.MaxLeaseDays == maxDays && cur.PermanentChoice() == permanent {
		return cur, nil
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		return LeasePolicy{}, fmt.Errorf("lease policy %s: %w", f.Name, err)
	}
	if err := tx.SetLeasePolicy(ctx, who, p); err != nil {
		return LeasePolicy{}, err
	}
	return p, nil
}

// SetRoleQuota sets a role's quota as an admin: devservers from 0 to
// MaxRoleDevservers, GPU devservers from 0 to MaxRoleGPUDevservers. Fields:
// role, devservers, gpu_devservers, containers. Setting what is already there changes
// nothing.
func (tx *Tx) SetRoleQuota(ctx context.Context, who Actor, q Quota) error {
	problems := Problems{}
	if !ValidRole(q.Role) {
		problems.Add("role", fmt.Sprintf("%q is not a role (engineer, admin, reviewer)", clip(q.Role)))
	}
	if q.Devservers < 0 || q.Devservers > MaxRoleDevservers {
		problems.Add("devservers", fmt.Sprintf("must be a whole number from 0 to %d", MaxRoleDevservers))
	}
	if q.GPUDevservers < 0 || q.GPUDevservers > MaxRoleGPUDevservers {
		problems.Add("gpu_devservers", fmt.Sprintf("must be a whole number from 0 to %d", MaxRoleGPUDevservers))
	}
	if q.Containers < 0 || q.Containers > MaxRoleContainers {
		problems.Add("containers", fmt.Sprintf("must be a whole number from 0 to %d", MaxRoleContainers))
	}
	if err := problems.Err(); err != nil {
		return err
	}
	byRole, err := quotas(ctx, tx)
	if err != nil {
		return err
	}
	if cur, ok := byRole[q.Role]; ok && cur == q {
		return nil
	}
	return tx.SetQuota(ctx, who, q)
}
