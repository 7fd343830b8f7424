package handlers_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devport/devport/handlers/handlertest"
	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
)

type prefsJSON struct {
	Inbox bool `json:"inbox"`
	Email bool `json:"email"`
	Chat  bool `json:"chat"`
}

// chatHook is a Slack-compatible incoming webhook on loopback that records
// what it is sent, and fails while failing is set.
type chatHook struct {
	*httptest.Server
	failing atomic.Bool
	mu      sync.Mutex
	texts   []string
	keys    []string
}

func newChatHook(t *testing.T) *chatHook {
	h := &chatHook{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.failing.Load() {
			http.Error(w, "invalid_token", http.StatusForbidden)
			return
		}
		var m struct{ Text string }
		json.NewDecoder(r.Body).Decode(&m)
		h.mu.Lock()
		h.texts = append(h.texts, m.Text)
		h.keys = append(h.keys, r.Header.Get(jobs.IdempotencyHeader))
		h.mu.Unlock()
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *chatHook) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.texts)
}

func TestPreferencesAPI(t *testing.T) {
	hook := newChatHook(t)
	chat, err := jobs.NewChatSender(hook.URL, "", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	srv := handlertest.New(t, handlertest.Options{Senders: jobs.Senders{Chat: chat}})
	ann := srv.Token(t, "ann@example.com")

	resp, body := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/me/preferences", Token: ann})
	if p := decode[prefsJSON](t, body); resp.StatusCode != 200 || !p.Inbox || p.Email || p.Chat {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	bad := []struct {
		name, body string
		status     int
	}{
		{"turning the inbox off", `{"inbox":false,"chat":true}`, 422},
		{"email, which is not set up", `{"email":true}`, 422},
		{"an unknown channel", `{"pager":true}`, 400},
		{"a channel that is not true or false", `{"chat":"yes"}`, 400},
		{"not an object", `[]`, 400},
	}
	for _, c := range bad {
		t.Run(c.name+" is refused and changes nothing", func(t *testing.T) {
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: "/api/v1/me/preferences", Token: ann, Body: c.body})
			if resp.StatusCode != c.status {
				t.Errorf("%d %s", resp.StatusCode, body)
			}
			_, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/me/preferences", Token: ann})
			if p := decode[prefsJSON](t, body); p.Email || p.Chat {
				t.Errorf("changed: %s", body)
			}
		})
	}
	resp, body = srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: "/api/v1/me/preferences", Token: ann, Body: `{"chat":true}`})
	if p := decode[prefsJSON](t, body); resp.StatusCode != 200 || !p.Chat || !p.Inbox {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}

	t.Run("a notification then reaches the chat webhook once, through the periodic job", func(t *testing.T) {
		notify(t, srv, "ann@example.com", "chat-e2e", "Your lease ends tomorrow")
		handlertest.Eventually(t, 15*time.Second, "the chat message", func() bool { return hook.count() == 1 })
		time.Sleep(4 * time.Second) // another tick of the deliver job
		if hook.count() != 1 {
			t.Errorf("%d chat messages", hook.count())
		}
		if !strings.Contains(hook.texts[0], "ann@example.com") || !strings.Contains(hook.texts[0], "Your lease ends tomorrow") || hook.keys[0] != "chat-e2e" {
			t.Errorf("text %q key %q", hook.texts[0], hook.keys[0])
		}
	})
}

