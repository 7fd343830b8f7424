package handlers

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// migrate starts moving a devserver to another region and/or flavour.
func migrate(ctx context.Context, s *store.Store, q Enqueuer, who store.Actor, u store.User, name, region, flavor string) (store.DevserverMigration, error) {
	d, err := managedDevserver(ctx, s, u, name)
	if err != nil {
		return store.DevserverMigration{}, err
	}
	var m store.DevserverMigration
	err = s.InTx(ctx, func(tx *store.Tx) error {
		if m, err = tx.StartMigration(ctx, who, d, region, flavor); err != nil {
			return err
		}
		return q.Enqueue(ctx, tx, jobs.MigrateArgs{MigrationID: m.ID})
	})
	return m, err
}

func migrateDevserver(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		name := chi.URLParam(r, "name")
		m, err := migrate(r.Context(), s, q, web.Actor(r), *web.User(r), name, r.PostForm.Get("region"), r.PostForm.Get("flavor"))
		afterChange(w, r, log, sessions, name, "Migrating "+name+" to "+m.ToFlavor+" in "+m.ToRegion+" (on "+m.ToHost+").", err)
	}
}

// migrateRequest is the body of POST /api/v1/devservers/{name}/migrate.
type migrateRequest struct {
	Region string `json:"region"`
	Flavor string `json:"flavor"`
}

func apiMigrateDevserver(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in migrateRequest
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		m, err := migrate(r.Context(), s, q, web.Actor(r), *web.User(r), chi.URLParam(r, "name"), in.Region, in.Flavor)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusAccepted, m)
	}
}

// apiShowMigration is a devserver's newest migration, with its step and state.
func apiShowMigration(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := visibleDevserver(r.Context(), s, *web.User(r), chi.URLParam(r, "name"))
		var m store.DevserverMigration
		if err == nil {
			m, err = s.LatestMigration(r.Context(), d.ID)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, m)
	}
}

// latestMigration is a devserver's newest migration, or nil.
func latestMigration(ctx context.Context, s *store.Store, d store.Devserver) (*store.DevserverMigration, error) {
	m, err := s.LatestMigration(ctx, d.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// showMigration is the devserver page's migration section alone.
func showMigration(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := web.User(r)
		d, err := visibleDevserver(r.Context(), s, *u, chi.URLParam(r, "name"))
		var v views.DevserverView
		if err == nil {
			v, err = devserverView(r.Context(), s, *u, d)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.DevserverMigration(v), views.DevserverMigration(v))
	}
}
