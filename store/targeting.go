package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Audience kinds: who a message is for, resolved from the live inventory at send time.
const (
	AudienceEveryone         = "everyone"
	AudienceRegionDevservers = "region_devservers"
	AudienceHostDevservers   = "host_devservers"
	AudienceFlavorDevservers = "flavor_devservers"
	AudienceRegionContainers = "region_containers"
	AudienceUsers            = "users"
)

// AudienceKinds lists the audience kinds in the order forms show them.
var AudienceKinds = []string{AudienceEveryone, AudienceRegionDevservers, AudienceHostDevservers, AudienceFlavorDevservers, AudienceRegionContainers, AudienceUsers}

// Audience selects people from the live inventory at send time.
type Audience struct {
	Kind    string   `json:"kind"`              // one of AudienceKinds
	Region  string   `json:"region,omitempty"`  // for region_* kinds
	Host    string   `json:"host,omitempty"`    // host name, for host_devservers
	Flavor  string   `json:"flavor,omitempty"`  // for flavor_devservers
	Sharees bool     `json:"sharees,omitempty"` // devserver kinds: include the people the devservers are shared with
	Emails  []string `json:"emails,omitempty"`  // for "users"
}

// devserverKind tells whether the audience is made of devserver owners.
func (a Audience) devserverKind() bool {
	return a.Kind == AudienceRegionDevservers || a.Kind == AudienceHostDevservers || a.Kind == AudienceFlavorDevservers
}

// Validate checks the audience's shape: a known kind and the one selector it needs.
func (a Audience) Validate() error {
	p := Problems{}
	if !slices.Contains(AudienceKinds, a.Kind) {
		p.Add("kind", fmt.Sprintf("%q is not an audience (%s)", clip(a.Kind), strings.Join(AudienceKinds, ", ")))
		return p.Err()
	}
	need := func(field, v string, wanted bool) {
		switch {
		case wanted && strings.TrimSpace(v) == "":
			p.Add(field, "is required for audience "+a.Kind)
		case !wanted && v != "":
			p.Add(field, "does not apply to audience "+a.Kind)
		}
	}
	need("region", a.Region, a.Kind == AudienceRegionDevservers || a.Kind == AudienceRegionContainers)
	need("host", a.Host, a.Kind == AudienceHostDevservers)
	need("flavor", a.Flavor, a.Kind == AudienceFlavorDevservers)
	if a.Sharees && !a.devserverKind() {
		p.Add("sharees", "applies only to devserver audiences")
	}
	switch {
	case a.Kind == AudienceUsers && len(a.Emails) == 0:
		p.Add("emails", "needs at least one email address")
	case a.Kind != AudienceUsers && len(a.Emails) > 0:
		p.Add("emails", "does not apply to audience "+a.Kind)
	case len(a.Emails) > 10000:
		p.Add("emails", "has more than 10000 addresses")
	}
	for _, e := range a.Emails {
		if problem := ValidateEmail(NormalizeEmail(e)); problem != "" {
			p.Add("emails", fmt.Sprintf("%q %s", clip(e), problem))
		}
	}
	return p.Err()
}

// String describes the audience for logs, audit events and run timelines.
func (a Audience) String() string {
	s := a.Kind
	switch a.Kind {
	case AudienceRegionDevservers, AudienceRegionContainers:
		s += " " + a.Region
	case AudienceHostDevservers:
		s += " " + a.Host
	case AudienceFlavorDevservers:
		s += " " + a.Flavor
	case AudienceUsers:
		s += " " + strings.Join(a.Emails, ",")
	}
	if a.Sharees {
		s += " +sharees"
	}
	return s
}

// Live inventory: a devserver holds capacity unless released or failed, and a
// pooled one (no owner) reaches nobody; a container is live while
// provisioning or ready.
const (
	liveDevserverOwners = `SELECT d.owner_id FROM devservers d WHERE d.owner_id IS NOT NULL AND d.state NOT IN ('released', 'failed') AND %s`
	liveDevserverShares = `SELECT sh.user_id FROM devserver_shares sh JOIN devservers d ON d.id = sh.devserver_id
WHERE d.owner_id IS NOT NULL AND d.state NOT IN ('released', 'failed') AND %s`
	liveContainerOwners = `SELECT c.owner_id FROM containers c WHERE c.owner_id IS NOT NULL AND c.state IN ('provisioning', 'ready') AND c.region = :region`
)

// audienceIDs is the SQL that selects the user IDs of the audience, and its arguments.
func (a Audience) audienceIDs() (string, arg) {
	args := arg{"region": a.Region, "host": a.Host, "flavor": a.Flavor}
	var where string
	switch a.Kind {
	case AudienceEveryone:
		return `SELECT id FROM users`, args
	case AudienceUsers:
		var ph []string
		for i, e := range a.Emails {
			k := "email" + strconv.Itoa(i)
			args[k] = NormalizeEmail(e)
			ph = append(ph, ":"+k)
		}
		return `SELECT id FROM users WHERE email IN (` + strings.Join(ph, ", ") + `)`, args
	case AudienceRegionContainers:
		return liveContainerOwners, args
	case AudienceRegionDevservers:
		where = `d.region = :region`
	case AudienceHostDevservers:
		where = `d.host_id = (SELECT id FROM hosts WHERE name = :host)`
	case AudienceFlavorDevservers:
		where = `d.flavor = :flavor`
	}
	q := fmt.Sprintf(liveDevserverOwners, where)
	if a.Sharees {
		q += " UNION " + fmt.Sprintf(liveDevserverShares, where)
	}
	return q, args
}

