package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/devport/devport/store"
	"github.com/devport/devport/store/storetest"
)

func TestTasks(t *testing.T) {
	s := storetest.Seeded(t, nil)
	clock := &commsClock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
	s.Now = clock.Now
	ctx := context.Background()
	ann := storetest.User(t, s, "ann@example.com")
	bob := storetest.User(t, s, "bob@example.com")
	give := func(key, title string, due time.Duration) {
		t.Helper()
		_, err := notifyAudience(t, s, store.Audience{Kind: "users", Emails: []string{"ann@example.com"}},
			store.Message{Title: title, Key: key, Link: "/devservers", Task: &store.TaskSpec{Title: title, Due: clock.Now().Add(due)}})
		if err != nil {
			t.Fatal(err)
		}
	}
	give("t1", "later", 72*time.Hour)
	give("t2", "soon", 2*time.Hour)
	give("t3", "late", -time.Hour)

	ts, err := s.Tasks(ctx, ann.ID, 0, 10)
	if err != nil || len(ts) != 3 {
		t.Fatalf("%v %v", ts, err)
	}
	if ts[0].Title != "late" || ts[1].Title != "soon" || ts[2].Title != "later" {
		t.Errorf("order: %s, %s, %s", ts[0].Title, ts[1].Title, ts[2].Title)
	}
	if !ts[0].Overdue(clock.Now()) || ts[1].Overdue(clock.Now()) {
		t.Error("overdue marks are wrong")
	}
	if n, _ := s.OpenTasks(ctx, ann.ID); n != 3 {
		t.Errorf("open %d", n)
	}

	t.Run("only its person marks a task done", func(t *testing.T) {
		err := s.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.MarkTaskDone(ctx, store.UserActor(bob, "", ""), bob.ID, ts[1].ID)
			return err
		})
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("bob: %v", err)
		}
		if n, _ := s.OpenTasks(ctx, ann.ID); n != 3 {
			t.Errorf("open %d after bob's try", n)
		}
		var done store.Task
		err = s.InTx(ctx, func(tx *store.Tx) error {
			var err error
			done, err = tx.MarkTaskDone(ctx, store.UserActor(ann, "", ""), ann.ID, ts[1].ID)
			return err
		})
		if err != nil || done.DoneAt == nil {
			t.Fatalf("%+v %v", done, err)
		}
		if n, _ := s.OpenTasks(ctx, ann.ID); n != 2 {
			t.Errorf("open %d", n)
		}
		// Done again: nothing changes.
		clock.Add(time.Minute)
		s.InTx(ctx, func(tx *store.Tx) error {
			again, err := tx.MarkTaskDone(ctx, store.UserActor(ann, "", ""), ann.ID, ts[1].ID)
			if err != nil || !again.DoneAt.Equal(*done.DoneAt) {
				t.Errorf("again: %+v %v", again, err)
			}
			return err
		})
	})
	t.Run("done tasks sort last", func(t *testing.T) {
		ts, _ := s.Tasks(ctx, ann.ID, 0, 10)
		if ts[2].Title != "soon" || !ts[2].Done() {
			t.Errorf("last is %+v", ts[2])
		}
		page2, _ := s.Tasks(ctx, ann.ID, 2, 10)
		if len(page2) != 1 || page2[0].ID != ts[2].ID {
			t.Errorf("second page %+v", page2)
		}
	})
	t.Run("overdue tasks are the open ones past due", func(t *testing.T) {
		over, err := s.OverdueTasks(ctx, clock.Now(), 0, 10)
		if err != nil || len(over) != 1 || over[0].Title != "late" {
			t.Errorf("%+v %v", over, err)
		}
		over, _ = s.OverdueTasks(ctx, clock.Now().Add(100*time.Hour), 0, 10)
		if len(over) != 2 {
			t.Errorf("later: %d overdue, want 2 (the done one is not)", len(over))
		}
	})
}
