package handlers

import (
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// deliveryFilter reads the delivery log's filters and page.
func deliveryFilter(r *http.Request) (store.DeliveryFilter, error) {
	limit, after, err := pagination(r)
	if err != nil {
		return store.DeliveryFilter{}, err
	}
	f := store.DeliveryFilter{State: r.URL.Query().Get("state"), Channel: r.URL.Query().Get("channel"), AfterID: after, Limit: limit}
	if f.State != "" && !slices.Contains([]string{store.DeliveryPending, store.DeliverySent, store.DeliveryFailed}, f.State) {
		return f, web.BadRequest("invalid_state", "state must be pending, sent or failed.")
	}
	if f.Channel != "" && !slices.Contains(store.Channels, f.Channel) {
		return f, web.BadRequest("invalid_channel", "channel must be inbox, email or chat.")
	}
	return f, nil
}

func deliveriesPage(r *http.Request, s *store.Store) (page[store.Delivery], store.DeliveryFilter, error) {
	f, err := deliveryFilter(r)
	if err != nil {
		return page[store.Delivery]{}, f, err
	}
	limit := f.Limit
	f.Limit++
	ds, err := s.Deliveries(r.Context(), f)
	f.Limit = limit
	if err != nil {
		return page[store.Delivery]{}, f, err
	}
	p := pageOf(ds, limit, func(v store.Delivery) int64 { return v.ID })
	return p, f, nil
}

func adminDeliveries(log *slog.Logger, s *store.Store, offered store.Offered) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, f, err := deliveriesPage(r, s)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		v := views.DeliveriesView{Deliveries: p.Items, State: f.State, Channel: f.Channel, Offered: offered}
		if p.NextCursor != "" {
			q := url.Values{"cursor": {p.NextCursor}}
			if f.State != "" {
				q.Set("state", f.State)
			}
			if f.Channel != "" {
				q.Set("channel", f.Channel)
			}
			v.Older = views.AdminDeliveriesURL + "?" + q.Encode()
		}
		web.Render(w, r, log, views.AdminDeliveriesPage(v), nil)
	}
}

func retryDelivery(r *http.Request, s *store.Store) (store.Delivery, error) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id <= 0 {
		return store.Delivery{}, store.ErrNotFound
	}
	var d store.Delivery
	err = s.InTx(r.Context(), func(tx *store.Tx) error {
		var err error
		d, err = tx.RetryDelivery(r.Context(), web.Actor(r), id)
		return err
	})
	return d, err
}

func retryDeliveryForm(log *slog.Logger, s *store.Store, sessions *web.SessionStore) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := retryDelivery(r, s)
		if err != nil {
			if _, msg, _, ok := web.FormProblem(err); ok && msg != "" {
				sessions.Flash(w, r, "error", msg)
				web.Redirect(w, r, views.AdminDeliveriesURL)
				return
			}
			web.Error(w, r, log, err)
			return
		}
		sessions.Flash(w, r, "success", "Delivery "+strconv.FormatInt(d.ID, 10)+" ("+d.Channel+" to "+d.Email+") is queued again.")
		web.Redirect(w, r, views.AdminDeliveriesURL)
	}
}

func apiListDeliveries(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, _, err := deliveriesPage(r, s)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, p)
	}
}

func apiRetryDelivery(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := retryDelivery(r, s)
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, d)
	}
}
