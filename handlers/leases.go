package handlers

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// leaseView fills the lease section of a devserver page for u.
func leaseView(ctx context.Context, s *store.Store, u store.User, d store.Devserver, l views.LeaseView) (views.LeaseView, error) {
	l.Kind = d.Lease.Kind
	l.CanExtend = store.CanExtendDevserver(u, d) && d.Lease.ID != 0 && d.Lease.Kind == store.LeaseShort
	if !l.CanExtend {
		return l, nil
	}
	f, err := s.Flavor(ctx, d.Flavor)
	if err != nil {
		return l, err
	}
	p, err := s.LeasePolicy(ctx, f)
	if err != nil {
		return l, err
	}
	l.MaxDate, l.MaxDays = p.MaxUntil(s.Now()).Format(time.DateOnly), p.MaxLeaseDays
	if l.Until == "" {
		l.Until = l.MaxDate
	}
	return l, nil
}

// extend moves the end of the owner's short lease, within policy.
// A missing end is reported only to whom may extend.
func extend(ctx context.Context, s *store.Store, who store.Actor, u store.User, name string, until *time.Time) (store.Devserver, error) {
	d, err := visibleDevserver(ctx, s, u, name)
	if err != nil {
		return store.Devserver{}, err
	}
	if !store.CanExtendDevserver(u, d) {
		return store.Devserver{}, web.ErrForbidden
	}
	if until == nil {
		return store.Devserver{}, &store.ValidationError{Fields: map[string]string{"until": "is required"}}
	}
	err = s.InTx(ctx, func(tx *store.Tx) error {
		d, err = tx.ExtendLease(ctx, who, d, *until)
		return err
	})
	return d, err
}

func extendDevserver(log *slog.Logger, s *store.Store, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := web.ParseForm(w, r); err != nil {
			web.Error(w, r, log, err)
			return
		}
		u, name := web.User(r), chi.URLParam(r, "name")
		date := r.PostForm.Get("until")
		until, ok := leaseEnd(date)
		var err error
		var d store.Devserver
		if ok {
			d, err = extend(r.Context(), s, web.Actor(r), *u, name, until)
		} else if d, err = visibleDevserver(r.Context(), s, *u, name); err == nil {
			err = web.ErrForbidden
			if store.CanExtendDevserver(*u, d) {
				err = &store.ValidationError{Fields: map[string]string{"until": "must be a date such as 2026-12-31"}}
			}
		}
		if err == nil {
			sessions.Flash(w, r, "success", "Extended the lease of "+d.Name+" until "+d.Lease.EndsAt.UTC().Format("2006-01-02 15:04 UTC")+".")
			web.Redirect(w, r, views.DevserverURL(d.Name))
			return
		}
		form := views.LeaseView{Until: date}
		fields, message, status, ok := web.FormProblem(err)
		if !ok {
			web.Error(w, r, log, err)
			return
		}
		form.Errors, form.Message = fields, message
		// Only the owner gets here with a validation or conflict error: show
		// the page again with the problem next to the form.
		d, err = visibleDevserver(r.Context(), s, *u, name)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		v, err := devserverView(r.Context(), s, *u, d)
		if err == nil {
			v.Lease, err = leaseView(r.Context(), s, *u, d, form)
		}
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.RenderStatus(w, r, log, status, views.DevserverPage(v), nil)
	}
}

type extendRequest struct {
	Until *time.Time `json:"until"`
}

func apiExtendDevserver(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in extendRequest
		if err := web.DecodeJSON(w, r, &in); err != nil {
			web.Error(w, r, log, err)
			return
		}
		d, err := extend(r.Context(), s, web.Actor(r), *web.User(r), chi.URLParam(r, "name"), in.Until)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, d)
	}
}
