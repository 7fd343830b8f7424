package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Devserver states.
const (
	StateProvisioning = "provisioning"
	StateReady        = "ready"
	StateMigrating    = "migrating"
	StateUnreachable  = "unreachable"
	StateLost         = "lost"
	StateReleasing    = "releasing"
	StateReleased     = "released"
	StateFailed       = "failed"
)

// Devserver is a long-lived environment owned by one engineer.
type Devserver struct {
	ID         int64      `db:"id" json:"-"`
	Name       string     `db:"name" json:"name"`
	OwnerID    int64      `db:"owner_id" json:"-"`
	Owner      string     `db:"owner" json:"owner"`
	Flavor     string     `db:"flavor" json:"flavor"`
	Kind       string     `db:"kind" json:"kind"`
	Region     string     `db:"region" json:"region"`
	HostID     int64      `db:"host_id" json:"-"`
	Host       string     `db:"host" json:"host"`
	Hostname   string     `db:"hostname" json:"hostname"`
	Address    string     `db:"address" json:"address"`
	InstanceID string     `db:"instance_id" json:"-"`
	State      string     `db:"state" json:"state"`
	Progress   int        `db:"progress" json:"progress"`
	StatusNote string     `db:"status_note" json:"status_note,omitempty"`
	CreatedAt  time.Time  `db:"created_at" json:"created_at"`
	UpdatedAt  time.Time  `db:"updated_at" json:"updated_at"`
	ReadyAt    *time.Time `db:"ready_at" json:"ready_at,omitempty"`
	ReleasedAt *time.Time `db:"released_at" json:"released_at,omitempty"`
	// PooledAt is when the pool built it ahead of demand; AssignedAt when a
	// reservation took it from the pool.
	PooledAt         *time.Time `db:"pooled_at" json:"pooled_at,omitempty"`
	AssignedAt       *time.Time `db:"assigned_at" json:"assigned_at,omitempty"`
	GPUs             int        `db:"gpus" json:"gpus"`
	OneoffsState     string     `db:"oneoffs_state" json:"oneoffs_state"`
	OneoffsError     string     `db:"oneoffs_error" json:"oneoffs_error,omitempty"`
	OneoffsAppliedAt *time.Time `db:"oneoffs_applied_at" json:"oneoffs_applied_at,omitempty"`
	Lease            Lease      `db:"lease" json:"lease"`
	// ShareeIDs are the people the devserver is shared with, loaded with the
	// devserver so that the policy functions can stay pure.
	ShareeIDs []int64 `db:"-" json:"-"`
	// Relation is the viewer's relation (owner or sharee) where a list or
	// page is made for one viewer.
	Relation string `db:"-" json:"relation,omitempty"`
	// Shares and Connection are filled where the API shows one devserver.
	Shares     []Share     `db:"-" json:"shares,omitempty"`
	Connection *Connection `db:"-" json:"connection,omitempty"`
}

// SharedWith tells whether the devserver is shared with the user.
func (d Devserver) SharedWith(userID int64) bool { return slices.Contains(d.ShareeIDs, userID) }

// Pooled tells whether the devserver waits in a pool for an owner.
func (d Devserver) Pooled() bool { return d.OwnerID == 0 }

// FromPool tells whether a reservation was served from a pool.
func (d Devserver) FromPool() bool { return d.PooledAt != nil }

// Lease is who holds a devserver and until when.
type Lease struct {
	ID     int64      `db:"id" json:"-"`
	Kind   string     `db:"kind" json:"kind"`
	EndsAt *time.Time `db:"ends_at" json:"until,omitempty"`
}

// Transitional tells whether the devserver is on its way to another state,
// so a page showing it keeps itself current.
func (d Devserver) Transitional() bool {
	switch d.State {
	case StateProvisioning, StateMigrating, StateReleasing:
		return true
	}
	return false
}

// AnyTransitional tells whether any of the devservers is changing state.
func AnyTransitional(ds []Devserver) bool {
	for _, d := range ds {
		if d.Transitional() {
			return true
		}
	}
	return false
}

// Releasable tells whether a release may start from the current state.
func (d Devserver) Releasable() bool {
	switch d.State {
	case StateProvisioning, StateReady, StateUnreachable, StateFailed, StateLost:
		return true
	}
	return false
}

