package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Migration steps, in order.
const (
	StepBackup        = "backup"
	StepProvision     = "provision"
	StepRestore       = "restore"
	StepSwitch        = "switch"
	StepReleaseSource = "release_source"
	StepDone          = "done"
)

// MigrationSteps lists the steps of a devserver migration in order.
var MigrationSteps = []string{StepBackup, StepProvision, StepRestore, StepSwitch, StepReleaseSource}

// DevserverMigration moves a devserver to another flavour and/or region:
// backup, provision the target, restore, move the hostname, release the
// source. A failure rolls back to the untouched source.
type DevserverMigration struct {
	ID             int64      `db:"id" json:"id"`
	DevserverID    int64      `db:"devserver_id" json:"-"`
	FromRegion     string     `db:"from_region" json:"from_region"`
	FromFlavor     string     `db:"from_flavor" json:"from_flavor"`
	FromHostID     int64      `db:"from_host_id" json:"-"`
	ToRegion       string     `db:"to_region" json:"to_region"`
	ToFlavor       string     `db:"to_flavor" json:"to_flavor"`
	ToHostID       int64      `db:"to_host_id" json:"-"`
	ToHost         string     `db:"to_host" json:"to_host"`
	ToInstanceID   string     `db:"to_instance_id" json:"-"`
	ToAddress      string     `db:"to_address" json:"-"`
	FromInstanceID string     `db:"from_instance_id" json:"-"`
	BackupID       *int64     `db:"backup_id" json:"backup_id,omitempty"`
	Step           string     `db:"step" json:"step"`
	State          string     `db:"state" json:"state"`
	Error          string     `db:"error" json:"error,omitempty"`
	RequestedBy    string     `db:"requested_by" json:"requested_by"`
	CreatedAt      time.Time  `db:"created_at" json:"created_at"`
	UpdatedAt      time.Time  `db:"updated_at" json:"updated_at"`
	FinishedAt     *time.Time `db:"finished_at" json:"finished_at,omitempty"`
}

const migrationSelect = `
SELECT m.id, m.devserver_id, m.from_region, m.from_flavor, m.from_host_id, m.from_instance_id, m.to_region, m.to_flavor,
       m.to_host_id, h.name AS to_host, m.to_instance_id, m.to_address, m.backup_id, m.step, m.state, m.error,
       m.requested_by, m.created_at, m.updated_at, m.finished_at
FROM devserver_migrations m JOIN hosts h ON h.id = m.to_host_id`

// Migration returns a devserver migration.
func (s *Store) Migration(ctx context.Context, id int64) (DevserverMigration, error) {
	return migrationBy(ctx, s.read, `m.id = :v`, id)
}

// Migration returns a devserver migration inside the transaction.
func (tx *Tx) Migration(ctx context.Context, id int64) (DevserverMigration, error) {
	return migrationBy(ctx, tx, `m.id = :v`, id)
}

// LatestMigration returns a devserver's newest migration.
func (s *Store) LatestMigration(ctx context.Context, devserverID int64) (DevserverMigration, error) {
	return migrationBy(ctx, s.read, `m.devserver_id = :v ORDER BY m.id DESC LIMIT 1`, devserverID)
}

func migrationBy(ctx context.Context, q queryer, where string, v any) (DevserverMigration, error) {
	var m DevserverMigration
	if err := getNamed(ctx, q, &m, migrationSelect+` WHERE `+where, arg{"v": v}); err != nil {
		return DevserverMigration{}, fmt.Errorf("migration %v: %w", v, err)
	}
	return m, nil
}

