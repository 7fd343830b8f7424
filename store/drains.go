package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// RegionStatuses are the states a region can be in.
var RegionStatuses = []string{"active", "draining", "drained", "down"}

// SetRegionStatus moves a region from one of the statuses in from to status
// to, with a conditional update so two operations racing on the same region
// cannot both win. It is the one place region status changes (drains, storms,
// recoveries). It returns ErrNotFound when the region does not exist and a
// ConflictError (code region_status) naming the current status when the
// region is not in one of from. Moving to the status the region already has
// is allowed only when that status is listed in from. It writes an audit event.
func (tx *Tx) SetRegionStatus(ctx context.Context, who Actor, code string, from []string, to string) error {
	if !slices.Contains(RegionStatuses, to) {
		return fmt.Errorf("set region %s status: unknown status %q", code, to)
	}
	if len(from) == 0 {
		return fmt.Errorf("set region %s status: no from statuses", code)
	}
	q := `UPDATE regions SET status = :to WHERE code = :code AND status IN (`
	a := arg{"to": to, "code": code}
	for i, f := range from {
		if i > 0 {
			q += `, `
		}
		k := fmt.Sprintf("from%d", i)
		q += `:` + k
		a[k] = f
	}
	q += `)`
	r, err := regionByCode(ctx, tx, code)
	if err != nil {
		return err
	}
	n, err := execNamed(ctx, tx, q, a)
	if err != nil {
		return fmt.Errorf("set region %s status: %w", code, err)
	}
	if n == 0 {
		return Conflict("region_status", fmt.Sprintf("Region %s is %s, not %s.", code, r.Status, strings.Join(from, " or ")))
	}
	return tx.Audit(ctx, who, "region.status", "region", code, map[string]any{"from": r.Status, "to": to})
}

// Drain states and item states.
const (
	DrainOpen      = "open"
	DrainDone      = "done"
	DrainCancelled = "cancelled"

	MoveLive    = "live"
	MoveMigrate = "migrate"
	MoveOwner   = "owner"
	MoveRelease = "release"

	ItemPending   = "pending"
	ItemMoving    = "moving"
	ItemMigrating = "migrating"
	ItemDone      = "done"
	ItemFailed    = "failed"
	ItemOwner     = "owner"
	ItemOverdue   = "overdue"
	ItemCancelled = "cancelled"
)

// Drain is a region drain: the region cordoned, its devservers moved by the
// run of the built-in runbook drain-region.
type Drain struct {
	ID          int64      `db:"id" json:"id"`
	Region      string     `db:"region" json:"region"`
	RunID       *int64     `db:"run_id" json:"run_id"`
	Reason      string     `db:"reason" json:"reason"`
	Kind        string     `db:"kind" json:"kind"`
	SevID       *int64     `db:"sev_id" json:"sev_id"`
	MaxParallel int        `db:"max_parallel" json:"max_parallel"`
	DeadlineAt  time.Time  `db:"deadline_at" json:"deadline_at"`
	State       string     `db:"state" json:"state"`
	CreatedBy   string     `db:"created_by" json:"created_by"`
	CreatedAt   time.Time  `db:"created_at" json:"created_at"`
	FinishedAt  *time.Time `db:"finished_at" json:"finished_at,omitempty"`
}

// DrainItem is one devserver a drain moves.
type DrainItem struct {
	DrainID     int64     `db:"drain_id" json:"-"`
	DevserverID int64     `db:"devserver_id" json:"-"`
	Name        string    `db:"name" json:"devserver"`
	OwnerID     *int64    `db:"owner_id" json:"-"`
	Owner       string    `db:"owner" json:"owner"`
	Method      string    `db:"method" json:"method"`
	State       string    `db:"state" json:"state"`
	FromHostID  int64     `db:"from_host_id" json:"-"`
	ToRegion    string    `db:"to_region" json:"to_region,omitempty"`
	ToHostID    *int64    `db:"to_host_id" json:"-"`
	MigrationID *int64    `db:"migration_id" json:"migration_id,omitempty"`
	BackupID    *int64    `db:"backup_id" json:"backup_id,omitempty"`
	TaskID      *int64    `db:"task_id" json:"task_id,omitempty"`
	Error       string    `db:"error" json:"error,omitempty"`
	UpdatedAt   time.Time `db:"updated_at" json:"updated_at"`
}

