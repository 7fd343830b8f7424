package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Container states.
const (
	ContainerProvisioning = "provisioning"
	ContainerReady        = "ready"
	ContainerEnding       = "ending"
	ContainerEnded        = "ended"
	ContainerFailed       = "failed"
)

// Why a container ended.
const (
	EndByOwner  = "ended"    // its owner (or an admin) ended it
	EndExpired  = "expired"  // its lifetime ran out
	EndReplaced = "replaced" // its owner took a fresh one instead
	EndRecycled = "recycled" // it waited in a pool past the freshness limit
)

// Container is an On Demand container: an ephemeral environment of a type
// and a hardware profile. Name is its public ID.
type Container struct {
	ID         int64  `db:"id" json:"-"`
	Name       string `db:"name" json:"id"`
	OwnerID    int64  `db:"owner_id" json:"-"`
	Owner      string `db:"owner" json:"owner,omitempty"`
	Type       string `db:"type" json:"type"`
	Stack      string `db:"stack" json:"stack"`
	Profile    string `db:"profile" json:"profile"`
	Region     string `db:"region" json:"region"`
	HostID     int64  `db:"host_id" json:"-"`
	Host       string `db:"host" json:"host"`
	Driver     string `db:"driver" json:"-"`
	Hostname   string `db:"hostname" json:"hostname"`
	Address    string `db:"address" json:"address,omitempty"`
	InstanceID string `db:"instance_id" json:"-"`
	Image      string `db:"image" json:"image"`
	CPUs       int    `db:"cpus" json:"cpus"`
	MemoryGB   int    `db:"memory_gb" json:"memory_gb"`
	DiskGB     int    `db:"disk_gb" json:"disk_gb"`
	GPUs       int    `db:"gpus" json:"gpus"`
	State      string `db:"state" json:"state"`
	Progress   int    `db:"progress" json:"progress"`
	StatusNote string `db:"status_note" json:"status_note,omitempty"`
	// RequestedRegion is where the request asked for ("" for the nearest);
	// PlacementNote says why another region served it.
	RequestedRegion string     `db:"requested_region" json:"requested_region,omitempty"`
	PlacementNote   string     `db:"placement_note" json:"placement_note,omitempty"`
	SetupState      string     `db:"setup_state" json:"setup_state"`
	SetupError      string     `db:"setup_error" json:"setup_error,omitempty"`
	EndReason       string     `db:"end_reason" json:"end_reason,omitempty"`
	EndedBy         string     `db:"ended_by" json:"ended_by,omitempty"`
	ReplacedBy      string     `db:"replaced_by" json:"replaced_by,omitempty"`
	CreatedAt       time.Time  `db:"created_at" json:"created_at"`
	UpdatedAt       time.Time  `db:"updated_at" json:"updated_at"`
	ReadyAt         *time.Time `db:"ready_at" json:"ready_at,omitempty"`
	PooledAt        *time.Time `db:"pooled_at" json:"pooled_at,omitempty"`
	AssignedAt      *time.Time `db:"assigned_at" json:"requested_at,omitempty"`
	ExpiresAt       *time.Time `db:"expires_at" json:"expires_at,omitempty"`
	EndedAt         *time.Time `db:"ended_at" json:"ended_at,omitempty"`
	// Features added on top, loaded where one container is shown.
	Features []ContainerFeature `db:"-" json:"features"`
	// Access is filled where the API shows one container to its owner.
	Access *ContainerAccess `db:"-" json:"access,omitempty"`
}

// ContainerFeature is a feature added on top of a container's type.
type ContainerFeature struct {
	Feature   string    `db:"feature" json:"name"`
	Version   string    `db:"version" json:"version"`
	State     string    `db:"state" json:"state"`
	Error     string    `db:"error" json:"error,omitempty"`
	UpdatedAt time.Time `db:"updated_at" json:"updated_at"`
}

// ContainerAccess is how the owner gets into a ready container.
type ContainerAccess struct {
	Terminal   string      `json:"terminal_url"`
	Connection *Connection `json:"ssh,omitempty"`
	SandboxURL string      `json:"sandbox_url,omitempty"`
}