// holdsCapacity tells whether a devserver in state counts against its host.
func holdsCapacity(state string) bool {
	switch state {
	case StateReleased, StateFailed:
		return false
	}
	return true
}

// Lease kinds.
const (
	LeaseShort     = "short"
	LeasePermanent = "permanent"
)

// DefaultLease and MaxLease bound short leases until the lease policy says more.
const (
	DefaultLease = 14 * 24 * time.Hour
	MaxLease     = 90 * 24 * time.Hour
)

// Reservation is what an engineer asks for.
type Reservation struct {
	Owner      User
	Flavor     string
	Region     string // "" means the owner's home region
	LeaseKind  string // "" means short
	LeaseUntil *time.Time
	// Features to install once the devserver is ready.
	Features []string
}

const devserverSelect = `
SELECT d.id, d.name, COALESCE(d.owner_id, 0) AS owner_id, COALESCE(u.email, '') AS owner, d.flavor, f.kind, f.gpus, d.region,
       d.host_id, h.name AS host, d.hostname, d.address, d.instance_id, d.state, d.progress, d.status_note,
       d.created_at, d.updated_at, d.ready_at, d.released_at, d.pooled_at, d.assigned_at,
       d.oneoffs_state, d.oneoffs_error, d.oneoffs_applied_at,
       COALESCE(l.id, 0) AS "lease.id", COALESCE(l.kind, '') AS "lease.kind", l.ends_at AS "lease.ends_at"
FROM devservers d
LEFT JOIN users u ON u.id = d.owner_id
JOIN flavors f ON f.name = d.flavor
JOIN hosts h ON h.id = d.host_id
LEFT JOIN leases l ON l.devserver_id = d.id AND l.ended_at IS NULL`

// Devserver returns a devserver by name.
func (s *Store) Devserver(ctx context.Context, name string) (Devserver, error) {
	return devserverBy(ctx, s.read, `d.name = :v`, name)
}

// DevserverByID returns a devserver by ID.
func (s *Store) DevserverByID(ctx context.Context, id int64) (Devserver, error) {
	return devserverBy(ctx, s.read, `d.id = :v`, id)
}

// DevserverByID returns a devserver by ID inside the transaction.
func (tx *Tx) DevserverByID(ctx context.Context, id int64) (Devserver, error) {
	return devserverBy(ctx, tx, `d.id = :v`, id)
}

func devserverBy(ctx context.Context, q queryer, where string, v any) (Devserver, error) {
	var d Devserver
	if err := getNamed(ctx, q, &d, devserverSelect+` WHERE `+where, arg{"v": v}); err != nil {
		return Devserver{}, fmt.Errorf("devserver %v: %w", v, err)
	}
	var err error
	d.ShareeIDs, err = shareeIDs(ctx, q, d.ID)
	return d, err
}

// DevserverFilter selects devservers for a list.
type DevserverFilter struct {
	OwnerID  int64 // 0: any owner
	Region   string
	State    string
	Released bool // include released devservers
	AfterID  int64
	Limit    int

	// Viewer fills each devserver's Relation to this user; with OwnOrShared
	// the list keeps only what the viewer owns or has been shared.
	Viewer      int64
	OwnOrShared bool
}

// Devservers lists devservers, newest first, a page at a time (AfterID is the
// cursor: the smallest ID of the previous page).
func (s *Store) Devservers(ctx context.Context, f DevserverFilter) ([]Devserver, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	where := []string{"1 = 1"}
	if f.OwnerID != 0 {
		where = append(where, "d.owner_id = :owner_id")
	}
	if f.OwnOrShared {
		where = append(where, "(d.owner_id = :viewer OR d.id IN (SELECT devserver_id FROM devserver_shares WHERE user_id = :viewer))")
	}
	if f.Region != "" {
		where = append(where, "d.region = :region")
	}
	if f.State != "" {
		where = append(where, "d.state = :state")
	} else if !f.Released {
		where = append(where, "d.state <> 'released'")
	}
	if f.AfterID > 0 {
		where = append(where, "d.id < :after_id")
	}
	var ds []Devserver
	err := selectNamed(ctx, s.read, &ds, devserverSelect+` WHERE `+strings.Join(where, " AND ")+` ORDER BY d.id DESC LIMIT :limit`,
		arg{"owner_id": f.OwnerID, "viewer": f.Viewer, "region": f.Region, "state": f.State, "after_id": f.AfterID, "limit": f.Limit})
	if err != nil {
		return nil, fmt.Errorf("devservers: %w", err)
	}
	if f.Viewer != 0 {
		shared, err := sharedWith(ctx, s.read, f.Viewer)
		if err != nil {
			return nil, err
		}
		for i := range ds {
			switch {
			case ds[i].OwnerID == f.Viewer:
				ds[i].Relation = RelationOwner
			case shared[ds[i].ID]:
				ds[i].Relation = RelationSharee
			}
		}
	}
	return ds, nil
}

