package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Storm kinds: a storm takes a whole region down; a dark storm wipes some of
// its devservers.
const (
	StormKind     = "storm"
	DarkStormKind = "dark_storm"
)

// States of a devserver a storm touched.
const (
	StormUnreachable   = "unreachable"    // its region is down
	StormLost          = "lost"           // a dark storm wiped it
	StormReplacing     = "replacing"      // a replacement is being made from its backup
	StormReplaced      = "replaced"       // the replacement is ready with the backup's data
	StormReplaceFailed = "replace_failed" // the replacement failed; the owner may try again
	StormRecovered     = "recovered"      // the region came back and so did the devserver
)

// Choices an owner makes about a replacement for when the region recovers.
const (
	ChoiceKeep    = "keep"    // keep the replacement; the original is released
	ChoiceRelease = "release" // release the replacement; the original comes back
)

// ReauthWindow is how recent a browser sign-in must be for a storm.
const ReauthWindow = 15 * time.Minute

// MaxDarkStormCount bounds how many devservers one dark storm wipes.
const MaxDarkStormCount = 1000

// Storm is a storm or a dark storm of a region.
type Storm struct {
	ID          int64      `db:"id" json:"id"`
	Region      string     `db:"region" json:"region"`
	Kind        string     `db:"kind" json:"kind"`
	Reason      string     `db:"reason" json:"reason"`
	WipeCount   int        `db:"wipe_count" json:"count,omitempty"`
	RunID       *int64     `db:"run_id" json:"run_id"`
	SevID       *int64     `db:"sev_id" json:"sev_id"`
	BannerID    *int64     `db:"banner_id" json:"banner_id,omitempty"`
	Hosts       string     `db:"hosts" json:"-"`
	StartedBy   string     `db:"started_by" json:"started_by"`
	CreatedAt   time.Time  `db:"created_at" json:"created_at"`
	RecoveredAt *time.Time `db:"recovered_at" json:"recovered_at,omitempty"`
	RecoveredBy string     `db:"recovered_by" json:"recovered_by,omitempty"`
}

// Open tells whether a storm still holds its region down.
func (s Storm) Open() bool { return s.Kind == StormKind && s.RecoveredAt == nil }

// KindText is the storm's kind as people read it.
func (s Storm) KindText() string {
	if s.Kind == DarkStormKind {
		return "dark storm"
	}
	return "storm"
}

// StormDevserver is a devserver a storm touched, with what became of it.
type StormDevserver struct {
	ID            int64      `db:"id" json:"-"`
	StormID       int64      `db:"storm_id" json:"storm_id"`
	StormKind     string     `db:"storm_kind" json:"storm_kind"`
	Region        string     `db:"region" json:"region"`
	DevserverID   int64      `db:"devserver_id" json:"-"`
	Devserver     string     `db:"devserver" json:"devserver"`
	Flavor        string     `db:"flavor" json:"flavor"`
	OwnerID       int64      `db:"owner_id" json:"-"`
	Owner         string     `db:"owner" json:"owner"`
	BackupID      *int64     `db:"backup_id" json:"backup_id"`
	BackupAt      *time.Time `db:"backup_at" json:"backup_at"`
	ReplacementID *int64     `db:"replacement_id" json:"-"`
	Replacement   string     `db:"replacement" json:"replacement,omitempty"`
	RestoreID     *int64     `db:"restore_id" json:"restore_id,omitempty"`
	State         string     `db:"state" json:"state"`
	Choice        string     `db:"choice" json:"choice,omitempty"`
	Note          string     `db:"note" json:"note,omitempty"`
	CreatedAt     time.Time  `db:"created_at" json:"created_at"`
	UpdatedAt     time.Time  `db:"updated_at" json:"updated_at"`
}

// Replaceable tells whether the owner may ask for a replacement from the
// latest backup now.
func (e StormDevserver) Replaceable() bool {
	return e.BackupID != nil && (e.State == StormUnreachable || e.State == StormLost || e.State == StormReplaceFailed)
}

// LossWindow is the data lost: the time from the backup used to when the
// storm struck, or false when there was no backup (everything lost).
func (e StormDevserver) LossWindow() (time.Duration, bool) {
	if e.BackupAt == nil {
		return 0, false
	}
	return e.CreatedAt.Sub(*e.BackupAt), true
}

// LossText is the data-loss window as people read it.
func (e StormDevserver) LossText() string {
	d, ok := e.LossWindow()
	if !ok {
		return "no backup: everything lost"
	}
	return fmt.Sprintf("%s of work lost (since backup %d of %s)", HumanDuration(d), *e.BackupID, e.BackupAt.UTC().Format(time.RFC3339))
}

// StormLink is the page where an owner acts on a devserver a storm touched.
func StormLink(devserver string) string { return "/devservers/" + devserver + "/storm" }

// StormInput starts a storm or a dark storm.
type StormInput struct {
	Region   string
	Kind     string
	Reason   string
	Count    int  // dark storm: how many devservers to wipe
	Exercise bool // the SEV is an exercise, not an incident
}