// DrainProgress counts a drain's devservers by outcome.
type DrainProgress struct {
	Total int `json:"total"`
	// Done moved (or released); Owner are physical devservers whose owners
	// have a task to move; Failed could not be moved; Remaining are still
	// waiting or moving; Overdue were still waiting at the deadline.
	Done      int `json:"done"`
	Owner     int `json:"waiting_on_owner"`
	Failed    int `json:"failed"`
	Remaining int `json:"remaining"`
	Overdue   int `json:"overdue"`
	Cancelled int `json:"cancelled"`
}

// Percent is how much of the drain is handled: moved, handed to owners,
// failed or past the deadline. An empty drain is complete.
func (p DrainProgress) Percent() int {
	if p.Total == 0 {
		return 100
	}
	return (p.Total - p.Remaining) * 100 / p.Total
}

const drainColumns = `id, region, run_id, reason, kind, sev_id, max_parallel, deadline_at, state, created_by, created_at, finished_at`

// OpenDrain records a drain of a region and cordons the region (draining) in
// the same transaction. The database keeps one open drain per region: a
// second one is a ConflictError already_draining. A region that is down or
// drained is region_not_active.
func (tx *Tx) OpenDrain(ctx context.Context, who Actor, d Drain) (Drain, error) {
	now := tx.Now()
	d.State, d.CreatedBy, d.CreatedAt = DrainOpen, who.Name, now
	err := getNamed(ctx, tx, &d.ID, `
INSERT INTO drains (region, run_id, reason, kind, sev_id, max_parallel, deadline_at, state, created_by, created_at)
VALUES (:region, :run_id, :reason, :kind, :sev_id, :max_parallel, :deadline_at, :state, :created_by, :created_at) RETURNING id`, d)
	if isUniqueViolation(err) {
		return Drain{}, Conflict("already_draining", fmt.Sprintf("Region %s is being drained already.", d.Region))
	}
	if err != nil {
		return Drain{}, fmt.Errorf("open drain of %s: %w", d.Region, err)
	}
	if err := tx.SetRegionStatus(ctx, who, d.Region, []string{"active", "draining"}, "draining"); err != nil {
		var ce *ConflictError
		if errors.As(err, &ce) {
			return Drain{}, Conflict("region_not_active", ce.Message)
		}
		return Drain{}, err
	}
	if err := tx.Audit(ctx, who, "drain.open", "region", d.Region, map[string]any{"drain": d.ID, "reason": d.Reason, "kind": d.Kind,
		"max_parallel": d.MaxParallel, "deadline": d.DeadlineAt}); err != nil {
		return Drain{}, err
	}
	return drainBy(ctx, tx, `id = :v`, d.ID)
}

// SetDrainRun records the run that carries out a drain.
func (tx *Tx) SetDrainRun(ctx context.Context, id, runID int64) error {
	_, err := execNamed(ctx, tx, `UPDATE drains SET run_id = :run WHERE id = :id`, arg{"id": id, "run": runID})
	return err
}

// SetDrainSev records the SEV that tracks a drain.
func (tx *Tx) SetDrainSev(ctx context.Context, id, sevID int64) error {
	_, err := execNamed(ctx, tx, `UPDATE drains SET sev_id = :sev WHERE id = :id`, arg{"id": id, "sev": sevID})
	return err
}

func drainBy(ctx context.Context, q queryer, where string, v any) (Drain, error) {
	var d Drain
	if err := getNamed(ctx, q, &d, `SELECT `+drainColumns+` FROM drains WHERE `+where, arg{"v": v}); err != nil {
		return Drain{}, fmt.Errorf("drain %v: %w", v, err)
	}
	return d, nil
}

// Drain returns a drain.
func (s *Store) Drain(ctx context.Context, id int64) (Drain, error) {
	return drainBy(ctx, s.read, `id = :v`, id)
}

