// Package cache keeps values that expire, such as temporary credentials, in a
// bounded LRU so that callers never wait on the upstream for a warm key:
//
//   - refresh-ahead: once a value's remaining life falls below a share of its
//     lifetime (with jitter, so many keys do not refresh in one second), it is
//     still served while one background fetch per key, at a bounded rate,
//     replaces it;
//   - minimum remaining life: a value with less than MinRemaining left is not
//     served; the caller waits for a fresh one;
//   - stale-if-error: when that fetch fails with a recoverable error, the old
//     value is served (Result Stale) down to a hard floor, and fetches back
//     off exponentially;
//   - negative caching: an irrecoverable failure evicts the key and is
//     returned to every caller, without fetching, for a backoff period;
//   - coalescing: concurrent fetches for one key are one fetch, run on a
//     context detached from any caller, so one caller hanging up does not
//     fail the others.
//
// It knows nothing of AWS: the caller says which errors are recoverable.
package cache

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
)

// Result says how a Get was answered.
type Result string

// Results of a Get.
const (
	Hit   Result = "hit"   // a cached value, fresh or being refreshed ahead
	Miss  Result = "miss"  // the caller waited on a fetch (or got a cached failure)
	Stale Result = "stale" // a cached value below its minimum remaining life, because refreshing failed
)

// Fetch produces a fresh value and the time it expires. It runs on a context
// detached from any one caller, bounded by Config.FetchTimeout.
type Fetch[V any] func(ctx context.Context) (V, time.Time, error)

// Config configures a Cache. Zero values take the defaults.
type Config struct {
	// MaxEntries bounds the keys held; least recently used go first. Default 10,000.
	MaxEntries int
	// RefreshAhead is the share of a value's lifetime that must remain for it
	// to be served without starting a background refresh. Default 0.5.
	RefreshAhead float64
	// Jitter is the share of the lifetime by which a refresh-ahead may start
	// earlier, chosen at random per value. Default 0.1.
	Jitter float64
	// MinRemaining is the least remaining life a value is served with, unless
	// refreshing it fails recoverably. Default: a quarter of its lifetime.
	MinRemaining time.Duration
	// StaleFloor is the least remaining life a stale value is served with.
	// Default 2 minutes.
	StaleFloor time.Duration
	// FetchTimeout bounds one fetch, shared by every caller waiting on it. Default 10 s.
	FetchTimeout time.Duration
	// Recoverable says whether a fetch error is transient (throttling, a
	// timeout, a refused connection). Default: no error is.
	Recoverable func(error) bool
	// RetryBase and RetryMax bound the exponential backoff after recoverable
	// failures. Defaults 1 s and 30 s.
	RetryBase, RetryMax time.Duration
	// NegativeBase and NegativeMax bound how long an irrecoverable failure is
	// remembered. Defaults 5 s and 5 min.
	NegativeBase, NegativeMax time.Duration
	// BackgroundRate bounds background refreshes per second (burst the same).
	// Default 50.
	BackgroundRate float64
	// Now is the clock; Rand returns numbers in [0, 1) for the jitter.
	Now  func() time.Time
	Rand func() float64
	// OnEvict is called when a key is dropped to respect MaxEntries.
	OnEvict func()
}

// Cache is a bounded cache of expiring values. It is safe for concurrent use.
type Cache[V any] struct {
	cfg      Config
	entries  *lru.Cache[string, *entry[V]]
	failures *lru.Cache[string, failure]
	flights  singleflight.Group
	limiter  *rate.Limiter
	bg       sync.WaitGroup
}

type entry[V any] struct {
	value        V
	expires      time.Time
	refreshAt    time.Time
	minRemaining time.Duration
	refreshing   atomic.Bool // a background refresh is running

	mu       sync.Mutex
	failures int       // consecutive recoverable refresh failures
	retryAt  time.Time // no refresh before this, after a failure
}

// failure is a remembered fetch error for a key with no usable value.
type failure struct {
	err   error
	until time.Time
	count int
}

