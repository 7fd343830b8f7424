package handlers

import (
	"log/slog"
	"net/http"

	"github.com/devport/devport/store"
	"github.com/devport/devport/views"
	"github.com/devport/devport/web"
)

// showSevMetrics charts incidents, follow-ups and exercises; everyone may read it.
func showSevMetrics(log *slog.Logger, s *store.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m, err := s.SevMetrics(r.Context())
		if err != nil {
			web.Error(w, r, log, err)
			return
		}
		web.Render(w, r, log, views.SevMetricsPage(m), nil)
	}
}
