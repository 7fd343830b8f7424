package jobs

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/store"
)

func TestOverdueCriticalFollowupsEscalateOncePerDay(t *testing.T) {
	g := newCommsRig(t) // the clock starts at 2026-11-24 09:00 UTC
	ctx := context.Background()
	owner := g.person(t, "owner@example.com", false, false)
	facilitator := g.person(t, "facilitator@example.com", false, false)
	rev := g.person(t, "rev@example.com", false, false)
	var critical, medium, noReview store.Followup
	err := g.s.InTx(ctx, func(tx *store.Tx) error {
		now := tx.Now()
		sev := func(title string) int64 {
			var id int64
			err := tx.GetContext(ctx, &id, tx.Rebind(`INSERT INTO sevs (title, severity, kind, state, reported_at, created_by, created_at, updated_at)
VALUES (?, 1, 'incident', 'in_review', ?, 'test', ?, ?) RETURNING id`), title, now, now, now)
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
		reviewed, unreviewed := sev("prn lost power"), sev("ftw flapped")
		if _, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO sev_reviews (sev_id, meeting_at, facilitator_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`),
			reviewed, now, facilitator.ID, now, now); err != nil {
			return err
		}
		who := store.UserActor(rev, "", "")
		var err error
		if critical, err = tx.CreateFollowup(ctx, who, reviewed, store.FollowupInput{Kind: "critical", Title: "Fix the breaker", Owner: owner.Email}); err != nil {
			return err
		}
		due := now.Add(time.Hour)
		if medium, err = tx.CreateFollowup(ctx, who, reviewed, store.FollowupInput{Kind: "medium", Title: "Alert sooner", Owner: owner.Email, Due: &due}); err != nil {
			return err
		}
		noReview, err = tx.CreateFollowup(ctx, who, unreviewed, store.FollowupInput{Kind: "critical", Title: "Pin the firmware", Owner: rev.Email})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	check := func() int {
		t.Helper()
		n, err := CheckOverdueFollowups(ctx, g.s, g.log)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	inbox := func(u store.User) []store.Notification {
		t.Helper()
		ns, err := g.s.Notifications(ctx, u.ID, 0, 50)
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}

	if n := check(); n != 0 {
		t.Fatalf("%d notifications before anything critical is due", n)
	}
	g.clock.Add(6 * 24 * time.Hour) // Nov 30: the medium one is late, which escalates nothing
	if n := check(); n != 0 {
		t.Fatalf("%d notifications for a late medium follow-up", n)
	}
	g.clock.Add(25 * time.Hour) // Dec 1 10:00: both critical ones are an hour late
	t.Run("day 1: the owner and the facilitator are notified", func(t *testing.T) {
		if n := check(); n != 3 {
			t.Fatalf("%d notifications, want the owner, the facilitator and the other SEV's owner", n)
		}
		for _, u := range []store.User{owner, facilitator, rev} {
			ns := inbox(u)
			if len(ns) != 1 || !strings.HasPrefix(ns[0].Title, "Overdue critical follow-up: ") || ns[0].Kind != "followup_overdue" {
				t.Fatalf("%s's inbox: %+v", u.Email, ns)
			}
		}
		if ns := inbox(facilitator); !strings.Contains(ns[0].Title, critical.Title) || !strings.Contains(ns[0].Body, "owner@example.com") ||
			ns[0].Link != "/sevs/"+strings.TrimPrefix(critical.SevNumber(), "SEV-") {
			t.Errorf("facilitator's notification: %+v", ns[0])
		}
		if ns := inbox(rev); !strings.Contains(ns[0].Title, noReview.Title) {
			t.Errorf("rev's notification: %+v", ns[0])
		}
	})
	t.Run("a rerun the same day notifies nobody", func(t *testing.T) {
		g.clock.Add(12 * time.Hour) // Dec 1 22:00
		if n := check(); n != 0 {
			t.Fatalf("%d notifications again the same day", n)
		}
	})
	t.Run("day 2: notified again", func(t *testing.T) {
		g.clock.Add(3 * time.Hour) // Dec 2 01:00
		if n := check(); n != 3 || len(inbox(owner)) != 2 || len(inbox(facilitator)) != 2 {
			t.Fatalf("%d notifications; owner has %d, facilitator %d", n, len(inbox(owner)), len(inbox(facilitator)))
		}
		if !strings.Contains(inbox(owner)[0].Body, "is 16h late") {
			t.Errorf("body: %s", inbox(owner)[0].Body)
		}
	})
	t.Run("done and won't do follow-ups notify nobody", func(t *testing.T) {
		err := g.s.InTx(ctx, func(tx *store.Tx) error {
			done := store.FollowupDone
			if _, err := tx.UpdateFollowup(ctx, store.UserActor(owner, "", ""), critical.ID, store.FollowupPatch{Status: &done}); err != nil {
				return err
			}
			wont, why := store.FollowupWontDo, "The firmware is being replaced"
			_, err := tx.UpdateFollowup(ctx, store.UserActor(rev, "", ""), noReview.ID, store.FollowupPatch{Status: &wont, Reason: &why})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		g.clock.Add(24 * time.Hour)
		if n := check(); n != 0 {
			t.Fatalf("%d notifications after done", n)
		}
	})
	_ = medium
}
