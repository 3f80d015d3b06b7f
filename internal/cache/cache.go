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
//     fail the others;
//   - an optional shared tier (see Shared) behind the process's own entries:
//     a process that misses, or must refresh, first takes what another
//     process stored there, and across processes one at a time fetches a
//     key, under a lease, while the others wait for its value.
//
// It knows nothing of AWS or of the shared tier's store: the caller says
// which errors are recoverable, and the tier is an interface.
package cache

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
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

// Key names a cached value. Keys of one Group are dropped together
// (RemoveGroup) and, in a shared tier, sit side by side (one Redis Cluster
// slot), so that what concerns a whole group is read in the same round trip
// as a key of it.
type Key struct {
	Group string
	ID    string
}

// Shared is a tier of values that several processes see (Redis, across the
// replicas of a service). The cache consults it only when a key has no
// usable value in the process, so a hit never reaches it.
//
// It is help, never a dependency: an implementation hides its own failures.
// An Acquire that cannot be answered grants a lease that stores nothing, so
// that each process fetches alone.
type Shared[V any] interface {
	// Watch reports, by closing done, that key's value or failure note was
	// stored or its lease given back, by any process; or, when the tier
	// cannot promise to tell, after a short pause. stop ends the watch.
	// Watching before Acquire misses nothing stored in between.
	Watch(key Key) (done <-chan struct{}, stop func())
	// Acquire looks key up and, unless the tier holds a value that expires
	// after q.After or a note that the latest fetch failed, takes the key's
	// fetch lease, in one round trip. A lease is kept alive while its
	// holder fetches, for q.Lease at most, and lapses soon after a holder
	// that can no longer reach the tier.
	Acquire(ctx context.Context, key Key, q Query) Acquired[V]
}

// Query says what Acquire looks for.
type Query struct {
	// After is the expiry a value must pass to be worth taking: the
	// process's own value's, or zero when it holds none.
	After time.Time
	// Lease is the longest a lease is kept alive: the fetch's.
	Lease time.Duration
	// Force takes the lease whatever the tier holds: the value it returned
	// last cannot be served.
	Force bool
}

// Acquired is the answer to an Acquire: what the tier holds (a value when
// Expires is set, the note of a failed fetch when Failure is), and, when
// this process is to fetch, its lease.
type Acquired[V any] struct {
	Stored[V]
	Lease Lease[V]
	// Lapse, when another process holds the lease, is how soon it lapses
	// unless its holder keeps it alive: the time to look again if no word
	// comes before. Zero: the tier does not say; wait for word.
	Lapse time.Duration
}

// Lease is one process's right to fetch a key. Exactly one of its methods
// is called, once.
type Lease[V any] interface {
	// Store keeps s under the key (its value until s.Expires, replacing any
	// note; or, with s.Failure, the note alone), gives the lease back and
	// tells the watchers.
	Store(ctx context.Context, s Stored[V])
	// Release gives the lease back unused and tells the watchers.
	Release(ctx context.Context)
}

// Stored is what the shared tier keeps for a key: a value (when Expires is
// set) with the time it was fetched, so that every process plans its
// refresh on the same lifetime; and the note of a fetch that failed since,
// so that other processes do not repeat it at once.
type Stored[V any] struct {
	Value   V
	Fetched time.Time
	Expires time.Time
	Failure *Failure
}

// Failure is the note of a failed fetch, kept until Until.
type Failure struct {
	Recoverable bool
	Until       time.Time
}

// ElsewhereError is what a process gets that waited on another process's
// fetch of a key: that fetch failed, or did not deliver within the
// FetchTimeout of the process that waited. Recoverable says whether it
// counts as a recoverable failure (served stale, retried after a backoff).
type ElsewhereError struct {
	Recoverable bool
	Reason      string
}

func (e *ElsewhereError) Error() string { return "fetch in another process: " + e.Reason }

// Skip marks an error that a Fetch returns without having asked the
// upstream (a rule refused first, or there was no budget for a refresh):
// the cache neither remembers it nor notes it in the shared tier; a
// refresh ahead that was skipped is tried again after RetryBase.
func Skip(err error) error { return &skipError{err} }

type skipError struct{ err error }

func (e *skipError) Error() string { return e.err.Error() }
func (e *skipError) Unwrap() error { return e.err }

func skipped(err error) bool {
	var s *skipError
	return errors.As(err, &s)
}

// refreshKey marks the context of a refresh ahead.
type refreshKey struct{}