// AudienceUsers resolves the audience against the live inventory: distinct
// people, ordered by email. A region, host or flavour that does not exist is a
// validation error naming the field.
func (tx *Tx) AudienceUsers(ctx context.Context, a Audience) ([]User, error) {
	return audienceUsers(ctx, tx, a)
}

// AudienceUsers resolves the audience against the live inventory, outside a transaction.
func (s *Store) AudienceUsers(ctx context.Context, a Audience) ([]User, error) {
	return audienceUsers(ctx, s.read, a)
}

func audienceUsers(ctx context.Context, q queryer, a Audience) ([]User, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	if err := audienceTargetsExist(ctx, q, a); err != nil {
		return nil, err
	}
	ids, args := a.audienceIDs()
	var us []User
	if err := selectNamed(ctx, q, &us, `SELECT `+userColumns+` FROM users WHERE id IN (`+ids+`) ORDER BY email`, args); err != nil {
		return nil, fmt.Errorf("audience %s: %w", a, err)
	}
	var roles []struct {
		UserID int64  `db:"user_id"`
		Role   string `db:"role"`
	}
	if err := selectNamed(ctx, q, &roles, `SELECT user_id, role FROM user_roles WHERE user_id IN (`+ids+`) ORDER BY user_id, role`, args); err != nil {
		return nil, fmt.Errorf("audience %s roles: %w", a, err)
	}
	byID := make(map[int64][]string, len(us))
	for _, r := range roles {
		byID[r.UserID] = append(byID[r.UserID], r.Role)
	}
	for i := range us {
		us[i].Roles = byID[us[i].ID]
	}
	return us, nil
}

// audienceTargetsExist refuses an audience that names a region, host or flavour devport does not know.
func audienceTargetsExist(ctx context.Context, q queryer, a Audience) error {
	check := func(field, table, column, v string) error {
		if v == "" {
			return nil
		}
		var n int
		if err := getNamed(ctx, q, &n, `SELECT COUNT(*) FROM `+table+` WHERE `+column+` = :v`, arg{"v": v}); err != nil {
			return fmt.Errorf("audience %s: %w", a, err)
		}
		if n == 0 {
			return &ValidationError{Fields: map[string]string{field: fmt.Sprintf("%q is not a known %s", clip(v), field)}}
		}
		return nil
	}
	return mergeValidation(errors.Join(check("region", "regions", "code", a.Region), check("host", "hosts", "name", a.Host), check("flavor", "flavors", "name", a.Flavor)))
}

// Message is what to send; Key makes it once-only per person (the person's ID is appended).
type Message struct {
	Kind, Title, Body, Link, Key string
	Task                         *TaskSpec
}

// TaskSpec is a task a message asks of each person it reaches.
type TaskSpec struct {
	Title string
	Due   time.Time
}

// Validate checks what a message needs: a title, a key, and a sensible task.
func (m Message) Validate() error {
	p := Problems{}
	switch {
	case strings.TrimSpace(m.Title) == "":
		p.Add("title", "is required")
	case len(m.Title) > 200:
		p.Add("title", "is longer than 200 characters")
	}
	if len(m.Body) > 10000 {
		p.Add("body", "is longer than 10000 characters")
	}
	if strings.TrimSpace(m.Key) == "" {
		p.Add("key", "is required")
	}
	if !SafeLink(m.Link) {
		p.Add("link", "must be a path in devport (starting with one /) or an http or https address")
	}
	if m.Task != nil {
		switch {
		case strings.TrimSpace(m.Task.Title) == "":
			p.Add("task.title", "is required")
		case len(m.Task.Title) > 200:
			p.Add("task.title", "is longer than 200 characters")
		}
		if m.Task.Due.IsZero() {
			p.Add("task.due", "is required")
		}
	}
	return p.Err()
}

// NotifyAudience records one notification per person of the audience (once
// per Key+person, ever), with their deliveries per channel preference, and a
// task when Message.Task is set. It returns how many people were newly notified.
func (tx *Tx) NotifyAudience(ctx context.Context, who Actor, a Audience, m Message) (int, error) {
	if err := errors.Join(a.Validate(), m.Validate()); err != nil {
		return 0, mergeValidation(err)
	}
	us, err := tx.AudienceUsers(ctx, a)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, u := range us {
		id, sent, err := tx.notify(ctx, Notification{
			UserID: u.ID, Kind: m.Kind, Title: m.Title, Body: m.Body, Link: m.Link,
			IdempotencyKey: m.Key + ":" + strconv.FormatInt(u.ID, 10),
		})
		if err != nil {
			return n, err
		}
		if !sent {
			continue
		}
		if m.Task != nil {
			if _, err := tx.createTask(ctx, u.ID, id, m.Task.Title, m.Link, m.Task.Due); err != nil {
				return n, err
			}
		}
		n++
	}
	if err := tx.Audit(ctx, who, "notification.audience", "audience", a.String(),
		map[string]any{"key": m.Key, "kind": m.Kind, "reached": len(us), "notified": n, "task": m.Task != nil}); err != nil {
		return n, err
	}
	return n, nil
}

// mergeValidation joins the fields of several validation errors into one.
func mergeValidation(err error) error {
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return err
	}
	p := Problems{}
	for _, e := range joined.Unwrap() {
		var ve *ValidationError
		if !errors.As(e, &ve) {
			return err
		}
		for k, v := range ve.Fields {
			p.Add(k, v)
		}
	}
	return p.Err()
}

// SafeLink tells whether a link may be put in front of people: empty, a
// path in devport ("/…" but not "//…"), or an http or https address.
func SafeLink(link string) bool {
	if link == "" {
		return true
	}
	if strings.HasPrefix(link, "/") {
		return !strings.HasPrefix(link, "//") && !strings.HasPrefix(link, "/\\")
	}
	u, err := url.Parse(link)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
