package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Host states.
const (
	HostReady           = "ready"
	HostMaintenance     = "maintenance"
	HostDecommissioning = "decommissioning"
	HostRetired         = "retired"
	HostUnreachable     = "unreachable"
)

// Host operations an admin starts.
const (
	HostOpMaintenance  = "maintenance"
	HostOpDecommission = "decommission"
)

// CheckHostOperation tells whether a host in its current state may start
// the operation: maintenance from ready, decommissioning from ready or
// maintenance. The error is a ConflictError naming why not.
func CheckHostOperation(h Host, op string) error {
	switch {
	case h.State == HostRetired:
		return Conflict("host_retired", fmt.Sprintf("Host %s is retired and out of circulation.", h.Name))
	case op == HostOpMaintenance && h.State == HostMaintenance:
		return Conflict("already_in_maintenance", fmt.Sprintf("Host %s is in maintenance already.", h.Name))
	case h.State == HostDecommissioning:
		return Conflict("already_decommissioning", fmt.Sprintf("Host %s is being decommissioned already.", h.Name))
	case op == HostOpMaintenance && h.State != HostReady,
		op == HostOpDecommission && h.State != HostReady && h.State != HostMaintenance:
		return Conflict("invalid_host_state", fmt.Sprintf("Host %s is %s; %s needs a ready host.", h.Name, h.State, op))
	case op != HostOpMaintenance && op != HostOpDecommission:
		return fmt.Errorf("unknown host operation %q", op)
	}
	return nil
}

// HostLoad is a host with how many live devservers it runs, for the hosts page.
type HostLoad struct {
	Host
	Devservers int `db:"devservers" json:"devservers"`
}

// HostsWithLoad lists every host with its live devservers, by region and name.
func (s *Store) HostsWithLoad(ctx context.Context) ([]HostLoad, error) {
	var hs []HostLoad
	err := s.read.SelectContext(ctx, &hs, `
SELECT `+prefixed("h.", hostColumns)+`,
       (SELECT COUNT(*) FROM devservers d WHERE d.host_id = h.id AND d.state NOT IN ('released', 'failed')) AS devservers
FROM hosts h ORDER BY h.region, h.name`)
	if err != nil {
		return nil, fmt.Errorf("hosts with load: %w", err)
	}
	return hs, nil
}

func prefixed(prefix, columns string) string {
	parts := strings.Split(columns, ",")
	for i, p := range parts {
		parts[i] = prefix + strings.TrimSpace(p)
	}
	return strings.Join(parts, ", ")
}

func hostByName(ctx context.Context, q queryer, name string) (Host, error) {
	var h Host
	if err := getNamed(ctx, q, &h, `SELECT `+hostColumns+` FROM hosts WHERE name = :name`, arg{"name": name}); err != nil {
		return Host{}, fmt.Errorf("host %s: %w", name, err)
	}
	return h, nil
}

// HostByName returns one host by name inside the transaction.
func (tx *Tx) HostByName(ctx context.Context, name string) (Host, error) {
	return hostByName(ctx, tx, name)
}

// SetHostState moves a host from one of the states in from to the state to,
// conditionally, so two operations racing on a host cannot both win. A host
// already in to is left alone when to is listed in from.
func (tx *Tx) SetHostState(ctx context.Context, who Actor, name string, from []string, to string) (Host, error) {
	h, err := hostByName(ctx, tx, name)
	if err != nil {
		return Host{}, err
	}
	if h.State == to && slices.Contains(from, to) {
		return h, nil
	}
	if !slices.Contains(from, h.State) {
		return Host{}, Conflict("invalid_host_state", fmt.Sprintf("Host %s is %s, not %s.", h.Name, h.State, strings.Join(from, " or ")))
	}
	n, err := execNamed(ctx, tx, `UPDATE hosts SET state = :to WHERE id = :id AND state = :from`, arg{"id": h.ID, "to": to, "from": h.State})
	if err != nil {
		return Host{}, fmt.Errorf("set host %s state: %w", name, err)
	}
	if n == 0 {
		return Host{}, Conflict("invalid_host_state", fmt.Sprintf("Host %s changed state; try again.", h.Name))
	}
	if err := tx.Audit(ctx, who, "host.state", "host", h.Name, map[string]any{"from": h.State, "to": to}); err != nil {
		return Host{}, err
	}
	h.State = to
	return h, nil
}

