package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Banner severities and audiences.
var (
	BannerSeverities = []string{"info", "warning", "critical"}
	BannerAudiences  = []string{"all", "affected"}
)

// MaxBannerMessage bounds a banner's message: it is shown on every page.
const MaxBannerMessage = 500

// Banner is a message shown on every page of the people it is for, between
// its start and its end. A regional banner for the affected audience reaches
// the owners of live devservers or containers in its region.
type Banner struct {
	ID        int64      `db:"id" json:"id"`
	Message   string     `db:"message" json:"message"`
	Severity  string     `db:"severity" json:"severity"`
	Region    *string    `db:"region" json:"region"`
	StartsAt  time.Time  `db:"starts_at" json:"starts_at"`
	EndsAt    *time.Time `db:"ends_at" json:"ends_at"`
	Audience  string     `db:"audience" json:"audience"`
	SevID     *int64     `db:"sev_id" json:"sev_id"`
	CreatedBy string     `db:"created_by" json:"created_by"`
	CreatedAt time.Time  `db:"created_at" json:"created_at"`
	UpdatedAt time.Time  `db:"updated_at" json:"updated_at"`
}

// RegionCode is the banner's region, "" for a global banner.
func (b Banner) RegionCode() string {
	if b.Region == nil {
		return ""
	}
	return *b.Region
}

// Status says where the banner is in its schedule at now: scheduled, active or ended.
func (b Banner) Status(now time.Time) string {
	switch {
	case now.Before(b.StartsAt):
		return "scheduled"
	case b.EndsAt != nil && !now.Before(*b.EndsAt):
		return "ended"
	}
	return "active"
}

// BannerInput is what an admin writes: a new banner, or the whole of an edited one.
type BannerInput struct {
	Message  string     `json:"message"`
	Severity string     `json:"severity"`
	Region   string     `json:"region"`
	StartsAt *time.Time `json:"starts_at"` // nil: now
	EndsAt   *time.Time `json:"ends_at"`   // nil: until deleted
	Audience string     `json:"audience"`
	SevID    *int64     `json:"sev_id"`
}

// Input is the banner as an input, for edits that change some fields.
func (b Banner) Input() BannerInput {
	starts := b.StartsAt
	return BannerInput{Message: b.Message, Severity: b.Severity, Region: b.RegionCode(), StartsAt: &starts, EndsAt: b.EndsAt, Audience: b.Audience, SevID: b.SevID}
}

func (tx *Tx) checkBanner(ctx context.Context, in *BannerInput) error {
	p := Problems{}
	in.Message = strings.TrimSpace(in.Message)
	in.Region = strings.TrimSpace(in.Region)
	if in.Audience == "" {
		in.Audience = "all"
	}
	if in.Severity == "" {
		in.Severity = "info"
	}
	switch {
	case in.Message == "":
		p.Add("message", "is required")
	case len(in.Message) > MaxBannerMessage:
		p.Add("message", fmt.Sprintf("is longer than %d characters", MaxBannerMessage))
	}
	if !slices.Contains(BannerSeverities, in.Severity) {
		p.Add("severity", fmt.Sprintf("%q is not a severity (info, warning, critical)", clip(in.Severity)))
	}
	if !slices.Contains(BannerAudiences, in.Audience) {
		p.Add("audience", fmt.Sprintf("%q is not an audience (all, affected)", clip(in.Audience)))
	}
	if in.Region != "" {
		if _, err := regionByCode(ctx, tx, in.Region); errors.Is(err, ErrNotFound) {
			p.Add("region", fmt.Sprintf("%q is not a region", clip(in.Region)))
		} else if err != nil {
			return err
		}
	} else if in.Audience == "affected" {
		p.Add("audience", "affected needs a region: the people with devservers or containers there")
	}
	if in.StartsAt == nil {
		now := tx.Now()
		in.StartsAt = &now
	}
	if in.EndsAt != nil && !in.EndsAt.After(*in.StartsAt) {
		p.Add("ends_at", "must be after the start")
	}
	if in.SevID != nil && *in.SevID <= 0 {
		p.Add("sev_id", "must be a positive SEV number")
	}
	return p.Err()
}

func bannerArgs(in BannerInput, now time.Time) arg {
	var region *string
	if in.Region != "" {
		region = &in.Region
	}
	var ends *time.Time
	if in.EndsAt != nil {
		e := in.EndsAt.UTC()
		ends = &e
	}
	return arg{"message": in.Message, "severity": in.Severity, "region": region, "starts": in.StartsAt.UTC(), "ends": ends,
		"audience": in.Audience, "sev": in.SevID, "now": now}
}

