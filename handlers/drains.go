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

// maxDrainItemsShown bounds the devservers listed on a drain's page.
const maxDrainItemsShown = 200

// drainResponse is what the API answers to a drain: the drain and its run.
type drainResponse struct {
	Drain store.Drain `json:"drain"`
	Run   store.Run   `json:"run"`
}

// planResponse is a dry run's answer.
type planResponse struct {
	Region string            `json:"region"`
	DryRun bool              `json:"dry_run"`
	Plan   []store.DrainMove `json:"plan"`
	Lines  []string          `json:"lines"`
}

func requireDrainer(r *http.Request) error {
	if u := web.User(r); u == nil || !store.CanDrainRegions(*u) {
		return web.ErrForbidden
	}
	return nil
}

// apiDrainRegion starts a drain (202 with the drain and its run) or, with
// dry_run, answers the plan (200) without changing anything.
func apiDrainRegion(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := requireDrainer(r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		var req jobs.DrainRequest
		if err := web.DecodeJSON(w, r, &req); err != nil {
			web.Error(w, r, log, err)
			return
		}
		req.Region = chi.URLParam(r, "code")
		if req.DryRun {
			plan, err := jobs.PlanDrain(r.Context(), s, req)
			if err != nil {
				web.Error(w, r, log, err)
				return
			}
			web.WriteJSON(w, http.StatusOK, planResponse{Region: req.Region, DryRun: true, Plan: nonNil(plan), Lines: nonNil(jobs.DrainPlanText(plan))})
			return
		}
		drain, run, err := jobs.StartDrain(r.Context(), s, q, web.Actor(r), req)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		w.Header().Set("Location", apiRunURL(run.ID))
		web.WriteJSON(w, http.StatusAccepted, drainResponse{Drain: drain, Run: run})
	}
}

func nonNil[T any](xs []T) []T {
	if xs == nil {
		return []T{}
	}
	return xs
}

// apiUndrainRegion cancels a region's drain and makes it active again.
func apiUndrainRegion(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := requireDrainer(r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		region, err := jobs.Undrain(r.Context(), s, q, web.Actor(r), chi.URLParam(r, "code"))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, region)
	}
}

// drainView loads a region's drain page: its latest drain and progress.
func drainView(ctx context.Context, s *store.Store, code string) (views.DrainView, error) {
	var v views.DrainView
	region, err := s.Region(ctx, code)
	if err != nil {
		return v, err
	}
	v.Region = region
	v.Form.MaxParallel = strconv.Itoa(jobs.DefaultDrainParallel)
	drain, err := s.LatestDrain(ctx, code)
	if errors.Is(err, store.ErrNotFound) {
		return v, nil
	} else if err != nil {
		return v, err
	}
	v.Drain = &drain
	if v.Progress, err = s.DrainProgress(ctx, drain.ID); err != nil {
		return v, err
	}
	items, err := s.DrainItems(ctx, drain.ID, store.ItemPending, store.ItemMoving, store.ItemMigrating, store.ItemFailed, store.ItemOwner, store.ItemOverdue)
	if err != nil {
		return v, err
	}
	if len(items) > maxDrainItemsShown {
		items = items[:maxDrainItemsShown]
	}
	v.Items = items
	return v, nil
}

// adminDrains lists the regions with their latest drains.
func adminDrains(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := requireDrainer(r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		regions, err := s.Regions(r.Context())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		var v views.DrainsView
		for _, rg := range regions {
			row := views.DrainRow{Region: rg}
			d, err := s.LatestDrain(r.Context(), rg.Code)
			if err == nil {
				row.Drain = &d
				if row.Progress, err = s.DrainProgress(r.Context(), d.ID); err != nil {
					web.Error(w, r, log, err)
					return
				}
			} else if !errors.Is(err, store.ErrNotFound) {
				web.Error(w, r, log, err)
				return
			}
			v.Rows = append(v.Rows, row)
		}
		web.Render(w, r, log, views.AdminDrainsPage(v), nil)
	}
}

// adminDrain is a region's drain page; an HTMX request gets the live
// progress panel alone.
func adminDrain(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := requireDrainer(r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		v, err := drainView(r.Context(), s, chi.URLParam(r, "code"))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		if v.Drain == nil {
			web.Render(w, r, log, views.AdminDrainPage(v), nil)
			return
		}
		// Without JavaScript the page reloads itself while the drain runs.
		web.Chrome(r).Refresh = v.Drain.State == store.DrainOpen
		web.Render(w, r, log, views.AdminDrainPage(v), views.DrainProgress(v))
	}
}

