// Package cache keeps values that expire, such as temporary credentials, in a
// bounded LRU, and makes concurrent misses for one key share a single fetch.
// It knows nothing of AWS.
package cache

import (
	"context"
	"errors"
	"fmt"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"
)

// Result says how a Get was answered.
type Result string

// Results of a Get.
const (
	Hit  Result = "hit"
	Miss Result = "miss"
)

// Fetch produces a fresh value and the time it expires. It runs on a context
// detached from any one caller, bounded by Config.FetchTimeout.
type Fetch[V any] func(ctx context.Context) (V, time.Time, error)

// Config configures a Cache.
type Config struct {
	// MaxEntries bounds the number of keys held; the least recently used
	// key is dropped first. Default 10,000.
	MaxEntries int
	// RefreshMargin is how long before its expiry a value stops being
	// served from the cache. Default 5 minutes.
	RefreshMargin time.Duration
	// FetchTimeout bounds one fetch, shared by every caller waiting on it.
	// Default 10 seconds.
	FetchTimeout time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Cache is a bounded cache of expiring values with coalesced fetches.
type Cache[V any] struct {
	cfg     Config
	entries *lru.Cache[string, entry[V]]
	flights singleflight.Group
}

type entry[V any] struct {
	value   V
	expires time.Time
}

// New returns an empty cache.
func New[V any](cfg Config) (*Cache[V], error) {
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = 10_000
	}
	if cfg.RefreshMargin == 0 {
		cfg.RefreshMargin = 5 * time.Minute
	}
	if cfg.FetchTimeout == 0 {
		cfg.FetchTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxEntries < 0 || cfg.RefreshMargin < 0 || cfg.FetchTimeout < 0 {
		return nil, errors.New("cache: negative setting")
	}
	entries, err := lru.New[string, entry[V]](cfg.MaxEntries)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	return &Cache[V]{cfg: cfg, entries: entries}, nil
}

// Get returns the value for key while it has more than RefreshMargin left;
// otherwise it calls fetch, once for all concurrent callers of the same key,
// and keeps the result. A caller whose ctx ends stops waiting without
// cancelling the fetch for the others.
func (c *Cache[V]) Get(ctx context.Context, key string, fetch Fetch[V]) (V, Result, error) {
	if e, ok := c.entries.Get(key); ok && c.fresh(e) {
		return e.value, Hit, nil
	}
	ch := c.flights.DoChan(key, func() (any, error) {
		// A caller that lost the race to an earlier flight finds its value here.
		if e, ok := c.entries.Get(key); ok && c.fresh(e) {
			return e, nil
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.FetchTimeout)
		defer cancel()
		v, expires, err := fetch(fctx)
		if err != nil {
			return nil, err
		}
		e := entry[V]{value: v, expires: expires}
		c.entries.Add(key, e)
		return e, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			var zero V
			return zero, Miss, r.Err
		}
		return r.Val.(entry[V]).value, Miss, nil
	case <-ctx.Done():
		var zero V
		return zero, Miss, ctx.Err()
	}
}

// Len is the number of keys held.
func (c *Cache[V]) Len() int { return c.entries.Len() }

func (c *Cache[V]) fresh(e entry[V]) bool {
	return c.cfg.Now().Add(c.cfg.RefreshMargin).Before(e.expires)
}