// Pooled tells whether the container waits in a pool for an owner.
func (c Container) Pooled() bool { return c.OwnerID == 0 }

// FromPool tells whether a request was served from a pool.
func (c Container) FromPool() bool { return c.PooledAt != nil }

// Live tells whether the container is being built or can be used.
func (c Container) Live() bool { return c.State == ContainerProvisioning || c.State == ContainerReady }

// Transitional tells whether the container is on its way to another state.
func (c Container) Transitional() bool {
	return c.State == ContainerProvisioning || c.State == ContainerEnding || (c.State == ContainerReady && c.SetupState == "pending")
}

// Left is how long the container has until it ends (0 once it has).
func (c Container) Left(now time.Time) time.Duration {
	if c.ExpiresAt == nil {
		return 0
	}
	return max(c.ExpiresAt.Sub(now), 0)
}

// EndText says why and when a container ended, for people.
func (c Container) EndText() string {
	switch c.EndReason {
	case EndExpired:
		return "Its lifetime ran out."
	case EndReplaced:
		if c.ReplacedBy != "" {
			return "Replaced by a fresh one, " + c.ReplacedBy + "."
		}
		return "Replaced by a fresh one."
	case EndRecycled:
		return "Recycled from its pool."
	case EndByOwner:
		if c.EndedBy != "" {
			return "Ended by " + c.EndedBy + "."
		}
		return "Ended."
	}
	return ""
}

// AnyContainerTransitional tells whether any of the containers is changing state.
func AnyContainerTransitional(cs []Container) bool {
	return slices.ContainsFunc(cs, Container.Transitional)
}

// ContainerRequest is what an engineer asks for.
type ContainerRequest struct {
	Owner    User
	Type     string
	Profile  string
	Region   string // "" means the nearest active region to the owner's home
	Features []string
}

// MaxContainerFeatures bounds the features of one request.
const MaxContainerFeatures = 20

const containerSelect = `
SELECT c.id, c.name, COALESCE(c.owner_id, 0) AS owner_id, COALESCE(u.email, '') AS owner, c.type, t.stack, c.profile, c.region,
       c.host_id, h.name AS host, h.driver, c.hostname, c.address, c.instance_id, c.image, c.cpus, c.memory_gb, c.disk_gb, c.gpus,
       c.state, c.progress, c.status_note, c.requested_region, c.placement_note, c.setup_state, c.setup_error,
       c.end_reason, c.ended_by, COALESCE(r.name, '') AS replaced_by,
       c.created_at, c.updated_at, c.ready_at, c.pooled_at, c.assigned_at, c.expires_at, c.ended_at
FROM containers c
JOIN container_types t ON t.name = c.type
JOIN hosts h ON h.id = c.host_id
LEFT JOIN users u ON u.id = c.owner_id
LEFT JOIN containers r ON r.id = c.replaced_by`

// Container returns a container by its public ID, with its features.
func (s *Store) Container(ctx context.Context, name string) (Container, error) {
	return containerBy(ctx, s.read, `c.name = :v`, name)
}

// ContainerByID returns a container by its row ID, with its features.
func (s *Store) ContainerByID(ctx context.Context, id int64) (Container, error) {
	return containerBy(ctx, s.read, `c.id = :v`, id)
}

// ContainerByID returns a container inside the transaction.
func (tx *Tx) ContainerByID(ctx context.Context, id int64) (Container, error) {
	return containerBy(ctx, tx, `c.id = :v`, id)
}

func containerBy(ctx context.Context, q queryer, where string, v any) (Container, error) {
	var c Container
	if err := getNamed(ctx, q, &c, containerSelect+` WHERE `+where, arg{"v": v}); err != nil {
		return c, fmt.Errorf("container %v: %w", v, err)
	}
	c.Features = []ContainerFeature{}
	err := selectNamed(ctx, q, &c.Features, `SELECT feature, version, state, error, updated_at FROM container_features WHERE container_id = :id ORDER BY feature`, arg{"id": c.ID})
	if err != nil {
		return c, fmt.Errorf("container %s features: %w", c.Name, err)
	}
	return c, nil
}

