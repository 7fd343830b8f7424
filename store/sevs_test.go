package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// sevFixture is a store with a fixed clock and a reviewer.
type sevFixture struct {
	s     *store.Store
	clock *commsClock
	who   store.Actor
	rev   store.User
}

func newSevFixture(t *testing.T) *sevFixture {
	t.Helper()
	s := storetest.Seeded(t, nil)
	clock := &commsClock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
	s.Now = clock.Now
	rev := storetest.User(t, s, "rita@example.com", store.RoleReviewer)
	return &sevFixture{s: s, clock: clock, who: store.UserActor(rev, "", ""), rev: rev}
}

func ptr[T any](v T) *T { return &v }

func (f *sevFixture) create(t *testing.T, in store.SevInput) store.Sev {
	t.Helper()
	var sv store.Sev
	err := f.s.InTx(context.Background(), func(tx *store.Tx) error {
		var err error
		sv, err = tx.CreateSev(context.Background(), f.who, in)
		return err
	})
	if err != nil {
		t.Fatalf("create SEV: %v", err)
	}
	return sv
}

func (f *sevFixture) update(id int64, in store.SevInput) (store.Sev, error) {
	var sv store.Sev
	err := f.s.InTx(context.Background(), func(tx *store.Tx) error {
		var err error
		sv, err = tx.UpdateSev(context.Background(), f.who, id, in)
		return err
	})
	return sv, err
}

func (f *sevFixture) review(id int64, in store.SevReviewInput) (store.Sev, error) {
	var sv store.Sev
	err := f.s.InTx(context.Background(), func(tx *store.Tx) error {
		var err error
		_, sv, err = tx.SaveSevReview(context.Background(), f.who, id, in)
		return err
	})
	return sv, err
}

func allChecked() map[string]bool {
	m := map[string]bool{}
	for _, c := range store.ReviewCriteria {
		m[c] = true
	}
	return m
}

// toState brings a new SEV to state through the legal path.
func (f *sevFixture) toState(t *testing.T, state string) store.Sev {
	t.Helper()
	now := f.clock.Now()
	sv := f.create(t, store.SevInput{Title: ptr("disk full"), Severity: ptr(2), Regions: &[]string{"prn"},
		ImpactStartedAt: ptr(now.Add(-2 * time.Hour)), DetectedAt: ptr(now.Add(-time.Hour))})
	path := []string{store.SevMitigated, store.SevClosed, store.SevInReview, store.SevReviewed}
	for _, next := range path {
		if sv.State == state {
			return sv
		}
		var err error
		switch next {
		case store.SevInReview:
			sv, err = f.review(sv.ID, store.SevReviewInput{})
		case store.SevReviewed:
			sv, err = f.review(sv.ID, store.SevReviewInput{Checklist: allChecked(), SignOff: true})
		default:
			sv, err = f.update(sv.ID, store.SevInput{State: ptr(next)})
		}
		if err != nil {
			t.Fatalf("to %s: %v", next, err)
		}
	}
	return sv
}

