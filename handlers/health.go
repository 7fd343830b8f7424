package handlers

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/devport/devport/web"
)

// healthz answers while the process serves HTTP at all.
func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// readyz answers 200 when the database and the job runner are up, 503 otherwise.
func readyz(log *slog.Logger, ready func(context.Context) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			log.Warn("Not ready", "error", err)
			web.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": err.Error()})
			return
		}
		web.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}