func TestPreferencesForm(t *testing.T) {
	hook := newChatHook(t)
	chat, _ := jobs.NewChatSender(hook.URL, "", 5*time.Second)
	srv := handlertest.New(t, handlertest.Options{Senders: jobs.Senders{Chat: chat}})
	ann := srv.SignIn(t, "ann@example.com")

	_, body := srv.Do(t, ann, handlertest.Request{Path: views.ProfileURL})
	doc := handlertest.Doc(t, body)
	sec := doc.Find("#" + views.ChannelsID)
	if sec.Find("#channel-inbox[checked][disabled]").Length() != 1 || sec.Find("#channel-email[disabled]").Length() != 1 || sec.Find("#channel-chat[disabled]").Length() != 0 {
		t.Errorf("channels section: %s", sec.Text())
	}
	if !strings.Contains(sec.Find(`label[for="channel-email"]`).Text(), "not set up on this portal") {
		t.Error("email does not say it is off")
	}
	t.Run("email, which is not set up, is refused with nothing changed", func(t *testing.T) {
		resp, body := srv.Do(t, ann, handlertest.Request{Method: "POST", Path: views.PreferencesURL, Form: url.Values{"email": {"on"}, "chat": {"on"}}})
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(handlertest.Doc(t, body).Find("#channels-problem").Text(), "email") {
			t.Errorf("%d", resp.StatusCode)
		}
		u, _ := srv.Store.UserByEmail(context.Background(), "ann@example.com")
		if p, _ := srv.Store.Preferences(context.Background(), u.ID); p.Email || p.Chat {
			t.Errorf("changed: %+v", p)
		}
	})
	resp, _ := srv.Do(t, ann, handlertest.Request{Method: "POST", Path: views.PreferencesURL, Form: url.Values{"chat": {"on"}}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("%d", resp.StatusCode)
	}
	_, body = srv.Do(t, ann, handlertest.Request{Path: views.ProfileURL})
	if handlertest.Doc(t, body).Find("#channel-chat[checked]").Length() != 1 {
		t.Error("chat is not checked after saving")
	}
}

func TestDeliveryLog(t *testing.T) {
	hook := newChatHook(t)
	hook.failing.Store(true)
	chat, _ := jobs.NewChatSender(hook.URL, "", 5*time.Second)
	srv := handlertest.New(t, handlertest.Options{Senders: jobs.Senders{Chat: chat}})
	clock := &bannerClock{t: time.Now().UTC()}
	srv.Store.Now = clock.Now
	adminToken := srv.Token(t, "admin@example.com", store.RoleAdmin)
	ann := srv.Token(t, "ann@example.com")
	if resp, body := srv.Do(t, nil, handlertest.Request{Method: "PUT", Path: "/api/v1/me/preferences", Token: ann, Body: `{"chat":true}`}); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	notify(t, srv, "ann@example.com", "doomed", "Your devserver moves")

	chatDelivery := func() store.Delivery {
		ds, err := srv.Store.Deliveries(context.Background(), store.DeliveryFilter{Channel: store.ChannelChat, Limit: 10})
		if err != nil || len(ds) != 1 {
			t.Fatalf("%v %v", ds, err)
		}
		return ds[0]
	}
	// The webhook refuses every attempt; the clock jumps past each backoff.
	handlertest.Eventually(t, 60*time.Second, "the chat delivery to fail for good", func() bool {
		clock.Add(time.Hour)
		return chatDelivery().State == store.DeliveryFailed
	})
	d := chatDelivery()
	admin := srv.SignIn(t, "admin@example.com", store.RoleAdmin) // a session of the test clock's time
	if d.Attempts != store.DeliveryMaxAttempts || !strings.Contains(d.LastError, "403") || hook.count() != 0 {
		t.Errorf("%+v", d)
	}

	resp, body := srv.Do(t, admin, handlertest.Request{Path: views.AdminDeliveriesURL + "?state=failed"})
	if resp.StatusCode != 200 {
		t.Fatalf("delivery log: %d %.500s", resp.StatusCode, body)
	}
	doc := handlertest.Doc(t, body)
	row := doc.Find("#" + views.DeliveryRowID(d.ID))
	if row.AttrOr("data-state", "") != "failed" || !strings.Contains(row.Find(".delivery-error").Text(), "invalid_token") || row.Find("button").Text() != "Retry delivery" {
		t.Errorf("row: %q", strings.Join(strings.Fields(row.Text()), " "))
	}
	if doc.Find("#deliveries tbody tr").Length() != 1 {
		t.Errorf("the failed filter shows %d rows", doc.Find("#deliveries tbody tr").Length())
	}
	resp, body = srv.Do(t, nil, handlertest.Request{Path: "/api/v1/deliveries?channel=chat", Token: adminToken})
	p := decode[struct {
		Items []struct {
			State     string `json:"state"`
			Attempts  int    `json:"attempts"`
			LastError string `json:"last_error"`
			Email     string `json:"email"`
		}
	}](t, body)
	if resp.StatusCode != 200 || len(p.Items) != 1 || p.Items[0].State != "failed" || p.Items[0].Attempts != 5 || p.Items[0].Email != "ann@example.com" {
		t.Errorf("%d %s", resp.StatusCode, body)
	}
	for _, q := range []string{"?state=lost", "?channel=pager", "?cursor=x"} {
		if resp, _ := srv.Do(t, nil, handlertest.Request{Path: "/api/v1/deliveries" + q, Token: adminToken}); resp.StatusCode != 400 {
			t.Errorf("%s: %d", q, resp.StatusCode)
		}
	}
	t.Run("retrying a delivery that is not failed is a conflict and changes nothing", func(t *testing.T) {
		inbox, _ := srv.Store.Deliveries(context.Background(), store.DeliveryFilter{Channel: store.ChannelInbox, Limit: 1})
		resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: "/api/v1/deliveries/" + itoa64(inbox[0].ID) + "/retry", Token: adminToken})
		if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "delivery_not_failed") {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("retrying an unknown delivery, or as someone not an admin, is refused and changes nothing", func(t *testing.T) {
		for _, c := range []struct {
			what, path, token string
			status            int
		}{
			{"an unknown id", "/api/v1/deliveries/999999/retry", adminToken, http.StatusNotFound},
			{"an id that is not a number", "/api/v1/deliveries/abc/retry", adminToken, http.StatusNotFound},
			{"an engineer", "/api/v1/deliveries/" + itoa64(d.ID) + "/retry", ann, http.StatusForbidden},
		} {
			resp, body := srv.Do(t, nil, handlertest.Request{Method: "POST", Path: c.path, Token: c.token})
			if e := decode[apiError](t, body); resp.StatusCode != c.status || e.Error.Message == "" {
				t.Errorf("%s: %d %s", c.what, resp.StatusCode, body)
			}
			if got := chatDelivery(); got.State != store.DeliveryFailed || got.Attempts != d.Attempts {
				t.Errorf("%s: the delivery changed: %+v", c.what, got)
			}
		}
		resp, _ := srv.Do(t, admin, handlertest.Request{Method: "POST", Path: views.DeliveryRetryURL(999999), Form: url.Values{}})
		if resp.StatusCode != http.StatusNotFound || chatDelivery().State != store.DeliveryFailed {
			t.Errorf("the form for an unknown delivery: %d", resp.StatusCode)
		}
	})

	hook.failing.Store(false)
	resp, _ = srv.Do(t, admin, handlertest.Request{Method: "POST", Path: views.DeliveryRetryURL(d.ID), Form: url.Values{}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("retry: %d", resp.StatusCode)
	}
	handlertest.Eventually(t, 15*time.Second, "the retried delivery to be sent", func() bool { return chatDelivery().State == store.DeliverySent })
	if hook.count() != 1 {
		t.Errorf("%d chat messages", hook.count())
	}
	events, _ := srv.Store.AuditEvents(context.Background(), "delivery", itoa64(d.ID))
	var actions []string
	for _, e := range events {
		actions = append(actions, e.Action)
	}
	if got := strings.Join(actions, ","); got != "delivery.attempt_failed,delivery.attempt_failed,delivery.attempt_failed,delivery.attempt_failed,delivery.failed,delivery.retry,delivery.sent" {
		t.Errorf("audit: %s", got)
	}
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }
