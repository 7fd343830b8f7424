package handlers

import (
	"encoding/base64"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// taskID reads the {id} of a task; one that is not a number does not exist.
func taskID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, store.ErrNotFound
	}
	return id, nil
}

func markTaskDone(r *http.Request, s *store.Store) (store.Task, error) {
	id, err := taskID(r)
	if err != nil {
		return store.Task{}, err
	}
	var t store.Task
	err = s.InTx(r.Context(), func(tx *store.Tx) error {
		var err error
		t, err = tx.MarkTaskDone(r.Context(), web.Actor(r), web.User(r).ID, id)
		return err
	})
	return t, err
}

func showTasks(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		uid := web.User(r).ID
		ts, err := s.Tasks(r.Context(), uid, 0, 200)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		open, err := s.OpenTasks(r.Context(), uid)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.TasksPage(views.TasksView{Tasks: ts, Open: open, Now: s.Now()}), nil)
	}
}

func postTaskDone(log *slog.Logger, s *store.Store, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t, err := markTaskDone(r, s)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		sessions.Flash(w, r, "success", "Done: "+t.Title+".")
		web.Redirect(w, r, views.TasksURL)
	}
}

// taskCursor reads the tasks list's cursor: an offset, since open tasks sort by due date.
func taskCursor(r *http.Request) (int, error) {
	c := r.URL.Query().Get("cursor")
	if c == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil && strings.HasPrefix(string(b), "at:") {
		if n, err := strconv.Atoi(strings.TrimPrefix(string(b), "at:")); err == nil && n > 0 {
			return n, nil
		}
	}
	return 0, web.BadRequest("invalid_cursor", "cursor is not one this server gave out.")
}

func apiListTasks(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// The cursor is an offset, not an ID: pagination reads the limit alone.
		q := r.URL.Query()
		q.Del("cursor")
		plain := r.Clone(r.Context())
		plain.URL.RawQuery = q.Encode()
		limit, _, err := pagination(plain)
		var offset int
		if err == nil {
			offset, err = taskCursor(r)
		}
		var ts []store.Task
		if err == nil {
			ts, err = s.Tasks(r.Context(), web.User(r).ID, offset, limit+1)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		p := page[store.Task]{Items: ts}
		if len(ts) > limit {
			p.Items = ts[:limit]
			p.NextCursor = base64.RawURLEncoding.EncodeToString([]byte("at:" + strconv.Itoa(offset+limit)))
		}
		if p.Items == nil {
			p.Items = []store.Task{}
		}
		web.WriteJSON(w, http.StatusOK, p)
	}
}

func apiTaskDone(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t, err := markTaskDone(r, s)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, t)
	}
}