const stormSelect = `SELECT id, region, kind, reason, wipe_count, run_id, sev_id, banner_id, hosts, started_by, created_at, recovered_at, recovered_by FROM storms`

const stormDevserverSelect = `
SELECT e.id, e.storm_id, s.kind AS storm_kind, s.region, e.devserver_id, d.name AS devserver, d.flavor, e.owner_id, u.email AS owner,
       e.backup_id, e.backup_at, e.replacement_id, COALESCE(r.name, '') AS replacement, e.restore_id, e.state, e.choice, e.note,
       e.created_at, e.updated_at
FROM storm_devservers e
JOIN storms s ON s.id = e.storm_id
JOIN devservers d ON d.id = e.devserver_id
JOIN users u ON u.id = e.owner_id
LEFT JOIN devservers r ON r.id = e.replacement_id`

func (tx *Tx) checkStorm(ctx context.Context, in *StormInput) (Region, error) {
	p := Problems{}
	in.Reason = strings.TrimSpace(in.Reason)
	switch in.Kind {
	case StormKind:
		if in.Reason == "" {
			p.Add("reason", "is required: say why the region goes down")
		}
	case DarkStormKind:
		if in.Count < 1 || in.Count > MaxDarkStormCount {
			p.Add("count", fmt.Sprintf("must be from 1 to %d", MaxDarkStormCount))
		}
		if in.Reason == "" {
			in.Reason = fmt.Sprintf("Dark storm: %d devservers wiped", in.Count)
		}
	default:
		return Region{}, fmt.Errorf("storm: unknown kind %q", in.Kind)
	}
	if len(in.Reason) > 500 {
		p.Add("reason", "is longer than 500 characters")
	}
	if err := p.Err(); err != nil {
		return Region{}, err
	}
	r, err := regionByCode(ctx, tx, in.Region)
	if err != nil {
		return Region{}, err
	}
	return r, nil
}

// BeginStorm starts a storm (the region goes down at once) or a dark storm,
// opening its SEV and, for a storm, the banner of the affected users. The
// caller starts the storm's run in the same transaction and links it with
// SetStormRun.
func (tx *Tx) BeginStorm(ctx context.Context, who Actor, in StormInput) (Storm, error) {
	region, err := tx.checkStorm(ctx, &in)
	if err != nil {
		return Storm{}, err
	}
	if in.Kind == StormKind {
		if err := tx.SetRegionStatus(ctx, who, region.Code, []string{"active", "draining", "drained"}, "down"); err != nil {
			var ce *ConflictError
			if errors.As(err, &ce) {
				return Storm{}, Conflict("region_down", fmt.Sprintf("Region %s is down already; recover it first.", region.Code))
			}
			return Storm{}, err
		}
	} else if region.Status == "down" {
		return Storm{}, Conflict("region_down", fmt.Sprintf("Region %s is down; a dark storm needs a region that runs.", region.Code))
	}
	kind := SevIncident
	if in.Exercise {
		kind = SevExercise
	}
	title := fmt.Sprintf("Storm: region %s down: %s", region.Code, in.Reason)
	sevLevel := 2
	if in.Kind == DarkStormKind {
		title = fmt.Sprintf("Dark storm in %s: %d devservers wiped", region.Code, in.Count)
		sevLevel = 1
	}
	title = clipTitle(title)
	regions := []string{region.Code}
	// The impact starts when the storm strikes, and devport knows it at once.
	struck := tx.Now()
	sev, err := tx.CreateSev(ctx, who, SevInput{Title: &title, Severity: &sevLevel, Kind: &kind, Regions: &regions, ImpactStartedAt: &struck, DetectedAt: &struck})
	if err != nil {
		return Storm{}, fmt.Errorf("storm of %s: SEV: %w", region.Code, err)
	}
	now := tx.Now()
	var id int64
	err = getNamed(ctx, tx, &id, `
INSERT INTO storms (region, kind, reason, wipe_count, sev_id, started_by, created_at)
VALUES (:region, :kind, :reason, :count, :sev, :by, :now) RETURNING id`,
		arg{"region": region.Code, "kind": in.Kind, "reason": in.Reason, "count": in.Count, "sev": sev.ID, "by": who.Name, "now": now})
	if isUniqueViolation(err) {
		return Storm{}, Conflict("region_down", fmt.Sprintf("Region %s is in a storm already.", region.Code))
	}
	if err != nil {
		return Storm{}, fmt.Errorf("storm of %s: %w", region.Code, err)
	}
	if in.Kind == StormKind {
		b, err := tx.CreateBanner(ctx, who, BannerInput{
			Message:  fmt.Sprintf("Region %s is down (%s). Your devservers there are unreachable: you can replace one from its latest backup from your tasks.", region.Code, in.Reason),
			Severity: "critical", Region: region.Code, Audience: "affected", SevID: &sev.ID,
		})
		if err != nil {
			return Storm{}, fmt.Errorf("storm of %s: banner: %w", region.Code, err)
		}
		if _, err := execNamed(ctx, tx, `UPDATE storms SET banner_id = :b WHERE id = :id`, arg{"b": b.ID, "id": id}); err != nil {
			return Storm{}, fmt.Errorf("storm of %s: %w", region.Code, err)
		}
	}
	if err := tx.Audit(ctx, who, "region."+in.Kind, "region", region.Code,
		map[string]any{"storm": id, "reason": in.Reason, "count": in.Count, "sev": sev.ID, "exercise": in.Exercise}); err != nil {
		return Storm{}, err
	}
	return stormByID(ctx, tx, id)
}

