package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

func TestPercentile(t *testing.T) {
	h := time.Hour
	for _, c := range []struct {
		name        string
		ds          []time.Duration
		median, p90 time.Duration
	}{
		{"none", nil, 0, 0},
		{"one", []time.Duration{3 * h}, 3 * h, 3 * h},
		{"two take the lower as median", []time.Duration{10 * h, 5 * h}, 5 * h, 10 * h},
		{"three unsorted", []time.Duration{1 * h, 3 * h, 2 * h}, 2 * h, 3 * h},
		{"ten", []time.Duration{10 * h, 9 * h, 8 * h, 7 * h, 6 * h, 5 * h, 4 * h, 3 * h, 2 * h, 1 * h}, 5 * h, 9 * h},
		{"eleven", []time.Duration{1 * h, 2 * h, 3 * h, 4 * h, 5 * h, 6 * h, 7 * h, 8 * h, 9 * h, 10 * h, 11 * h}, 6 * h, 10 * h},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := store.StatOf(c.ds)
			if st.N != len(c.ds) || st.Median != c.median || st.P90 != c.p90 {
				t.Errorf("StatOf = %+v, want median %v p90 %v", st, c.median, c.p90)
			}
		})
	}
}

func TestSevMetrics(t *testing.T) {
	s := storetest.Seeded(t, nil)
	now := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	clock := &commsClock{t: now}
	s.Now = clock.Now
	ctx := context.Background()
	at := func(m time.Month, d, hour int) time.Time { return time.Date(2026, m, d, hour, 0, 0, 0, time.UTC) }
	h := time.Hour

	// November's incidents: impact to mitigation 1h, 3h, 2h; to closing 5h, 10h.
	seedFuSev(t, s, fuSev{severity: 1, state: store.SevReviewed, impact: tp(at(11, 2, 10)), reported: tp(at(11, 2, 10).Add(20 * time.Minute)),
		mitigated: tp(at(11, 2, 11)), closed: tp(at(11, 2, 15)), reviewed: tp(at(11, 5, 15))})
	seedFuSev(t, s, fuSev{severity: 1, state: store.SevClosed, impact: tp(at(11, 10, 0)), reported: tp(at(11, 10, 1)),
		mitigated: tp(at(11, 10, 3)), closed: tp(at(11, 10, 10))})
	seedFuSev(t, s, fuSev{severity: 3, state: store.SevMitigated, impact: tp(at(11, 12, 0)), reported: tp(at(11, 12, 0)), mitigated: tp(at(11, 12, 2))})
	// October: no impact start known, so from the report; reviewed in November a day after closing.
	seedFuSev(t, s, fuSev{severity: 0, state: store.SevReviewed, reported: tp(at(10, 15, 8)), mitigated: tp(at(10, 15, 8).Add(30 * time.Minute)),
		closed: tp(at(10, 20, 8)), reviewed: tp(at(11, 21, 8))})
	// Thirteen months ago: outside the window.
	seedFuSev(t, s, fuSev{severity: 2, reported: tp(time.Date(2025, 10, 31, 23, 0, 0, 0, time.UTC))})
	// Exercises are their own series, not incidents.
	var runID int64 = 77
	err := s.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO runbook_versions (name, version, yaml, created_at, created_by) VALUES ('drain', 1, 'x', ?, 'test')`), now); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO runbook_runs (id, runbook, version, state, started_by, created_at, finished_at) VALUES (?, 'drain', 1, 'succeeded', 'test', ?, ?)`),
			runID, at(11, 3, 9), at(11, 3, 11))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	drill := seedFuSev(t, s, fuSev{title: "Drain prn", severity: 4, kind: store.SevExercise, state: store.SevClosed, reported: tp(at(11, 3, 8)),
		mitigated: tp(at(11, 3, 13)), closed: tp(at(11, 4, 8)), runID: &runID, regions: []string{"prn"}})
	quiet := seedFuSev(t, s, fuSev{title: "Drain ftw", severity: 4, kind: store.SevExercise, state: store.SevMitigated, reported: tp(at(11, 20, 8)),
		mitigated: tp(at(11, 20, 8).Add(45 * time.Minute)), regions: []string{"ftw"}})

	// During the prn drill: ann's devserver was moved for her, bob moved his
	// himself, carl's was moved for him but he had been given a task.
	ann := storetest.User(t, s, "ann@example.com")
	bob := storetest.User(t, s, "bob@example.com")
	carl := storetest.User(t, s, "carl@example.com")
	err = s.InTx(ctx, func(tx *store.Tx) error {
		var host int64
		if err := tx.GetContext(ctx, &host, `SELECT id FROM hosts WHERE region = 'ftw' LIMIT 1`); err != nil {
			return err
		}
		for i, c := range []struct {
			u  store.User
			by string
		}{{ann, "system"}, {bob, bob.Email}, {carl, "admin@example.com"}} {
			var id int64
			if err := tx.GetContext(ctx, &id, tx.Rebind(`INSERT INTO devservers (name, owner_id, flavor, region, host_id, hostname, state, created_at, updated_at)
VALUES (?, ?, 'vm.small', 'ftw', ?, ?, 'ready', ?, ?) RETURNING id`), "dev-"+c.u.Email, c.u.ID, host, "h"+c.u.Email, now, now); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO devserver_migrations (devserver_id, from_region, from_flavor, from_host_id, to_region, to_flavor, to_host_id,
    step, state, requested_by, created_at, updated_at) VALUES (?, 'prn', 'vm.small', ?, 'ftw', 'vm.small', ?, 'done', 'done', ?, ?, ?)`),
				id, host, host, c.by, at(11, 3, 9+i), at(11, 3, 10+i)); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO tasks (user_id, title, due_at, created_at) VALUES (?, 'Move out of prn', ?, ?)`), carl.ID, at(11, 5, 0), at(11, 3, 8).Add(time.Minute))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	// Follow-ups: critical done, overdue, open; medium won't do; exploratory open; two for the drill.
	err = s.InTx(ctx, func(tx *store.Tx) error {
		for _, f := range []struct {
			sev         int64
			kind, state string
			due         time.Time
		}{
			{1, "critical", "done", at(11, 10, 0)},
			{1, "critical", "open", at(11, 20, 0)},
			{2, "critical", "in_progress", at(11, 30, 0)},
			{2, "medium", "wont_do", at(12, 30, 0)},
			{drill, "exploratory", "open", at(12, 30, 0)},
			{drill, "medium", "in_progress", at(11, 24, 8)},
		} {
			reason := ""
			if f.state == "wont_do" {
				reason = "replaced"
			}
			if _, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO followups (sev_id, kind, title, owner_id, due_at, status, reason, created_by, created_at, updated_at)
VALUES (?, ?, 'x', ?, ?, ?, ?, 'test', ?, ?)`), f.sev, f.kind, ann.ID, f.due, f.state, reason, now, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	m, err := s.SevMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("covers the last twelve months", func(t *testing.T) {
		if len(m.Months) != 12 || m.Months[0].Month != "2025-12" || m.Months[11].Month != "2026-11" {
			t.Fatalf("months %v .. %v (%d)", m.Months[0].Month, m.Months[len(m.Months)-1].Month, len(m.Months))
		}
	})
	nov, oct := m.Months[11], m.Months[10]
	t.Run("counts incidents per month by severity", func(t *testing.T) {
		if nov.BySeverity != (store.SeverityCounts{0, 2, 0, 1, 0}) || oct.BySeverity != (store.SeverityCounts{1, 0, 0, 0, 0}) {
			t.Errorf("november %v, october %v", nov.BySeverity, oct.BySeverity)
		}
		total := 0
		for _, mo := range m.Months {
			total += mo.BySeverity.Total()
		}
		if total != 4 {
			t.Errorf("%d incidents in the window, want 4 (exercises and older ones apart)", total)
		}
	})
	t.Run("time to mitigate and to close run from impact start", func(t *testing.T) {
		if nov.Mitigate != (store.DurationStat{N: 3, Median: 2 * h, P90: 3 * h}) {
			t.Errorf("november mitigate %+v", nov.Mitigate)
		}
		if nov.Close != (store.DurationStat{N: 2, Median: 5 * h, P90: 10 * h}) {
			t.Errorf("november close %+v", nov.Close)
		}
		if oct.Mitigate != (store.DurationStat{N: 1, Median: 30 * time.Minute, P90: 30 * time.Minute}) || oct.Close.Median != 5*24*h {
			t.Errorf("october %+v %+v", oct.Mitigate, oct.Close)
		}
	})
	t.Run("review lead time runs from closing to sign-off, in the month of sign-off", func(t *testing.T) {
		// Reviewed in November: 3 days after closing, and 32 days after.
		if nov.ReviewLead != (store.DurationStat{N: 2, Median: 3 * 24 * h, P90: 32 * 24 * h}) || oct.ReviewLead.N != 0 {
			t.Errorf("november %+v, october %+v", nov.ReviewLead, oct.ReviewLead)
		}
	})
	t.Run("follow-ups by kind: done, won't do, open and overdue", func(t *testing.T) {
		want := []store.FollowupCompletion{
			{Kind: "critical", Done: 1, Open: 1, Overdue: 1},
			{Kind: "medium", WontDo: 1, Overdue: 1},
			{Kind: "exploratory", Open: 1},
		}
		if len(m.Followups) != 3 {
			t.Fatalf("%+v", m.Followups)
		}
		for i := range want {
			if m.Followups[i] != want[i] {
				t.Errorf("%+v, want %+v", m.Followups[i], want[i])
			}
		}
	})
	t.Run("exercises: time to drain, users moved without acting, follow-ups", func(t *testing.T) {
		if len(m.Exercises) != 2 {
			t.Fatalf("%+v", m.Exercises)
		}
		d, q := m.Exercises[0], m.Exercises[1]
		if d.SevID != drill || d.Drain == nil || *d.Drain != 2*h || d.DrainFrom != "run" {
			t.Errorf("drill drain %+v", d)
		}
		if d.UsersMoved != 3 || d.UsersMovedNoAction != 1 || d.UsersTasked != 1 || d.Followups != 2 {
			t.Errorf("drill moves %+v", d)
		}
		if share, ok := d.MovedShare(); !ok || share < 0.33 || share > 0.34 {
			t.Errorf("share %v %v", share, ok)
		}
		if q.SevID != quiet || q.Drain == nil || *q.Drain != 45*time.Minute || q.DrainFrom != "mitigation" || q.UsersMoved != 0 || q.Followups != 0 {
			t.Errorf("quiet drill %+v", q)
		}
		if _, ok := q.MovedShare(); ok {
			t.Error("a share of nobody")
		}
	})
}