// RetireHost takes a decommissioned host out of circulation once nothing
// runs on it any more.
func (tx *Tx) RetireHost(ctx context.Context, who Actor, name string) (Host, error) {
	h, err := hostByName(ctx, tx, name)
	if err != nil {
		return Host{}, err
	}
	if h.State == HostRetired {
		return h, nil
	}
	live, err := liveOnHost(ctx, tx, h.ID)
	if err != nil {
		return Host{}, err
	}
	if live > 0 {
		return Host{}, Conflict("host_not_empty", fmt.Sprintf("Host %s still runs %d devservers.", h.Name, live))
	}
	return tx.SetHostState(ctx, who, name, []string{HostDecommissioning}, HostRetired)
}

func liveOnHost(ctx context.Context, q queryer, hostID int64) (int, error) {
	var n int
	err := getNamed(ctx, q, &n, `SELECT COUNT(*) FROM devservers WHERE host_id = :id AND state NOT IN ('released', 'failed')`, arg{"id": hostID})
	if err != nil {
		return 0, fmt.Errorf("devservers on host %d: %w", hostID, err)
	}
	return n, nil
}

// HostDevservers lists the live devservers on a host (not released, not failed), oldest first.
func (tx *Tx) HostDevservers(ctx context.Context, hostID int64) ([]Devserver, error) {
	return hostDevservers(ctx, tx, hostID)
}

// HostDevservers lists the live devservers on a host, outside a transaction.
func (s *Store) HostDevservers(ctx context.Context, hostID int64) ([]Devserver, error) {
	return hostDevservers(ctx, s.read, hostID)
}

func hostDevservers(ctx context.Context, q queryer, hostID int64) ([]Devserver, error) {
	var ds []Devserver
	err := selectNamed(ctx, q, &ds, devserverSelect+` WHERE d.host_id = :id AND d.state NOT IN ('released', 'failed') ORDER BY d.id`, arg{"id": hostID})
	if err != nil {
		return nil, fmt.Errorf("devservers on host %d: %w", hostID, err)
	}
	return ds, nil
}

// pickTarget takes room for one devserver of flavour f on a ready host: in
// the region from first, then in the other active regions, nearest first.
// The host exclude (0: none) is skipped. It returns a ConflictError
// no_capacity when no host anywhere has room.
func pickTarget(ctx context.Context, tx *Tx, f Flavor, from string, exclude int64) (Host, error) {
	regions, err := regionsByNearness(ctx, tx, from)
	if err != nil {
		return Host{}, err
	}
	for _, r := range regions {
		if !r.Active() {
			continue
		}
		h, err := tx.takeCapacityExcept(ctx, f, r.Code, exclude)
		if err != nil || h.ID != 0 {
			return h, err
		}
	}
	return Host{}, Conflict("no_capacity", fmt.Sprintf("No ready host in any active region has room for %s.", f.Name))
}

// HostMove is one live migration of a devserver off a host.
type HostMove struct {
	ID          int64      `db:"id" json:"id"`
	DevserverID int64      `db:"devserver_id" json:"-"`
	FromHostID  int64      `db:"from_host_id" json:"-"`
	ToHostID    int64      `db:"to_host_id" json:"-"`
	ToHost      string     `db:"to_host" json:"to_host"`
	ToRegion    string     `db:"to_region" json:"to_region"`
	RunID       *int64     `db:"run_id" json:"run_id,omitempty"`
	State       string     `db:"state" json:"state"`
	Error       string     `db:"error" json:"error,omitempty"`
	CreatedAt   time.Time  `db:"created_at" json:"created_at"`
	FinishedAt  *time.Time `db:"finished_at" json:"finished_at,omitempty"`
}

const hostMoveSelect = `
SELECT m.id, m.devserver_id, m.from_host_id, m.to_host_id, h.name AS to_host, h.region AS to_region, m.run_id, m.state, m.error,
       m.created_at, m.finished_at
FROM host_moves m JOIN hosts h ON h.id = m.to_host_id`