// New returns an empty cache.
func New[V any](cfg Config) (*Cache[V], error) {
	setDefault(&cfg.MaxEntries, 10_000)
	setDefault(&cfg.RefreshAhead, 0.5)
	setDefault(&cfg.Jitter, 0.1)
	setDefault(&cfg.StaleFloor, DefaultStaleFloor)
	setDefault(&cfg.FetchTimeout, 10*time.Second)
	setDefault(&cfg.RetryBase, time.Second)
	setDefault(&cfg.RetryMax, 30*time.Second)
	setDefault(&cfg.NegativeBase, 5*time.Second)
	setDefault(&cfg.NegativeMax, 5*time.Minute)
	setDefault(&cfg.BackgroundRate, 50)
	if cfg.Recoverable == nil {
		cfg.Recoverable = func(error) bool { return false }
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.OnEvict == nil {
		cfg.OnEvict = func() {}
	}
	var errs []error
	if cfg.MaxEntries < 0 || cfg.MinRemaining < 0 || cfg.StaleFloor < 0 || cfg.FetchTimeout < 0 || cfg.BackgroundRate < 0 {
		errs = append(errs, errors.New("negative setting"))
	}
	if cfg.RefreshAhead < 0 || cfg.RefreshAhead > 1 || cfg.Jitter < 0 || cfg.RefreshAhead+cfg.Jitter > 1 {
		errs = append(errs, errors.New("refresh-ahead and jitter must be shares of the lifetime adding up to at most 1"))
	}
	if cfg.MinRemaining > 0 && cfg.StaleFloor >= cfg.MinRemaining {
		errs = append(errs, errors.New("stale floor must be below the minimum remaining life"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	entries, err := lru.New[string, *entry[V]](cfg.MaxEntries)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	failures, err := lru.New[string, failure](cfg.MaxEntries)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	burst := max(1, int(cfg.BackgroundRate))
	return &Cache[V]{
		cfg:      cfg,
		entries:  entries,
		failures: failures,
		limiter:  rate.NewLimiter(rate.Limit(cfg.BackgroundRate), burst),
	}, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Get returns the value for key, fetching it when there is no usable one.
// A caller whose ctx ends stops waiting without cancelling the fetch for
// the others.
func (c *Cache[V]) Get(ctx context.Context, key string, fetch Fetch[V]) (V, Result, error) {
	var zero V
	now := c.cfg.Now()
	if e, ok := c.entries.Get(key); ok {
		left := e.expires.Sub(now)
		if left > e.minRemaining {
			if !now.Before(e.refreshAt) {
				c.refreshAhead(ctx, key, e, fetch, now)
			}
			return e.value, Hit, nil
		}
		if left > c.cfg.StaleFloor {
			if e.backingOff(now) {
				return e.value, Stale, nil
			}
			v, err := c.fetch(ctx, key, fetch)
			switch {
			case err == nil:
				return v, Miss, nil
			case c.cfg.Recoverable(err) && ctx.Err() == nil:
				return e.value, Stale, nil
			default:
				return zero, Miss, err
			}
		}
	}
	if f, ok := c.failures.Get(key); ok && now.Before(f.until) {
		return zero, Miss, f.err
	}
	v, err := c.fetch(ctx, key, fetch)
	return v, Miss, err
}

// DefaultStaleFloor is Config.StaleFloor when it is zero.
const DefaultStaleFloor = 2 * time.Minute

// CheckLifetime reports whether values that live for life can be served as
// cfg says: a lifetime under twice the minimum remaining life leaves no room
// to refresh ahead, and a minimum remaining life at or below the stale floor
// leaves no room to serve stale. It is the one rule behind both the config
// check and the check of clamped durations at start-up.
func (cfg Config) CheckLifetime(life time.Duration) error {
	floor := cfg.StaleFloor
	if floor == 0 {
		floor = DefaultStaleFloor
	}
	minRemaining := cfg.MinRemaining
	if minRemaining == 0 {
		minRemaining = life / 4
	}
	switch {
	case life < 2*minRemaining:
		return fmt.Errorf("%s is less than twice the minimum remaining life %s", life, minRemaining)
	case minRemaining <= floor:
		return fmt.Errorf("its minimum remaining life %s is not above the stale floor %s", minRemaining, floor)
	}
	return nil
}

// CheckLifetime is Config.CheckLifetime for this cache's settings.
func (c *Cache[V]) CheckLifetime(life time.Duration) error { return c.cfg.CheckLifetime(life) }

// Len is the number of keys held.
func (c *Cache[V]) Len() int { return c.entries.Len() }

// Wait blocks until background refreshes in progress have finished.
func (c *Cache[V]) Wait() { c.bg.Wait() }

// fetch joins or starts the one fetch for key and waits for it or for ctx.
func (c *Cache[V]) fetch(ctx context.Context, key string, fetch Fetch[V]) (V, error) {
	var zero V
	select {
	case r := <-c.flights.DoChan(key, c.flight(ctx, key, fetch)):
		if r.Err != nil {
			return zero, r.Err
		}
		return r.Val.(*entry[V]).value, nil
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// refreshAhead starts a background refresh of e unless one is running, the
// key is backing off after a failure, or the background rate is spent.
func (c *Cache[V]) refreshAhead(ctx context.Context, key string, e *entry[V], fetch Fetch[V], now time.Time) {
	if e.backingOff(now) || !e.refreshing.CompareAndSwap(false, true) {
		return
	}
	if !c.limiter.AllowN(now, 1) {
		e.refreshing.Store(false)
		return
	}
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		defer e.refreshing.Store(false)
		<-c.flights.DoChan(key, c.flight(context.WithoutCancel(ctx), key, fetch))
	}()
}

func (c *Cache[V]) flight(ctx context.Context, key string, fetch Fetch[V]) func() (any, error) {
	return func() (any, error) {
		// A flight that ended just before this one started may have stored
		// a value that needs no refresh.
		if e, ok := c.entries.Peek(key); ok && c.cfg.Now().Before(e.refreshAt) {
			return e, nil
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.FetchTimeout)
		defer cancel()
		v, expires, err := fetch(fctx)
		now := c.cfg.Now()
		if err != nil {
			c.recordFailure(key, err, now)
			return nil, err
		}
		e := c.newEntry(v, now, expires)
		c.failures.Remove(key)
		if evicted := c.entries.Add(key, e); evicted {
			c.cfg.OnEvict()
		}
		return e, nil
	}
}

// recordFailure backs a cached value off after a recoverable failure, and
// otherwise evicts it and remembers the failure.
func (c *Cache[V]) recordFailure(key string, err error, now time.Time) {
	recoverable := c.cfg.Recoverable(err)
	if e, ok := c.entries.Peek(key); ok {
		if recoverable && e.expires.Sub(now) > c.cfg.StaleFloor {
			e.mu.Lock()
			e.failures++
			e.retryAt = now.Add(backoff(c.cfg.RetryBase, c.cfg.RetryMax, e.failures))
			e.mu.Unlock()
			return
		}
		// Irrecoverable, or too close to expiry to serve stale.
		c.entries.Remove(key)
	}
	base, limit := c.cfg.NegativeBase, c.cfg.NegativeMax
	if recoverable {
		base, limit = c.cfg.RetryBase, c.cfg.RetryMax
	}
	count := 1
	if f, ok := c.failures.Peek(key); ok {
		count = f.count + 1
	}
	c.failures.Add(key, failure{err: err, until: now.Add(backoff(base, limit, count)), count: count})
}

func (c *Cache[V]) newEntry(v V, now, expires time.Time) *entry[V] {
	life := expires.Sub(now)
	minRemaining := c.cfg.MinRemaining
	if minRemaining == 0 {
		minRemaining = life / 4
	}
	ahead := time.Duration((c.cfg.RefreshAhead + c.cfg.Rand()*c.cfg.Jitter) * float64(life))
	return &entry[V]{
		value:        v,
		expires:      expires,
		refreshAt:    expires.Add(-max(ahead, minRemaining)),
		minRemaining: minRemaining,
	}
}

func (e *entry[V]) backingOff(now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return now.Before(e.retryAt)
}

// backoff is base doubled for each failure after the first, at most limit.
func backoff(base, limit time.Duration, failures int) time.Duration {
	d := base
	for i := 1; i < failures && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}