// drainForm starts a drain, or shows its plan for the dry-run button.
func drainForm(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := requireDrainer(r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		code := chi.URLParam(r, "code")
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		f := views.DrainForm{Reason: r.PostForm.Get("reason"), Deadline: r.PostForm.Get("deadline"), MaxParallel: r.PostForm.Get("max_parallel"), Kind: r.PostForm.Get("kind")}
		req := jobs.DrainRequest{Region: code, Reason: f.Reason, Kind: f.Kind, DryRun: r.PostForm.Get("dry_run") != ""}
		p := store.Problems{}
		req.Deadline = parseFormTime(p, "deadline", f.Deadline)
		if v := strings.TrimSpace(f.MaxParallel); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				p.Add("max_parallel", "must be a whole number")
			}
			req.MaxParallel = &n
		}
		err := p.Err()
		var plan []store.DrainMove
		if err == nil {
			if req.DryRun {
				plan, err = jobs.PlanDrain(r.Context(), s, req)
			} else {
				var drain store.Drain
				if drain, _, err = jobs.StartDrain(r.Context(), s, q, web.Actor(r), req); err == nil {
					sessions.Flash(w, r, "success", "Started drain "+strconv.FormatInt(drain.ID, 10)+" of "+code+": the region takes no new devservers.")
					web.Redirect(w, r, views.AdminDrainURL(code))
					return
				}
			}
		}
		v, verr := drainView(r.Context(), s, code)
		if verr != nil {
			web.Error(w, r, log, verr)
			return
		}
		v.Form = f
		status := http.StatusOK
		if err != nil {
			fields, message, st, ok := web.FormProblem(err)
			if !ok {
				web.Error(w, r, log, err)
				return
			}
			status, v.Form.Errors = st, fields
			if message != "" {
				v.Form.Errors = map[string]string{"message": message}
			}
		} else {
			v.Plan, v.PlanDone = plan, true
		}
		web.RenderStatus(w, r, log, status, views.AdminDrainPage(v), nil)
	}
}

// undrainForm cancels the drain and reopens the region.
func undrainForm(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := requireDrainer(r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		code := chi.URLParam(r, "code")
		if _, err := jobs.Undrain(r.Context(), s, q, web.Actor(r), code); err != nil {
			if _, message, _, ok := web.FormProblem(err); ok && message != "" {
				sessions.Flash(w, r, "error", message)
				web.Redirect(w, r, views.AdminDrainURL(code))
				return
			}
			web.Error(w, r, log, err)
			return
		}
		sessions.Flash(w, r, "success", "Region "+code+" is active again; its drain is cancelled.")
		web.Redirect(w, r, views.AdminDrainURL(code))
	}
}

// moveMe starts the move of a physical devserver its owner was asked to
// move by a drain, to the nearest active region with room.
func moveMe(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := web.User(r)
		d, err := allowedDevserver(r.Context(), s, *u, chi.URLParam(r, "name"), store.CanMoveOutOfDrain)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		if _, _, err := s.OpenOwnerDrainItem(r.Context(), d.ID); errors.Is(err, store.ErrNotFound) {
			err = store.Conflict("not_asked", "No drain asked you to move "+d.Name+".")
			sessions.Flash(w, r, "error", err.Error())
			web.Redirect(w, r, views.DevserverURL(d.Name))
			return
		} else if err != nil {
			web.Error(w, r, log, err)
			return
		}
		m, err := jobs.MoveMe(r.Context(), s, q, web.Actor(r), d)
		if err != nil {
			if _, message, _, ok := web.FormProblem(err); ok && message != "" {
				sessions.Flash(w, r, "error", message)
				web.Redirect(w, r, views.DevserverURL(d.Name))
				return
			}
			web.Error(w, r, log, err)
			return
		}
		sessions.Flash(w, r, "success", "Moving "+d.Name+" to "+m.ToRegion+": backup, rebuild, restore.")
		web.Redirect(w, r, views.DevserverURL(d.Name))
	}
}

// drainMoveMe is the "move me" section of a devserver page, for its owner
// while a drain asks them to move it; nil otherwise.
func drainMoveMe(ctx context.Context, s *store.Store, u store.User, d store.Devserver) (*store.Drain, error) {
	if !store.CanMoveOutOfDrain(u, d) || d.State != store.StateReady {
		return nil, nil
	}
	_, drain, err := s.OpenOwnerDrainItem(ctx, d.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &drain, nil
}
