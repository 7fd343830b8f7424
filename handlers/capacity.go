package handlers

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/devport/devport/store"
	"github.com/devport/devport/web"
)

// Capacity per region and flavour and the N-1 table, for admins: computed
// from the inventory at every request (no cache), so it is current when a
// drain or a storm has just changed a region. The page is the capacity page
// (adminCapacity); this is its API.

type capacityReporter interface {
	CapacityReport(ctx context.Context) (store.CapacityReport, error)
}

// apiCapacity answers GET /api/v1/capacity.
func apiCapacity(log *slog.Logger, s capacityReporter) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rep, err := s.CapacityReport(r.Context())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, rep)
	}
}