// Drain returns a drain inside the transaction.
func (tx *Tx) Drain(ctx context.Context, id int64) (Drain, error) {
	return drainBy(ctx, tx, `id = :v`, id)
}

// DrainByRun returns the drain a run carries out.
func (tx *Tx) DrainByRun(ctx context.Context, runID int64) (Drain, error) {
	return drainBy(ctx, tx, `run_id = :v`, runID)
}

// LatestDrain returns a region's newest drain.
func (s *Store) LatestDrain(ctx context.Context, region string) (Drain, error) {
	return drainBy(ctx, s.read, `region = :v ORDER BY id DESC LIMIT 1`, region)
}

// OpenDrainOf returns a region's open drain inside the transaction.
func (tx *Tx) OpenDrainOf(ctx context.Context, region string) (Drain, error) {
	return drainBy(ctx, tx, `region = :v AND state = 'open'`, region)
}

// FinishDrain ends an open drain (done or cancelled); its waiting items are
// cancelled with it. It tells whether the drain was open.
func (tx *Tx) FinishDrain(ctx context.Context, who Actor, id int64, state string) (bool, error) {
	n, err := execNamed(ctx, tx, `UPDATE drains SET state = :state, finished_at = :now WHERE id = :id AND state = 'open'`,
		arg{"id": id, "state": state, "now": tx.Now()})
	if err != nil || n == 0 {
		return false, err
	}
	if state == DrainCancelled {
		if _, err := execNamed(ctx, tx, `UPDATE drain_items SET state = 'cancelled', updated_at = :now WHERE drain_id = :id AND state = 'pending'`,
			arg{"id": id, "now": tx.Now()}); err != nil {
			return false, err
		}
	}
	d, err := tx.Drain(ctx, id)
	if err != nil {
		return false, err
	}
	return true, tx.Audit(ctx, who, "drain."+state, "region", d.Region, map[string]any{"drain": id})
}

// DrainMove is one line of a drain's plan: which devserver moves where, by
// which means.
type DrainMove struct {
	DevserverID int64  `json:"-"`
	Devserver   string `json:"devserver"`
	Owner       string `json:"owner,omitempty"`
	OwnerID     int64  `json:"-"`
	Flavor      string `json:"flavor"`
	Kind        string `json:"kind"`
	HostID      int64  `json:"-"`
	Method      string `json:"method"`
	// ToRegion is where it would go ("" when no active region has room).
	ToRegion string `json:"to_region"`
}

// DrainPlan is what draining a region would do now, without doing it: every
// ready devserver of the region with its means of moving and the nearest
// active region that has room for it, room counted as the plan fills it.
func (s *Store) DrainPlan(ctx context.Context, region string) ([]DrainMove, error) {
	return drainPlan(ctx, s.read, region)
}

func drainPlan(ctx context.Context, q queryer, region string) ([]DrainMove, error) {
	if _, err := regionByCode(ctx, q, region); err != nil {
		return nil, err
	}
	var ds []Devserver
	if err := selectNamed(ctx, q, &ds, devserverSelect+` WHERE d.region = :region AND d.state = 'ready' ORDER BY d.id`, arg{"region": region}); err != nil {
		return nil, fmt.Errorf("drain plan %s: %w", region, err)
	}
	regions, err := regionsByNearness(ctx, q, region)
	if err != nil {
		return nil, err
	}
	hosts, err := hostsIn(ctx, q, "")
	if err != nil {
		return nil, err
	}
	byRegion := map[string][]Host{}
	for _, h := range hosts {
		byRegion[h.Region] = append(byRegion[h.Region], h)
	}
	flavors := map[string]Flavor{}
	// room is the free slots left per flavour and region as the plan fills them.
	room := map[string]int{}
	out := make([]DrainMove, 0, len(ds))
	for _, d := range ds {
		m := DrainMove{DevserverID: d.ID, Devserver: d.Name, Owner: d.Owner, OwnerID: d.OwnerID, Flavor: d.Flavor, Kind: d.Kind, HostID: d.HostID}
		switch {
		case d.OwnerID == 0:
			m.Method = MoveRelease
			out = append(out, m)
			continue
		case d.Kind == "physical":
			m.Method = MoveOwner
		case d.Kind == "vm":
			m.Method = MoveLive
		default:
			m.Method = MoveMigrate
		}
		f, ok := flavors[d.Flavor]
		if !ok {
			if f, err = flavorByName(ctx, q, d.Flavor); err != nil {
				return nil, err
			}
			flavors[d.Flavor] = f
		}
		for _, r := range regions {
			if r.Code == region || !r.Active() {
				continue
			}
			key := f.Name + "/" + r.Code
			left, ok := room[key]
			if !ok {
				left = FreeSlots(f, byRegion[r.Code])
			}
			if left > 0 {
				if m.Method != MoveOwner {
					left-- // the owner chooses when to move: the room is only shown
				}
				room[key] = left
				m.ToRegion = r.Code
				break
			}
			room[key] = left
		}
		out = append(out, m)
	}
	return out, nil
}

