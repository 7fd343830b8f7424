package handlers

import (
	"log/slog"
	"net/http"
	"strconv"

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

func apiListTasks(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		limit, offset, err := offsetPagination(r)
		var ts []store.Task
		if err == nil {
			ts, err = s.Tasks(r.Context(), web.User(r).ID, offset, limit+1)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		p := offsetPage(ts, limit, offset)
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
