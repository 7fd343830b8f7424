package handlers

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// The admin pages. Routes put them behind web.RequireRole(admin).

func adminHome(log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		web.Render(w, r, log, views.AdminPage(), nil)
	}
}

func adminPools(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		pools, err := s.Pools(r.Context())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		form := views.PoolsForm{Pools: pools}
		web.Render(w, r, log, views.AdminPoolsPage(form), views.PoolsTable(form))
	}
}

// setPoolTargets saves targets and asks for a refill in the same
// transaction, so a raised target starts filling at once rather than at the
// next tick.
func setPoolTargets(ctx context.Context, s *store.Store, q Enqueuer, who store.Actor, targets []store.PoolTarget) error {
	return s.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.SetPoolTargets(ctx, who, targets); err != nil {
			return err
		}
		return q.Enqueue(ctx, tx, jobs.PoolRefillArgs{})
	})
}

// poolTargetField is the form field of a pool's target.
const poolTargetField = "target-"

func saveAdminPools(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		values := map[string]string{}
		problems := store.Problems{}
		var targets []store.PoolTarget
		for field, vs := range r.PostForm {
			key, ok := strings.CutPrefix(field, poolTargetField)
			if !ok || len(vs) == 0 {
				continue
			}
			region, flavor, ok := strings.Cut(key, "/")
			v := strings.TrimSpace(vs[0])
			values[key] = v
			n, err := strconv.Atoi(v)
			switch {
			case !ok:
				problems.Add(key, "is not a pool (region/flavour)")
			case err != nil:
				problems.Add(key, "must be a whole number from 0 to "+strconv.Itoa(store.MaxPoolTarget))
			default:
				targets = append(targets, store.PoolTarget{Region: region, Flavor: flavor, Target: n})
			}
		}
		err := problems.Err()
		if err == nil {
			err = setPoolTargets(r.Context(), s, q, web.Actor(r), targets)
		}
		if err == nil {
			sessions.Flash(w, r, "success", "Saved the pool targets; the pools fill up within capacity.")
			web.Redirect(w, r, views.AdminPoolsURL)
			return
		}
		var ve *store.ValidationError
		if !errors.As(err, &ve) {
			web.Error(w, r, log, err)
			return
		}
		pools, perr := s.Pools(r.Context())
		if perr != nil {
			web.Error(w, r, log, perr)
			return
		}
		form := views.PoolsForm{Pools: pools, Values: values, Errors: ve.Fields}
		web.RenderStatus(w, r, log, http.StatusUnprocessableEntity, views.AdminPoolsPage(form), views.PoolsTable(form))
	}
}

func apiPools(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		pools, err := s.Pools(r.Context())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, page[store.Pool]{Items: pools})
	}
}

type poolRequest struct {
	Target *int `json:"target"`
}

// apiSetPool sets one pool's target: PUT /pools/{region}/{flavor} {target}.
func apiSetPool(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in poolRequest
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		region, flavor := chi.URLParam(r, "region"), chi.URLParam(r, "flavor")
		if _, err := s.Region(r.Context(), region); err != nil {
			web.Error(w, r, log, err)
			return
		}
		if _, err := s.Flavor(r.Context(), flavor); err != nil {
			web.Error(w, r, log, err)
			return
		}
		if in.Target == nil {
			web.Error(w, r, log, &store.ValidationError{Fields: map[string]string{"target": "is required"}})
			return
		}
		err := setPoolTargets(r.Context(), s, q, web.Actor(r), []store.PoolTarget{{Region: region, Flavor: flavor, Target: *in.Target}})
		var ve *store.ValidationError
		if errors.As(err, &ve) {
			// The store reports under the pool's key; the API's field is target.
			err = &store.ValidationError{Fields: map[string]string{"target": ve.Fields[store.PoolKey(region, flavor)]}}
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		pools, err := s.Pools(r.Context())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		for _, p := range pools {
			if p.Region == region && p.Flavor == flavor {
				web.WriteJSON(w, http.StatusOK, p)
				return
			}
		}
		web.Error(w, r, log, store.ErrNotFound)
	}
}
