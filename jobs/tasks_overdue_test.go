package jobs

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/store"
)

func TestOverdueTasksNotifyOncePerDay(t *testing.T) {
	g := newCommsRig(t)
	ctx := context.Background()
	ann := g.person(t, "ann@example.com", true, false)
	bob := g.person(t, "bob@example.com", false, false)
	err := g.s.InTx(ctx, func(tx *store.Tx) error {
		for _, c := range []struct {
			who store.User
			key string
			due time.Duration
		}{{ann, "move-a", 3 * time.Hour}, {bob, "move-b", 30 * time.Hour}} {
			_, err := tx.NotifyAudience(ctx, store.System, store.Audience{Kind: store.AudienceUsers, Emails: []string{c.who.Email}},
				store.Message{Kind: "drain", Title: "prn drains", Key: c.key, Task: &store.TaskSpec{Title: "Move out of prn", Due: tx.Now().Add(c.due)}})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	remind := func() int {
		t.Helper()
		n, err := RemindOverdueTasks(ctx, g.s, g.log)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	inbox := func(u store.User) []store.Notification {
		ns, err := g.s.Notifications(ctx, u.ID, 0, 50)
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}

	if n := remind(); n != 0 {
		t.Fatalf("%d reminders before anything is due", n)
	}
	g.clock.Add(4 * time.Hour) // ann's task is an hour late: Nov 24 13:00
	if n := remind(); n != 1 {
		t.Fatalf("%d reminders, want ann's", n)
	}
	ns := inbox(ann)
	if len(ns) != 2 || !strings.HasPrefix(ns[0].Title, "Overdue: Move out of prn") || ns[0].Link != "/tasks" {
		t.Fatalf("ann's inbox: %+v", ns)
	}
	// The reminder reaches ann's email too, as her preferences say.
	if ds := g.deliveries(t, store.ChannelEmail); len(ds) != 2 {
		t.Errorf("%d email deliveries, want the notification and its reminder", len(ds))
	}
	g.clock.Add(6 * time.Hour) // still Nov 24
	if n := remind(); n != 0 {
		t.Errorf("%d reminders again the same day", n)
	}
	g.clock.Add(12 * time.Hour) // Nov 25 07:00: bob's is not due until 15:00
	if n := remind(); n != 1 || len(inbox(ann)) != 3 {
		t.Errorf("next day: %d reminders, ann has %d notifications", n, len(inbox(ann)))
	}
	g.clock.Add(9 * time.Hour) // Nov 25 16:00: bob's is late now, ann had hers today
	if n := remind(); n != 1 || len(inbox(bob)) != 2 {
		t.Errorf("%d reminders, bob has %d notifications", n, len(inbox(bob)))
	}
	// Done tasks are not reminded.
	ts, _ := g.s.Tasks(ctx, ann.ID, 0, 10)
	err = g.s.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.MarkTaskDone(ctx, store.UserActor(ann, "", ""), ann.ID, ts[0].ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	g.clock.Add(24 * time.Hour)
	if n := remind(); n != 1 {
		t.Errorf("%d reminders, want bob's only", n)
	}
	if len(inbox(ann)) != 3 {
		t.Errorf("ann was reminded of a done task")
	}
}