// SetStormRun links a storm and its SEV to the run that carries it out.
func (tx *Tx) SetStormRun(ctx context.Context, who Actor, id, runID int64) (Storm, error) {
	if _, err := execNamed(ctx, tx, `UPDATE storms SET run_id = :run WHERE id = :id`, arg{"run": runID, "id": id}); err != nil {
		return Storm{}, fmt.Errorf("storm %d run: %w", id, err)
	}
	st, err := stormByID(ctx, tx, id)
	if err != nil {
		return Storm{}, err
	}
	if st.SevID != nil {
		// The SEV opened in this same transaction (a SEV's run is set when it
		// opens): the run it links to is made after it, so it is set here.
		if _, err := execNamed(ctx, tx, `UPDATE sevs SET run_id = :run WHERE id = :sev AND run_id IS NULL`, arg{"run": runID, "sev": *st.SevID}); err != nil {
			return Storm{}, fmt.Errorf("storm %d run: %w", id, err)
		}
		if err := tx.Audit(ctx, who, "sev.link_run", "sev", strconv.FormatInt(*st.SevID, 10), map[string]any{"run": runID, "storm": id}); err != nil {
			return Storm{}, err
		}
	}
	return st, nil
}

func stormByID(ctx context.Context, q queryer, id int64) (Storm, error) {
	var s Storm
	if err := getNamed(ctx, q, &s, stormSelect+` WHERE id = :id`, arg{"id": id}); err != nil {
		return Storm{}, fmt.Errorf("storm %d: %w", id, err)
	}
	return s, nil
}

// Storm returns a storm by ID.
func (s *Store) Storm(ctx context.Context, id int64) (Storm, error) {
	return stormByID(ctx, s.read, id)
}

// StormByID returns a storm by ID inside the transaction.
func (tx *Tx) StormByID(ctx context.Context, id int64) (Storm, error) { return stormByID(ctx, tx, id) }

// Storms lists a region's storms and dark storms, newest first ("" lists all).
func (s *Store) Storms(ctx context.Context, region string) ([]Storm, error) {
	var out []Storm
	err := selectNamed(ctx, s.read, &out, stormSelect+` WHERE (:region = '' OR region = :region) ORDER BY id DESC LIMIT 100`, arg{"region": region})
	if err != nil {
		return nil, fmt.Errorf("storms: %w", err)
	}
	return out, nil
}

// OpenStorm returns the storm holding a region down.
func (s *Store) OpenStorm(ctx context.Context, region string) (Storm, error) {
	return openStorm(ctx, s.read, region)
}

func openStorm(ctx context.Context, q queryer, region string) (Storm, error) {
	var st Storm
	err := getNamed(ctx, q, &st, stormSelect+` WHERE region = :region AND kind = 'storm' AND recovered_at IS NULL`, arg{"region": region})
	if err != nil {
		return Storm{}, fmt.Errorf("open storm of %s: %w", region, err)
	}
	return st, nil
}

// StormDevservers lists the devservers a storm touched.
func (s *Store) StormDevservers(ctx context.Context, stormID int64) ([]StormDevserver, error) {
	return stormDevservers(ctx, s.read, `e.storm_id = :v`, stormID)
}

func stormDevservers(ctx context.Context, q queryer, where string, v any) ([]StormDevserver, error) {
	var out []StormDevserver
	if err := selectNamed(ctx, q, &out, stormDevserverSelect+` WHERE `+where+` ORDER BY e.id`, arg{"v": v}); err != nil {
		return nil, fmt.Errorf("storm devservers: %w", err)
	}
	return out, nil
}

// StormDevserverOf returns the latest storm entry of a devserver.
func (s *Store) StormDevserverOf(ctx context.Context, devserverID int64) (StormDevserver, error) {
	return stormDevserverOf(ctx, s.read, devserverID)
}

func stormDevserverOf(ctx context.Context, q queryer, devserverID int64) (StormDevserver, error) {
	var e StormDevserver
	if err := getNamed(ctx, q, &e, stormDevserverSelect+` WHERE e.devserver_id = :v ORDER BY e.id DESC LIMIT 1`, arg{"v": devserverID}); err != nil {
		return StormDevserver{}, fmt.Errorf("storm of devserver %d: %w", devserverID, err)
	}
	return e, nil
}

// StormDevserverByID returns a storm entry inside the transaction.
func (tx *Tx) StormDevserverByID(ctx context.Context, id int64) (StormDevserver, error) {
	var e StormDevserver
	if err := getNamed(ctx, tx, &e, stormDevserverSelect+` WHERE e.id = :v`, arg{"v": id}); err != nil {
		return StormDevserver{}, fmt.Errorf("storm entry %d: %w", id, err)
	}
	return e, nil
}