// ContainerFilter selects containers for a list.
type ContainerFilter struct {
	OwnerID int64 // 0: every owner (admins)
	Region  string
	State   string
	Ended   bool // include ended and failed containers
	Pooled  bool // include pooled containers (admins)
	AfterID int64
	Limit   int
}

// Containers lists containers, newest first, a page at a time (AfterID is
// the smallest row ID of the previous page).
func (s *Store) Containers(ctx context.Context, f ContainerFilter) ([]Container, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	where := []string{"1 = 1"}
	a := arg{"limit": f.Limit}
	if f.OwnerID != 0 {
		where = append(where, "c.owner_id = :owner")
		a["owner"] = f.OwnerID
	} else if !f.Pooled {
		where = append(where, "c.owner_id IS NOT NULL")
	}
	if f.Region != "" {
		where = append(where, "c.region = :region")
		a["region"] = f.Region
	}
	switch {
	case f.State != "":
		where = append(where, "c.state = :state")
		a["state"] = f.State
	case !f.Ended:
		where = append(where, "c.state IN ('provisioning', 'ready', 'ending')")
	}
	if f.AfterID > 0 {
		where = append(where, "c.id < :after")
		a["after"] = f.AfterID
	}
	var cs []Container
	err := selectNamed(ctx, s.read, &cs, containerSelect+` WHERE `+strings.Join(where, " AND ")+` ORDER BY c.id DESC LIMIT :limit`, a)
	if err != nil {
		return nil, fmt.Errorf("containers: %w", err)
	}
	return cs, nil
}

// containerName is a new public ID: "od" and eight letters or digits. It
// never has a dash, so it can never be a devserver's name (which always
// does), and the SSH gateway tells them apart by name alone.
func containerName() string { return "od" + NewSecret(5)[:8] }

// IsContainerName tells whether name has the shape of a container's ID.
func IsContainerName(name string) bool {
	if len(name) != 10 || !strings.HasPrefix(name, "od") {
		return false
	}
	for _, r := range name[2:] {
		if (r < 'a' || r > 'z') && (r < '2' || r > '7') {
			return false
		}
	}
	return true
}

// ContainerQuotaUse is how many containers a person holds and may hold.
type ContainerQuotaUse struct {
	Containers int `json:"containers"`
	Limit      int `json:"limit"`
}

// Full tells whether one more container is over the quota.
func (u ContainerQuotaUse) Full() bool { return u.Containers >= u.Limit }

// Text says the use in words.
func (u ContainerQuotaUse) Text() string {
	return fmt.Sprintf("%d of %d containers", u.Containers, u.Limit)
}

func containerQuotaUse(ctx context.Context, q queryer, u User) (ContainerQuotaUse, error) {
	byRole, err := quotas(ctx, q)
	if err != nil {
		return ContainerQuotaUse{}, err
	}
	var use ContainerQuotaUse
	// A container counts until its end begins.
	if err := getNamed(ctx, q, &use.Containers, `SELECT COUNT(*) FROM containers WHERE owner_id = :owner AND state IN ('provisioning', 'ready')`, arg{"owner": u.ID}); err != nil {
		return use, fmt.Errorf("container quota of %s: %w", u.Email, err)
	}
	use.Limit = QuotaOf(u, byRole).Containers
	return use, nil
}

// ContainerQuotaUse is what u holds against their container quota now.
func (s *Store) ContainerQuotaUse(ctx context.Context, u User) (ContainerQuotaUse, error) {
	return containerQuotaUse(ctx, s.read, u)
}

// RequestContainer gives the owner a container of the type and profile in
// the nearest active region with room (the asked-for region first): a ready
// one from that region's pool, or a new one built there. A region that is
// not active is passed over, and the container says which region served it
// and why. The caller enqueues the returned jobs' work in the same
// transaction: provisioning when built cold, setup when features or
// one-offs are to be put on.
func (tx *Tx) RequestContainer(ctx context.Context, who Actor, r ContainerRequest) (Container, error) {
	t, prof, regions, err := tx.checkContainerRequest(ctx, &r)
	if err != nil {
		return Container{}, err
	}
	use, err := containerQuotaUse(ctx, tx, r.Owner)
	if err != nil {
		return Container{}, err
	}
	if use.Full() {
		return Container{}, &QuotaError{Message: fmt.Sprintf("You hold %d of your %d containers; end one before requesting another.", use.Containers, use.Limit)}
	}
	var skipped []string
	for _, rg := range regions {
		if !rg.Active() {
			skipped = append(skipped, fmt.Sprintf("%s is %s", rg.Code, rg.Status))
		}
	}
	active := slices.DeleteFunc(slices.Clone(regions), func(rg Region) bool { return !rg.Active() })
	if len(active) == 0 {
		return Container{}, Conflict("region_not_active", "No region is active to serve a container just now: "+strings.Join(skipped, ", ")+".")
	}
	// The note names the regions passed over on the way to the one that
	// served: those before it, the nearest first, that are not active.
	note := func(served string) string {
		var why []string
		for _, rg := range regions {
			if rg.Code == served {
				break
			}
			if !rg.Active() {
				why = append(why, fmt.Sprintf("%s is %s", rg.Code, rg.Status))
			}
		}
		if len(why) == 0 {
			return ""
		}
		return "Served from " + served + " because " + strings.Join(why, " and ") + "."
	}
	now := tx.Now()
	expires := now.Add(t.Lifetime())
	// The nearest active region serves: from its pool when a ready
	// container waits there, otherwise built cold; a region without room
	// passes the request on to the next.
	var full []string
	for _, rg := range active {
		n := note(rg.Code)
		if len(full) > 0 {
			n = strings.TrimSpace(n + " " + strings.Join(full, " and ") + " had no room for a " + prof.Name + " container.")
		}
		id, err := tx.assignPooledContainer(ctx, r.Owner, t.Name, prof.Name, rg.Code, expires)
		if err != nil {
			return Container{}, err
		}
		if id != 0 {
			return tx.openContainer(ctx, who, r, id, n)
		}
		if id, err = tx.insertContainer(ctx, t, prof, rg.Code, &r.Owner, &expires); err != nil {
			return Container{}, err
		}
		if id != 0 {
			return tx.openContainer(ctx, who, r, id, n)
		}
		full = append(full, rg.Code)
	}
	return Container{}, Conflict("no_capacity", fmt.Sprintf("No active region has room for a %s container just now (%s); try a smaller profile or again later.", prof.Name, strings.Join(full, ", ")))
}

// checkContainerRequest validates a request and returns its type, profile
// and the regions to try, the nearest first.
func (tx *Tx) checkContainerRequest(ctx context.Context, r *ContainerRequest) (ContainerType, ContainerProfile, []Region, error) {
	p := Problems{}
	r.Type, r.Profile, r.Region = strings.TrimSpace(r.Type), strings.TrimSpace(r.Profile), strings.TrimSpace(r.Region)
	var t ContainerType
	var prof ContainerProfile
	if r.Type == "" {
		p.Add("type", "is required")
	} else if got, err := containerTypeByName(ctx, tx, r.Type); errors.Is(err, ErrNotFound) {
		p.Add("type", fmt.Sprintf("%q is not a container type", clip(r.Type)))
	} else if err != nil {
		return t, prof, nil, err
	} else {
		t = got
	}
	if r.Profile == "" {
		p.Add("profile", "is required")
	} else if got, err := containerProfileByName(ctx, tx, r.Profile); errors.Is(err, ErrNotFound) {
		p.Add("profile", fmt.Sprintf("%q is not a hardware profile", clip(r.Profile)))
	} else if err != nil {
		return t, prof, nil, err
	} else {
		prof = got
		if t.Name != "" && !t.Allows(prof.Name) {
			p.Add("profile", fmt.Sprintf("%s containers run on %s, not %s", t.Name, strings.Join(t.Profiles, ", "), prof.Name))
		}
	}
	if len(r.Features) > MaxContainerFeatures {
		p.Add("features", fmt.Sprintf("at most %d features", MaxContainerFeatures))
	} else if t.Name != "" {
		r.Features = dedupe(r.Features)
		for _, f := range r.Features {
			if !t.AllowsFeature(f) {
				allowed := "none"
				if len(t.Features) > 0 {
					allowed = strings.Join(t.Features, ", ")
				}
				p.Add("features", fmt.Sprintf("%q may not be added to %s containers (allowed: %s)", clip(f), t.Name, allowed))
				break
			}
		}
	}
	from := r.Region
	if from != "" {
		if _, err := regionByCode(ctx, tx, from); errors.Is(err, ErrNotFound) {
			p.Add("region", fmt.Sprintf("%q is not a region", clip(from)))
		} else if err != nil {
			return t, prof, nil, err
		}
	}
	if err := p.Err(); err != nil {
		return t, prof, nil, err
	}
	if from == "" {
		from = r.Owner.HomeRegion
	}
	// With no home region, the first region (by position) is "nearest".
	regions, err := regionsByNearness(ctx, tx, from)
	return t, prof, regions, err
}

