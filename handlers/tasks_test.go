package handlers_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
)

type taskJSON struct {
	ID     int64   `json:"id"`
	Title  string  `json:"title"`
	DueAt  string  `json:"due_at"`
	DoneAt *string `json:"done_at"`
}

// giveTask sends email a notification that carries a task due in due.
func giveTask(t *testing.T, srv *handlertest.Server, email, key, title string, due time.Duration) {
	t.Helper()
	ctx := context.Background()
	err := srv.Store.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.NotifyAudience(ctx, store.System, store.Audience{Kind: store.AudienceUsers, Emails: []string{email}},
			store.Message{Kind: "drain", Title: title, Link: "/devservers", Key: key, Task: &store.TaskSpec{Title: title, Due: tx.Now().Add(due)}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestTasksPage(t *testing.T) {
	srv := handlertest.New(t)
	ann := srv.SignIn(t, "ann@example.com")
	bob := srv.SignIn(t, "bob@example.com")
	giveTask(t, srv, "ann@example.com", "k1", "Move your devserver out of prn", 48*time.Hour)
	giveTask(t, srv, "ann@example.com", "k2", "Back up your notebooks", -2*time.Hour)

	t.Run("lists open tasks, overdue first and marked, with the count in the navigation", func(t *testing.T) {
		resp, body := srv.Do(t, ann, handlertest.Request{Path: views.TasksURL})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		doc := handlertest.Doc(t, body)
		rows := doc.Find("#" + views.TasksListID + " tbody tr")
		if rows.Length() != 2 {
			t.Fatalf("%d rows", rows.Length())
		}
		if first := rows.First(); first.AttrOr("data-state", "") != "overdue" || !strings.Contains(first.Text(), "Back up your notebooks") || first.Find(".badge-overdue").Length() != 1 {
			t.Errorf("first row: %q", first.Text())
		}
		if second := rows.Eq(1); second.AttrOr("data-state", "") != "open" || second.Find("button").Text() != "Mark done" {
			t.Errorf("second row: %q", second.Text())
		}
		if got := doc.Find("#"+views.TasksNavID+" [data-open]").AttrOr("data-open", ""); got != "2" {
			t.Errorf("nav count %q", got)
		}
	})
	t.Run("someone else sees none of them and cannot mark them done", func(t *testing.T) {
		_, body := srv.Do(t, bob, handlertest.Request{Path: views.TasksURL})
		doc := handlertest.Doc(t, body)
		if doc.Find("#"+views.TasksListID+" tbody tr[data-state]").Length() != 0 {
			t.Error("bob sees ann's tasks")
		}
		if doc.Find("#"+views.TasksNavID).AttrOr("data-open", "") != "0" {
			t.Error("bob's nav counts tasks")
		}
		resp, _ := srv.Do(t, bob, handlertest.Request{Method: "POST", Path: views.TaskDoneURL(1), Form: url.Values{}})
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("the form marks a task done", func(t *testing.T) {
		_, body := srv.Do(t, ann, handlertest.Request{Path: views.TasksURL})
		id := strings.TrimPrefix(handlertest.Doc(t, body).Find("#"+views.TasksListID+" tbody tr").First().AttrOr("id", ""), "task-")
		n, _ := strconv.ParseInt(id, 10, 64)
		resp, _ := srv.Do(t, ann, handlertest.Request{Method: "POST", Path: views.TaskDoneURL(n), Form: url.Values{}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != views.TasksURL {
			t.Fatalf("status %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		_, body = srv.Do(t, ann, handlertest.Request{Path: views.TasksURL})
		doc := handlertest.Doc(t, body)
		if !strings.Contains(doc.Find(".flash-success").Text(), "Done: Back up your notebooks") {
			t.Errorf("flash %q", doc.Find(".flash").Text())
		}
		if last := doc.Find("#" + views.TasksListID + " tbody tr").Last(); last.AttrOr("data-state", "") != "done" || last.Find("button").Length() != 0 {
			t.Errorf("the done task: %q", last.Text())
		}
		if got := doc.Find("#"+views.TasksNavID+" [data-open]").AttrOr("data-open", ""); got != "1" {
			t.Errorf("nav count %q", got)
		}
	})
}

func TestTasksAPI(t *testing.T) {
	srv := handlertest.New(t)
	ann := srv.Token(t, "ann@example.com")
	bob := srv.Token(t, "bob@example.com")
	for i := range 3 {
		giveTask(t, srv, "ann@example.com", "k"+strconv.Itoa(i), "Task "+strconv.Itoa(i), time.Duration(i+1)*time.Hour)
	}
	resp, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/tasks?limit=2", Token: ann})
	p := decode[struct {
		Items      []taskJSON `json:"items"`
		NextCursor string     `json:"next_cursor"`
	}](t, body)
	if resp.StatusCode != 200 || len(p.Items) != 2 || p.Items[0].Title != "Task 0" || p.NextCursor == "" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	_, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/tasks?limit=2&cursor=" + p.NextCursor, Token: ann})
	p2 := decode[struct {
		Items      []taskJSON `json:"items"`
		NextCursor string     `json:"next_cursor"`
	}](t, body)
	if len(p2.Items) != 1 || p2.Items[0].Title != "Task 2" || p2.NextCursor != "" {
		t.Errorf("second page %s", body)
	}
	id := strconv.FormatInt(p.Items[0].ID, 10)
	for _, c := range []struct {
		name, path, token string
		status            int
	}{
		{"someone else's task", "/api/v1/tasks/" + id + "/done", bob, 404},
		{"a task that does not exist", "/api/v1/tasks/999/done", ann, 404},
		{"an ID that is not a number", "/api/v1/tasks/abc/done", ann, 404},
	} {
		t.Run(c.name+" is not found and nothing changes", func(t *testing.T) {
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: c.path, Token: c.token})
			if resp.StatusCode != c.status || !strings.Contains(body, `"code"`) {
				t.Errorf("%d %s", resp.StatusCode, body)
			}
			u, _ := srv.Store.UserByEmail(context.Background(), "ann@example.com")
			if n, _ := srv.Store.OpenTasks(context.Background(), u.ID); n != 3 {
				t.Errorf("%d open tasks", n)
			}
		})
	}
	for _, q := range []string{"?cursor=bogus", "?limit=0", "?limit=501"} {
		if resp, _ := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/tasks" + q, Token: ann}); resp.StatusCode != 400 {
			t.Errorf("%s: %d", q, resp.StatusCode)
		}
	}
	resp, body = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/tasks/" + id + "/done", Token: ann})
	if done := decode[taskJSON](t, body); resp.StatusCode != 200 || done.DoneAt == nil {
		t.Errorf("%d %s", resp.StatusCode, body)
	}
}
