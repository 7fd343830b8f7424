package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// Devserver health for admins (failures by cause, the support queue of
// diagnostic bundles) and the "Rage" action of a devserver's owner.

// healthWindow is the "recent" column of the failures by cause.
const healthWindow = 7 * 24 * time.Hour

func healthView(ctx context.Context, s *store.Store) (views.HealthView, error) {
	v := views.HealthView{Since: s.Now().Add(-healthWindow)}
	var err error
	if v.Causes, err = s.FailureCauses(ctx, v.Since); err != nil {
		return v, err
	}
	if v.Recurring, err = s.RecurringFailures(ctx, 50); err != nil {
		return v, err
	}
	v.Open, err = s.OpenRemediations(ctx)
	return v, err
}

func adminHealth(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := healthView(r.Context(), s)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.AdminHealthPage(v), nil)
	}
}

func apiHealth(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := healthView(r.Context(), s)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{
			"since": v.Since, "causes": nonNilSlice(v.Causes), "recurring": nonNilSlice(v.Recurring), "open": nonNilSlice(v.Open),
		})
	}
}

func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func adminSupport(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		bs, err := s.Bundles(r.Context(), 200)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.AdminSupportPage(bs), nil)
	}
}

func bundleFromParam(ctx context.Context, s *store.Store, r *http.Request) (store.DiagnosticBundle, error) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id <= 0 {
		return store.DiagnosticBundle{}, store.ErrNotFound
	}
	return s.Bundle(ctx, id)
}

func adminBundle(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := bundleFromParam(r.Context(), s, r)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.AdminBundlePage(b), nil)
	}
}

func apiSupport(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		bs, err := s.Bundles(r.Context(), 200)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"items": nonNilSlice(bs), "next_cursor": ""})
	}
}

// bundleJSON is a bundle with its parts.
func bundleJSON(b store.DiagnosticBundle) map[string]any {
	return map[string]any{"bundle": b, "parts": json.RawMessage(b.Body)}
}

func apiBundle(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := bundleFromParam(r.Context(), s, r)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, bundleJSON(b))
	}
}

// rage records a diagnostic bundle to collect for a devserver and enqueues
// its collection (the driver is asked from the job, never from here).
func rage(ctx context.Context, s *store.Store, q Enqueuer, who store.Actor, u store.User, name, note string) (store.DiagnosticBundle, error) {
	d, err := allowedDevserver(ctx, s, u, name, store.CanRage)
	if err != nil {
		return store.DiagnosticBundle{}, err
	}
	var b store.DiagnosticBundle
	err = s.InTx(ctx, func(tx *store.Tx) error {
		if b, err = tx.RequestBundle(ctx, who, d, note); err != nil {
			return err
		}
		return q.Enqueue(ctx, tx, jobs.CollectBundleArgs{BundleID: b.ID})
	})
	return b, err
}

func rageForm(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		name := chi.URLParam(r, "name")
		b, err := rage(r.Context(), s, q, web.Actor(r), *web.User(r), name, r.PostForm.Get("note"))
		afterChange(w, r, log, sessions, name,
			fmt.Sprintf("Sorry about that. Diagnostics of %s are on their way to the platform team (bundle %d).", name, b.ID), err)
	}
}

// rageRequest is the body of POST /api/v1/devservers/{name}/rage.
type rageRequest struct {
	Note string `json:"note"`
}

func apiRage(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in rageRequest
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		b, err := rage(r.Context(), s, q, web.Actor(r), *web.User(r), chi.URLParam(r, "name"), in.Note)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusAccepted, b)
	}
}