var nameUnsafe = regexp.MustCompile(`[^a-z0-9]+`)

// devserverName makes a name from the owner's email: its local part and a
// random suffix, safe as a DNS label.
func devserverName(email string) string {
	local, _, _ := strings.Cut(email, "@")
	local = strings.Trim(nameUnsafe.ReplaceAllString(strings.ToLower(local), "-"), "-")
	if len(local) > 20 {
		local = strings.Trim(local[:20], "-")
	}
	if local == "" {
		local = "dev"
	}
	return local + "-" + NewSecret(3)[:5]
}

// Reserve takes capacity for a devserver in the requested region and records
// it, its lease and an audit event, all in tx. The caller enqueues the
// provisioning job in the same transaction.
func (tx *Tx) Reserve(ctx context.Context, who Actor, r Reservation) (Devserver, error) {
	p := Problems{}
	r.Flavor = strings.TrimSpace(r.Flavor)
	r.Region = strings.TrimSpace(r.Region)
	chosen := r.Region != ""
	if r.Region == "" {
		r.Region = r.Owner.HomeRegion
	}
	now := tx.Now()
	var flavor Flavor
	var region Region
	if r.Flavor == "" {
		p.Add("flavor", "is required")
	} else if f, err := flavorByName(ctx, tx, r.Flavor); errors.Is(err, ErrNotFound) {
		p.Add("flavor", fmt.Sprintf("%q is not a flavour", clip(r.Flavor)))
	} else if err != nil {
		return Devserver{}, err
	} else {
		flavor = f
	}
	if r.Region == "" {
		p.Add("region", "is required")
	} else if rg, err := regionByCode(ctx, tx, r.Region); errors.Is(err, ErrNotFound) {
		p.Add("region", fmt.Sprintf("%q is not a region", clip(r.Region)))
	} else if err != nil {
		return Devserver{}, err
	} else {
		region = rg
	}
	// Without a chosen region, a home region that takes no devservers (a
	// drain, a storm) gives way to the nearest active region with room.
	if !chosen && region.Code != "" && !region.Active() && flavor.Name != "" {
		if near, ok, err := tx.nearestActiveWithRoom(ctx, flavor, region.Code); err != nil {
			return Devserver{}, err
		} else if ok {
			region, r.Region = near, near.Code
		}
	}
	// The lease policy is the flavour's; an unknown flavour is already reported.
	policy := DefaultLeasePolicy(flavor)
	if flavor.Name != "" {
		var err error
		if policy, err = leasePolicyOf(ctx, tx, flavor); err != nil {
			return Devserver{}, err
		}
	}
	var endsAt *time.Time
	switch r.LeaseKind {
	case "", LeaseShort:
		r.LeaseKind = LeaseShort
		until := policy.DefaultUntil(now)
		if r.LeaseUntil != nil {
			until = r.LeaseUntil.UTC()
		}
		policy.CheckUntil(p, "lease.until", now, until)
		endsAt = &until
	case LeasePermanent:
		if r.LeaseUntil != nil {
			p.Add("lease.until", "a permanent lease has no end")
		}
		if !policy.AllowsPermanent(r.Owner) {
			p.Add("lease.kind", fmt.Sprintf("a permanent lease of %s is for %s; choose a short lease", policy.Flavor, policy.PermanentText()))
		}
	default:
		p.Add("lease.kind", "must be short or permanent")
	}
	if err := p.Err(); err != nil {
		return Devserver{}, err
	}
	if !region.Active() {
		return Devserver{}, tx.noRoom(ctx, flavor, region, "region_not_active",
			fmt.Sprintf("Region %s is %s and takes no new devservers.", region.Code, region.Status))
	}
	// The quota is counted inside the write transaction, so concurrent
	// reservations by one person cannot pass it together.
	use, err := quotaUse(ctx, tx, r.Owner)
	if err != nil {
		return Devserver{}, err
	}
	if err := use.Check(flavor.GPUs > 0); err != nil {
		return Devserver{}, err
	}
	// A ready pooled devserver serves the reservation at once.
	pooled, err := tx.assignPooled(ctx, r.Owner, flavor, region.Code)
	if err != nil {
		return Devserver{}, err
	}
	if pooled != 0 {
		return tx.openLease(ctx, who, r, pooled, endsAt)
	}

	host, err := tx.takeCapacity(ctx, flavor, region.Code)
	if err != nil {
		return Devserver{}, fmt.Errorf("reserve %s: %w", flavor.Name, err)
	}
	if host.ID == 0 {
		return Devserver{}, tx.noRoom(ctx, flavor, region, "no_capacity",
			fmt.Sprintf("No capacity for %s in %s.", flavor.Name, region.Code))
	}

	var id int64
	for attempt := 0; ; attempt++ {
		name := devserverName(r.Owner.Email)
		err := tx.savepoint(ctx, func() error {
			return getNamed(ctx, tx, &id, `
INSERT INTO devservers (name, owner_id, flavor, region, host_id, hostname, state, progress, created_at, updated_at)
VALUES (:name, :owner_id, :flavor, :region, :host_id, :hostname, 'provisioning', 0, :now, :now)
RETURNING id`, arg{"name": name, "owner_id": r.Owner.ID, "flavor": flavor.Name, "region": region.Code,
				"host_id": host.ID, "hostname": name + "." + region.Code + ".devport.internal", "now": now})
		})
		if err == nil {
			break
		}
		if !isUniqueViolation(err) || attempt == 5 {
			return Devserver{}, fmt.Errorf("reserve %s: %w", flavor.Name, err)
		}
	}
	return tx.openLease(ctx, who, r, id, endsAt)
}