// snapshot is what a refused change must leave alone.
func sevSnapshot(t *testing.T, s *store.Store, id int64) string {
	t.Helper()
	sv, err := s.Sev(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := s.SevTimeline(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var audits int
	if err := s.WriteDB().QueryRow(`SELECT COUNT(*) FROM audit_events`).Scan(&audits); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%+v|%d|%d", sv, len(tl), audits)
}

func TestSevStateMachine(t *testing.T) {
	f := newSevFixture(t)
	legal := map[[2]string]bool{
		{store.SevOpen, store.SevMitigated}:    true,
		{store.SevMitigated, store.SevClosed}:  true,
		{store.SevClosed, store.SevInReview}:   true,
		{store.SevInReview, store.SevReviewed}: true,
	}
	for _, from := range store.SevStates {
		for _, to := range store.SevStates {
			if from == to {
				continue
			}
			if got := store.SevTransitionAllowed(from, to); got != legal[[2]string{from, to}] {
				t.Errorf("%s → %s allowed = %v", from, to, got)
			}
			if legal[[2]string{from, to}] && to != store.SevReviewed {
				continue
			}
			t.Run(from+" to "+to, func(t *testing.T) {
				sv := f.toState(t, from)
				before := sevSnapshot(t, f.s, sv.ID)
				_, err := f.update(sv.ID, store.SevInput{State: ptr(to)})
				var ce *store.ConflictError
				if !errors.As(err, &ce) {
					t.Fatalf("err = %v, want a conflict", err)
				}
				if to == store.SevReviewed && from == store.SevInReview {
					if ce.Code != "review_sign_off_required" {
						t.Errorf("code %q", ce.Code)
					}
				} else {
					if ce.Code != "illegal_transition" || !strings.Contains(ce.Message, "allowed next states") {
						t.Errorf("conflict %q: %q", ce.Code, ce.Message)
					}
					for _, n := range store.SevNextStates(from) {
						if !strings.Contains(ce.Message, n) {
							t.Errorf("message %q does not name %s", ce.Message, n)
						}
					}
				}
				if after := sevSnapshot(t, f.s, sv.ID); after != before {
					t.Errorf("refused transition changed the SEV:\n%s\n%s", before, after)
				}
			})
		}
	}
	t.Run("entering a state records its time and a timeline entry", func(t *testing.T) {
		sv := f.toState(t, store.SevReviewed)
		if sv.MitigatedAt == nil || sv.ClosedAt == nil || sv.ReviewedAt == nil {
			t.Fatalf("times not recorded: %+v", sv)
		}
		tl, _ := f.s.SevTimeline(context.Background(), sv.ID)
		var states []string
		for _, e := range tl {
			if e.Kind == store.TimelineState {
				states = append(states, e.Text)
			}
		}
		if len(states) != 5 {
			t.Errorf("state entries %q", states)
		}
	})
}

func TestSevClosingNeedsImpactAndDetection(t *testing.T) {
	f := newSevFixture(t)
	sv := f.create(t, store.SevInput{Title: ptr("no times"), Severity: ptr(3)})
	if _, err := f.update(sv.ID, store.SevInput{State: ptr(store.SevMitigated)}); err != nil {
		t.Fatal(err)
	}
	before := sevSnapshot(t, f.s, sv.ID)
	_, err := f.update(sv.ID, store.SevInput{State: ptr(store.SevClosed)})
	var ve *store.ValidationError
	if !errors.As(err, &ve) || ve.Fields["impact_started_at"] == "" || ve.Fields["detected_at"] == "" {
		t.Fatalf("err = %v", err)
	}
	if sevSnapshot(t, f.s, sv.ID) != before {
		t.Error("a refused close changed the SEV")
	}
	if _, err := f.s.SevReport(context.Background(), sv.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("report before close: %v", err)
	}
}

func TestSevBadInput(t *testing.T) {
	f := newSevFixture(t)
	now := f.clock.Now()
	sv := f.create(t, store.SevInput{Title: ptr("base"), Severity: ptr(1), Kind: ptr(store.SevExercise)})
	cases := []struct {
		name  string
		in    store.SevInput
		field string
	}{
		{"unknown severity", store.SevInput{Severity: ptr(7)}, "severity"},
		{"negative severity", store.SevInput{Severity: ptr(-1)}, "severity"},
		{"unknown kind", store.SevInput{Kind: ptr("drill")}, "kind"},
		{"unknown state", store.SevInput{State: ptr("solved")}, "state"},
		{"impact in the future", store.SevInput{ImpactStartedAt: ptr(now.Add(time.Hour))}, "impact_started_at"},
		{"detection before impact", store.SevInput{ImpactStartedAt: ptr(now.Add(-time.Hour)), DetectedAt: ptr(now.Add(-2 * time.Hour))}, "detected_at"},
		{"commander who does not exist", store.SevInput{Commander: ptr("ghost@example.com")}, "commander"},
		{"unknown region", store.SevInput{Regions: &[]string{"atlantis"}}, "regions"},
		{"oversized title", store.SevInput{Title: ptr(strings.Repeat("x", 201))}, "title"},
		{"empty title", store.SevInput{Title: ptr("  ")}, "title"},
		{"mitigation time while open", store.SevInput{MitigatedAt: ptr(now)}, "mitigated_at"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := sevSnapshot(t, f.s, sv.ID)
			_, err := f.update(sv.ID, c.in)
			var ve *store.ValidationError
			if !errors.As(err, &ve) || ve.Fields[c.field] == "" {
				t.Fatalf("err = %v, want a problem with %s", err, c.field)
			}
			if after := sevSnapshot(t, f.s, sv.ID); after != before {
				t.Errorf("changed:\n%s\n%s", before, after)
			}
		})
	}
	t.Run("create refuses bad input and creates nothing", func(t *testing.T) {
		for _, in := range []store.SevInput{
			{Title: ptr("x")},
			{Title: ptr("x"), Severity: ptr(5)},
			{Title: ptr("x"), Severity: ptr(1), Kind: ptr("party")},
			{Title: ptr("x"), Severity: ptr(1), Commander: ptr("nobody@example.com")},
			{Title: ptr("x"), Severity: ptr(1), DetectedAt: ptr(now.Add(24 * time.Hour))},
		} {
			err := f.s.InTx(context.Background(), func(tx *store.Tx) error {
				_, err := tx.CreateSev(context.Background(), f.who, in)
				return err
			})
			var ve *store.ValidationError
			if !errors.As(err, &ve) {
				t.Errorf("%+v: err = %v", in, err)
			}
		}
		ss, _ := f.s.Sevs(context.Background(), store.SevFilter{})
		if len(ss) != 1 {
			t.Errorf("%d SEVs, want 1", len(ss))
		}
	})
	t.Run("timeline refuses future times and oversized text", func(t *testing.T) {
		for _, e := range []store.SevTimelineEntry{
			{Text: "later", At: now.Add(time.Hour)},
			{Text: strings.Repeat("y", store.MaxSevTimeline+1)},
			{Text: "   "},
		} {
			before := sevSnapshot(t, f.s, sv.ID)
			err := f.s.InTx(context.Background(), func(tx *store.Tx) error {
				_, err := tx.AddSevTimeline(context.Background(), f.who, sv.ID, e)
				return err
			})
			var ve *store.ValidationError
			if !errors.As(err, &ve) {
				t.Errorf("err = %v", err)
			}
			if sevSnapshot(t, f.s, sv.ID) != before {
				t.Error("changed")
			}
		}
	})
}

func TestSevTimelineEventKeyOnce(t *testing.T) {
	f := newSevFixture(t)
	sv := f.create(t, store.SevInput{Title: ptr("once"), Severity: ptr(3)})
	for range 3 {
		err := f.s.InTx(context.Background(), func(tx *store.Tx) error {
			_, err := tx.AddSevTimeline(context.Background(), store.System, sv.ID, store.SevTimelineEntry{Kind: store.TimelineEvent, Text: "drain started", EventKey: "drain:1"})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	tl, _ := f.s.SevTimeline(context.Background(), sv.ID)
	n := 0
	for _, e := range tl {
		if e.Text == "drain started" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d entries, want 1", n)
	}
	if _, err := f.s.WriteDB().Exec(`UPDATE sev_timeline SET text = 'x'`); err == nil {
		t.Error("the timeline is not append-only")
	}
}

func TestSevReviewDue(t *testing.T) {
	closed := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		severity, days int
	}{{0, 3}, {1, 3}, {2, 5}, {3, 10}, {4, 10}} {
		sv := store.Sev{Severity: c.severity, State: store.SevClosed, ClosedAt: &closed}
		due := store.ReviewDue(sv)
		if want := closed.AddDate(0, 0, c.days); !due.Equal(want) {
			t.Errorf("SEV%d due %v, want %v", c.severity, due, want)
		}
		if store.ReviewOverdue(sv, due) {
			t.Errorf("SEV%d overdue at its due time", c.severity)
		}
		if !store.ReviewOverdue(sv, due.Add(time.Second)) {
			t.Errorf("SEV%d not overdue after its due time", c.severity)
		}
		sv.State = store.SevReviewed
		if store.ReviewOverdue(sv, due.Add(time.Hour)) {
			t.Errorf("a reviewed SEV%d is overdue", c.severity)
		}
	}
	if !store.ReviewDue(store.Sev{Severity: 0}).IsZero() {
		t.Error("an open SEV has a review due date")
	}
}

func TestSevReportAndReview(t *testing.T) {
	f := newSevFixture(t)
	ctx := context.Background()
	owner := storetest.User(t, f.s, "olga@example.com")
	// Olga has a live devserver in prn: she is affected.
	if _, err := f.s.DB().Exec(f.s.DB().Rebind(`INSERT INTO devservers (name, owner_id, flavor, region, host_id, hostname, state, created_at, updated_at)
SELECT 'olga-1', ?, 'vm.small', 'prn', (SELECT id FROM hosts WHERE region = 'prn' LIMIT 1), 'olga-1.prn', 'ready', ?, ?`), owner.ID, f.clock.Now(), f.clock.Now()); err != nil {
		t.Fatalf("seed a devserver: %v", err)
	}
	sv := f.toState(t, store.SevClosed)
	rep, err := f.s.SevReport(ctx, sv.ID)
	if err != nil {
		t.Fatalf("no report on close: %v", err)
	}
	for _, want := range []string{"Users affected: 1", "Time to detect: 1h", "to close: 2h", "Devservers lost in the regions: 0"} {
		if !strings.Contains(rep.Impact, want) {
			t.Errorf("impact lacks %q:\n%s", want, rep.Impact)
		}
	}
	// Only writers edit the report; it is stored as written, oversized refused.
	err = f.s.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.PutSevReport(ctx, f.who, sv.ID, store.SevReportInput{Summary: strings.Repeat("z", store.MaxSevSection+1)})
		return err
	})
	var ve *store.ValidationError
	if !errors.As(err, &ve) || ve.Fields["summary"] == "" {
		t.Fatalf("oversized section: %v", err)
	}
	if again, _ := f.s.SevReport(ctx, sv.ID); again.Summary != "" {
		t.Error("a refused report changed")
	}
	// The queue holds it, due in 5 days (SEV2).
	q, err := f.s.ReviewQueue(ctx)
	if err != nil || len(q) != 1 || q[0].Sev.ID != sv.ID || !q[0].Due.Equal(sv.ClosedAt.AddDate(0, 0, 5)) || q[0].Overdue {
		t.Fatalf("queue %+v %v", q, err)
	}
	f.clock.t = f.clock.t.Add(6 * 24 * time.Hour)
	if q, _ = f.s.ReviewQueue(ctx); !q[0].Overdue {
		t.Error("not overdue after 6 days")
	}
	// Sign-off needs every criterion; a facilitator who does not exist is refused.
	before := sevSnapshot(t, f.s, sv.ID)
	if _, err := f.review(sv.ID, store.SevReviewInput{Facilitator: "ghost@example.com", Checklist: allChecked(), SignOff: true}); !errors.As(err, &ve) || ve.Fields["facilitator"] == "" {
		t.Errorf("ghost facilitator: %v", err)
	}
	if _, err := f.review(sv.ID, store.SevReviewInput{Checklist: map[string]bool{"Timeline complete": true}, SignOff: true}); !errors.As(err, &ve) || ve.Fields["checklist"] == "" {
		t.Errorf("incomplete checklist: %v", err)
	}
	if sevSnapshot(t, f.s, sv.ID) != before {
		t.Error("a refused review changed the SEV")
	}
	sv, err = f.review(sv.ID, store.SevReviewInput{Attendees: []string{"olga@example.com"}, Notes: "went fine"})
	if err != nil || sv.State != store.SevInReview {
		t.Fatalf("start review: %v %s", err, sv.State)
	}
	sv, err = f.review(sv.ID, store.SevReviewInput{Attendees: []string{"olga@example.com"}, Checklist: allChecked(), SignOff: true})
	if err != nil || sv.State != store.SevReviewed || sv.ReviewedAt == nil {
		t.Fatalf("sign off: %v %+v", err, sv)
	}
	r, _ := f.s.SevReview(ctx, sv.ID)
	if r.SignedOffBy != "rita@example.com" || r.SignedOffAt == nil || r.Facilitator != "rita@example.com" || len(r.Attendees) != 1 {
		t.Errorf("review %+v", r)
	}
	if q, _ = f.s.ReviewQueue(ctx); len(q) != 0 {
		t.Errorf("reviewed SEV still queued: %+v", q)
	}
	var ce *store.ConflictError
	if _, err := f.review(sv.ID, store.SevReviewInput{}); !errors.As(err, &ce) {
		t.Errorf("review after sign-off: %v", err)
	}
}

func TestSevBroadcast(t *testing.T) {
	f := newSevFixture(t)
	ctx := context.Background()
	sv := f.create(t, store.SevInput{Title: ptr("prn down"), Severity: ptr(1), Regions: &[]string{"prn"}})
	var res store.SevBroadcastResult
	err := f.s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		res, err = tx.BroadcastSev(ctx, f.who, sv.ID, store.SevBroadcast{Text: "We are draining prn", Subscribers: true, Banner: true})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Notified != 1 || len(res.Banners) != 1 {
		t.Errorf("result %+v", res)
	}
	b, err := f.s.Banner(ctx, res.Banners[0])
	if err != nil || b.SevID == nil || *b.SevID != sv.ID || b.RegionCode() != "prn" {
		t.Errorf("banner %+v %v", b, err)
	}
	tl, _ := f.s.SevTimeline(ctx, sv.ID)
	if last := tl[len(tl)-1]; last.Kind != store.TimelineBroadcast || !strings.Contains(last.Text, "We are draining prn") {
		t.Errorf("timeline %+v", last)
	}
	err = f.s.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.BroadcastSev(ctx, f.who, sv.ID, store.SevBroadcast{Text: "nobody"})
		return err
	})
	var ve *store.ValidationError
	if !errors.As(err, &ve) {
		t.Errorf("a broadcast to nobody: %v", err)
	}
}

func TestRunSevNumber(t *testing.T) {
	for _, c := range []struct {
		params string
		want   int64
	}{
		{`{"sev": 12}`, 12}, {`{"sev": "12"}`, 12}, {`{"sev": "SEV-7"}`, 7}, {`{"sev": "sev-7"}`, 7},
		{`{"sev": ""}`, 0}, {`{"region": "prn"}`, 0}, {`{"sev": "soon"}`, 0}, {`{"sev": -3}`, 0},
	} {
		if got := store.RunSevNumber(store.Run{ParamsJSON: c.params}); got != c.want {
			t.Errorf("%s: %d, want %d", c.params, got, c.want)
		}
	}
}
