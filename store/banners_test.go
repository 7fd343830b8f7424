package store_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devport/devport/store"
)

// commsClock is a clock the communications tests move by hand.
type commsClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *commsClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *commsClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func createBanner(t *testing.T, s *store.Store, in store.BannerInput) (store.Banner, error) {
	t.Helper()
	var b store.Banner
	err := s.InTx(context.Background(), func(tx *store.Tx) error {
		var err error
		b, err = tx.CreateBanner(context.Background(), store.System, in)
		return err
	})
	return b, err
}

func activeMessages(t *testing.T, s *store.Store, u store.User) string {
	t.Helper()
	bs, err := s.ActiveBanners(context.Background(), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, b := range bs {
		out = append(out, b.Message)
	}
	return strings.Join(out, "|")
}

func TestBannerSchedule(t *testing.T) {
	s := targetingInventory(t)
	clock := &commsClock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
	s.Now = clock.Now
	ctx := context.Background()
	ann, _ := s.UserByEmail(ctx, "ann@example.com") // devservers in prn
	ivy, _ := s.UserByEmail(ctx, "ivy@example.com") // a container in lla
	dan, _ := s.UserByEmail(ctx, "dan@example.com") // only released and ended things
	at := func(h int) *time.Time { v := clock.Now().Add(time.Duration(h) * time.Hour); return &v }

	mustBanner := func(in store.BannerInput) store.Banner {
		b, err := createBanner(t, s, in)
		if err != nil {
			t.Fatalf("%+v: %v", in, err)
		}
		return b
	}
	mustBanner(store.BannerInput{Message: "now, global", Severity: "info"})
	mustBanner(store.BannerInput{Message: "maintenance at noon", Severity: "warning", StartsAt: at(2), EndsAt: at(4)})
	mustBanner(store.BannerInput{Message: "prn drains", Severity: "critical", Region: "prn", Audience: "affected", EndsAt: at(24)})
	mustBanner(store.BannerInput{Message: "lla storm drill", Severity: "warning", Region: "lla", Audience: "affected", StartsAt: at(1)})
	mustBanner(store.BannerInput{Message: "about ftw, for all", Severity: "info", Region: "ftw", Audience: "all", EndsAt: at(1)})

	steps := []struct {
		hours         int
		ann, ivy, dan string
	}{
		{0, "prn drains|about ftw, for all|now, global", "about ftw, for all|now, global", "about ftw, for all|now, global"},
		{1, "prn drains|now, global", "lla storm drill|now, global", "now, global"},
		{1, "prn drains|maintenance at noon|now, global", "maintenance at noon|lla storm drill|now, global", "maintenance at noon|now, global"},
		{2, "prn drains|now, global", "lla storm drill|now, global", "now, global"},
		{20, "now, global", "lla storm drill|now, global", "now, global"},
	}
	elapsed := 0
	for _, st := range steps {
		clock.Add(time.Duration(st.hours) * time.Hour)
		elapsed += st.hours
		if got := activeMessages(t, s, ann); got != st.ann {
			t.Errorf("at +%dh ann sees %q, want %q", elapsed, got, st.ann)
		}
		if got := activeMessages(t, s, ivy); got != st.ivy {
			t.Errorf("at +%dh ivy sees %q, want %q", elapsed, got, st.ivy)
		}
		if got := activeMessages(t, s, dan); got != st.dan {
			t.Errorf("at +%dh dan sees %q, want %q", elapsed, got, st.dan)
		}
	}
}

func TestBannerEdits(t *testing.T) {
	s := targetingInventory(t)
	clock := &commsClock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
	s.Now = clock.Now
	ctx := context.Background()
	b, err := createBanner(t, s, store.BannerInput{Message: "hello", Severity: "info"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Audience != "all" || b.Region != nil || !b.StartsAt.Equal(clock.Now()) || b.EndsAt != nil {
		t.Errorf("defaults: %+v", b)
	}
	in := b.Input()
	in.Message, in.Region, in.Audience, in.Severity = "prn only", "prn", "affected", "critical"
	sev := int64(42)
	in.SevID = &sev
	var up store.Banner
	err = s.InTx(ctx, func(tx *store.Tx) error {
		up, err = tx.UpdateBanner(ctx, store.System, b.ID, in)
		return err
	})
	if err != nil || up.Message != "prn only" || up.RegionCode() != "prn" || up.SevID == nil || *up.SevID != 42 {
		t.Fatalf("update: %+v %v", up, err)
	}
	err = s.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.DeleteBanner(ctx, store.System, b.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Banner(ctx, b.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
	events, _ := s.AuditEvents(ctx, "banner", "1")
	if len(events) != 3 {
		t.Errorf("audit events %d, want create, update and delete", len(events))
	}
}

func TestBannerBadInputChangesNothing(t *testing.T) {
	s := targetingInventory(t)
	clock := &commsClock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
	s.Now = clock.Now
	ctx := context.Background()
	existing, err := createBanner(t, s, store.BannerInput{Message: "keep me", Severity: "warning", Region: "prn"})
	if err != nil {
		t.Fatal(err)
	}
	start := clock.Now().Add(time.Hour)
	before := start.Add(-time.Minute)
	neg := int64(-1)
	cases := []struct {
		name  string
		in    store.BannerInput
		field string
	}{
		{"an empty message", store.BannerInput{Message: "  "}, "message"},
		{"an oversized message", store.BannerInput{Message: strings.Repeat("x", store.MaxBannerMessage+1)}, "message"},
		{"an unknown severity", store.BannerInput{Message: "m", Severity: "fatal"}, "severity"},
		{"an unknown region", store.BannerInput{Message: "m", Region: "xyz"}, "region"},
		{"an unknown audience", store.BannerInput{Message: "m", Audience: "some"}, "audience"},
		{"affected without a region", store.BannerInput{Message: "m", Audience: "affected"}, "audience"},
		{"an end before its start", store.BannerInput{Message: "m", StartsAt: &start, EndsAt: &before}, "ends_at"},
		{"an end equal to its start", store.BannerInput{Message: "m", StartsAt: &start, EndsAt: &start}, "ends_at"},
		{"a negative SEV", store.BannerInput{Message: "m", SevID: &neg}, "sev_id"},
	}
	audits := countRows(t, s, "audit_events")
	for _, c := range cases {
		t.Run("create: "+c.name, func(t *testing.T) {
			_, err := createBanner(t, s, c.in)
			var ve *store.ValidationError
			if !errors.As(err, &ve) || ve.Fields[c.field] == "" {
				t.Errorf("got %v, want a problem with %s", err, c.field)
			}
		})
		t.Run("edit: "+c.name, func(t *testing.T) {
			err := s.InTx(ctx, func(tx *store.Tx) error {
				_, err := tx.UpdateBanner(ctx, store.System, existing.ID, c.in)
				return err
			})
			var ve *store.ValidationError
			if !errors.As(err, &ve) || ve.Fields[c.field] == "" {
				t.Errorf("got %v, want a problem with %s", err, c.field)
			}
		})
	}
	if n := countRows(t, s, "banners"); n != 1 {
		t.Errorf("%d banners, want the one", n)
	}
	if got, _ := s.Banner(ctx, existing.ID); got.Message != "keep me" || got.Severity != "warning" || got.RegionCode() != "prn" {
		t.Errorf("the banner changed: %+v", got)
	}
	if n := countRows(t, s, "audit_events"); n != audits {
		t.Errorf("audit events went from %d to %d", audits, n)
	}
	err = s.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.UpdateBanner(ctx, store.System, 999, store.BannerInput{Message: "m"})
		return err
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("editing a missing banner: %v", err)
	}
}
