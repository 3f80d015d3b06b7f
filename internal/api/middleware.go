package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/audit"
)

type requestIDKey struct{}

// withRequestID gives every request an id of its own, returned in
// X-Request-Id and written in the audit log. An id the caller sends is not
// trusted: it could collide with another request's on purpose.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b [12]byte
		_, _ = rand.Read(b[:])
		id := hex.EncodeToString(b[:])
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
	})
}

func requestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey{}).(string)
	return id
}

// inFlight refuses requests beyond limit served at once, so a flood cannot
// exhaust the service; 0 is no cap.
func (h *handlers) inFlight(limit int) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if limit <= 0 {
			return next
		}
		slots := make(chan struct{}, limit)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case slots <- struct{}{}:
				defer func() { <-slots }()
				next.ServeHTTP(w, r)
			default:
				p := h.fail(w, r, errBusy)
				h.record(audit.Event{
					Time: time.Now().UTC(), RequestID: requestID(r), Route: routePattern(r), RemoteAddr: r.RemoteAddr,
					Outcome: audit.Refused, Status: p.status, Code: p.body.Code,
				})
			}
		})
	}
}