// assignPooledContainer takes a ready pooled container of the type and
// profile in the region for owner, if there is one: a conditional update
// inside the write transaction, so two requests never get the same one.
func (tx *Tx) assignPooledContainer(ctx context.Context, owner User, typ, profile, region string, expires time.Time) (int64, error) {
	for attempt := 0; attempt < 5; attempt++ {
		var candidate int64
		err := getNamed(ctx, tx, &candidate, `
SELECT id FROM containers WHERE owner_id IS NULL AND state = 'ready' AND region = :region AND type = :type AND profile = :profile
ORDER BY pooled_at DESC, id DESC LIMIT 1`, arg{"region": region, "type": typ, "profile": profile})
		if errors.Is(err, ErrNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("take container from pool: %w", err)
		}
		now := tx.Now()
		n, err := execNamed(ctx, tx, `
UPDATE containers SET owner_id = :owner, assigned_at = :now, expires_at = :expires, updated_at = :now
WHERE id = :id AND owner_id IS NULL AND state = 'ready'`, arg{"id": candidate, "owner": owner.ID, "now": now, "expires": expires})
		if err != nil {
			return 0, fmt.Errorf("take container from pool: %w", err)
		}
		if n == 1 {
			return candidate, nil
		}
	}
	return 0, nil
}

// insertContainer takes room for a container of the profile in region and
// records it (pooled when owner is nil), or returns 0 when the region has
// no room.
func (tx *Tx) insertContainer(ctx context.Context, t ContainerType, prof ContainerProfile, region string, owner *User, expires *time.Time) (int64, error) {
	host, err := tx.takeCapacity(ctx, prof.asFlavor(), region)
	if err != nil || host.ID == 0 {
		return 0, err
	}
	now := tx.Now()
	a := arg{"type": t.Name, "profile": prof.Name, "region": region, "host_id": host.ID, "image": t.Images[host.Driver],
		"cpus": prof.CPUs, "memory_gb": prof.MemoryGB, "disk_gb": prof.DiskGB, "gpus": prof.GPUs, "now": now,
		"owner": nil, "assigned": nil, "pooled": nil, "expires": expires}
	if owner != nil {
		a["owner"], a["assigned"] = owner.ID, now
	} else {
		a["pooled"] = now
	}
	var id int64
	for attempt := 0; ; attempt++ {
		name := containerName()
		a["name"], a["hostname"] = name, name+"."+region+".od.devport.internal"
		err := tx.savepoint(ctx, func() error {
			return getNamed(ctx, tx, &id, `
INSERT INTO containers (name, owner_id, type, profile, region, host_id, hostname, image, cpus, memory_gb, disk_gb, gpus,
    state, progress, created_at, updated_at, pooled_at, assigned_at, expires_at)
VALUES (:name, :owner, :type, :profile, :region, :host_id, :hostname, :image, :cpus, :memory_gb, :disk_gb, :gpus,
    'provisioning', 0, :now, :now, :pooled, :assigned, :expires)
RETURNING id`, a)
		})
		if err == nil {
			return id, nil
		}
		if !isUniqueViolation(err) || attempt == 5 {
			return 0, fmt.Errorf("record container: %w", err)
		}
	}
}