// openLease gives the reserved devserver id its owner's lease and records the
// reservation. The unique open-lease index holds one lease per devserver, a
// pooled one included.
func (tx *Tx) openLease(ctx context.Context, who Actor, r Reservation, id int64, endsAt *time.Time) (Devserver, error) {
	_, err := execNamed(ctx, tx, `
INSERT INTO leases (devserver_id, user_id, kind, starts_at, ends_at)
VALUES (:id, :user_id, :kind, :now, :ends_at)`, arg{"id": id, "user_id": r.Owner.ID, "kind": r.LeaseKind, "now": tx.Now(), "ends_at": endsAt})
	if err != nil {
		return Devserver{}, fmt.Errorf("reserve %s: lease: %w", r.Flavor, err)
	}
	d, err := tx.DevserverByID(ctx, id)
	if err != nil {
		return Devserver{}, err
	}
	detail := map[string]any{"flavor": d.Flavor, "region": d.Region, "host": d.Host, "lease": d.Lease.Kind, "owner": d.Owner}
	if d.FromPool() {
		detail["from_pool"] = true
	}
	err = tx.Audit(ctx, who, "devserver.reserve", "devserver", d.Name, detail)
	return d, err
}

// noRoom builds the conflict for a region that cannot take the flavour,
// naming the active regions that can.
func (tx *Tx) noRoom(ctx context.Context, f Flavor, region Region, code, msg string) error {
	caps, err := capacity(ctx, tx, f)
	if err != nil {
		return err
	}
	// The nearest first.
	ms, err := latenciesFrom(ctx, tx, region.Code)
	if err != nil {
		return err
	}
	free := map[string]int{}
	regions := make([]Region, 0, len(caps))
	for _, c := range caps {
		free[c.Region.Code] = c.Free
		regions = append(regions, c.Region)
	}
	caps = caps[:0]
	for _, rg := range ByNearness(regions, region.Code, ms) {
		caps = append(caps, RegionCapacity{Region: rg, Free: free[rg.Code]})
	}
	var room []string
	for _, c := range caps {
		if c.Region.Code != region.Code && c.Region.Active() && c.Free > 0 {
			room = append(room, fmt.Sprintf("%s (%d free)", c.Region.Code, c.Free))
		}
	}
	if len(room) == 0 {
		return Conflict(code, msg+" No other region has room for it either.")
	}
	return Conflict(code, msg+" Regions with room: "+strings.Join(room, ", ")+".")
}