// StartMigration takes capacity for a ready devserver on a host of the target
// region and flavour and records the migration; the devserver is migrating
// until the job finishes or rolls back. The caller enqueues the job.
func (tx *Tx) StartMigration(ctx context.Context, who Actor, d Devserver, toRegion, toFlavor string) (DevserverMigration, error) {
	if toRegion == "" {
		toRegion = d.Region
	}
	if toFlavor == "" {
		toFlavor = d.Flavor
	}
	p := Problems{}
	flavor, err := flavorByName(ctx, tx, toFlavor)
	if errors.Is(err, ErrNotFound) {
		p.Add("flavor", fmt.Sprintf("%q is not a flavour", clip(toFlavor)))
	} else if err != nil {
		return DevserverMigration{}, err
	}
	region, err := regionByCode(ctx, tx, toRegion)
	if errors.Is(err, ErrNotFound) {
		p.Add("region", fmt.Sprintf("%q is not a region", clip(toRegion)))
	} else if err != nil {
		return DevserverMigration{}, err
	}
	if err := p.Err(); err != nil {
		return DevserverMigration{}, err
	}
	if toRegion == d.Region && toFlavor == d.Flavor {
		return DevserverMigration{}, &ValidationError{Fields: map[string]string{"region": "name another region or flavour to migrate to"}}
	}
	if d.State != StateReady {
		return DevserverMigration{}, Conflict("invalid_state", fmt.Sprintf("Devserver %s is %s; only a ready devserver can migrate.", d.Name, d.State))
	}
	// A restore onto the source while the migration copies it would be lost
	// at the switch.
	var restoring int
	if err := getNamed(ctx, tx, &restoring, `SELECT COUNT(*) FROM restores WHERE devserver_id = :id AND state IN ('pending', 'running')`, arg{"id": d.ID}); err != nil {
		return DevserverMigration{}, fmt.Errorf("migrate %s: %w", d.Name, err)
	}
	if restoring > 0 {
		return DevserverMigration{}, Conflict("restore_in_progress", fmt.Sprintf("A backup is being restored onto %s; migrate it once the restore has finished.", d.Name))
	}
	if !region.Active() {
		return DevserverMigration{}, tx.noRoom(ctx, flavor, region, "region_not_active",
			fmt.Sprintf("Region %s is %s and takes no devservers.", region.Code, region.Status))
	}
	hosts, err := hostsIn(ctx, tx, region.Code)
	if err != nil {
		return DevserverMigration{}, err
	}
	var host Host
	for _, h := range PlacementOrder(flavor, hosts) {
		n, err := execNamed(ctx, tx, takeCapacitySQL, capacityArgs(h.ID, flavor))
		if err != nil {
			return DevserverMigration{}, fmt.Errorf("migrate %s: take capacity: %w", d.Name, err)
		}
		if n == 1 {
			host = h
			break
		}
	}
	if host.ID == 0 {
		return DevserverMigration{}, tx.noRoom(ctx, flavor, region, "no_capacity", fmt.Sprintf("No capacity for %s in %s.", flavor.Name, region.Code))
	}
	now := tx.Now()
	var id int64
	// Under a savepoint: a caller may handle the conflict and go on.
	err = tx.savepoint(ctx, func() error {
		return getNamed(ctx, tx, &id, `
INSERT INTO devserver_migrations (devserver_id, from_region, from_flavor, from_host_id, from_instance_id, to_region, to_flavor, to_host_id,
    step, state, requested_by, created_at, updated_at)
VALUES (:d, :from_region, :from_flavor, :from_host, :from_instance, :to_region, :to_flavor, :to_host, 'backup', 'running', :by, :now, :now)
RETURNING id`, arg{"d": d.ID, "from_region": d.Region, "from_flavor": d.Flavor, "from_host": d.HostID, "from_instance": d.InstanceID,
			"to_region": region.Code, "to_flavor": flavor.Name, "to_host": host.ID, "by": who.Name, "now": now})
	})
	if isUniqueViolation(err) {
		return DevserverMigration{}, Conflict("already_migrating", fmt.Sprintf("Devserver %s is migrating already.", d.Name))
	}
	if err != nil {
		return DevserverMigration{}, fmt.Errorf("migrate %s: %w", d.Name, err)
	}
	n, err := execNamed(ctx, tx, `UPDATE devservers SET state = 'migrating', progress = 0, status_note = :note, updated_at = :now WHERE id = :id AND state = 'ready'`,
		arg{"id": d.ID, "now": now, "note": "Step 1 of 5: backing up"})
	if err != nil {
		return DevserverMigration{}, fmt.Errorf("migrate %s: %w", d.Name, err)
	}
	if n == 0 {
		return DevserverMigration{}, Conflict("invalid_state", fmt.Sprintf("Devserver %s changed state; try again.", d.Name))
	}
	if err := tx.Audit(ctx, who, "devserver.migrate", "devserver", d.Name, map[string]any{
		"from": d.Region + "/" + d.Flavor, "to": region.Code + "/" + flavor.Name, "host": host.Name,
	}); err != nil {
		return DevserverMigration{}, err
	}
	return tx.Migration(ctx, id)
}

// migrationStepNotes says what each step does, for the devserver's live status.
var migrationStepNotes = map[string]string{
	StepBackup:        "Step 1 of 5: backing up",
	StepProvision:     "Step 2 of 5: provisioning the target",
	StepRestore:       "Step 3 of 5: restoring onto the target",
	StepSwitch:        "Step 4 of 5: moving the hostname",
	StepReleaseSource: "Step 5 of 5: releasing the source",
}

// MigrationStep records that a migration reached step (with what the
// previous step produced) and shows it on the devserver.
func (tx *Tx) MigrationStep(ctx context.Context, m DevserverMigration, step string) error {
	_, err := execNamed(ctx, tx, `
UPDATE devserver_migrations SET step = :step, backup_id = :backup_id, to_instance_id = :to_instance, to_address = :to_address, updated_at = :now
WHERE id = :id AND state = 'running'`, arg{"id": m.ID, "step": step, "backup_id": m.BackupID, "to_instance": m.ToInstanceID,
		"to_address": m.ToAddress, "now": tx.Now()})
	if err != nil {
		return fmt.Errorf("migration step: %w", err)
	}
	progress := map[string]int{StepBackup: 5, StepProvision: 25, StepRestore: 55, StepSwitch: 80, StepReleaseSource: 90}[step]
	_, err = execNamed(ctx, tx, `UPDATE devservers SET progress = :p, status_note = :note, updated_at = :now WHERE id = :id`,
		arg{"id": m.DevserverID, "p": progress, "note": migrationStepNotes[step], "now": tx.Now()})
	return err
}

