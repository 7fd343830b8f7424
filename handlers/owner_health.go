package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/web"
)

// A devserver's health for its people, the restart its owner asks for, and
// diagnostic bundles the CLI sends.

func apiDevserverHealth(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := visibleDevserver(r.Context(), s, *web.User(r), chi.URLParam(r, "name"))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		h, err := s.DevserverHealthOf(r.Context(), d)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, h)
	}
}

// restart opens a remediation episode for the devserver (or finds the one
// open) and enqueues the remediation job in the same transaction.
func restart(ctx context.Context, s *store.Store, q Enqueuer, who store.Actor, u store.User, name string) (store.Devserver, store.Remediation, error) {
	d, err := allowedDevserver(ctx, s, u, name, store.CanRestart)
	if err != nil {
		return d, store.Remediation{}, err
	}
	var rem store.Remediation
	err = s.InTx(ctx, func(tx *store.Tx) error {
		// Re-read inside the transaction: the devserver may have moved on.
		cur, err := tx.DevserverByID(ctx, d.ID)
		if err != nil {
			return err
		}
		var opened bool
		if rem, opened, err = tx.RequestRestart(ctx, who, cur); err != nil || !opened {
			return err
		}
		return q.Enqueue(ctx, tx, jobs.RemediateArgs{RemediationID: rem.ID})
	})
	return d, rem, err
}

func apiRestartDevserver(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, rem, err := restart(r.Context(), s, q, web.Actor(r), *web.User(r), chi.URLParam(r, "name"))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusAccepted, map[string]any{"devserver": d.Name, "remediation": rem.Summary()})
	}
}

func restartForm(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		name := chi.URLParam(r, "name")
		_, _, err := restart(r.Context(), s, q, web.Actor(r), *web.User(r), name)
		afterChange(w, r, log, sessions, name,
			fmt.Sprintf("Restarting %s: devport stops and starts it and checks it; if that does not help, it recreates it from its latest backup.", name), err)
	}
}

func apiUploadBundle(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Note      string                     `json:"note"`
			Devserver string                     `json:"devserver"`
			Parts     map[string]json.RawMessage `json:"parts"`
		}
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		ctx := r.Context()
		cb := store.ClientBundle{Note: in.Note, Parts: in.Parts}
		if in.Devserver != "" {
			d, err := visibleDevserver(ctx, s, *web.User(r), in.Devserver)
			if err != nil {
				web.Error(w, r, log, err)
				return
			}
			cb.Devserver = &d
		}
		var b store.DiagnosticBundle
		err := s.InTx(ctx, func(tx *store.Tx) (err error) {
			b, err = tx.AddClientBundle(ctx, web.Actor(r), cb)
			return err
		})
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		out := map[string]any{"id": b.ID, "state": b.State, "requested_by": b.RequestedBy, "created_at": b.CreatedAt}
		if b.Devserver != "" {
			out["devserver"] = b.Devserver
		}
		web.WriteJSON(w, http.StatusCreated, out)
	}
}
