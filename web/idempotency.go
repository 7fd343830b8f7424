package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/devport/devport/store"
)

// Idempotency honours the Idempotency-Key header on mutating API calls: the
// first answer is stored, a repeat with the same key gets that answer and
// changes nothing, a repeat while the first is in flight gets 409, and a key
// reused for another request gets 422.
func Idempotency(log *slog.Logger, s *store.Store) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			key := r.Header.Get("Idempotency-Key")
			u := User(r)
			if key == "" || u == nil || r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions {
				next.ServeHTTP(w, r)
				return
			}
			if len(key) > 255 || !printable(key) {
				Error(w, r, log, BadRequest("invalid_idempotency_key", "Idempotency-Key must be 1 to 255 printable characters."))
				return
			}
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
			if err != nil {
				Error(w, r, log, &RequestError{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: "The request body is larger than 1 MiB."})
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			sum := sha256.Sum256(append([]byte(r.Method+" "+r.URL.RequestURI()+"\n"), body...))
			hash := hex.EncodeToString(sum[:])
			prior, err := s.ClaimIdempotencyKey(r.Context(), u.ID, key, r.Method, r.URL.Path, hash)
			if err != nil {
				Error(w, r, log, err)
				return
			}
			if prior != nil {
				switch {
				case prior.RequestHash != hash:
					Error(w, r, log, &RequestError{Status: http.StatusUnprocessableEntity, Code: "idempotency_key_reused",
						Message: "This Idempotency-Key was used for a different request; use a new key."})
				case prior.Status == 0:
					Error(w, r, log, store.Conflict("idempotency_in_flight", "A request with this Idempotency-Key is still being processed; retry shortly."))
				default:
					w.Header().Set("Content-Type", "application/json; charset=utf-8")
					w.Header().Set("Idempotent-Replayed", "true")
					w.WriteHeader(prior.Status)
					_, _ = io.WriteString(w, prior.Body)
				}
				return
			}
			// The answer is kept even when the client has gone (a dropped
			// connection is what a retry with the key is for), and a panic
			// frees the key as any server error does.
			settle := func(status int, body string) {
				ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
				defer cancel()
				if err := s.SettleIdempotencyKey(ctx, u.ID, key, status, body); err != nil {
					log.Error("Could not store the answer to an idempotent request", "key", key, "error", err)
				}
			}
			defer func() {
				if p := recover(); p != nil {
					settle(http.StatusInternalServerError, "")
					panic(p)
				}
			}()
			rec := &recordingWriter{statusWriter: statusWriter{ResponseWriter: w}}
			secret := new(bool)
			next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), secretAnswerKey{}, secret)))
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			answer := rec.body.String()
			if *secret && status < 300 {
				// A secret is shown once: the repeat learns that the first
				// request did its work, not the secret.
				status, answer = http.StatusConflict, secretNotReplayed
			}
			settle(status, answer)
		})
	}
}

type secretAnswerKey struct{}

const secretNotReplayed = `{"error":{"code":"secret_not_replayed","message":"The first request with this Idempotency-Key succeeded and its answer held a secret, which is shown only once; nothing was done again."}}`

// AnswerHoldsSecret tells the Idempotency middleware that this request's
// answer holds a secret (a new token): it is not stored for replay, and a
// repeat with the same key gets 409 secret_not_replayed instead.
func AnswerHoldsSecret(r *http.Request) {
	if p, ok := r.Context().Value(secretAnswerKey{}).(*bool); ok {
		*p = true
	}
}

// recordingWriter passes a response through and keeps a copy of its body.
type recordingWriter struct {
	statusWriter
	body bytes.Buffer
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	w.body.Write(b)
	return w.statusWriter.Write(b)
}
