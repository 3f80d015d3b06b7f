// Package limit keeps one token bucket per key (a caller, a tenant) in a
// bounded LRU, so memory stays bounded however many distinct keys appear.
package limit

import (
	"context"
	"errors"
	"math"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// DefaultMaxKeys bounds the buckets kept when Config.MaxKeys is zero.
const DefaultMaxKeys = 100_000

// Config configures a Limiter.
type Config struct {
	// RPS is the sustained rate allowed per key; zero turns the limiter off.
	RPS float64
	// Burst is the bucket size; default the rate rounded up, at least 1.
	Burst int
	// MaxKeys bounds the keys tracked; the least recently seen bucket is
	// dropped first (and that key starts again with a full bucket).
	MaxKeys int
	Now     func() time.Time
}

// Limiter rate-limits per key. A nil Limiter allows everything.
type Limiter struct {
	cfg     Config
	buckets *lru.Cache[string, *rate.Limiter]
}

// New returns a Limiter, or nil when cfg.RPS is zero.
func New(cfg Config) (*Limiter, error) {
	if cfg.RPS < 0 || cfg.Burst < 0 || cfg.MaxKeys < 0 {
		return nil, errors.New("limit: negative setting")
	}
	if cfg.RPS == 0 {
		return nil, nil
	}
	if cfg.Burst == 0 {
		cfg.Burst = max(1, int(math.Ceil(cfg.RPS)))
	}
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	buckets, err := lru.New[string, *rate.Limiter](cfg.MaxKeys)
	if err != nil {
		return nil, err
	}
	return &Limiter{cfg: cfg, buckets: buckets}, nil
}

// Allow takes a token from key's bucket. When there is none it returns
// false and how long until there is. It does no I/O; ctx is there so that
// it serves where a limiter shared over the network is expected.
func (l *Limiter) Allow(_ context.Context, key string) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	b, ok := l.buckets.Get(key)
	if !ok {
		b = rate.NewLimiter(rate.Limit(l.cfg.RPS), l.cfg.Burst)
		if prev, found, _ := l.buckets.PeekOrAdd(key, b); found {
			b = prev
		}
	}
	now := l.cfg.Now()
	r := b.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Rate returns the sustained rate per key and the bucket size.
func (l *Limiter) Rate() (rps float64, burst int) {
	if l == nil {
		return 0, 0
	}
	return l.cfg.RPS, l.cfg.Burst
}

// Len is the number of keys tracked.
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	return l.buckets.Len()
}
