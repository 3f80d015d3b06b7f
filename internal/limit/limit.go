// Package limit keeps one token bucket per key (a caller, a tenant) in a
// bounded LRU, so memory stays bounded however many distinct keys appear.
package limit

import (
	"context"
	"errors"
	"math"
	"sync"
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

// Pace spaces calls of one budget (the STS calls of a replica) at a
// sustained rate with a burst, by GCRA: the theoretical arrival time of the
// next call moves on by one interval per call, and a call may go once it is
// no more than burst intervals ahead. A call that must happen waits for its
// turn, taken in order; a call that may be put off (a refresh ahead) goes
// only on a turn that is free now and leaves reserve turns for the others.
// It is safe for concurrent use.
type Pace struct {
	interval time.Duration
	burst    int
	reserve  int
	now      func() time.Time

	mu  sync.Mutex
	tat time.Time
}

// NewPace returns a Pace of rps calls a second with bursts of burst
// (default the rate rounded up, at least 1); calls that may be put off
// leave half the burst.
func NewPace(rps float64, burst int, now func() time.Time) (*Pace, error) {
	if rps <= 0 || burst < 0 {
		return nil, errors.New("limit: a pace needs a positive rate and a burst of at least 0")
	}
	if burst == 0 {
		burst = max(1, int(math.Ceil(rps)))
	}
	if now == nil {
		now = time.Now
	}
	return &Pace{interval: time.Duration(float64(time.Second) / rps), burst: burst, reserve: burst / 2, now: now}, nil
}

// Interval, Burst and Reserve describe the pace: the time between calls at
// the sustained rate, the burst, and the turns a call that may be put off
// leaves.
func (p *Pace) Interval() time.Duration { return p.interval }
func (p *Pace) Burst() int              { return p.burst }
func (p *Pace) Reserve() int            { return p.reserve }

// Take takes the next turn. A call that must happen (spare false) gets it
// when it comes within maxWait, and learns how long to wait for it; a call
// that may be put off gets one only when it is free now and leaves the
// reserve. ok is false when no turn is given.
func (p *Pace) Take(_ context.Context, spare bool, maxWait time.Duration) (wait time.Duration, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	tat := p.tat
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(p.interval)
	wait = next.Add(-time.Duration(p.burst) * p.interval).Sub(now)
	switch {
	case spare && wait+time.Duration(p.reserve)*p.interval > 0:
		return 0, false
	case !spare && wait > maxWait:
		return 0, false
	}
	p.tat = next
	return max(wait, 0), true
}
