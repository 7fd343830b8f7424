package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/jobs"
	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// Host operations: maintenance (the Drain Coordinator) and decommissioning
// (the Decominator), each a run of its built-in runbook.

const (
	defaultMaintenanceDue  = 72 * time.Hour
	defaultDecommissionDue = 7 * 24 * time.Hour
	maxHostOpDeadline      = 29 * 24 * time.Hour // inside the runbooks' 30-day deadline
)

// hostOpRequest is what starting a host operation takes.
type hostOpRequest struct {
	Reason   string     `json:"reason"`
	Deadline *time.Time `json:"deadline"`
	DryRun   bool       `json:"dry_run"`
	// Sev is the SEV the operation updates: its timeline gets the run's
	// start, failed steps and end.
	Sev *int64 `json:"sev"`
}

// hostFromParam reads the {id} of a host; what is not a host's ID is not found.
func hostFromParam(ctx context.Context, s *store.Store, r *http.Request) (store.Host, error) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id <= 0 {
		return store.Host{}, store.ErrNotFound
	}
	return s.Host(ctx, id)
}

// hostOpParams checks a host operation's request and makes its run's
// parameters. Bad input is a validation error naming the field.
func hostOpParams(now time.Time, h store.Host, op string, in hostOpRequest) (map[string]any, error) {
	if err := store.CheckHostOperation(h, op); err != nil {
		return nil, err
	}
	p := store.Problems{}
	in.Reason = strings.TrimSpace(in.Reason)
	if len(in.Reason) > 200 {
		p.Add("reason", "is longer than 200 characters")
	}
	due := defaultMaintenanceDue
	if op == store.HostOpDecommission {
		due = defaultDecommissionDue
	}
	if in.Deadline != nil {
		due = in.Deadline.Sub(now)
		switch {
		case due <= 0:
			p.Add("deadline", "is in the past")
		case due > maxHostOpDeadline:
			p.Add("deadline", "is more than 29 days away")
		}
	}
	if in.Sev != nil && *in.Sev <= 0 {
		p.Add("sev", "must be a SEV number")
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	params := map[string]any{"host": h.Name}
	if in.Sev != nil {
		params["sev"] = strconv.FormatInt(*in.Sev, 10)
	}
	if in.Reason != "" {
		params["reason"] = in.Reason
	}
	key := "due_in"
	if op == store.HostOpDecommission {
		key = "deadline_in"
	}
	params[key] = due.Round(time.Second).String()
	return params, nil
}

// startHostOp starts a host's maintenance or decommissioning.
func startHostOp(ctx context.Context, s *store.Store, q Enqueuer, who store.Actor, h store.Host, op string, in hostOpRequest) (store.Run, error) {
	params, err := hostOpParams(s.Now(), h, op, in)
	if err != nil {
		return store.Run{}, err
	}
	if in.Sev != nil {
		if _, err := s.Sev(ctx, *in.Sev); errors.Is(err, store.ErrNotFound) {
			return store.Run{}, &store.ValidationError{Fields: map[string]string{"sev": fmt.Sprintf("SEV-%d does not exist", *in.Sev)}}
		} else if err != nil {
			return store.Run{}, err
		}
	}
	return jobs.StartHostOperation(ctx, s, q, who, h.Name, op, params)
}

func adminHosts(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		hs, err := s.HostsWithLoad(r.Context())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		v := views.HostsView{Hosts: hs}
		for _, name := range []string{"host-maintenance", "host-decommission"} {
			runs, err := s.Runs(r.Context(), name, 10)
			if err != nil {
				web.Error(w, r, log, err)
				return
			}
			v.Runs = append(v.Runs, runs...)
		}
		web.Render(w, r, log, views.AdminHostsPage(v), nil)
	}
}

