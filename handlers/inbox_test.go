package handlers_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/store"
)

type notificationJSON struct {
	ID     int64  `json:"id"`
	Kind   string `json:"kind"`
	Title  string `json:"title"`
	Body   string `json:"body"`
	Link   string `json:"link"`
	ReadAt string `json:"read_at"`
}

func notify(t *testing.T, srv *handlertest.Server, email, key, title string) int64 {
	t.Helper()
	ctx := context.Background()
	u, err := srv.Store.UserByEmail(ctx, email)
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Store.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.Notify(ctx, store.Notification{UserID: u.ID, Kind: "lease_reminder", Title: title, Body: "Body of " + title, Link: "/devservers", IdempotencyKey: key})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := srv.Store.Notifications(ctx, u.ID, 0, 1)
	if err != nil || len(ns) == 0 {
		t.Fatalf("notifications: %v", err)
	}
	return ns[0].ID
}

func unreadOf(t *testing.T, srv *handlertest.Server, email string) int {
	t.Helper()
	u, err := srv.Store.UserByEmail(context.Background(), email)
	if err != nil {
		t.Fatal(err)
	}
	n, err := srv.Store.UnreadNotifications(context.Background(), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestInbox(t *testing.T) {
	srv := handlertest.New(t)
	owner := srv.SignIn(t, "owner@example.com")
	stranger := srv.SignIn(t, "stranger@example.com")
	ownerToken := srv.Token(t, "owner@example.com")
	strangerToken := srv.Token(t, "stranger@example.com")
	first := notify(t, srv, "owner@example.com", "t:1", "The lease of box-1 ends within 3 days")
	time.Sleep(time.Millisecond)
	second := notify(t, srv, "owner@example.com", "t:2", "The lease of box-1 ends within 1 day")
	theirs := notify(t, srv, "stranger@example.com", "t:3", "Only for the stranger")

	t.Run("the navigation shows the unread count on every page", func(t *testing.T) {
		for _, path := range []string{"/devservers", "/devservers/new", "/inbox"} {
			_, body := srv.Do(t, owner, handlertest.Request{Path: path})
			nav := handlertest.Doc(t, body).Find("#nav-inbox")
			if nav.AttrOr("href", "") != "/inbox" || nav.Find("[data-unread]").AttrOr("data-unread", "") != "2" {
				t.Errorf("%s: inbox link %q", path, nav.Text())
			}
		}
	})
	t.Run("the inbox lists newest first with unread ones marked", func(t *testing.T) {
		_, body := srv.Do(t, owner, handlertest.Request{Path: "/inbox"})
		doc := handlertest.Doc(t, body)
		items := doc.Find("article.notification")
		if items.Length() != 2 {
			t.Fatalf("%d notifications: %.500s", items.Length(), body)
		}
		if !strings.Contains(items.First().Text(), "1 day") || items.First().AttrOr("data-unread", "") != "true" {
			t.Errorf("first item %q", items.First().Text())
		}
		if strings.Contains(body, "Only for the stranger") {
			t.Error("the inbox shows someone else's notification")
		}
		if doc.Find(`form[action="/inbox/read-all"] button`).Text() != "Mark all read" {
			t.Error("no Mark all read button")
		}
		if doc.Find(fmt.Sprintf(`form[action="/inbox/%d/read"] button`, first)).Text() != "Mark read" {
			t.Error("no Mark read button")
		}
	})
	t.Run("marking one read", func(t *testing.T) {
		resp, _ := srv.Do(t, owner, handlertest.Request{Method: "POST", Path: fmt.Sprintf("/inbox/%d/read", first), Form: url.Values{}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/inbox" {
			t.Fatalf("status %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if n := unreadOf(t, srv, "owner@example.com"); n != 1 {
			t.Errorf("unread %d, want 1", n)
		}
		_, body := srv.Do(t, owner, handlertest.Request{Path: "/inbox"})
		doc := handlertest.Doc(t, body)
		if doc.Find("article.notification.unread").Length() != 1 || doc.Find("#nav-inbox [data-unread]").AttrOr("data-unread", "") != "1" {
			t.Errorf("after reading one: %.400s", doc.Find("main").Text())
		}
	})
	t.Run("someone else's notification is not found and stays unread", func(t *testing.T) {
		resp, _ := srv.Do(t, owner, handlertest.Request{Method: "POST", Path: fmt.Sprintf("/inbox/%d/read", theirs), Form: url.Values{}})
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("page: status %d", resp.StatusCode)
		}
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: fmt.Sprintf("/api/v1/notifications/%d/read", theirs), Token: ownerToken})
		if resp.StatusCode != http.StatusNotFound || decode[apiError](t, body).Error.Code != "not_found" {
			t.Errorf("API: status %d: %s", resp.StatusCode, body)
		}
		if n := unreadOf(t, srv, "stranger@example.com"); n != 1 {
			t.Errorf("the stranger's unread %d, want 1", n)
		}
	})
	t.Run("the API lists a page at a time, newest first", func(t *testing.T) {
		_, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/notifications?limit=1", Token: ownerToken})
		p := decode[listJSON[notificationJSON]](t, body)
		if len(p.Items) != 1 || p.Items[0].ID != second || p.NextCursor == "" || p.Items[0].ReadAt != "" {
			t.Fatalf("first page %s", body)
		}
		_, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/notifications?limit=1&cursor=" + p.NextCursor, Token: ownerToken})
		p = decode[listJSON[notificationJSON]](t, body)
		if len(p.Items) != 1 || p.Items[0].ID != first || p.NextCursor != "" || p.Items[0].ReadAt == "" {
			t.Errorf("second page %s", body)
		}
		for _, bad := range []string{"?limit=0", "?limit=x", "?cursor=zzz"} {
			if resp, _ := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/notifications" + bad, Token: ownerToken}); resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s: status %d", bad, resp.StatusCode)
			}
		}
	})
	t.Run("the API marks one read", func(t *testing.T) {
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: fmt.Sprintf("/api/v1/notifications/%d/read", theirs), Token: strangerToken})
		if resp.StatusCode != http.StatusOK || decode[notificationJSON](t, body).ReadAt == "" {
			t.Errorf("status %d: %s", resp.StatusCode, body)
		}
		resp, _ = srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/notifications/abc/read", Token: strangerToken})
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("a non-numeric id: status %d", resp.StatusCode)
		}
	})
	t.Run("mark all read clears the badge", func(t *testing.T) {
		resp, _ := srv.Do(t, owner, handlertest.Request{Method: "POST", Path: "/inbox/read-all", Form: url.Values{}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("status %d", resp.StatusCode)
		}
		_, body := srv.Do(t, owner, handlertest.Request{Path: "/inbox"})
		doc := handlertest.Doc(t, body)
		if doc.Find("#nav-inbox").AttrOr("data-unread", "") != "0" || doc.Find("article.notification.unread").Length() != 0 {
			t.Errorf("after mark all read: %.400s", doc.Find("header").Text())
		}
		if !strings.Contains(doc.Find(".flash-success").Text(), "Marked 1 notification read.") {
			t.Errorf("flash %q", doc.Find(".flash").Text())
		}
	})
	t.Run("the stranger's inbox is their own", func(t *testing.T) {
		_, body := srv.Do(t, stranger, handlertest.Request{Path: "/inbox"})
		if !strings.Contains(body, "Only for the stranger") || strings.Contains(body, "box-1") {
			t.Errorf("stranger's inbox: %.400s", body)
		}
	})
}
