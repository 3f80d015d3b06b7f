// Package testsupport holds helpers that tests of several packages share:
// the peers they start (moto_server, redis-server), the stubs and fakes
// they run in process (STS, FakeSTS, an IdP and its Keys),
// Eventually for what happens in its own time, a log buffer safe for
// concurrent writers, the forms a leaked secret could take, and a reader of
// Markdown anchors. Of tokenvendor's packages it imports only the pure
// policy and partition (for Role), so that the tests of every other
// package may import it; policy's and partition's own tests do not.
package testsupport

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/go-chi/chi/v5"
)

// Buffer is a bytes.Buffer that goroutines may write to concurrently, for
// logs read back by a test.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// JSONLogger logs JSON lines to w, debug level and up.
func JSONLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Encodings returns secret as it would read in plain text, JSON, base64
// (standard and URL-safe, padded or not) and hex, so that a test looking
// for a leak finds it in any of them.
func Encodings(secret string) []string {
	b := []byte(secret)
	j, _ := json.Marshal(secret)
	return []string{
		secret,
		string(j[1 : len(j)-1]),
		base64.StdEncoding.EncodeToString(b),
		base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b),
		base64.RawURLEncoding.EncodeToString(b),
		hex.EncodeToString(b),
	}
}

// Policy is a session policy template of one statement, reading the
// tenant's objects in a shared bucket, for tests that need a valid one.
const Policy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::data/{{ .TenantID }}/*"}]}`

// HandlerClient is an HTTP client that serves every request with h in
// process, whatever its URL: no socket, no goroutine left waiting on one,
// so that code under test runs inside a testing/synctest bubble, where
// timers fire as soon as everything else waits.
func HandlerClient(h http.Handler) *http.Client {
	return &http.Client{Transport: handlerTransport{h}}
}

type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	res := rec.Result()
	res.Request = r
	return res, nil
}

// BareHandler answers POST /credentials with a fixed JSON body of size
// bytes through the router the service uses: what serving credentials
// costs at the least, for benchmarks to compare the service with.
func BareHandler(size int) http.Handler {
	body := []byte(`{"pad":"` + strings.Repeat("x", max(0, size-11)) + `"}` + "\n")
	r := chi.NewRouter()
	r.Post("/credentials", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
	})
	return r
}