// hostOpForm starts a host operation from the hosts page and shows its run.
func hostOpForm(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore, op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		h, err := hostFromParam(r.Context(), s, r)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		in := hostOpRequest{Reason: r.PostForm.Get("reason")}
		if v := strings.TrimSpace(r.PostForm.Get("deadline")); v != "" {
			t, err := time.Parse(views.HostOpTime, v)
			if err != nil {
				sessions.Flash(w, r, "error", "Not started: the deadline must be a date and time.")
				web.Redirect(w, r, views.AdminHostsURL)
				return
			}
			in.Deadline = &t
		}
		run, err := startHostOp(r.Context(), s, q, web.Actor(r), h, op, in)
		if err != nil {
			if flashProblem(w, r, sessions, err, "Not started") {
				web.Redirect(w, r, views.AdminHostsURL)
				return
			}
			web.Error(w, r, log, err)
			return
		}
		sessions.Flash(w, r, "success", fmt.Sprintf("Started %s of host %s (run %d).", op, h.Name, run.ID))
		web.Redirect(w, r, views.AdminRunURL(run.ID))
	}
}

func apiHosts(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		hs, err := s.HostsWithLoad(r.Context())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		if hs == nil {
			hs = []store.HostLoad{}
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"items": hs, "next_cursor": ""})
	}
}

// apiHostOp starts a host operation: 202 with its run (a dry run: 200 with the plan).
func apiHostOp(log *slog.Logger, s *store.Store, q Enqueuer, op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in hostOpRequest
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		h, err := hostFromParam(r.Context(), s, r)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		if in.DryRun {
			params, err := hostOpParams(s.Now(), h, op, in)
			if err != nil {
				web.Error(w, r, log, err)
				return
			}
			writeRunbookPlan(w, r, log, s, jobs.HostOpRunbooks[op], 0, params)
			return
		}
		run, err := startHostOp(r.Context(), s, q, web.Actor(r), h, op, in)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		w.Header().Set("Location", apiRunURL(run.ID))
		writeRun(w, r, log, s, http.StatusAccepted, run.ID)
	}
}

// moveOffHost starts moving a devserver off a host that is going away.
func moveOffHost(ctx context.Context, s *store.Store, q Enqueuer, who store.Actor, u store.User, name string) (store.DevserverMigration, error) {
	d, err := allowedDevserver(ctx, s, u, name, store.CanMoveOffHost)
	if err != nil {
		return store.DevserverMigration{}, err
	}
	var m store.DevserverMigration
	err = s.InTx(ctx, func(tx *store.Tx) error {
		d, err := tx.DevserverByID(ctx, d.ID)
		if err != nil {
			return err
		}
		h, err := s.Host(ctx, d.HostID)
		if err != nil {
			return err
		}
		if err := store.CheckMoveOffHost(h, d); err != nil {
			return err
		}
		if m, err = tx.StartHostMigration(ctx, who, d, nil, "Moving off host "+h.Name+" ("+h.State+"): step 1 of 5, backing up"); err != nil {
			return err
		}
		return q.Enqueue(ctx, tx, jobs.MigrateArgs{MigrationID: m.ID})
	})
	return m, err
}

func showMoveOffHost(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := *web.User(r)
		d, err := allowedDevserver(r.Context(), s, u, chi.URLParam(r, "name"), store.CanMoveOffHost)
		var h store.Host
		if err == nil {
			h, err = s.Host(r.Context(), d.HostID)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		v := views.MoveOffHostView{Devserver: d, Host: h}
		var ce *store.ConflictError
		if err := store.CheckMoveOffHost(h, d); errors.As(err, &ce) {
			v.Problem = ce.Message
		}
		web.Render(w, r, log, views.MoveOffHostPage(v), nil)
	}
}

func postMoveOffHost(log *slog.Logger, s *store.Store, q Enqueuer, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		name := chi.URLParam(r, "name")
		m, err := moveOffHost(r.Context(), s, q, web.Actor(r), *web.User(r), name)
		afterChange(w, r, log, sessions, name, "Moving "+name+" to host "+m.ToHost+" in "+m.ToRegion+".", err)
	}
}

func apiMoveOffHost(log *slog.Logger, s *store.Store, q Enqueuer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m, err := moveOffHost(r.Context(), s, q, web.Actor(r), *web.User(r), chi.URLParam(r, "name"))
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusAccepted, m)
	}
}
