// Package audit writes one JSON line per credential decision to a sink of
// its own, apart from the operational log. A line names who asked, for which
// tenant and profile, what was decided and which credentials (by access key
// id) were handed out; never a secret key, a session token or a caller's
// token.
package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Outcomes of a decision.
const (
	Granted = "granted" // credentials handed out
	Refused = "refused" // the caller was turned away (4xx)
	Failed  = "failed"  // the service or STS failed (5xx)
)

// Event is one decision.
type Event struct {
	Time            time.Time  `json:"time"`
	RequestID       string     `json:"request_id"`
	Route           string     `json:"route"`
	RemoteAddr      string     `json:"remote_addr,omitempty"`
	Subject         string     `json:"subject,omitempty"`
	ClientID        string     `json:"client_id,omitempty"`
	TenantID        string     `json:"tenant,omitempty"`
	Profile         string     `json:"profile,omitempty"`
	Outcome         string     `json:"outcome"`
	Status          int        `json:"status"`
	Code            string     `json:"code,omitempty"`
	Refusal         string     `json:"refusal,omitempty"` // why a tenant was refused: other_tenant, unknown, suspended, invalid
	Cache           string     `json:"cache,omitempty"`
	RoleSessionName string     `json:"role_session_name,omitempty"`
	AccessKeyID     string     `json:"access_key_id,omitempty"`
	Expiration      *time.Time `json:"expiration,omitempty"`
}

// Log writes events as JSON lines. It is safe for concurrent use; a nil Log
// records nothing.
type Log struct {
	mu  sync.Mutex
	enc *json.Encoder
}

// New returns a Log writing to w.
func New(w io.Writer) *Log { return &Log{enc: json.NewEncoder(w)} }

// Open returns a Log appending to the file at path, or writing to stdout when
// path is "-", and the closer of the file.
func Open(path string, stdout io.Writer) (*Log, io.Closer, error) {
	if path == "-" {
		return New(stdout), io.NopCloser(nil), nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("audit log: %w", err)
	}
	return New(f), f, nil
}

// Record writes e as one line.
func (l *Log) Record(e Event) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.enc.Encode(e)
}
