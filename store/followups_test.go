package store_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

// fuSev is a SEV as a follow-up or metrics test seeds it, straight into the table.
type fuSev struct {
	title, kind, state                            string
	severity                                      int
	impact, reported, mitigated, closed, reviewed *time.Time
	regions                                       []string
	runID                                         *int64
}

func tp(t time.Time) *time.Time { return &t }

// seedFuSev inserts a SEV and returns its number.
func seedFuSev(t *testing.T, s *store.Store, v fuSev) int64 {
	t.Helper()
	ctx := context.Background()
	if v.kind == "" {
		v.kind = store.SevIncident
	}
	if v.state == "" {
		v.state = store.SevOpen
	}
	if v.title == "" {
		v.title = "Something broke"
	}
	if v.reported == nil {
		v.reported = tp(s.Now())
	}
	var id int64
	err := s.InTx(ctx, func(tx *store.Tx) error {
		err := tx.GetContext(ctx, &id, tx.Rebind(`INSERT INTO sevs (title, severity, kind, state, impact_started_at, reported_at, mitigated_at, closed_at, reviewed_at,
    run_id, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'test', ?, ?) RETURNING id`),
			v.title, v.severity, v.kind, v.state, v.impact, *v.reported, v.mitigated, v.closed, v.reviewed, v.runID, *v.reported, *v.reported)
		if err != nil {
			return err
		}
		for _, r := range v.regions {
			if _, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO sev_regions (sev_id, region) VALUES (?, ?)`), id, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func fuCount(t *testing.T, s *store.Store, query string, args ...any) int {
	t.Helper()
	var n int
	err := s.InTx(context.Background(), func(tx *store.Tx) error {
		return tx.GetContext(context.Background(), &n, tx.Rebind(query), args...)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func fileFollowup(ctx context.Context, s *store.Store, who store.Actor, sev int64, in store.FollowupInput) (store.Followup, error) {
	var f store.Followup
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		f, err = tx.CreateFollowup(ctx, who, sev, in)
		return err
	})
	return f, err
}

func patchFollowup(ctx context.Context, s *store.Store, who store.Actor, id int64, p store.FollowupPatch) (store.Followup, error) {
	var f store.Followup
	err := s.InTx(ctx, func(tx *store.Tx) error {
		var err error
		f, err = tx.UpdateFollowup(ctx, who, id, p)
		return err
	})
	return f, err
}

func str(s string) *string { return &s }

func TestFollowupDueDates(t *testing.T) {
	now := time.Date(2026, 11, 24, 9, 30, 0, 0, time.UTC)
	for _, c := range []struct {
		kind string
		days int
		want time.Time
	}{
		{store.FollowupCritical, 7, time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)},
		{store.FollowupMedium, 30, time.Date(2026, 12, 24, 9, 30, 0, 0, time.UTC)},
		{store.FollowupExploratory, 90, time.Date(2027, 2, 22, 9, 30, 0, 0, time.UTC)},
		{"urgent", 0, now},
	} {
		t.Run(c.kind+" is due in "+strconv.Itoa(c.days)+" days", func(t *testing.T) {
			if got := store.FollowupDueDays(c.kind); got != c.days {
				t.Errorf("FollowupDueDays(%q) = %d, want %d", c.kind, got, c.days)
			}
			if got := store.FollowupDefaultDue(c.kind, now); !got.Equal(c.want) {
				t.Errorf("FollowupDefaultDue(%q) = %v, want %v", c.kind, got, c.want)
			}
		})
	}
}

func TestFollowups(t *testing.T) {
	s := storetest.Seeded(t, nil)
	clock := &commsClock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
	s.Now = clock.Now
	ctx := context.Background()
	rev := storetest.User(t, s, "rev@example.com", store.RoleReviewer)
	ann := storetest.User(t, s, "ann@example.com")
	who := store.UserActor(rev, "", "")
	sev := seedFuSev(t, s, fuSev{title: "prn down", severity: 1})

	t.Run("files a follow-up due by its kind's default", func(t *testing.T) {
		f, err := fileFollowup(ctx, s, who, sev, store.FollowupInput{Kind: "critical", Title: " Fix the breaker ", Owner: "ANN@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		if f.Title != "Fix the breaker" || f.Owner != ann.Email || f.Status != store.FollowupOpen || f.SevID != sev || f.SevTitle != "prn down" {
			t.Errorf("filed %+v", f)
		}
		if !f.DueAt.Equal(clock.Now().AddDate(0, 0, 7)) {
			t.Errorf("due %v, want in 7 days", f.DueAt)
		}
		if n := fuCount(t, s, `SELECT COUNT(*) FROM audit_events WHERE action = 'followup.create' AND object_id = ?`, strconv.FormatInt(f.ID, 10)); n != 1 {
			t.Errorf("%d audit events", n)
		}
	})

	past := clock.Now().Add(-time.Hour)
	later := clock.Now().AddDate(0, 0, 3)
	var runID int64 = 424242
	for _, c := range []struct {
		name  string
		sev   int64
		in    store.FollowupInput
		field string // "" for not found
	}{
		{"refuses an unknown kind", sev, store.FollowupInput{Kind: "urgent", Title: "x", Owner: ann.Email}, "kind"},
		{"refuses a due date in the past", sev, store.FollowupInput{Kind: "medium", Title: "x", Owner: ann.Email, Due: &past}, "due"},
		{"refuses an owner who does not exist", sev, store.FollowupInput{Kind: "medium", Title: "x", Owner: "nobody@example.com"}, "owner"},
		{"refuses a missing owner", sev, store.FollowupInput{Kind: "medium", Title: "x"}, "owner"},
		{"refuses an oversized title", sev, store.FollowupInput{Kind: "medium", Title: strings.Repeat("é", 201), Owner: ann.Email}, "title"},
		{"refuses an empty title", sev, store.FollowupInput{Kind: "medium", Title: "  ", Owner: ann.Email}, "title"},
		{"refuses a run step of a SEV without a run", sev, store.FollowupInput{Kind: "medium", Title: "x", Owner: ann.Email, RunStep: "drain"}, "run_id"},
		{"refuses a run step that does not exist", sev, store.FollowupInput{Kind: "medium", Title: "x", Owner: ann.Email, RunID: &runID, RunStep: "drain"}, "run_step"},
		{"refuses a run without a step", sev, store.FollowupInput{Kind: "medium", Title: "x", Owner: ann.Email, RunID: &runID}, "run_step"},
		{"answers not found for an unknown SEV", 99999, store.FollowupInput{Kind: "medium", Title: "x", Owner: ann.Email, Due: &later}, ""},
	} {
		t.Run(c.name+" and saves nothing", func(t *testing.T) {
			before := fuCount(t, s, `SELECT COUNT(*) FROM followups`)
			audits := fuCount(t, s, `SELECT COUNT(*) FROM audit_events`)
			_, err := fileFollowup(ctx, s, who, c.sev, c.in)
			var ve *store.ValidationError
			switch {
			case c.field == "" && !errors.Is(err, store.ErrNotFound):
				t.Fatalf("err %v, want not found", err)
			case c.field != "" && (!errors.As(err, &ve) || ve.Fields[c.field] == ""):
				t.Fatalf("err %v, want a problem with %s", err, c.field)
			}
			if fuCount(t, s, `SELECT COUNT(*) FROM followups`) != before || fuCount(t, s, `SELECT COUNT(*) FROM audit_events`) != audits {
				t.Error("something was saved")
			}
		})
	}

	t.Run("links a step of the SEV's own runbook run", func(t *testing.T) {
		err := s.InTx(ctx, func(tx *store.Tx) error {
			if _, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO runbook_versions (name, version, yaml, created_at, created_by) VALUES ('drain', 1, 'x', ?, 'test')`), clock.Now()); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO runbook_runs (id, runbook, version, state, started_by, created_at) VALUES (?, 'drain', 1, 'failed', 'test', ?)`), runID, clock.Now()); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO runbook_run_steps (run_id, name, position, kind, needs_left, state, error) VALUES (?, 'backup', 0, 'operation', 0, 'failed', 'disk full')`), runID)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		withRun := seedFuSev(t, s, fuSev{title: "exercise", kind: store.SevExercise, runID: &runID})
		f, err := fileFollowup(ctx, s, who, withRun, store.FollowupInput{Kind: "medium", Title: "Leave room for backups", Owner: ann.Email, RunStep: "backup"})
		if err != nil {
			t.Fatal(err)
		}
		if f.RunID == nil || *f.RunID != runID || f.RunStep != "backup" || !f.DueAt.Equal(clock.Now().AddDate(0, 0, 30)) {
			t.Errorf("filed %+v", f)
		}
	})

	f, err := fileFollowup(ctx, s, who, sev, store.FollowupInput{Kind: "medium", Title: "Alert on breaker trips", Owner: ann.Email, Due: &later})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("won't do needs a reason, and nothing changes without one", func(t *testing.T) {
		_, err := patchFollowup(ctx, s, who, f.ID, store.FollowupPatch{Status: str(store.FollowupWontDo)})
		var ve *store.ValidationError
		if !errors.As(err, &ve) || ve.Fields["reason"] == "" {
			t.Fatalf("err %v", err)
		}
		if got, _ := s.Followup(ctx, f.ID); got.Status != store.FollowupOpen {
			t.Errorf("status %s", got.Status)
		}
		got, err := patchFollowup(ctx, s, who, f.ID, store.FollowupPatch{Status: str(store.FollowupWontDo), Reason: str("The breaker is being replaced")})
		if err != nil || got.Status != store.FollowupWontDo || got.Reason != "The breaker is being replaced" {
			t.Fatalf("%+v %v", got, err)
		}
		// Reopening drops the reason.
		got, err = patchFollowup(ctx, s, who, f.ID, store.FollowupPatch{Status: str(store.FollowupInProgress)})
		if err != nil || got.Reason != "" || got.Status != store.FollowupInProgress {
			t.Fatalf("%+v %v", got, err)
		}
	})
	t.Run("a reason without won't do is refused", func(t *testing.T) {
		_, err := patchFollowup(ctx, s, who, f.ID, store.FollowupPatch{Reason: str("because")})
		var ve *store.ValidationError
		if !errors.As(err, &ve) || ve.Fields["reason"] == "" {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("done records when", func(t *testing.T) {
		got, err := patchFollowup(ctx, s, who, f.ID, store.FollowupPatch{Status: str(store.FollowupDone)})
		if err != nil || got.DoneAt == nil || !got.DoneAt.Equal(clock.Now()) {
			t.Fatalf("%+v %v", got, err)
		}
		if n := fuCount(t, s, `SELECT COUNT(*) FROM audit_events WHERE action = 'followup.update' AND object_id = ?`, strconv.FormatInt(f.ID, 10)); n != 3 {
			t.Errorf("%d update audit events, want 3", n)
		}
	})
	t.Run("a patch to a due date in the past or an unknown status changes nothing", func(t *testing.T) {
		for _, p := range []store.FollowupPatch{{Due: &past}, {Status: str("closed")}, {Owner: str("ghost@example.com")}, {Kind: str("big")}, {Title: str(strings.Repeat("x", 201))}} {
			if _, err := patchFollowup(ctx, s, who, f.ID, p); err == nil {
				t.Errorf("%+v accepted", p)
			}
		}
		if got, _ := s.Followup(ctx, f.ID); got.Status != store.FollowupDone || !got.DueAt.Equal(later) || got.Kind != "medium" {
			t.Errorf("changed: %+v", got)
		}
	})

	t.Run("the board filters by kind, owner, status and overdue", func(t *testing.T) {
		soon := clock.Now().Add(2 * time.Hour)
		late, err := fileFollowup(ctx, s, who, sev, store.FollowupInput{Kind: "exploratory", Title: "Rethink power", Owner: rev.Email, Due: &soon})
		if err != nil {
			t.Fatal(err)
		}
		clock.t = clock.t.Add(3 * time.Hour)
		ids := func(f store.FollowupFilter) []int64 {
			fs, err := s.Followups(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			var out []int64
			for _, x := range fs {
				out = append(out, x.ID)
			}
			return out
		}
		if got := ids(store.FollowupFilter{Overdue: true}); len(got) != 1 || got[0] != late.ID {
			t.Errorf("overdue: %v", got)
		}
		if got := ids(store.FollowupFilter{Kind: "medium"}); len(got) != 2 {
			t.Errorf("medium: %v", got)
		}
		if got := ids(store.FollowupFilter{Owner: rev.Email}); len(got) != 1 || got[0] != late.ID {
			t.Errorf("owner: %v", got)
		}
		if got := ids(store.FollowupFilter{Status: store.FollowupDone}); len(got) != 1 || got[0] != f.ID {
			t.Errorf("done: %v", got)
		}
		if got := ids(store.FollowupFilter{Limit: 1, Offset: 1}); len(got) != 1 {
			t.Errorf("page: %v", got)
		}
		if _, err := s.Followups(ctx, store.FollowupFilter{Kind: "huge"}); err == nil {
			t.Error("an unknown kind filters")
		}
		fs, _ := s.Followups(ctx, store.FollowupFilter{Overdue: true})
		if len(fs) != 1 || !fs[0].Overdue {
			t.Errorf("overdue not marked: %+v", fs)
		}
	})
}

func TestFollowupPolicy(t *testing.T) {
	owner := store.User{ID: 1, Roles: []string{store.RoleEngineer}}
	other := store.User{ID: 2, Roles: []string{store.RoleEngineer}}
	reviewer := store.User{ID: 3, Roles: []string{store.RoleReviewer}}
	admin := store.User{ID: 4, Roles: []string{store.RoleAdmin}}
	f := store.Followup{OwnerID: 1}
	for _, c := range []struct {
		who               string
		u                 store.User
		file, edit, state bool
	}{
		{"the owner", owner, false, false, true},
		{"another engineer", other, false, false, false},
		{"a reviewer", reviewer, true, true, true},
		{"an admin", admin, true, true, true},
	} {
		if got := store.CanFileFollowup(c.u); got != c.file {
			t.Errorf("%s files: %v", c.who, got)
		}
		if got := store.CanEditFollowup(c.u); got != c.edit {
			t.Errorf("%s edits: %v", c.who, got)
		}
		if got := store.CanSetFollowupStatus(c.u, f); got != c.state {
			t.Errorf("%s sets the status: %v", c.who, got)
		}
	}
}