// AddDrainItems records the devservers a drain moves, once each.
func (tx *Tx) AddDrainItems(ctx context.Context, drainID int64, moves []DrainMove) error {
	now := tx.Now()
	for _, m := range moves {
		var owner *int64
		if m.OwnerID != 0 {
			owner = &m.OwnerID
		}
		if _, err := execNamed(ctx, tx, `
INSERT INTO drain_items (drain_id, devserver_id, name, owner_id, method, state, from_host_id, to_region, updated_at)
VALUES (:drain, :d, :name, :owner, :method, 'pending', :host, :to, :now) ON CONFLICT DO NOTHING`,
			arg{"drain": drainID, "d": m.DevserverID, "name": m.Devserver, "owner": owner, "method": m.Method, "host": m.HostID, "to": m.ToRegion, "now": now}); err != nil {
			return fmt.Errorf("drain items: %w", err)
		}
	}
	return nil
}

const drainItemSelect = `
SELECT i.drain_id, i.devserver_id, i.name, i.owner_id, COALESCE(u.email, '') AS owner, i.method, i.state, i.from_host_id, i.to_region,
       i.to_host_id, i.migration_id, i.backup_id, i.task_id, i.error, i.updated_at
FROM drain_items i LEFT JOIN users u ON u.id = i.owner_id`

// DrainItems lists a drain's devservers in some states (none: all), by name.
func (s *Store) DrainItems(ctx context.Context, drainID int64, states ...string) ([]DrainItem, error) {
	return drainItems(ctx, s.read, drainID, states)
}

// DrainItems lists a drain's devservers inside the transaction.
func (tx *Tx) DrainItems(ctx context.Context, drainID int64, states ...string) ([]DrainItem, error) {
	return drainItems(ctx, tx, drainID, states)
}

func drainItems(ctx context.Context, q queryer, drainID int64, states []string) ([]DrainItem, error) {
	where := `i.drain_id = :drain`
	a := arg{"drain": drainID}
	if len(states) > 0 {
		ks := make([]string, len(states))
		for i, st := range states {
			ks[i] = fmt.Sprintf(":s%d", i)
			a[fmt.Sprintf("s%d", i)] = st
		}
		where += ` AND i.state IN (` + strings.Join(ks, ", ") + `)`
	}
	var out []DrainItem
	if err := selectNamed(ctx, q, &out, drainItemSelect+` WHERE `+where+` ORDER BY i.name`, a); err != nil {
		return nil, fmt.Errorf("drain %d items: %w", drainID, err)
	}
	return out, nil
}

// DrainItem returns one item inside the transaction.
func (tx *Tx) DrainItem(ctx context.Context, drainID, devserverID int64) (DrainItem, error) {
	var it DrainItem
	if err := getNamed(ctx, tx, &it, drainItemSelect+` WHERE i.drain_id = :drain AND i.devserver_id = :d`, arg{"drain": drainID, "d": devserverID}); err != nil {
		return DrainItem{}, fmt.Errorf("drain %d item %d: %w", drainID, devserverID, err)
	}
	return it, nil
}