// openContainer finishes a request: the features to add, whether setup
// (features, one-offs) is needed, the placement note, and the audit event.
func (tx *Tx) openContainer(ctx context.Context, who Actor, r ContainerRequest, id int64, placement string) (Container, error) {
	now := tx.Now()
	for _, f := range r.Features {
		feat, err := featureByName(ctx, tx, f)
		if err != nil {
			return Container{}, err
		}
		if _, err := execNamed(ctx, tx, `INSERT INTO container_features (container_id, feature, version, state, updated_at) VALUES (:id, :feature, :version, 'pending', :now)`,
			arg{"id": id, "feature": feat.Name, "version": feat.Version, "now": now}); err != nil {
			return Container{}, fmt.Errorf("container features: %w", err)
		}
	}
	o, err := oneoffsOf(ctx, tx, r.Owner.ID)
	if err != nil {
		return Container{}, err
	}
	setup := "none"
	if len(r.Features) > 0 || !o.Empty() {
		setup = "pending"
	}
	_, err = execNamed(ctx, tx, `UPDATE containers SET requested_region = :requested, placement_note = :note, setup_state = :setup, updated_at = :now WHERE id = :id`,
		arg{"id": id, "requested": r.Region, "note": placement, "setup": setup, "now": now})
	if err != nil {
		return Container{}, fmt.Errorf("request container: %w", err)
	}
	c, err := tx.ContainerByID(ctx, id)
	if err != nil {
		return c, err
	}
	detail := map[string]any{"type": c.Type, "profile": c.Profile, "region": c.Region, "host": c.Host, "owner": c.Owner, "from_pool": c.FromPool()}
	if len(r.Features) > 0 {
		detail["features"] = strings.Join(r.Features, " ")
	}
	if placement != "" {
		detail["placement"] = placement
	}
	return c, tx.Audit(ctx, who, "container.request", "container", c.Name, detail)
}

// NeedsSetup tells whether features or one-offs wait to be put on a ready container.
func (c Container) NeedsSetup() bool { return c.SetupState == "pending" }

// EndContainer begins the end of a live container. It returns whether the
// fleet has something to destroy (the caller enqueues it in tx); when not,
// the container is ended at once and its capacity given back.
func (tx *Tx) EndContainer(ctx context.Context, who Actor, c Container, reason string) (Container, bool, error) {
	if !c.Live() {
		return c, false, Conflict("not_live", fmt.Sprintf("Container %s is %s already.", c.Name, c.State))
	}
	now := tx.Now()
	n, err := execNamed(ctx, tx, `
UPDATE containers SET state = 'ending', progress = 0, status_note = 'Ending', end_reason = :reason, ended_by = :by, updated_at = :now
WHERE id = :id AND state IN ('provisioning', 'ready')`, arg{"id": c.ID, "reason": reason, "by": who.Name, "now": now})
	if err != nil {
		return c, false, fmt.Errorf("end container %s: %w", c.Name, err)
	}
	if n == 0 {
		return c, false, Conflict("not_live", fmt.Sprintf("Container %s changed state meanwhile; reload and try again.", c.Name))
	}
	if err := tx.Audit(ctx, who, "container.end", "container", c.Name, map[string]any{"reason": reason}); err != nil {
		return c, false, err
	}
	if reason == EndByOwner && c.OwnerID != 0 && (who.UserID == nil || *who.UserID != c.OwnerID) {
		// Someone else (an admin) ended it: its owner hears it from devport.
		_, err := tx.Notify(ctx, Notification{
			UserID: c.OwnerID, Kind: "container_ended", Link: "/containers/" + c.Name,
			IdempotencyKey: "container:" + c.Name + ":ended-by-other",
			Title:          fmt.Sprintf("Your %s container %s was ended by %s", c.Type, c.Name, who.Name),
			Body:           "It is being destroyed with everything on it. Request a new one from the Containers page whenever you need it.",
		})
		if err != nil {
			return c, false, err
		}
	}
	// A container still provisioning may have an instance the provisioning
	// job is making: the destroy job waits for it and removes it.
	c, err = tx.ContainerByID(ctx, c.ID)
	return c, true, err
}