// StartRelease moves a devserver towards released. It returns whether the
// fleet must be asked to destroy it (a release job is needed); a devserver
// that failed holds nothing and is released at once.
func (tx *Tx) StartRelease(ctx context.Context, who Actor, d Devserver) (Devserver, bool, error) {
	if !d.Releasable() {
		return Devserver{}, false, Conflict("invalid_state", fmt.Sprintf("Devserver %s is %s and cannot be released now.", d.Name, d.State))
	}
	needsFleet := d.State != StateFailed
	next := StateReleasing
	if !needsFleet {
		next = StateReleased
	}
	n, err := execNamed(ctx, tx, `
UPDATE devservers SET state = :next, progress = 0, status_note = '', updated_at = :now,
    released_at = CASE WHEN :next = 'released' THEN :now ELSE released_at END
WHERE id = :id AND state = :from`, arg{"id": d.ID, "from": d.State, "next": next, "now": tx.Now()})
	if err != nil {
		return Devserver{}, false, fmt.Errorf("release %s: %w", d.Name, err)
	}
	if n == 0 {
		return Devserver{}, false, Conflict("invalid_state", fmt.Sprintf("Devserver %s changed state; try again.", d.Name))
	}
	if !needsFleet {
		if err := tx.endLease(ctx, d.ID); err != nil {
			return Devserver{}, false, err
		}
	}
	if err := tx.Audit(ctx, who, "devserver.release", "devserver", d.Name, map[string]any{"from": d.State}); err != nil {
		return Devserver{}, false, err
	}
	d, err = tx.DevserverByID(ctx, d.ID)
	return d, needsFleet, err
}

// SetProgress records how far a transition has come, while the devserver is
// still in state.
func (s *Store) SetProgress(ctx context.Context, id int64, state string, progress int, note string) error {
	return s.setProgress(ctx, "devservers", id, state, progress, note)
}

// setProgress records the progress of an environment in table (devservers
// or containers) while it is still in state.
func (s *Store) setProgress(ctx context.Context, table string, id int64, state string, progress int, note string) error {
	return s.InTx(ctx, func(tx *Tx) error {
		_, err := execNamed(ctx, tx, `UPDATE `+table+` SET progress = :progress, status_note = :note, updated_at = :now WHERE id = :id AND state = :state`,
			arg{"id": id, "state": state, "progress": progress, "note": note, "now": tx.Now()})
		if err != nil {
			return fmt.Errorf("set progress: %w", err)
		}
		return nil
	})
}

// MarkReady records a provisioned devserver. It returns false when the
// devserver is no longer provisioning (for example the owner released it
// meanwhile), so the caller can undo what it made.
func (tx *Tx) MarkReady(ctx context.Context, id int64, instanceID, address string) (bool, error) {
	now := tx.Now()
	n, err := execNamed(ctx, tx, `
UPDATE devservers SET state = 'ready', progress = 100, status_note = '', instance_id = :instance_id, address = :address,
    ready_at = :now, updated_at = :now
WHERE id = :id AND state = 'provisioning'`, arg{"id": id, "instance_id": instanceID, "address": address, "now": now})
	if err != nil || n == 0 {
		return false, err
	}
	d, err := tx.DevserverByID(ctx, id)
	if err != nil {
		return false, err
	}
	return true, tx.Audit(ctx, System, "devserver.ready", "devserver", d.Name, map[string]any{"address": address, "host": d.Host})
}

// MarkFailed records that a devserver could not be provisioned, and gives its
// capacity back.
func (tx *Tx) MarkFailed(ctx context.Context, id int64, reason string) error {
	return tx.finish(ctx, id, StateProvisioning, StateFailed, "devserver.fail", reason)
}

// MarkReleased records that the fleet destroyed a releasing devserver, and
// gives its capacity back.
func (tx *Tx) MarkReleased(ctx context.Context, id int64) error {
	return tx.finish(ctx, id, StateReleasing, StateReleased, "devserver.released", "")
}