// Refreshing reports whether a Fetch runs ahead of need, for a value the
// cache still serves, rather than for a caller that waits.
func Refreshing(ctx context.Context) bool {
	b, _ := ctx.Value(refreshKey{}).(bool)
	return b
}

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
	// Background, when set, gives a background refresh its context, from
	// the caller's whose hit started it (detached from its cancellation
	// already); done is called when the refresh ends. Tracing uses it to
	// give a refresh its own trace rather than the hit's.
	Background func(ctx context.Context) (bctx context.Context, done func())
}

// Cache is a bounded cache of expiring values. It is safe for concurrent use.
type Cache[V any] struct {
	cfg      Config
	shared   Shared[V]
	entries  *lru.Cache[Key, *entry[V]]
	failures *lru.Cache[Key, failure]
	flights  singleflight.Group
	limiter  *rate.Limiter
	bg       sync.WaitGroup

	// removals counts RemoveGroup calls per group, so that a fetch under
	// way when its group was removed is not kept.
	removalsMu sync.Mutex
	removals   map[string]uint64
}

type entry[V any] struct {
	value        V
	fetched      time.Time
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

// New returns an empty cache. With shared nil, the cache is the process's
// alone.
func New[V any](cfg Config, shared Shared[V]) (*Cache[V], error) {
	setDefault(&cfg.MaxEntries, DefaultMaxEntries)
	setDefault(&cfg.RefreshAhead, DefaultRefreshAhead)
	setDefault(&cfg.Jitter, DefaultJitter)
	setDefault(&cfg.StaleFloor, DefaultStaleFloor)
	setDefault(&cfg.FetchTimeout, DefaultFetchTimeout)
	setDefault(&cfg.RetryBase, time.Second)
	setDefault(&cfg.RetryMax, 30*time.Second)
	setDefault(&cfg.NegativeBase, 5*time.Second)
	setDefault(&cfg.NegativeMax, 5*time.Minute)
	setDefault(&cfg.BackgroundRate, DefaultBackgroundRate)
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
	if err := CheckRefresh(cfg.RefreshAhead, cfg.Jitter); err != nil {
		errs = append(errs, err)
	}
	if err := CheckStaleFloor(cfg.StaleFloor, cfg.MinRemaining); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	entries, err := lru.New[Key, *entry[V]](cfg.MaxEntries)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	failures, err := lru.New[Key, failure](cfg.MaxEntries)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	burst := max(1, int(cfg.BackgroundRate))
	return &Cache[V]{
		cfg:      cfg,
		shared:   shared,
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
func (c *Cache[V]) Get(ctx context.Context, key Key, fetch Fetch[V]) (V, Result, error) {
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
			case c.recoverable(err) && ctx.Err() == nil:
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

// The defaults of a Config's zero fields.
const (
	DefaultMaxEntries     = 10_000
	DefaultRefreshAhead   = 0.5
	DefaultJitter         = 0.1
	DefaultStaleFloor     = 2 * time.Minute
	DefaultFetchTimeout   = 10 * time.Second
	DefaultBackgroundRate = 50
)

// CheckRefresh reports whether ahead and jitter are shares of a lifetime
// a value can be refreshed by: ahead above 0, jitter at least 0, together
// below 1.
func CheckRefresh(ahead, jitter float64) error {
	if ahead <= 0 || jitter < 0 || ahead+jitter >= 1 {
		return errors.New("refresh_ahead and refresh_jitter are shares of the lifetime: refresh_ahead > 0, refresh_jitter >= 0, together below 1")
	}
	return nil
}

// CheckStaleFloor reports whether a stale floor fits the least remaining
// life values are handed out with (0: a quarter of their lifetime).
func CheckStaleFloor(floor, minRemaining time.Duration) error {
	if minRemaining > 0 && floor >= minRemaining {
		return fmt.Errorf("the stale floor must be below the least remaining life (%s)", minRemaining)
	}
	return nil
}

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

// Remove drops key's value, so that the next Get fetches.
func (c *Cache[V]) Remove(key Key) { c.entries.Remove(key) }

// RemoveGroup drops the values and remembered failures of every key of
// group. It walks every key held: it is for rare events, such as a tenant
// suspended, not for requests.
func (c *Cache[V]) RemoveGroup(group string) {
	c.removalsMu.Lock()
	if c.removals == nil {
		c.removals = map[string]uint64{}
	}
	c.removals[group]++
	c.removalsMu.Unlock()
	for _, k := range c.entries.Keys() {
		if k.Group == group {
			c.entries.Remove(k)
		}
	}
	for _, k := range c.failures.Keys() {
		if k.Group == group {
			c.failures.Remove(k)
		}
	}
}

// Len is the number of keys held.
func (c *Cache[V]) Len() int { return c.entries.Len() }

// Wait blocks until background refreshes in progress have finished.
func (c *Cache[V]) Wait() { c.bg.Wait() }

// fetch joins or starts the one fetch for key and waits for it or for ctx.
func (c *Cache[V]) fetch(ctx context.Context, key Key, fetch Fetch[V]) (V, error) {
	var zero V
	select {
	case r := <-c.flights.DoChan(flightKey(key), c.flight(ctx, key, fetch)):
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
func (c *Cache[V]) refreshAhead(ctx context.Context, key Key, e *entry[V], fetch Fetch[V], now time.Time) {
	if e.backingOff(now) || !e.refreshing.CompareAndSwap(false, true) {
		return
	}
	if !c.limiter.AllowN(now, 1) {
		e.refreshing.Store(false)
		return
	}
	bctx, done := context.WithValue(context.WithoutCancel(ctx), refreshKey{}, true), func() {}
	if c.cfg.Background != nil {
		bctx, done = c.cfg.Background(bctx)
	}
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		defer e.refreshing.Store(false)
		defer done()
		<-c.flights.DoChan(flightKey(key), c.flight(bctx, key, fetch))
	}()
}

// flightKey is key as singleflight names it: the group's length first, so
// that no two keys meet.
func flightKey(key Key) string { return strconv.Itoa(len(key.Group)) + ":" + key.Group + key.ID }

// removed is how many times key's group was removed.
func (c *Cache[V]) removed(key Key) uint64 {
	c.removalsMu.Lock()
	defer c.removalsMu.Unlock()
	return c.removals[key.Group]
}

func (c *Cache[V]) flight(ctx context.Context, key Key, fetch Fetch[V]) func() (any, error) {
	return func() (any, error) {
		removed := c.removed(key)
		// A flight that ended just before this one started may have stored
		// a value that needs no refresh.
		held, _ := c.entries.Peek(key)
		if held != nil && c.cfg.Now().Before(held.refreshAt) {
			return held, nil
		}
		ctx := context.WithoutCancel(ctx)
		var e *entry[V]
		var err error
		if c.shared == nil {
			e, err = c.fetchOne(ctx, fetch)
		} else {
			e, err = c.fetchShared(ctx, key, fetch, held)
		}
		if err != nil {
			c.recordFailure(key, err, c.cfg.Now())
			return nil, err
		}
		c.failures.Remove(key)
		if c.removed(key) != removed {
			// Its group was removed while it fetched (a tenant suspended):
			// the caller that waited gets it, the cache does not keep it.
			return e, nil
		}
		if evicted := c.entries.Add(key, e); evicted {
			c.cfg.OnEvict()
		}
		return e, nil
	}
}

// fetchOne runs fetch, bounded by FetchTimeout.
func (c *Cache[V]) fetchOne(ctx context.Context, fetch Fetch[V]) (*entry[V], error) {
	fctx, cancel := context.WithTimeout(ctx, c.cfg.FetchTimeout)
	defer cancel()
	v, expires, err := fetch(fctx)
	if err != nil {
		return nil, err
	}
	return c.newEntry(v, c.cfg.Now(), expires), nil
}

// fetchShared is one fetch coordinated with the other processes through the
// shared tier, within one FetchTimeout in all. A value another process
// stored is taken when it is better than held (the process's own value, nil
// on a miss), and a note that its fetch failed is that failure. Otherwise
// the process that takes the key's lease fetches, and stores the value or
// the note of its failure; the others wait until the tier tells them the
// key changed, then look again, until the time is up.
func (c *Cache[V]) fetchShared(ctx context.Context, key Key, fetch Fetch[V], held *entry[V]) (*entry[V], error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.FetchTimeout)
	defer cancel()
	q := Query{Lease: c.cfg.FetchTimeout}
	if held != nil {
		q.After = held.expires
	}
	for {
		changed, stop := c.shared.Watch(key)
		a := c.shared.Acquire(ctx, key, q)
		e, err := c.fromShared(a.Stored, held)
		switch {
		case a.Lease != nil:
			stop()
			if e != nil {
				a.Lease.Release(context.WithoutCancel(ctx))
				return e, nil
			}
			return c.fetchAndStore(ctx, fetch, a.Lease)
		case e != nil || err != nil:
			stop()
			return e, err
		case !a.Expires.IsZero() && !q.Force:
			// A value this process cannot serve, which the tier took for
			// one: fetch over it.
			stop()
			q.Force = true
			continue
		}
		// Wait for word of the key, or until the holder's lease would lapse
		// (it may have lost the tier, and will never store nor tell); what
		// the holder stores meanwhile is worth a look, forced or not.
		if !wait(ctx, changed, a.Lapse) {
			stop()
			return nil, &ElsewhereError{Recoverable: true, Reason: "no value within the fetch timeout"}
		}
		stop()
		q.Force = false
	}
}

// wait waits for changed, or for lapse when it is set, and reports false
// when ctx ends first.
func wait(ctx context.Context, changed <-chan struct{}, lapse time.Duration) bool {
	var lapsed <-chan time.Time
	if lapse > 0 {
		t := time.NewTimer(lapse)
		defer t.Stop()
		lapsed = t.C
	}
	select {
	case <-changed:
		return true
	case <-lapsed:
		return true
	case <-ctx.Done():
		return false
	}
}

// fromShared returns what the shared tier holds for a key as an entry, when
// it can be served and, if the process holds a value, expires later than
// it; otherwise the failure another process noted, if any. A note does not
// hide a value a process without one can serve.
func (c *Cache[V]) fromShared(s Stored[V], held *entry[V]) (*entry[V], error) {
	if !s.Expires.IsZero() {
		e := c.newEntry(s.Value, s.Fetched, s.Expires)
		if e.expires.Sub(c.cfg.Now()) > e.minRemaining && (held == nil || e.expires.After(held.expires)) {
			return e, nil
		}
	}
	if f := s.Failure; f != nil {
		reason := "refused"
		if f.Recoverable {
			reason = "failed recoverably"
		}
		return nil, &ElsewhereError{Recoverable: f.Recoverable, Reason: reason}
	}
	return nil, nil
}

// fetchAndStore fetches under lease and leaves the value, or the note of
// its failure, in the shared tier; a fetch that was skipped gives the lease
// back. The store outlives ctx: a fetch that used up the time still shares
// its value.
func (c *Cache[V]) fetchAndStore(ctx context.Context, fetch Fetch[V], lease Lease[V]) (*entry[V], error) {
	e, err := c.fetchOne(ctx, fetch)
	sctx := context.WithoutCancel(ctx)
	switch {
	case err != nil && skipped(err):
		lease.Release(sctx)
		return nil, err
	case err != nil:
		f := &Failure{Recoverable: c.recoverable(err), Until: c.cfg.Now().Add(c.cfg.NegativeBase)}
		if f.Recoverable {
			f.Until = c.cfg.Now().Add(c.cfg.RetryBase)
		}
		lease.Store(sctx, Stored[V]{Failure: f})
		return nil, err
	}
	lease.Store(sctx, Stored[V]{Value: e.value, Fetched: e.fetched, Expires: e.expires})
	return e, nil
}

// recoverable says whether err is transient: the caller's rule, or a
// recoverable failure in another process.
func (c *Cache[V]) recoverable(err error) bool {
	var elsewhere *ElsewhereError
	if errors.As(err, &elsewhere) {
		return elsewhere.Recoverable
	}
	return c.cfg.Recoverable(err)
}

// recordFailure backs a cached value off after a recoverable failure, and
// otherwise evicts it and remembers the failure.
func (c *Cache[V]) recordFailure(key Key, err error, now time.Time) {
	if skipped(err) {
		// Nothing was asked of the upstream: nothing to remember, but a
		// refresh ahead waits a little before it tries again.
		if e, ok := c.entries.Peek(key); ok {
			e.mu.Lock()
			e.retryAt = now.Add(c.cfg.RetryBase)
			e.mu.Unlock()
		}
		return
	}
	recoverable := c.recoverable(err)
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

// newEntry plans a value's refresh on its lifetime, from when it was
// fetched to when it expires.
func (c *Cache[V]) newEntry(v V, fetched, expires time.Time) *entry[V] {
	life := expires.Sub(fetched)
	minRemaining := c.cfg.MinRemaining
	if minRemaining == 0 {
		minRemaining = life / 4
	}
	ahead := time.Duration((c.cfg.RefreshAhead + c.cfg.Rand()*c.cfg.Jitter) * float64(life))
	return &entry[V]{
		value:        v,
		fetched:      fetched,
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
