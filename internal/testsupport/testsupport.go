// Package testsupport holds helpers that tests of several packages share:
// a log buffer safe for concurrent writers, and the forms a leaked secret
// could take.
package testsupport

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
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