// FreshContainer ends c and gives its owner a new container of the same
// type, profile and features, preferring the same region. The old one
// names the new one as its replacement.
func (tx *Tx) FreshContainer(ctx context.Context, who Actor, owner User, c Container) (fresh, old Container, err error) {
	if c.State != ContainerReady && c.State != ContainerProvisioning {
		return fresh, c, Conflict("not_live", fmt.Sprintf("Container %s is %s; request a new container instead.", c.Name, c.State))
	}
	old, _, err = tx.EndContainer(ctx, who, c, EndReplaced)
	if err != nil {
		return fresh, old, err
	}
	features := make([]string, 0, len(c.Features))
	for _, f := range c.Features {
		features = append(features, f.Feature)
	}
	region := c.RequestedRegion
	fresh, err = tx.RequestContainer(ctx, who, ContainerRequest{Owner: owner, Type: c.Type, Profile: c.Profile, Region: region, Features: features})
	if err != nil {
		return fresh, old, err
	}
	if _, err := execNamed(ctx, tx, `UPDATE containers SET replaced_by = :fresh WHERE id = :id`, arg{"id": c.ID, "fresh": fresh.ID}); err != nil {
		return fresh, old, fmt.Errorf("fresh container: %w", err)
	}
	old, err = tx.ContainerByID(ctx, c.ID)
	return fresh, old, err
}

// SetContainerProgress records how far a container's provisioning or end has come.
func (s *Store) SetContainerProgress(ctx context.Context, id int64, state string, progress int, note string) error {
	return s.setProgress(ctx, "containers", id, state, progress, note)
}

// SetContainerInstance records the fleet instance of a provisioning
// container, as SetInstance does for a devserver.
func (s *Store) SetContainerInstance(ctx context.Context, id int64, instanceID string) (bool, error) {
	return s.setInstance(ctx, "containers", id, instanceID)
}

// MarkContainerReady records a built container. It returns false when it is
// no longer provisioning (ended meanwhile).
func (tx *Tx) MarkContainerReady(ctx context.Context, id int64, address string) (bool, error) {
	now := tx.Now()
	n, err := execNamed(ctx, tx, `
UPDATE containers SET state = 'ready', progress = 100, status_note = '', address = :address, ready_at = :now, updated_at = :now
WHERE id = :id AND state = 'provisioning'`, arg{"id": id, "address": address, "now": now})
	if err != nil || n == 0 {
		return false, err
	}
	c, err := tx.ContainerByID(ctx, id)
	if err != nil {
		return false, err
	}
	return true, tx.Audit(ctx, System, "container.ready", "container", c.Name, map[string]any{"host": c.Host, "pooled": c.Pooled()})
}

// MarkContainerFailed records a container that could not be built, and
// gives its capacity back; its owner is told.
func (tx *Tx) MarkContainerFailed(ctx context.Context, id int64, reason string) error {
	c, err := tx.ContainerByID(ctx, id)
	if err != nil {
		return err
	}
	ok, err := tx.finishContainer(ctx, c, ContainerProvisioning, ContainerFailed, reason)
	if err != nil || !ok || c.OwnerID == 0 {
		return err
	}
	_, err = tx.Notify(ctx, Notification{
		UserID: c.OwnerID, Kind: "container_failed", Link: "/containers/" + c.Name,
		IdempotencyKey: "container:" + c.Name + ":failed",
		Title:          fmt.Sprintf("Your %s container %s could not be built", c.Type, c.Name),
		Body:           reason + " Request another one; it does not count against your quota.",
	})
	return err
}