// HostMove returns a live migration off a host.
func (s *Store) HostMove(ctx context.Context, id int64) (HostMove, error) {
	var m HostMove
	if err := getNamed(ctx, s.read, &m, hostMoveSelect+` WHERE m.id = :id`, arg{"id": id}); err != nil {
		return HostMove{}, fmt.Errorf("host move %d: %w", id, err)
	}
	return m, nil
}

// StartLiveMove takes room on another ready host (the same region first,
// then the nearest active region) for a ready devserver and records its
// live migration; the devserver is migrating until the job finishes. The
// caller enqueues the job.
func (tx *Tx) StartLiveMove(ctx context.Context, who Actor, d Devserver, runID *int64) (HostMove, error) {
	if d.State != StateReady {
		return HostMove{}, Conflict("invalid_state", fmt.Sprintf("Devserver %s is %s; only a ready devserver can move.", d.Name, d.State))
	}
	f, err := flavorByName(ctx, tx, d.Flavor)
	if err != nil {
		return HostMove{}, err
	}
	to, err := pickTarget(ctx, tx, f, d.Region, d.HostID)
	if err != nil {
		return HostMove{}, err
	}
	now := tx.Now()
	var id int64
	// Under a savepoint: a caller may handle the conflict and go on.
	err = tx.savepoint(ctx, func() error {
		return getNamed(ctx, tx, &id, `
INSERT INTO host_moves (devserver_id, from_host_id, to_host_id, run_id, state, created_at)
VALUES (:d, :from, :to, :run, 'running', :now) RETURNING id`, arg{"d": d.ID, "from": d.HostID, "to": to.ID, "run": runID, "now": now})
	})
	if isUniqueViolation(err) {
		return HostMove{}, Conflict("already_migrating", fmt.Sprintf("Devserver %s is moving already.", d.Name))
	}
	if err != nil {
		return HostMove{}, fmt.Errorf("move %s: %w", d.Name, err)
	}
	n, err := execNamed(ctx, tx, `UPDATE devservers SET state = 'migrating', progress = 10, status_note = :note, updated_at = :now WHERE id = :id AND state = 'ready'`,
		arg{"id": d.ID, "now": now, "note": clipLong(fmt.Sprintf("Live-migrating from host %s to %s (%s): it keeps running", d.Host, to.Name, to.Region))})
	if err != nil {
		return HostMove{}, fmt.Errorf("move %s: %w", d.Name, err)
	}
	if n == 0 {
		return HostMove{}, Conflict("invalid_state", fmt.Sprintf("Devserver %s changed state; try again.", d.Name))
	}
	if err := tx.Audit(ctx, who, "devserver.live_migrate", "devserver", d.Name, map[string]any{"from": d.Host, "to": to.Name, "region": to.Region}); err != nil {
		return HostMove{}, err
	}
	return HostMove{ID: id, DevserverID: d.ID, FromHostID: d.HostID, ToHostID: to.ID, ToHost: to.Name, ToRegion: to.Region, RunID: runID, State: "running", CreatedAt: now}, nil
}

// FinishLiveMove records a live migration done: the devserver runs on the
// target (its region and hostname follow) and the source's capacity is given
// back, in one transaction. Only a running move finishes, once.
func (tx *Tx) FinishLiveMove(ctx context.Context, m HostMove, address string) error {
	now := tx.Now()
	n, err := execNamed(ctx, tx, `UPDATE host_moves SET state = 'done', finished_at = :now WHERE id = :id AND state = 'running'`, arg{"id": m.ID, "now": now})
	if err != nil || n == 0 {
		return err
	}
	d, err := tx.DevserverByID(ctx, m.DevserverID)
	if err != nil {
		return err
	}
	if _, err := tx.switchLiveMove(ctx, d, m.FromHostID, m.ToHostID, m.ToRegion, address); err != nil {
		return err
	}
	return tx.Audit(ctx, System, "devserver.live_migrated", "devserver", d.Name, map[string]any{"host": m.ToHost, "region": m.ToRegion})
}

// FailLiveMove ends a live migration that failed: the target's capacity is
// given back and the devserver is ready again where it was, saying why.
func (tx *Tx) FailLiveMove(ctx context.Context, m HostMove, cause error) error {
	now := tx.Now()
	reason := clipLong(cause.Error())
	n, err := execNamed(ctx, tx, `UPDATE host_moves SET state = 'failed', error = :error, finished_at = :now WHERE id = :id AND state = 'running'`,
		arg{"id": m.ID, "now": now, "error": reason})
	if err != nil || n == 0 {
		return err
	}
	d, err := tx.DevserverByID(ctx, m.DevserverID)
	if err != nil {
		return err
	}
	if _, err := tx.abandonLiveMove(ctx, d, m.ToHostID, "Live migration to "+m.ToHost+" failed: "+reason); err != nil {
		return err
	}
	return tx.Audit(ctx, System, "devserver.live_migrate_failed", "devserver", d.Name, map[string]any{"to": m.ToHost, "error": reason})
}

// LatestDoneBackup returns the devserver's newest finished backup.
func (tx *Tx) LatestDoneBackup(ctx context.Context, devserverID int64) (Backup, error) {
	var id int64
	err := getNamed(ctx, tx, &id, `SELECT id FROM backups WHERE devserver_id = :d AND state = 'done' ORDER BY id DESC LIMIT 1`, arg{"d": devserverID})
	if err != nil {
		return Backup{}, fmt.Errorf("latest backup of devserver %d: %w", devserverID, err)
	}
	return backupByID(ctx, tx, id)
}

// StartHostMigration moves a ready devserver by backup and restore (a
// devserver migration the migrate job runs) onto another ready host: the
// same region first, then the nearest active region. With a backup, the
// migration restores that backup instead of taking a new one (recreating a
// devserver from its latest backup), and any host may take it, its own
// included (a new instance in place). The caller enqueues the job.
func (tx *Tx) StartHostMigration(ctx context.Context, who Actor, d Devserver, backup *Backup, reason string) (DevserverMigration, error) {
	if d.State != StateReady {
		return DevserverMigration{}, Conflict("invalid_state", fmt.Sprintf("Devserver %s is %s; only a ready devserver can move.", d.Name, d.State))
	}
	var restoring int
	if err := getNamed(ctx, tx, &restoring, `SELECT COUNT(*) FROM restores WHERE devserver_id = :id AND state IN ('pending', 'running')`, arg{"id": d.ID}); err != nil {
		return DevserverMigration{}, fmt.Errorf("move %s: %w", d.Name, err)
	}
	if restoring > 0 {
		return DevserverMigration{}, Conflict("restore_in_progress", fmt.Sprintf("A backup is being restored onto %s; move it once the restore has finished.", d.Name))
	}
	f, err := flavorByName(ctx, tx, d.Flavor)
	if err != nil {
		return DevserverMigration{}, err
	}
	exclude := d.HostID
	var backupID *int64
	if backup != nil {
		exclude, backupID = 0, &backup.ID
	}
	to, err := pickTarget(ctx, tx, f, d.Region, exclude)
	if err != nil {
		return DevserverMigration{}, err
	}
	now := tx.Now()
	var id int64
	// Under a savepoint: a caller may handle the conflict and go on.
	err = tx.savepoint(ctx, func() error {
		return getNamed(ctx, tx, &id, `
INSERT INTO devserver_migrations (devserver_id, from_region, from_flavor, from_host_id, from_instance_id, to_region, to_flavor, to_host_id,
    backup_id, step, state, requested_by, created_at, updated_at)
VALUES (:d, :from_region, :flavor, :from_host, :from_instance, :to_region, :flavor, :to_host, :backup, :step, 'running', :by, :now, :now)
RETURNING id`, arg{"d": d.ID, "from_region": d.Region, "flavor": d.Flavor, "from_host": d.HostID, "from_instance": d.InstanceID,
			"to_region": to.Region, "to_host": to.ID, "backup": backupID, "step": StepBackup, "by": who.Name, "now": now})
	})
	if isUniqueViolation(err) {
		return DevserverMigration{}, Conflict("already_migrating", fmt.Sprintf("Devserver %s is migrating already.", d.Name))
	}
	if err != nil {
		return DevserverMigration{}, fmt.Errorf("move %s: %w", d.Name, err)
	}
	n, err := execNamed(ctx, tx, `UPDATE devservers SET state = 'migrating', progress = 0, status_note = :note, updated_at = :now WHERE id = :id AND state = 'ready'`,
		arg{"id": d.ID, "now": now, "note": clipLong(reason)})
	if err != nil {
		return DevserverMigration{}, fmt.Errorf("move %s: %w", d.Name, err)
	}
	if n == 0 {
		return DevserverMigration{}, Conflict("invalid_state", fmt.Sprintf("Devserver %s changed state; try again.", d.Name))
	}
	detail := map[string]any{"from": d.Host, "to": to.Name, "region": to.Region, "reason": reason}
	if backupID != nil {
		detail["backup"] = *backupID
	}
	if err := tx.Audit(ctx, who, "devserver.move_host", "devserver", d.Name, detail); err != nil {
		return DevserverMigration{}, err
	}
	return tx.Migration(ctx, id)
}

// MovableOffHost tells whether a devserver's owner may ask to move it off
// its host: the host is going away (maintenance, decommissioning).
func (s *Store) MovableOffHost(ctx context.Context, d Devserver) (Host, bool, error) {
	h, err := s.Host(ctx, d.HostID)
	if err != nil {
		return Host{}, false, err
	}
	return h, (h.State == HostMaintenance || h.State == HostDecommissioning) && d.State == StateReady, nil
}

// CheckMoveOffHost refuses a move off a host that is not going away.
func CheckMoveOffHost(h Host, d Devserver) error {
	if h.State != HostMaintenance && h.State != HostDecommissioning {
		return Conflict("host_not_leaving", fmt.Sprintf("Host %s is %s, not in maintenance or being decommissioned: devserver %s need not move off it.", h.Name, h.State, d.Name))
	}
	if d.State != StateReady {
		return Conflict("invalid_state", fmt.Sprintf("Devserver %s is %s; only a ready devserver can move.", d.Name, d.State))
	}
	return nil
}

// switchLiveMove puts a devserver that was live-migrating from host from on
// host to in region (its hostname follows; address "" keeps the old one)
// and gives the source's capacity back. It does nothing and says false when
// the devserver is no longer migrating from there. Drains and host
// operations both end their live moves through it.
func (tx *Tx) switchLiveMove(ctx context.Context, d Devserver, from, to int64, region, address string) (bool, error) {
	if address == "" {
		address = d.Address
	}
	n, err := execNamed(ctx, tx, `
UPDATE devservers SET host_id = :host, region = :region, address = :address, hostname = :hostname, state = 'ready', progress = 100,
    status_note = '', updated_at = :now
WHERE id = :id AND state = 'migrating' AND host_id = :from`, arg{"id": d.ID, "host": to, "from": from, "region": region, "address": address,
		"hostname": d.Name + "." + region + ".devport.internal", "now": tx.Now()})
	if err != nil || n == 0 {
		return false, err
	}
	return true, tx.freeFlavorCapacity(ctx, d, from)
}

// abandonLiveMove leaves a devserver whose live migration failed ready
// where it was, saying why, and gives back the capacity taken on host to.
// It does nothing and says false when the devserver is no longer migrating.
func (tx *Tx) abandonLiveMove(ctx context.Context, d Devserver, to int64, note string) (bool, error) {
	n, err := execNamed(ctx, tx, `UPDATE devservers SET state = 'ready', progress = 100, status_note = :note, updated_at = :now WHERE id = :id AND state = 'migrating'`,
		arg{"id": d.ID, "now": tx.Now(), "note": clipLong(note)})
	if err != nil || n == 0 {
		return false, err
	}
	return true, tx.freeFlavorCapacity(ctx, d, to)
}

// freeFlavorCapacity gives back the room d's flavour takes on host.
func (tx *Tx) freeFlavorCapacity(ctx context.Context, d Devserver, host int64) error {
	f, err := flavorByName(ctx, tx, d.Flavor)
	if err != nil {
		return err
	}
	if _, err := execNamed(ctx, tx, freeCapacitySQL, capacityArgs(host, f)); err != nil {
		return fmt.Errorf("free the capacity of %s: %w", d.Name, err)
	}
	return nil
}
