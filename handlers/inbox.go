package handlers

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// inboxPage reads a page of the caller's notifications: limit and cursor as
// every list takes them.
func inboxPage(r *http.Request, s *store.Store) (page[store.Notification], error) {
	limit, after, err := pagination(r)
	if err != nil {
		return page[store.Notification]{}, err
	}
	ns, err := s.Notifications(r.Context(), web.User(r).ID, after, limit+1)
	if err != nil {
		return page[store.Notification]{}, err
	}
	out := pageOf(ns, limit, func(v store.Notification) int64 { return v.ID })
	return out, nil
}

// notificationID reads the {id} of a notification; one that is not a number
// does not exist.
func notificationID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, store.ErrNotFound
	}
	return id, nil
}

func markRead(r *http.Request, s *store.Store, id int64) (store.Notification, error) {
	var n store.Notification
	err := s.InTx(r.Context(), func(tx *store.Tx) error {
		var err error
		n, err = tx.MarkNotificationRead(r.Context(), web.Actor(r), web.User(r).ID, id)
		return err
	})
	return n, err
}

func markAllRead(r *http.Request, s *store.Store) (int64, error) {
	var n int64
	err := s.InTx(r.Context(), func(tx *store.Tx) error {
		var err error
		n, err = tx.MarkAllNotificationsRead(r.Context(), web.Actor(r), web.User(r).ID)
		return err
	})
	return n, err
}

func showInbox(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := inboxPage(r, s)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		unread, err := s.UnreadNotifications(r.Context(), web.User(r).ID)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		v := views.InboxView{Notifications: p.Items, Unread: unread}
		if p.NextCursor != "" {
			v.Older = views.InboxURL + "?cursor=" + p.NextCursor
		}
		web.Render(w, r, log, views.InboxPage(v), nil)
	}
}

func readNotification(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := notificationID(r)
		if err == nil {
			_, err = markRead(r, s, id)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Redirect(w, r, views.InboxURL)
	}
}

func readAllNotifications(log *slog.Logger, s *store.Store, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n, err := markAllRead(r, s)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		switch {
		case n == 1:
			sessions.Flash(w, r, "success", "Marked 1 notification read.")
		case n > 1:
			sessions.Flash(w, r, "success", fmt.Sprintf("Marked %d notifications read.", n))
		}
		web.Redirect(w, r, views.InboxURL)
	}
}

func apiListNotifications(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := inboxPage(r, s)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, p)
	}
}

func apiReadNotification(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := notificationID(r)
		var n store.Notification
		if err == nil {
			n, err = markRead(r, s, id)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, n)
	}
}

func apiReadAllNotifications(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n, err := markAllRead(r, s)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, map[string]int64{"marked": n})
	}
}