// latestBackup is the newest finished backup of each devserver.
const latestBackup = `(SELECT b.id FROM backups b WHERE b.devserver_id = d.id AND b.state = 'done' ORDER BY b.finished_at DESC NULLS LAST, b.id DESC LIMIT 1)`

// IsolateStorm makes a storm's region unreachable: its ready hosts, and its
// ready devservers (each recorded with its latest backup, once). It returns
// how many devservers it made unreachable.
func (tx *Tx) IsolateStorm(ctx context.Context, who Actor, id int64) (int, error) {
	st, err := stormByID(ctx, tx, id)
	if err != nil {
		return 0, err
	}
	if !st.Open() {
		return 0, nil
	}
	now := tx.Now()
	var hostIDs []int64
	if err := selectNamed(ctx, tx, &hostIDs, `SELECT id FROM hosts WHERE region = :region AND state = 'ready' ORDER BY id`, arg{"region": st.Region}); err != nil {
		return 0, fmt.Errorf("isolate %s: %w", st.Region, err)
	}
	if len(hostIDs) > 0 {
		if _, err := execNamed(ctx, tx, `UPDATE hosts SET state = 'unreachable' WHERE region = :region AND state = 'ready'`, arg{"region": st.Region}); err != nil {
			return 0, fmt.Errorf("isolate %s: hosts: %w", st.Region, err)
		}
		ids := make([]string, 0, len(hostIDs)+1)
		if st.Hosts != "" {
			ids = append(ids, st.Hosts)
		}
		for _, h := range hostIDs {
			ids = append(ids, strconv.FormatInt(h, 10))
		}
		if _, err := execNamed(ctx, tx, `UPDATE storms SET hosts = :hosts WHERE id = :id`, arg{"hosts": strings.Join(ids, ","), "id": id}); err != nil {
			return 0, fmt.Errorf("isolate %s: %w", st.Region, err)
		}
	}
	a := arg{"storm": id, "region": st.Region, "now": now}
	if _, err := execNamed(ctx, tx, `
INSERT INTO storm_devservers (storm_id, devserver_id, owner_id, backup_id, backup_at, state, created_at, updated_at)
SELECT :storm, d.id, d.owner_id, `+latestBackup+`, (SELECT finished_at FROM backups WHERE id = `+latestBackup+`), 'unreachable', :now, :now
FROM devservers d WHERE d.region = :region AND d.state = 'ready' AND d.owner_id IS NOT NULL
ON CONFLICT (storm_id, devserver_id) DO NOTHING`, a); err != nil {
		return 0, fmt.Errorf("isolate %s: devservers: %w", st.Region, err)
	}
	// Pooled devservers go unreachable too; they come back on recovery.
	n, err := execNamed(ctx, tx, `
UPDATE devservers SET state = 'unreachable', status_note = 'Region ' || :region || ' is down', updated_at = :now
WHERE region = :region AND state = 'ready'`, a)
	if err != nil {
		return 0, fmt.Errorf("isolate %s: devservers: %w", st.Region, err)
	}
	return int(n), tx.Audit(ctx, who, "region.isolate", "region", st.Region, map[string]any{"storm": id, "hosts": len(hostIDs), "devservers": n})
}

// NotifyStormOwners tells each owner of a devserver the storm touched, once
// per devserver, with a task whose link offers the replacement (or restore)
// from the latest backup. It returns how many were newly notified.
func (tx *Tx) NotifyStormOwners(ctx context.Context, who Actor, id int64, due time.Time) (int, error) {
	st, err := stormByID(ctx, tx, id)
	if err != nil {
		return 0, err
	}
	es, err := stormDevservers(ctx, tx, `e.storm_id = :v`, id)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range es {
		title := fmt.Sprintf("Region %s is down: your devserver %s is unreachable", st.Region, e.Devserver)
		body := "Region " + st.Region + " is down (" + st.Reason + "). Your devserver will come back when the region recovers."
		task := "Replace " + e.Devserver + " from its latest backup"
		if st.Kind == DarkStormKind {
			title = fmt.Sprintf("Your devserver %s lost its data", e.Devserver)
			body = "A dark storm in " + st.Region + " wiped your devserver: " + e.LossText() + "."
			task = "Restore " + e.Devserver + " from its latest backup onto a new devserver"
		}
		if e.BackupID != nil {
			body += " You can have a new devserver of the same flavour in the nearest running region, restored from its latest backup, with one click."
		} else {
			body += " It has no backup to restore from."
			task = ""
		}
		nid, sent, err := tx.notify(ctx, Notification{UserID: e.OwnerID, Kind: "storm", Title: clipTitle(title), Body: body, Link: StormLink(e.Devserver),
			IdempotencyKey: fmt.Sprintf("storm:%d:%d:%d", id, e.DevserverID, e.OwnerID)})
		if err != nil {
			return n, err
		}
		if !sent {
			continue
		}
		n++
		if task != "" {
			if _, err := tx.createTask(ctx, e.OwnerID, nid, task, StormLink(e.Devserver), due); err != nil {
				return n, err
			}
		}
	}
	return n, tx.Audit(ctx, who, "storm.notify", "storm", strconv.FormatInt(id, 10), map[string]any{"notified": n, "devservers": len(es)})
}