// DrainProgress counts a drain's devservers by outcome.
func (s *Store) DrainProgress(ctx context.Context, drainID int64) (DrainProgress, error) {
	return drainProgress(ctx, s.read, drainID)
}

// DrainProgress counts inside the transaction.
func (tx *Tx) DrainProgress(ctx context.Context, drainID int64) (DrainProgress, error) {
	return drainProgress(ctx, tx, drainID)
}

func drainProgress(ctx context.Context, q queryer, drainID int64) (DrainProgress, error) {
	var rows []struct {
		State string `db:"state"`
		N     int    `db:"n"`
	}
	// A migration that ended counts as its outcome before the drain's step
	// settles it (an owner's "move me" may end after the drain).
	if err := selectNamed(ctx, q, &rows, `
SELECT CASE WHEN i.state = 'migrating' AND m.state = 'done' THEN 'done'
            WHEN i.state = 'migrating' AND m.state = 'rolled_back' THEN 'failed'
            ELSE i.state END AS state, COUNT(*) AS n
FROM drain_items i LEFT JOIN devserver_migrations m ON m.id = i.migration_id
WHERE i.drain_id = :id GROUP BY 1`, arg{"id": drainID}); err != nil {
		return DrainProgress{}, fmt.Errorf("drain %d progress: %w", drainID, err)
	}
	var p DrainProgress
	for _, r := range rows {
		p.Total += r.N
		switch r.State {
		case ItemDone:
			p.Done += r.N
		case ItemOwner:
			p.Owner += r.N
		case ItemFailed:
			p.Failed += r.N
		case ItemOverdue:
			p.Overdue += r.N
		case ItemCancelled:
			p.Cancelled += r.N
		default:
			p.Remaining += r.N
		}
	}
	return p, nil
}

