// Package registry is the optional allow-list of tenant ids: inline, from a
// file of one id a line (with, optionally, the tenant's attributes after
// it: "acme account_id=222233334444 tier=premium"), or both. The file is read again when it changes, so
// a new tenant can be admitted without a restart.
package registry

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Registry.
type Config struct {
	// Allow lists tenant ids inline.
	Allow []string
	// File names a file of tenant ids, one a line; blank lines and lines
	// starting with # are ignored.
	File string
	// Check validates each id; ids it refuses are left out and logged.
	Check func(id string) error
	// Interval is how often the file is checked for changes; default 5 s.
	Interval time.Duration
	Logger   *slog.Logger
}

// Registry answers whether a tenant is known. A nil Registry knows every
// tenant: no allow-list is configured.
type Registry struct {
	cfg     Config
	ids     atomic.Pointer[map[string]map[string]string] // id -> attributes (nil: none)
	mu      sync.Mutex
	modTime time.Time
	size    int64
}

// New returns a Registry, or nil when neither Allow nor File is set. The
// file must be readable at start-up.
func New(cfg Config) (*Registry, error) {
	if len(cfg.Allow) == 0 && cfg.File == "" {
		return nil, nil
	}
	if cfg.Interval == 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Check == nil {
		cfg.Check = func(string) error { return nil }
	}
	r := &Registry{cfg: cfg}
	if _, err := r.Refresh(); err != nil {
		return nil, err
	}
	return r, nil
}

// Allowed reports whether id is a known tenant.
func (r *Registry) Allowed(id string) bool {
	if r == nil {
		return true
	}
	_, ok := (*r.ids.Load())[id]
	return ok
}

// Attributes are the attributes the file gives tenant id, nil when none.
func (r *Registry) Attributes(id string) map[string]string {
	if r == nil {
		return nil
	}
	return (*r.ids.Load())[id]
}

// Len is the number of known tenants.
func (r *Registry) Len() int { return len(*r.ids.Load()) }

// Run checks the file for changes every Interval until ctx ends.
func (r *Registry) Run(ctx context.Context) {
	if r == nil || r.cfg.File == "" {
		return
	}
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if changed, err := r.Refresh(); err != nil {
				r.cfg.Logger.Error("tenant registry file unreadable; keeping the tenants known so far", "file", r.cfg.File, "err", err)
			} else if changed {
				r.cfg.Logger.Info("tenant registry reloaded", "file", r.cfg.File, "tenants", r.Len())
			}
		}
	}
}

// Refresh reads the file again if it changed since the last read, and
// reports whether the set of tenants was replaced.
func (r *Registry) Refresh() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := map[string]map[string]string{}
	for _, id := range r.cfg.Allow {
		r.add(ids, []string{id}, "tenants.allow")
	}
	if r.cfg.File != "" {
		fi, err := os.Stat(r.cfg.File)
		if err != nil {
			return false, fmt.Errorf("tenant registry: %w", err)
		}
		if r.ids.Load() != nil && fi.ModTime().Equal(r.modTime) && fi.Size() == r.size {
			return false, nil
		}
		b, err := os.ReadFile(r.cfg.File)
		if err != nil {
			return false, fmt.Errorf("tenant registry: %w", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			r.add(ids, strings.Fields(line), r.cfg.File)
		}
		if err := sc.Err(); err != nil {
			return false, fmt.Errorf("tenant registry: %w", err)
		}
		r.modTime, r.size = fi.ModTime(), fi.Size()
	}
	r.ids.Store(&ids)
	return true, nil
}

// add adds a tenant: its id, then its attributes as key=value.
func (r *Registry) add(ids map[string]map[string]string, fields []string, source string) {
	id := fields[0]
	if err := r.cfg.Check(id); err != nil {
		r.cfg.Logger.Warn("tenant registry entry refused", "source", source, "err", err)
		return
	}
	var attrs map[string]string
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			r.cfg.Logger.Warn("tenant registry entry refused: an attribute is not key=value", "source", source, "tenant", id)
			return
		}
		if attrs == nil {
			attrs = map[string]string{}
		}
		attrs[k] = v
	}
	ids[id] = attrs
}
