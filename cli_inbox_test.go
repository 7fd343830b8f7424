package main

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCLIInbox(t *testing.T) {
	r := newCLIRig(t)
	// Ada reports a problem with her devserver: every administrator gets a
	// notification and a task to look into it.
	ada := r.Token("ada@example.com")
	loginAs(r, "root@example.com", "admin")
	stdout, _, err := r.Run("reserve", "--flavor", "vm.small", "--token", ada)
	if err != nil {
		t.Fatal(err)
	}
	name := reservedName(t, stdout)
	if code, body := rigAPI(t, r, ada, "POST", "/api/v1/devservers/"+name+"/rage", `{"note":"builds hang"}`); code != http.StatusAccepted {
		t.Fatalf("rage: %d %s", code, body)
	}
	type task struct {
		ID     int64      `json:"id"`
		Title  string     `json:"title"`
		DoneAt *time.Time `json:"done_at"`
	}
	var tasks []task
	for deadline := time.Now().Add(20 * time.Second); len(tasks) == 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the administrator got no task within 20 s")
		}
		r.JSON(&tasks, "tasks")
	}
	title := "Look into ada@example.com's report on devserver " + name

	t.Run("tasks lists the open tasks; done marks one done", func(t *testing.T) {
		stdout, _, err := r.Run("tasks")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(strings.Join(strings.Fields(stdout), " "), "ID STATE DUE TITLE LINK") || !strings.Contains(stdout, title) {
			t.Fatalf("tasks printed %q", stdout)
		}
		id := strconv.FormatInt(tasks[0].ID, 10)
		stdout, _, err = r.Run("tasks", "done", id)
		if err != nil || !strings.Contains(stdout, "Done: "+title+".") {
			t.Fatalf("tasks done: %q %v", stdout, err)
		}
		stdout, _, _ = r.Run("tasks")
		if !strings.Contains(stdout, "No open tasks") {
			t.Errorf("tasks after done: %q", stdout)
		}
		r.JSON(&tasks, "tasks", "--all")
		if len(tasks) != 1 || tasks[0].DoneAt == nil {
			t.Errorf("the portal holds %+v", tasks)
		}
		stdout, _, _ = r.Run("tasks", "--all")
		if !strings.Contains(stdout, title) || !strings.Contains(stdout, " done ") {
			t.Errorf("tasks --all: %q", stdout)
		}
		if _, _, err := r.Run("tasks", "done", "nine"); err == nil || !strings.Contains(err.Error(), "not a task ID") {
			t.Errorf("tasks done nine: %v", err)
		}
		if _, _, err := r.Run("tasks", "done", "999999"); err == nil || !strings.Contains(err.Error(), "no task 999999") {
			t.Errorf("tasks done 999999: %v", err)
		}
	})

	t.Run("inbox lists notifications; read marks one or all read", func(t *testing.T) {
		type note struct {
			ID     int64      `json:"id"`
			Title  string     `json:"title"`
			ReadAt *time.Time `json:"read_at"`
		}
		var notes []note
		r.JSON(&notes, "inbox", "--unread")
		if len(notes) == 0 {
			t.Fatal("the administrator's inbox is empty")
		}
		stdout, _, err := r.Run("inbox")
		if err != nil || !strings.HasPrefix(strings.Join(strings.Fields(stdout), " "), "ID READ WHEN KIND TITLE") || !strings.Contains(stdout, notes[0].Title) {
			t.Fatalf("inbox printed %q %v", stdout, err)
		}
		id := strconv.FormatInt(notes[0].ID, 10)
		stdout, _, err = r.Run("inbox", "read", id)
		if err != nil || !strings.HasPrefix(stdout, notes[0].Title+"\n") {
			t.Fatalf("inbox read: %q %v", stdout, err)
		}
		var unread []note
		r.JSON(&unread, "inbox", "--unread")
		if len(unread) != len(notes)-1 {
			t.Errorf("after reading one, %d of %d are unread", len(unread), len(notes))
		}
		stdout, _, err = r.Run("inbox", "read", "--all")
		if err != nil || !strings.Contains(stdout, "Marked "+strconv.Itoa(len(unread))+" notifications read.") {
			t.Errorf("inbox read --all: %q %v", stdout, err)
		}
		stdout, _, _ = r.Run("inbox", "--unread")
		if !strings.Contains(stdout, "No unread notifications.") {
			t.Errorf("inbox --unread after read --all: %q", stdout)
		}
		r.JSON(&notes, "inbox")
		for _, n := range notes {
			if n.ReadAt == nil {
				t.Errorf("notification %d is still unread", n.ID)
			}
		}
		if _, _, err := r.Run("inbox", "read"); err == nil || !strings.Contains(err.Error(), "--all") {
			t.Errorf("inbox read without an ID: %v", err)
		}
		if _, _, err := r.Run("inbox", "read", "999999"); err == nil || !strings.Contains(err.Error(), "no notification 999999") {
			t.Errorf("inbox read 999999: %v", err)
		}
	})
}

// TestCLIItemIDNamesTheListingCommand: a malformed ID points at the command
// that lists the right IDs.
func TestCLIItemIDNamesTheListingCommand(t *testing.T) {
	for what, cmd := range map[string]string{"task": "devport tasks lists them", "notification": "devport inbox lists them"} {
		if _, err := itemID(what, "abc"); err == nil || !strings.Contains(err.Error(), cmd) {
			t.Errorf("%s: %v, want %q", what, err, cmd)
		}
	}
}