// CreateBanner adds a banner after validation.
func (tx *Tx) CreateBanner(ctx context.Context, who Actor, in BannerInput) (Banner, error) {
	if err := tx.checkBanner(ctx, &in); err != nil {
		return Banner{}, err
	}
	a := bannerArgs(in, tx.Now())
	a["by"] = who.Name
	var b Banner
	err := getNamed(ctx, tx, &b, `
INSERT INTO banners (message, severity, region, starts_at, ends_at, audience, sev_id, created_by, created_at, updated_at)
VALUES (:message, :severity, :region, :starts, :ends, :audience, :sev, :by, :now, :now) RETURNING *`, a)
	if err != nil {
		return Banner{}, fmt.Errorf("create banner: %w", err)
	}
	return b, tx.Audit(ctx, who, "banner.create", "banner", strconv.FormatInt(b.ID, 10), bannerDetail(b))
}

// UpdateBanner replaces a banner's fields after validation.
func (tx *Tx) UpdateBanner(ctx context.Context, who Actor, id int64, in BannerInput) (Banner, error) {
	if _, err := banner(ctx, tx, id); err != nil {
		return Banner{}, err
	}
	if err := tx.checkBanner(ctx, &in); err != nil {
		return Banner{}, err
	}
	a := bannerArgs(in, tx.Now())
	a["id"] = id
	var b Banner
	err := getNamed(ctx, tx, &b, `
UPDATE banners SET message = :message, severity = :severity, region = :region, starts_at = :starts, ends_at = :ends,
    audience = :audience, sev_id = :sev, updated_at = :now
WHERE id = :id RETURNING *`, a)
	if err != nil {
		return Banner{}, fmt.Errorf("update banner %d: %w", id, err)
	}
	return b, tx.Audit(ctx, who, "banner.update", "banner", strconv.FormatInt(id, 10), bannerDetail(b))
}

// DeleteBanner removes a banner.
func (tx *Tx) DeleteBanner(ctx context.Context, who Actor, id int64) (Banner, error) {
	b, err := banner(ctx, tx, id)
	if err != nil {
		return Banner{}, err
	}
	if _, err := execNamed(ctx, tx, `DELETE FROM banners WHERE id = :id`, arg{"id": id}); err != nil {
		return Banner{}, fmt.Errorf("delete banner %d: %w", id, err)
	}
	return b, tx.Audit(ctx, who, "banner.delete", "banner", strconv.FormatInt(id, 10), bannerDetail(b))
}

func bannerDetail(b Banner) map[string]any {
	return map[string]any{"message": b.Message, "severity": b.Severity, "region": b.RegionCode(), "audience": b.Audience,
		"starts_at": b.StartsAt, "ends_at": b.EndsAt, "sev_id": b.SevID}
}

func banner(ctx context.Context, q queryer, id int64) (Banner, error) {
	var b Banner
	if err := getNamed(ctx, q, &b, `SELECT * FROM banners WHERE id = :id`, arg{"id": id}); err != nil {
		return Banner{}, fmt.Errorf("banner %d: %w", id, err)
	}
	return b, nil
}

// Banner returns one banner.
func (s *Store) Banner(ctx context.Context, id int64) (Banner, error) { return banner(ctx, s.read, id) }

// Banners lists every banner for admins: the current and scheduled ones first, newest first.
func (s *Store) Banners(ctx context.Context) ([]Banner, error) {
	var bs []Banner
	err := selectNamed(ctx, s.read, &bs, `
SELECT * FROM banners ORDER BY (ends_at IS NOT NULL AND ends_at <= :now), starts_at DESC, id DESC LIMIT 500`, arg{"now": s.Now()})
	if err != nil {
		return nil, fmt.Errorf("banners: %w", err)
	}
	return bs, nil
}

// ActiveBanners lists the banners a person sees now, most severe first: the
// ones for everyone, and the affected-audience ones of regions where the
// person owns a live devserver or container.
func (s *Store) ActiveBanners(ctx context.Context, userID int64) ([]Banner, error) {
	var bs []Banner
	err := selectNamed(ctx, s.read, &bs, `
SELECT * FROM banners b
WHERE b.starts_at <= :now AND (b.ends_at IS NULL OR b.ends_at > :now)
  AND (b.audience = 'all'
       OR EXISTS (SELECT 1 FROM devservers d WHERE d.region = b.region AND d.owner_id = :user AND d.state NOT IN ('released', 'failed'))
       OR EXISTS (SELECT 1 FROM containers c WHERE c.region = b.region AND c.owner_id = :user AND c.state IN ('provisioning', 'ready')))
ORDER BY CASE b.severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, b.starts_at DESC, b.id DESC
LIMIT 20`, arg{"now": s.Now(), "user": userID})
	if err != nil {
		return nil, fmt.Errorf("active banners: %w", err)
	}
	return bs, nil
}