// SwitchMigration moves the devserver onto its target: host, region,
// flavour, instance, address and hostname. The source's capacity is held
// until the source is released.
func (tx *Tx) SwitchMigration(ctx context.Context, m DevserverMigration) error {
	d, err := tx.DevserverByID(ctx, m.DevserverID)
	if err != nil {
		return err
	}
	_, err = execNamed(ctx, tx, `
UPDATE devservers SET host_id = :host, region = :region, flavor = :flavor, instance_id = :instance, address = :address,
    hostname = :hostname, updated_at = :now
WHERE id = :id AND state = 'migrating'`, arg{"id": d.ID, "host": m.ToHostID, "region": m.ToRegion, "flavor": m.ToFlavor,
		"instance": m.ToInstanceID, "address": m.ToAddress, "hostname": d.Name + "." + m.ToRegion + ".devport.internal", "now": tx.Now()})
	if err != nil {
		return fmt.Errorf("switch %s: %w", d.Name, err)
	}
	if err := tx.MigrationStep(ctx, m, StepReleaseSource); err != nil {
		return err
	}
	return tx.Audit(ctx, System, "devserver.migrate_switch", "devserver", d.Name, map[string]any{"region": m.ToRegion, "flavor": m.ToFlavor, "address": m.ToAddress})
}

// FinishMigration records a migration done: the source's capacity is given
// back and the devserver is ready where it now runs.
func (tx *Tx) FinishMigration(ctx context.Context, m DevserverMigration) error {
	now := tx.Now()
	// Only a running migration finishes, once: a second run of the job (a
	// retry, a rescue) must not give the source's capacity back again.
	n, err := execNamed(ctx, tx, `UPDATE devserver_migrations SET step = 'done', state = 'done', updated_at = :now, finished_at = :now WHERE id = :id AND state = 'running'`,
		arg{"id": m.ID, "now": now})
	if err != nil || n == 0 {
		return err
	}
	from, err := flavorByName(ctx, tx, m.FromFlavor)
	if err != nil {
		return err
	}
	if _, err := execNamed(ctx, tx, freeCapacitySQL, capacityArgs(m.FromHostID, from)); err != nil {
		return fmt.Errorf("finish migration: %w", err)
	}
	if _, err := execNamed(ctx, tx, `UPDATE devservers SET state = 'ready', progress = 100, status_note = '', updated_at = :now WHERE id = :id AND state = 'migrating'`,
		arg{"id": m.DevserverID, "now": now}); err != nil {
		return err
	}
	d, err := tx.DevserverByID(ctx, m.DevserverID)
	if err != nil {
		return err
	}
	return tx.Audit(ctx, System, "devserver.migrated", "devserver", d.Name, map[string]any{"region": m.ToRegion, "flavor": m.ToFlavor, "host": m.ToHost})
}

// RollBackMigration ends a failed migration: the target's capacity is given
// back and the devserver is ready again on its untouched source, with why
// the migration failed. The caller destroyed the target instance first.
func (tx *Tx) RollBackMigration(ctx context.Context, m DevserverMigration, cause error) error {
	now := tx.Now()
	reason := clipLong(cause.Error())
	// Only a running migration rolls back, once, and never one that has
	// switched over: the target's capacity is given back exactly once.
	n, err := execNamed(ctx, tx, `UPDATE devserver_migrations SET state = 'rolled_back', error = :error, updated_at = :now, finished_at = :now
WHERE id = :id AND state = 'running' AND step <> 'release_source'`, arg{"id": m.ID, "now": now, "error": reason})
	if err != nil || n == 0 {
		return err
	}
	to, err := flavorByName(ctx, tx, m.ToFlavor)
	if err != nil {
		return err
	}
	if _, err := execNamed(ctx, tx, freeCapacitySQL, capacityArgs(m.ToHostID, to)); err != nil {
		return fmt.Errorf("roll back migration: %w", err)
	}
	note := fmt.Sprintf("Migration to %s/%s failed at %s and was rolled back: %s", m.ToRegion, m.ToFlavor, strings.ReplaceAll(m.Step, "_", " "), reason)
	if _, err := execNamed(ctx, tx, `UPDATE devservers SET state = 'ready', progress = 100, status_note = :note, updated_at = :now WHERE id = :id AND state = 'migrating'`,
		arg{"id": m.DevserverID, "now": now, "note": clipLong(note)}); err != nil {
		return err
	}
	d, err := tx.DevserverByID(ctx, m.DevserverID)
	if err != nil {
		return err
	}
	return tx.Audit(ctx, System, "devserver.migrate_rolled_back", "devserver", d.Name, map[string]any{"step": m.Step, "error": reason})
}