// finish moves a devserver from one state to a final one that holds no
// capacity, frees its host's capacity and ends its lease. It does nothing
// when the devserver is no longer in from.
func (tx *Tx) finish(ctx context.Context, id int64, from, to, action, note string) error {
	d, err := tx.DevserverByID(ctx, id)
	if err != nil {
		return err
	}
	if d.State != from {
		return nil
	}
	now := tx.Now()
	var releasedAt *time.Time
	if to == StateReleased {
		releasedAt = &now
	}
	n, err := execNamed(ctx, tx, `
UPDATE devservers SET state = :to, status_note = :note, updated_at = :now, released_at = COALESCE(:released_at, released_at),
    progress = CASE WHEN :to = 'released' THEN 100 ELSE progress END
WHERE id = :id AND state = :from`, arg{"id": id, "from": from, "to": to, "note": clip(note), "now": now, "released_at": releasedAt})
	if err != nil {
		return fmt.Errorf("%s %s: %w", action, d.Name, err)
	}
	if n == 0 {
		return nil
	}
	if holdsCapacity(from) && !holdsCapacity(to) {
		f, err := flavorByName(ctx, tx, d.Flavor)
		if err != nil {
			return err
		}
		if _, err := execNamed(ctx, tx, freeCapacitySQL, capacityArgs(d.HostID, f)); err != nil {
			return fmt.Errorf("%s %s: free capacity: %w", action, d.Name, err)
		}
	}
	if err := tx.endLease(ctx, id); err != nil {
		return err
	}
	detail := map[string]any{}
	if note != "" {
		detail["reason"] = clip(note)
	}
	return tx.Audit(ctx, System, action, "devserver", d.Name, detail)
}

func (tx *Tx) endLease(ctx context.Context, devserverID int64) error {
	_, err := execNamed(ctx, tx, `UPDATE leases SET ended_at = :now WHERE devserver_id = :id AND ended_at IS NULL`, arg{"id": devserverID, "now": tx.Now()})
	if err != nil {
		return fmt.Errorf("end lease: %w", err)
	}
	return nil
}

// clip keeps user-supplied text short enough to quote in a message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// SetInstance records the fleet instance of a provisioning devserver. It
// returns false when the devserver is no longer provisioning; the instance
// is then recorded all the same when the devserver has none, so that a
// retried job still knows what it made and must remove.
func (s *Store) SetInstance(ctx context.Context, id int64, instanceID string) (bool, error) {
	return s.setInstance(ctx, "devservers", id, instanceID)
}

// setInstance records the instance of a provisioning environment in table
// (devservers or containers).
func (s *Store) setInstance(ctx context.Context, table string, id int64, instanceID string) (bool, error) {
	var ok bool
	err := s.InTx(ctx, func(tx *Tx) error {
		a := arg{"id": id, "instance_id": instanceID, "now": tx.Now()}
		n, err := execNamed(ctx, tx, `UPDATE `+table+` SET instance_id = :instance_id, updated_at = :now WHERE id = :id AND state = 'provisioning'`, a)
		if ok = n == 1; ok || err != nil {
			return err
		}
		_, err = execNamed(ctx, tx, `UPDATE `+table+` SET instance_id = :instance_id WHERE id = :id AND instance_id = ''`, a)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("set instance: %w", err)
	}
	return ok, nil
}

// DevserverCounts is how many devservers hold capacity, by region and flavour.
func (s *Store) DevserverCounts(ctx context.Context) (map[string]map[string]int, error) {
	var rows []struct {
		Region string `db:"region"`
		Flavor string `db:"flavor"`
		N      int    `db:"n"`
	}
	err := s.read.SelectContext(ctx, &rows, `SELECT region, flavor, COUNT(*) AS n FROM devservers WHERE state NOT IN ('released', 'failed') GROUP BY region, flavor`)
	if err != nil {
		return nil, fmt.Errorf("devserver counts: %w", err)
	}
	out := map[string]map[string]int{}
	for _, r := range rows {
		if out[r.Region] == nil {
			out[r.Region] = map[string]int{}
		}
		out[r.Region][r.Flavor] = r.N
	}
	return out, nil
}