// StormContainerMove is a container a storm ended and the one made for its
// owner elsewhere (Fresh.ID is 0 when none could be made).
type StormContainerMove struct {
	Old, Fresh Container
	Problem    string
}

// MoveStormContainers ends the live containers of a storm's region and
// requests for each owner a fresh one of the same type and profile, placed
// in the nearest active region.
func (tx *Tx) MoveStormContainers(ctx context.Context, who Actor, id int64) ([]StormContainerMove, error) {
	st, err := stormByID(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	var ids []int64
	if err := selectNamed(ctx, tx, &ids, `SELECT id FROM containers WHERE region = :region AND state IN ('provisioning', 'ready') ORDER BY id`, arg{"region": st.Region}); err != nil {
		return nil, fmt.Errorf("storm containers of %s: %w", st.Region, err)
	}
	var out []StormContainerMove
	for _, cid := range ids {
		c, err := tx.ContainerByID(ctx, cid)
		if err != nil {
			return nil, err
		}
		if c.OwnerID == 0 {
			old, _, err := tx.EndContainer(ctx, who, c, EndReplaced)
			if err != nil {
				return nil, err
			}
			out = append(out, StormContainerMove{Old: old})
			continue
		}
		owner, err := tx.User(ctx, c.OwnerID)
		if err != nil {
			return nil, err
		}
		fresh, old, err := tx.FreshContainer(ctx, who, owner, c)
		var ce *ConflictError
		var ve *ValidationError
		if errors.As(err, &ce) || errors.As(err, &ve) {
			// No room or no longer allowed: the old one still ends; the owner hears why.
			old, _, err = tx.EndContainer(ctx, who, c, EndReplaced)
			if err != nil {
				return nil, err
			}
			out = append(out, StormContainerMove{Old: old, Problem: "no new container could be made: " + conflictText(ce, ve)})
		} else if err != nil {
			return nil, err
		} else {
			out = append(out, StormContainerMove{Old: old, Fresh: fresh})
		}
		m := out[len(out)-1]
		body := fmt.Sprintf("Region %s is down. Your %s container %s ended", st.Region, c.Type, c.Name)
		link := "/containers"
		if m.Fresh.ID != 0 {
			body += fmt.Sprintf("; a new one, %s, is being made for you in %s.", m.Fresh.Name, m.Fresh.Region)
			link = "/containers/" + m.Fresh.Name
		} else {
			body += "; " + m.Problem + "."
		}
		if _, _, err := tx.notify(ctx, Notification{UserID: c.OwnerID, Kind: "storm", Title: clipTitle(fmt.Sprintf("Your container %s was recreated elsewhere", c.Name)),
			Body: body, Link: link, IdempotencyKey: fmt.Sprintf("storm:%d:container:%d", id, c.ID)}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func conflictText(ce *ConflictError, ve *ValidationError) string {
	if ce != nil {
		return ce.Message
	}
	if ve != nil {
		return strings.TrimPrefix(ve.Error(), "invalid input: ")
	}
	return ""
}

// WipeStorm picks count random ready devservers of a dark storm's region
// (the same ones on a retry: the pick is seeded by the storm) and marks them
// lost, each with its latest backup and its data-loss window on the SEV's
// timeline. It returns the wiped devservers, for the fleet to destroy.
func (tx *Tx) WipeStorm(ctx context.Context, who Actor, id int64) ([]Devserver, error) {
	st, err := stormByID(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	var ids []int64
	if err := selectNamed(ctx, tx, &ids, `SELECT id FROM devservers WHERE region = :region AND state = 'ready' AND owner_id IS NOT NULL ORDER BY id`,
		arg{"region": st.Region}); err != nil {
		return nil, fmt.Errorf("dark storm of %s: %w", st.Region, err)
	}
	rng := rand.New(rand.NewPCG(uint64(st.ID), uint64(st.CreatedAt.UnixNano())))
	rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	if len(ids) > st.WipeCount {
		ids = ids[:st.WipeCount]
	}
	now := tx.Now()
	var out []Devserver
	for _, did := range ids {
		d, err := tx.DevserverByID(ctx, did)
		if err != nil {
			return nil, err
		}
		if _, err := execNamed(ctx, tx, `
INSERT INTO storm_devservers (storm_id, devserver_id, owner_id, backup_id, backup_at, state, created_at, updated_at)
SELECT :storm, d.id, d.owner_id, `+latestBackup+`, (SELECT finished_at FROM backups WHERE id = `+latestBackup+`), 'lost', :now, :now
FROM devservers d WHERE d.id = :id`, arg{"storm": id, "id": did, "now": now}); err != nil {
			return nil, fmt.Errorf("dark storm of %s: %w", st.Region, err)
		}
		if _, err := execNamed(ctx, tx, `UPDATE devservers SET state = 'lost', status_note = 'Wiped by a dark storm', updated_at = :now WHERE id = :id`,
			arg{"id": did, "now": now}); err != nil {
			return nil, fmt.Errorf("dark storm of %s: %w", st.Region, err)
		}
		e, err := stormDevserverOf(ctx, tx, did)
		if err != nil {
			return nil, err
		}
		if st.SevID != nil {
			if _, err := tx.AddSevTimeline(ctx, who, *st.SevID, SevTimelineEntry{At: now, Kind: TimelineEvent, Source: "dark storm",
				Text:     fmt.Sprintf("Devserver %s (%s) wiped: %s", e.Devserver, e.Owner, e.LossText()),
				EventKey: fmt.Sprintf("storm:%d:loss:%d", id, did)}); err != nil {
				return nil, err
			}
		}
		if err := tx.Audit(ctx, who, "devserver.wipe", "devserver", d.Name, map[string]any{"storm": id, "backup": e.BackupID}); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// StormLossMarkdown lists, for a SEV's report, the data-loss window of each
// devserver its dark storms wiped; "" when there were none.
func StormLossMarkdown(ctx context.Context, q queryer, sevID int64) (string, error) {
	es, err := stormDevservers(ctx, q, `s.sev_id = :v AND s.kind = 'dark_storm'`, sevID)
	if err != nil || len(es) == 0 {
		return "", err
	}
	var b strings.Builder
	b.WriteString("\nData lost, per devserver (the window since the backup used):\n\n")
	for _, e := range es {
		fmt.Fprintf(&b, "- %s (%s): %s\n", e.Devserver, e.Owner, e.LossText())
	}
	return b.String(), nil
}

// StartStormReplacement reserves, for the owner of a devserver a storm
// touched, a devserver of the same flavour in the nearest active region with
// room, to be restored from the latest backup once ready. The caller
// enqueues its provisioning and the replacement job.
func (tx *Tx) StartStormReplacement(ctx context.Context, who Actor, owner User, devserverID int64) (StormDevserver, Devserver, error) {
	e, err := stormDevserverOf(ctx, tx, devserverID)
	if err != nil {
		return StormDevserver{}, Devserver{}, err
	}
	if e.OwnerID != owner.ID {
		return StormDevserver{}, Devserver{}, fmt.Errorf("storm of devserver %d: %w", devserverID, ErrNotFound)
	}
	switch {
	case e.BackupID == nil:
		return e, Devserver{}, Conflict("no_backup", fmt.Sprintf("Devserver %s has no finished backup to restore from.", e.Devserver))
	case e.State == StormReplacing || e.State == StormReplaced:
		return e, Devserver{}, Conflict("already_replaced", fmt.Sprintf("Devserver %s is replaced already by %s.", e.Devserver, e.Replacement))
	case !e.Replaceable():
		return e, Devserver{}, Conflict("not_replaceable", fmt.Sprintf("Devserver %s is %s; there is nothing to replace.", e.Devserver, e.State))
	}
	regions, err := tx.regionsByNearness(ctx, e.Region)
	if err != nil {
		return e, Devserver{}, err
	}
	var d Devserver
	var last error = Conflict("no_capacity", "No active region has room for a "+e.Flavor+" devserver.")
	for _, r := range regions {
		if !r.Active() {
			continue
		}
		d, err = tx.Reserve(ctx, who, Reservation{Owner: owner, Flavor: e.Flavor, Region: r.Code})
		var ce *ConflictError
		if errors.As(err, &ce) && (ce.Code == "no_capacity" || ce.Code == "region_not_active") {
			last = err
			continue
		}
		if err != nil {
			return e, Devserver{}, err
		}
		break
	}
	if d.ID == 0 {
		return e, Devserver{}, last
	}
	if _, err := execNamed(ctx, tx, `
UPDATE storm_devservers SET state = 'replacing', replacement_id = :r, restore_id = NULL, note = '', updated_at = :now WHERE id = :id`,
		arg{"r": d.ID, "id": e.ID, "now": tx.Now()}); err != nil {
		return e, Devserver{}, fmt.Errorf("replace %s: %w", e.Devserver, err)
	}
	if err := tx.Audit(ctx, who, "devserver.storm_replace", "devserver", e.Devserver, map[string]any{"replacement": d.Name, "region": d.Region, "backup": *e.BackupID}); err != nil {
		return e, Devserver{}, err
	}
	e, err = tx.StormDevserverByID(ctx, e.ID)
	return e, d, err
}

func (tx *Tx) regionsByNearness(ctx context.Context, from string) ([]Region, error) {
	var all []Region
	if err := tx.SelectContext(ctx, &all, `SELECT code, name, status, position, created_at FROM regions ORDER BY position, code`); err != nil {
		return nil, fmt.Errorf("regions: %w", err)
	}
	ms, err := latenciesFrom(ctx, tx, from)
	if err != nil {
		return nil, err
	}
	return ByNearness(all, from, ms), nil
}

// SetStormReplacementRestore records the restore that fills a replacement.
func (tx *Tx) SetStormReplacementRestore(ctx context.Context, id, restoreID int64) error {
	_, err := execNamed(ctx, tx, `UPDATE storm_devservers SET restore_id = :r, updated_at = :now WHERE id = :id AND state = 'replacing'`,
		arg{"r": restoreID, "id": id, "now": tx.Now()})
	if err != nil {
		return fmt.Errorf("storm entry %d restore: %w", id, err)
	}
	return nil
}

// FinishStormReplacement records how a replacement ended (replaced, or
// replace_failed with a note) and tells the owner.
func (tx *Tx) FinishStormReplacement(ctx context.Context, id int64, state, note string) error {
	e, err := tx.StormDevserverByID(ctx, id)
	if err != nil {
		return err
	}
	if e.State != StormReplacing {
		return nil
	}
	if _, err := execNamed(ctx, tx, `UPDATE storm_devservers SET state = :state, note = :note, updated_at = :now WHERE id = :id`,
		arg{"state": state, "note": clip(note), "id": id, "now": tx.Now()}); err != nil {
		return fmt.Errorf("storm entry %d: %w", id, err)
	}
	title := fmt.Sprintf("Your replacement devserver %s is ready", e.Replacement)
	body := fmt.Sprintf("%s replaces %s, restored from backup %d.", e.Replacement, e.Devserver, *e.BackupID)
	if state == StormReplaceFailed {
		title = fmt.Sprintf("The replacement of %s failed", e.Devserver)
		body = note + " You can try again."
	} else if _, err := execNamed(ctx, tx, `UPDATE tasks SET done_at = :now WHERE user_id = :u AND link = :link AND done_at IS NULL`,
		arg{"now": tx.Now(), "u": e.OwnerID, "link": StormLink(e.Devserver)}); err != nil {
		return fmt.Errorf("storm entry %d task: %w", id, err)
	}
	if _, _, err := tx.notify(ctx, Notification{UserID: e.OwnerID, Kind: "storm", Title: clipTitle(title), Body: body, Link: StormLink(e.Devserver),
		IdempotencyKey: fmt.Sprintf("storm:%d:%d:%s:%d", e.StormID, e.DevserverID, state, e.UpdatedAt.UnixNano())}); err != nil {
		return err
	}
	return tx.Audit(ctx, System, "devserver.storm_replace_"+state, "devserver", e.Devserver, map[string]any{"replacement": e.Replacement, "note": note})
}

// SetStormChoice records what the owner wants of a replacement when the
// region recovers.
func (tx *Tx) SetStormChoice(ctx context.Context, who Actor, owner User, devserverID int64, choice string) (StormDevserver, error) {
	if choice != ChoiceKeep && choice != ChoiceRelease {
		return StormDevserver{}, &ValidationError{Fields: map[string]string{"choice": "must be keep or release"}}
	}
	e, err := stormDevserverOf(ctx, tx, devserverID)
	if err == nil && e.OwnerID != owner.ID {
		err = ErrNotFound
	}
	if err != nil {
		return StormDevserver{}, err
	}
	if e.StormKind != StormKind || (e.State != StormReplacing && e.State != StormReplaced) {
		return e, Conflict("no_replacement", fmt.Sprintf("Devserver %s has no temporary replacement to keep or release.", e.Devserver))
	}
	if _, err := execNamed(ctx, tx, `UPDATE storm_devservers SET choice = :c, updated_at = :now WHERE id = :id`, arg{"c": choice, "id": e.ID, "now": tx.Now()}); err != nil {
		return e, fmt.Errorf("storm choice of %s: %w", e.Devserver, err)
	}
	if err := tx.Audit(ctx, who, "devserver.storm_choice", "devserver", e.Devserver, map[string]any{"choice": choice, "replacement": e.Replacement}); err != nil {
		return e, err
	}
	return tx.StormDevserverByID(ctx, e.ID)
}

// Recovery is what ending a storm did; ToRelease are the devservers whose
// release the caller enqueues.
type Recovery struct {
	Storm     Storm   `json:"storm"`
	Back      int     `json:"devservers_back"`
	Hosts     int     `json:"hosts_back"`
	Kept      int     `json:"replacements_kept"`
	Released  int     `json:"replacements_released"`
	ToRelease []int64 `json:"-"`
}

// RecoverStorm ends a region's storm: the region is active again, the hosts
// the storm took are ready, and every devserver it made unreachable comes
// back, except those whose owner keeps a replacement (the original is then
// released). Replacements whose owner chose release (or, without a choice,
// when the admin's default is release) are released. The banner ends.
func (tx *Tx) RecoverStorm(ctx context.Context, who Actor, region, defaultChoice string) (Recovery, error) {
	if defaultChoice == "" {
		defaultChoice = ChoiceKeep
	}
	if defaultChoice != ChoiceKeep && defaultChoice != ChoiceRelease {
		return Recovery{}, &ValidationError{Fields: map[string]string{"replacements": "must be keep or release"}}
	}
	if _, err := regionByCode(ctx, tx, region); err != nil {
		return Recovery{}, err
	}
	st, err := openStorm(ctx, tx, region)
	if errors.Is(err, ErrNotFound) {
		return Recovery{}, Conflict("not_in_storm", fmt.Sprintf("Region %s is not in a storm.", region))
	}
	if err != nil {
		return Recovery{}, err
	}
	rec := Recovery{}
	if err := tx.SetRegionStatus(ctx, who, region, []string{"down"}, "active"); err != nil {
		return Recovery{}, err
	}
	now := tx.Now()
	for _, h := range strings.Split(st.Hosts, ",") {
		if h == "" {
			continue
		}
		n, err := execNamed(ctx, tx, `UPDATE hosts SET state = 'ready' WHERE id = :id AND state = 'unreachable'`, arg{"id": h})
		if err != nil {
			return Recovery{}, fmt.Errorf("recover %s: hosts: %w", region, err)
		}
		rec.Hosts += int(n)
	}
	es, err := stormDevservers(ctx, tx, `e.storm_id = :v`, st.ID)
	if err != nil {
		return Recovery{}, err
	}
	back := func(devserverID int64) error {
		n, err := execNamed(ctx, tx, `UPDATE devservers SET state = 'ready', status_note = '', updated_at = :now WHERE id = :id AND state = 'unreachable'`,
			arg{"id": devserverID, "now": now})
		rec.Back += int(n)
		return err
	}
	release := func(devserverID int64) error {
		d, err := tx.DevserverByID(ctx, devserverID)
		if err != nil {
			return err
		}
		if !d.Releasable() {
			return nil
		}
		d, needsFleet, err := tx.StartRelease(ctx, who, d)
		if err != nil {
			return err
		}
		if needsFleet {
			rec.ToRelease = append(rec.ToRelease, d.ID)
		}
		return nil
	}
	for _, e := range es {
		next := StormRecovered
		switch e.State {
		case StormReplacing, StormReplaced:
			choice := e.Choice
			if choice == "" {
				choice = defaultChoice
			}
			if choice == ChoiceKeep && e.State == StormReplaced {
				// The replacement holds the backup's data: the original goes.
				if _, err := execNamed(ctx, tx, `UPDATE devservers SET state = 'ready', updated_at = :now WHERE id = :id AND state = 'unreachable'`,
					arg{"id": e.DevserverID, "now": now}); err != nil {
					return Recovery{}, err
				}
				if err := release(e.DevserverID); err != nil {
					return Recovery{}, err
				}
				rec.Kept++
				next = StormReplaced
			} else {
				if err := release(*e.ReplacementID); err != nil {
					return Recovery{}, err
				}
				rec.Released++
				if err := back(e.DevserverID); err != nil {
					return Recovery{}, err
				}
			}
		default:
			if err := back(e.DevserverID); err != nil {
				return Recovery{}, err
			}
		}
		if _, err := execNamed(ctx, tx, `UPDATE storm_devservers SET state = :s, updated_at = :now WHERE id = :id`, arg{"s": next, "id": e.ID, "now": now}); err != nil {
			return Recovery{}, err
		}
	}
	// Pooled devservers of the region come back too.
	if _, err := execNamed(ctx, tx, `UPDATE devservers SET state = 'ready', status_note = '', updated_at = :now WHERE region = :region AND state = 'unreachable' AND owner_id IS NULL`,
		arg{"region": region, "now": now}); err != nil {
		return Recovery{}, err
	}
	if st.BannerID != nil {
		if _, err := execNamed(ctx, tx, `UPDATE banners SET ends_at = :now, updated_at = :now WHERE id = :id AND (ends_at IS NULL OR ends_at > :now)`,
			arg{"id": *st.BannerID, "now": now}); err != nil {
			return Recovery{}, err
		}
	}
	if _, err := execNamed(ctx, tx, `UPDATE storms SET recovered_at = :now, recovered_by = :by WHERE id = :id`, arg{"now": now, "by": who.Name, "id": st.ID}); err != nil {
		return Recovery{}, err
	}
	if st.SevID != nil {
		if _, err := tx.AddSevTimeline(ctx, who, *st.SevID, SevTimelineEntry{At: now, Kind: TimelineEvent, Source: "storm",
			Text:     fmt.Sprintf("Region %s recovered: %d devservers back, %d hosts ready, %d replacements kept, %d released", region, rec.Back, rec.Hosts, rec.Kept, rec.Released),
			EventKey: fmt.Sprintf("storm:%d:recovered", st.ID)}); err != nil {
			return Recovery{}, err
		}
	}
	if err := tx.Audit(ctx, who, "region.recover", "region", region, map[string]any{"storm": st.ID, "devservers": rec.Back, "hosts": rec.Hosts,
		"kept": rec.Kept, "released": rec.Released, "default": defaultChoice}); err != nil {
		return Recovery{}, err
	}
	rec.Storm, err = stormByID(ctx, tx, st.ID)
	return rec, err
}
