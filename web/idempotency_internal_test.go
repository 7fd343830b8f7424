package web

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/devport/devport/store/storetest"
)

// keyed sends a POST with an Idempotency-Key as a signed-in user through h.
func keyed(h http.Handler, p *Principal, ctx context.Context) *httptest.ResponseRecorder {
	req := httptest.NewRequestWithContext(withPrincipal(ctx, p), "POST", "/api/v1/devservers", strings.NewReader(`{"flavor":"vm.small"}`))
	req.Header.Set("Idempotency-Key", "retry-me")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// A client whose connection drops after the change was made retries with the
// same key and gets the first answer, not "still being processed" for a day.
func TestIdempotencySettlesAfterTheClientWentAway(t *testing.T) {
	s := storetest.New(t)
	p := &Principal{User: storetest.User(t, s, "gone@example.com"), Via: "token", Scope: "full"}
	log := slog.New(slog.DiscardHandler)
	calls := 0
	var cancel context.CancelFunc
	h := Idempotency(log, s)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		cancel() // the client goes away while the answer is written
		WriteJSON(w, http.StatusAccepted, map[string]string{"name": "made-once"})
	}))
	ctx, c := context.WithCancel(context.Background())
	cancel = c
	keyed(h, p, ctx)
	cancel = func() {}
	rec := keyed(h, p, context.Background())
	if rec.Code != http.StatusAccepted || rec.Header().Get("Idempotent-Replayed") != "true" || calls != 1 {
		t.Errorf("retry: %d %q (replayed %q, %d calls), want the first answer replayed", rec.Code, rec.Body.String(), rec.Header().Get("Idempotent-Replayed"), calls)
	}
}

// A request that panicked frees its key, as any server error does, so the
// client may try again.
func TestIdempotencyFreesTheKeyAfterAPanic(t *testing.T) {
	s := storetest.New(t)
	p := &Principal{User: storetest.User(t, s, "panic@example.com"), Via: "token", Scope: "full"}
	log := slog.New(slog.DiscardHandler)
	calls := 0
	h := Recover(log)(Idempotency(log, s)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if calls == 1 {
			panic("a bug")
		}
		WriteJSON(w, http.StatusAccepted, map[string]string{"name": "made"})
	})))
	if rec := keyed(h, p, context.Background()); rec.Code != http.StatusInternalServerError {
		t.Fatalf("first try: %d, want 500", rec.Code)
	}
	if rec := keyed(h, p, context.Background()); rec.Code != http.StatusAccepted || calls != 2 {
		t.Errorf("retry after a panic: %d %s (%d calls), want it served again", rec.Code, rec.Body.String(), calls)
	}
}