// ClaimDrainItems moves up to n pending items to moving, keeping at most
// limit in flight (moving or migrating), and returns them. The write
// transaction makes the count and the claim one step.
func (tx *Tx) ClaimDrainItems(ctx context.Context, drainID int64, limit int) ([]DrainItem, error) {
	var inflight int
	if err := getNamed(ctx, tx, &inflight, `SELECT COUNT(*) FROM drain_items WHERE drain_id = :id AND state IN ('moving', 'migrating')`, arg{"id": drainID}); err != nil {
		return nil, err
	}
	n := limit - inflight
	if n <= 0 {
		return nil, nil
	}
	var ids []int64
	if err := selectNamed(ctx, tx, &ids, `SELECT devserver_id FROM drain_items WHERE drain_id = :id AND state = 'pending' AND method IN ('live', 'migrate', 'release') ORDER BY devserver_id LIMIT :n`,
		arg{"id": drainID, "n": n}); err != nil {
		return nil, err
	}
	out := make([]DrainItem, 0, len(ids))
	for _, id := range ids {
		if _, err := execNamed(ctx, tx, `UPDATE drain_items SET state = 'moving', updated_at = :now WHERE drain_id = :drain AND devserver_id = :d AND state = 'pending'`,
			arg{"drain": drainID, "d": id, "now": tx.Now()}); err != nil {
			return nil, err
		}
		it, err := tx.DrainItem(ctx, drainID, id)
		if err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, nil
}

// SetDrainItem records an item's new state (from one of from) with what
// the move produced; it tells whether the item was in one of from.
func (tx *Tx) SetDrainItem(ctx context.Context, it DrainItem, from []string, state string) (bool, error) {
	ks := make([]string, len(from))
	a := arg{"drain": it.DrainID, "d": it.DevserverID, "state": state, "to_region": it.ToRegion, "to_host": it.ToHostID,
		"migration": it.MigrationID, "backup": it.BackupID, "task": it.TaskID, "error": clip(it.Error), "now": tx.Now()}
	for i, f := range from {
		ks[i] = fmt.Sprintf(":f%d", i)
		a[fmt.Sprintf("f%d", i)] = f
	}
	n, err := execNamed(ctx, tx, `
UPDATE drain_items SET state = :state, to_region = :to_region, to_host_id = :to_host, migration_id = :migration, backup_id = :backup,
    task_id = :task, error = :error, updated_at = :now
WHERE drain_id = :drain AND devserver_id = :d AND state IN (`+strings.Join(ks, ", ")+`)`, a)
	return n == 1, err
}

// SettleDrainMigrations marks the drain's items moved by a devserver
// migration done or failed as their migrations end; it returns how many it
// settled.
func (tx *Tx) SettleDrainMigrations(ctx context.Context, drainID int64) (int, error) {
	a := arg{"id": drainID, "now": tx.Now()}
	done, err := execNamed(ctx, tx, `
UPDATE drain_items SET state = 'done', updated_at = :now
WHERE drain_id = :id AND state = 'migrating'
  AND migration_id IN (SELECT id FROM devserver_migrations WHERE state = 'done')`, a)
	if err != nil {
		return 0, err
	}
	failed, err := execNamed(ctx, tx, `
UPDATE drain_items SET state = 'failed', error = COALESCE((SELECT m.error FROM devserver_migrations m WHERE m.id = migration_id), ''), updated_at = :now
WHERE drain_id = :id AND state = 'migrating'
  AND migration_id IN (SELECT id FROM devserver_migrations WHERE state = 'rolled_back')`, a)
	return int(done + failed), err
}

// DrainLiveMoveTarget takes capacity for a devserver on a ready host of the
// nearest active region (other than its own) that has room, marks the
// devserver migrating, and records the target on the item, all in the
// caller's transaction. It returns the host, or a ConflictError no_capacity.
func (tx *Tx) DrainLiveMoveTarget(ctx context.Context, who Actor, it DrainItem, d Devserver) (Host, error) {
	f, err := flavorByName(ctx, tx, d.Flavor)
	if err != nil {
		return Host{}, err
	}
	regions, err := regionsByNearness(ctx, tx, d.Region)
	if err != nil {
		return Host{}, err
	}
	for _, r := range regions {
		if r.Code == d.Region || !r.Active() {
			continue
		}
		h, err := tx.takeCapacity(ctx, f, r.Code)
		if err != nil {
			return Host{}, fmt.Errorf("live move %s: %w", d.Name, err)
		}
		if h.ID == 0 {
			continue
		}
		n, err := execNamed(ctx, tx, `UPDATE devservers SET state = 'migrating', status_note = :note, updated_at = :now WHERE id = :id AND state = 'ready'`,
			arg{"id": d.ID, "note": "Live-migrating to " + r.Code + " (region drain)", "now": tx.Now()})
		if err != nil {
			return Host{}, err
		}
		if n == 0 {
			return Host{}, Conflict("invalid_state", fmt.Sprintf("Devserver %s is %s; only a ready devserver moves.", d.Name, d.State))
		}
		it.ToRegion, it.ToHostID = r.Code, &h.ID
		if _, err := tx.SetDrainItem(ctx, it, []string{ItemMoving}, ItemMoving); err != nil {
			return Host{}, err
		}
		return h, tx.Audit(ctx, who, "devserver.live_migrate", "devserver", d.Name, map[string]any{"from": d.Host, "to": h.Name, "region": r.Code})
	}
	return Host{}, Conflict("no_capacity", fmt.Sprintf("No active region has room for %s (%s).", d.Name, d.Flavor))
}

// FinishDrainLiveMove puts a live-migrated devserver on its new host and region,
// frees the source host's capacity and marks the item done.
func (tx *Tx) FinishDrainLiveMove(ctx context.Context, who Actor, it DrainItem, d Devserver) error {
	if _, err := tx.switchLiveMove(ctx, d, it.FromHostID, *it.ToHostID, it.ToRegion, ""); err != nil {
		return fmt.Errorf("finish live move %s: %w", d.Name, err)
	}
	if _, err := tx.SetDrainItem(ctx, it, []string{ItemMoving}, ItemDone); err != nil {
		return err
	}
	return tx.Audit(ctx, who, "devserver.live_migrated", "devserver", d.Name, map[string]any{"region": it.ToRegion})
}

// FailDrainLiveMove gives back the target's capacity, leaves the devserver ready
// where it was, and marks the item failed.
func (tx *Tx) FailDrainLiveMove(ctx context.Context, who Actor, it DrainItem, d Devserver, cause string) error {
	if it.ToHostID != nil {
		if _, err := tx.abandonLiveMove(ctx, d, *it.ToHostID, "Live migration for the region drain failed: "+clip(cause)); err != nil {
			return err
		}
	}
	it.Error = cause
	if _, err := tx.SetDrainItem(ctx, it, []string{ItemMoving}, ItemFailed); err != nil {
		return err
	}
	return tx.Audit(ctx, who, "devserver.live_migrate_failed", "devserver", d.Name, map[string]any{"error": clip(cause)})
}

// CreateDrainTask gives a person a task (no notification: the drain's one
// notification already told them), returning its ID.
func (tx *Tx) CreateDrainTask(ctx context.Context, userID int64, title, link string, due time.Time) (int64, error) {
	return tx.createTask(ctx, userID, 0, title, link, due)
}

// OpenOwnerDrainItem is the open drain item asking the owner to move a
// physical devserver, if any (for the devserver page's "move me").
func (s *Store) OpenOwnerDrainItem(ctx context.Context, devserverID int64) (DrainItem, Drain, error) {
	var it DrainItem
	err := getNamed(ctx, s.read, &it, drainItemSelect+` WHERE i.devserver_id = :d AND i.method = 'owner' AND i.state IN ('owner', 'overdue', 'pending', 'failed')
  AND i.drain_id IN (SELECT id FROM drains WHERE state <> 'cancelled') ORDER BY i.drain_id DESC LIMIT 1`,
		arg{"d": devserverID})
	if err != nil {
		return DrainItem{}, Drain{}, err
	}
	d, err := drainBy(ctx, s.read, `id = :v`, it.DrainID)
	return it, d, err
}

// DrainPlan is the plan inside the transaction.
func (tx *Tx) DrainPlan(ctx context.Context, region string) ([]DrainMove, error) {
	return drainPlan(ctx, tx, region)
}

// RegionsByNearness lists the regions by nearness to from, inside the transaction.
func (tx *Tx) RegionsByNearness(ctx context.Context, from string) ([]Region, error) {
	return regionsByNearness(ctx, tx, from)
}

// RegionByCode returns a region inside the transaction.
func (tx *Tx) RegionByCode(ctx context.Context, code string) (Region, error) {
	return regionByCode(ctx, tx, code)
}

// MarkOwnerMoving records that the owner of a physical devserver asked to
// move by a drain started its migration ("move me").
func (tx *Tx) MarkOwnerMoving(ctx context.Context, devserverID, migrationID int64, toRegion string) error {
	_, err := execNamed(ctx, tx, `
UPDATE drain_items SET state = 'migrating', migration_id = :m, to_region = :to, updated_at = :now
WHERE devserver_id = :d AND method = 'owner' AND state IN ('pending', 'owner', 'overdue', 'failed')
  AND drain_id IN (SELECT id FROM drains WHERE state <> 'cancelled')`,
		arg{"d": devserverID, "m": migrationID, "to": toRegion, "now": tx.Now()})
	return err
}

// nearestActiveWithRoom is the active region nearest to from (from itself
// first) with room for one devserver of flavour f.
func (tx *Tx) nearestActiveWithRoom(ctx context.Context, f Flavor, from string) (Region, bool, error) {
	caps, err := capacity(ctx, tx, f)
	if err != nil {
		return Region{}, false, err
	}
	ms, err := latenciesFrom(ctx, tx, from)
	if err != nil {
		return Region{}, false, err
	}
	free := map[string]int{}
	regions := make([]Region, 0, len(caps))
	for _, c := range caps {
		free[c.Region.Code] = c.Free
		regions = append(regions, c.Region)
	}
	for _, r := range ByNearness(regions, from, ms) {
		if r.Active() && free[r.Code] > 0 {
			return r, true, nil
		}
	}
	return Region{}, false, nil
}