// MarkContainerEnded records that the fleet destroyed an ending container,
// and gives its capacity back.
func (tx *Tx) MarkContainerEnded(ctx context.Context, id int64) (bool, error) {
	c, err := tx.ContainerByID(ctx, id)
	if err != nil {
		return false, err
	}
	return tx.finishContainer(ctx, c, ContainerEnding, ContainerEnded, "")
}

// finishContainer moves a container from one state to a final one, giving
// its host's capacity back; it does nothing when it is no longer in from.
func (tx *Tx) finishContainer(ctx context.Context, c Container, from, to, note string) (bool, error) {
	now := tx.Now()
	n, err := execNamed(ctx, tx, `
UPDATE containers SET state = :to, progress = 100, status_note = :note, ended_at = :now, updated_at = :now
WHERE id = :id AND state = :from`, arg{"id": c.ID, "from": from, "to": to, "note": clipLong(note), "now": now})
	if err != nil {
		return false, fmt.Errorf("finish container %s: %w", c.Name, err)
	}
	if n == 0 {
		return false, nil
	}
	if _, err := execNamed(ctx, tx, freeCapacitySQL, arg{"id": c.HostID, "cpus": c.CPUs, "memory_gb": c.MemoryGB, "disk_gb": c.DiskGB, "gpus": c.GPUs}); err != nil {
		return false, fmt.Errorf("finish container %s: free capacity: %w", c.Name, err)
	}
	detail := map[string]any{"reason": c.EndReason}
	if note != "" {
		detail["note"] = clipReason(note)
	}
	return true, tx.Audit(ctx, System, "container."+to, "container", c.Name, detail)
}

// ContainersExpiringBy lists owned live containers whose end is at or
// before t, soonest first.
func (s *Store) ContainersExpiringBy(ctx context.Context, t time.Time, limit int) ([]Container, error) {
	if limit <= 0 {
		limit = 1000
	}
	var cs []Container
	err := selectNamed(ctx, s.read, &cs, containerSelect+`
WHERE c.expires_at IS NOT NULL AND c.expires_at <= :t AND c.state IN ('provisioning', 'ready')
ORDER BY c.expires_at, c.id LIMIT :limit`, arg{"t": t, "limit": limit})
	if err != nil {
		return nil, fmt.Errorf("containers expiring: %w", err)
	}
	return cs, nil
}

// FinishContainerSetup records the outcome of putting a container's
// features and its owner's one-offs on it: failed features by name, and a
// failure of the one-offs.
func (tx *Tx) FinishContainerSetup(ctx context.Context, id int64, failedFeatures map[string]string, oneoffs error) error {
	now := tx.Now()
	c, err := tx.ContainerByID(ctx, id)
	if err != nil {
		return err
	}
	var problems []string
	for _, f := range c.Features {
		if f.State != "pending" {
			continue
		}
		state, msg := "installed", ""
		if e, failed := failedFeatures[f.Feature]; failed {
			state, msg = "failed", e
			problems = append(problems, f.Feature+": "+e)
		}
		if _, err := execNamed(ctx, tx, `UPDATE container_features SET state = :state, error = :error, updated_at = :now WHERE container_id = :id AND feature = :feature`,
			arg{"id": id, "feature": f.Feature, "state": state, "error": clipLong(msg), "now": now}); err != nil {
			return fmt.Errorf("container setup: %w", err)
		}
	}
	if oneoffs != nil {
		problems = append(problems, "one-offs: "+oneoffs.Error())
	}
	state := "done"
	if len(problems) > 0 {
		state = "failed"
	}
	_, err = execNamed(ctx, tx, `UPDATE containers SET setup_state = :state, setup_error = :error, updated_at = :now WHERE id = :id AND setup_state = 'pending'`,
		arg{"id": id, "state": state, "error": clipLong(strings.Join(problems, "; ")), "now": now})
	if err != nil {
		return fmt.Errorf("container setup: %w", err)
	}
	return nil
}
