package cache_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/cache"
	"github.com/tokenvendor/tokenvendor/internal/clock"
)

var (
	errTransient = errors.New("throttled")
	errDenied    = errors.New("access denied")
)

// upstream is a fetch that counts its calls, returns the call number as the
// value, valid for an hour, or fails with err when set.
type upstream struct {
	clk   *clock.Fake
	calls atomic.Int64
	mu    sync.Mutex
	err   error
}

func (u *upstream) fetch(context.Context) (int64, time.Time, error) {
	n := u.calls.Add(1)
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.err != nil {
		return 0, time.Time{}, u.err
	}
	return n, u.clk.Now().Add(time.Hour), nil
}

func (u *upstream) fail(err error) { u.mu.Lock(); defer u.mu.Unlock(); u.err = err }

func newCache(t *testing.T, clk *clock.Fake, mutate func(*cache.Config)) *cache.Cache[int64] {
	t.Helper()
	return newCacheSharing(t, clk, nil, mutate)
}

// newCacheSharing is newCache with a shared tier (nil: none).
func newCacheSharing(t *testing.T, clk *clock.Fake, shared cache.Shared[int64], mutate func(*cache.Config)) *cache.Cache[int64] {
	t.Helper()
	cfg := testConfig(clk)
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := cache.New[int64](cfg, shared)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Wait)
	return c
}

// testConfig is the baseline the tests mutate.
func testConfig(clk *clock.Fake) cache.Config {
	return cache.Config{
		MaxEntries:   100,
		FetchTimeout: time.Second,
		Now:          clk.Now,
		Rand:         func() float64 { return 0 }, // refresh-ahead at exactly half the lifetime
		Recoverable:  func(err error) bool { return errors.Is(err, errTransient) },
	}
}

func start() *clock.Fake { return clock.NewFake(time.Unix(1_700_000_000, 0)) }

func get(t *testing.T, c *cache.Cache[int64], u *upstream) (int64, cache.Result, error) {
	t.Helper()
	return c.Get(context.Background(), k, u.fetch)
}

func want(t *testing.T, gotV int64, gotR cache.Result, err error, v int64, r cache.Result) {
	t.Helper()
	if err != nil || gotV != v || gotR != r {
		t.Fatalf("Get = %d %s %v, want %d %s", gotV, gotR, err, v, r)
	}
}

func TestMissThenHit(t *testing.T) {
	clk := start()
	c, u := newCache(t, clk, nil), &upstream{clk: clk}
	v, r, err := get(t, c, u)
	want(t, v, r, err, 1, cache.Miss)
	clk.Add(29 * time.Minute)
	v, r, err = get(t, c, u)
	want(t, v, r, err, 1, cache.Hit)
	if u.calls.Load() != 1 {
		t.Fatalf("fetches = %d", u.calls.Load())
	}
}

func TestRefreshAheadServesCachedAndRefreshesOnceInBackground(t *testing.T) {
	clk := start()
	c, u := newCache(t, clk, nil), &upstream{clk: clk}
	get(t, c, u)
	clk.Add(31 * time.Minute) // 29 minutes left: below half the lifetime

	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, r, err := get(t, c, u)
			// The cached 1, or the refreshed 2 once the background fetch is done;
			// never a wait on the upstream.
			if err != nil || (v != 1 && v != 2) || r != cache.Hit {
				t.Errorf("during refresh-ahead: %d %s %v, want a hit", v, r, err)
			}
		}()
	}
	wg.Wait()
	c.Wait()
	if n := u.calls.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2 (one background refresh for 50 callers)", n)
	}
	v, r, err := get(t, c, u)
	want(t, v, r, err, 2, cache.Hit)
}

func TestJitterStartsRefreshAheadEarlier(t *testing.T) {
	clk := start()
	c, u := newCache(t, clk, func(c *cache.Config) { c.Rand = func() float64 { return 0.999 } }), &upstream{clk: clk}
	get(t, c, u)
	clk.Add(25 * time.Minute) // 35 minutes left: inside half + 10 % jitter
	get(t, c, u)
	c.Wait()
	if n := u.calls.Load(); n != 2 {
		t.Fatalf("fetches = %d, want a refresh-ahead at 60 %% of the lifetime left", n)
	}
}

func TestMinimumRemainingLifeForcesASynchronousRefresh(t *testing.T) {
	clk := start()
	c, u := newCache(t, clk, nil), &upstream{clk: clk}
	get(t, c, u)
	clk.Add(46 * time.Minute) // 14 minutes left, below the default quarter of the lifetime
	v, r, err := get(t, c, u)
	want(t, v, r, err, 2, cache.Miss)
}

func TestStaleIfErrorServesCachedCredentialsDownToTheFloor(t *testing.T) {
	clk := start()
	c, u := newCache(t, clk, nil), &upstream{clk: clk}
	get(t, c, u)
	u.fail(errTransient)
	clk.Add(50 * time.Minute) // 10 minutes left

	v, r, err := get(t, c, u)
	want(t, v, r, err, 1, cache.Stale)
	if u.calls.Load() != 2 {
		t.Fatalf("fetches = %d, want 2", u.calls.Load())
	}
	// Backing off: the next caller is served stale without a fetch.
	v, r, err = get(t, c, u)
	want(t, v, r, err, 1, cache.Stale)
	if u.calls.Load() != 2 {
		t.Fatalf("fetched during backoff: %d", u.calls.Load())
	}
	clk.Add(1100 * time.Millisecond)
	get(t, c, u)
	if u.calls.Load() != 3 {
		t.Fatalf("no retry after the backoff: %d fetches", u.calls.Load())
	}
	// Below the floor (2 minutes left) stale credentials are not served.
	clk.Add(8*time.Minute + time.Second)
	if _, _, err := get(t, c, u); !errors.Is(err, errTransient) {
		t.Fatalf("below the floor: err = %v, want the upstream error", err)
	}
	// STS is back: fresh credentials.
	u.fail(nil)
	clk.Add(time.Minute)
	v, r, err = get(t, c, u)
	if err != nil || r != cache.Miss || v < 4 {
		t.Fatalf("after recovery: %d %s %v", v, r, err)
	}
}

func TestBackgroundRefreshFailureKeepsServingAndBacksOff(t *testing.T) {
	clk := start()
	c, u := newCache(t, clk, nil), &upstream{clk: clk}
	get(t, c, u)
	u.fail(errTransient)
	clk.Add(31 * time.Minute)
	v, r, err := get(t, c, u)
	want(t, v, r, err, 1, cache.Hit)
	c.Wait()
	for range 10 {
		get(t, c, u)
		c.Wait()
	}
	if n := u.calls.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2: the failed refresh backs off", n)
	}
	clk.Add(2 * time.Second)
	get(t, c, u)
	c.Wait()
	if n := u.calls.Load(); n != 3 {
		t.Fatalf("fetches = %d, want a retry after the backoff", n)
	}
}

func TestIrrecoverableFailureEvictsAndIsNegativeCachedWithBackoff(t *testing.T) {
	clk := start()
	c, u := newCache(t, clk, nil), &upstream{clk: clk}
	get(t, c, u)
	u.fail(errDenied)
	clk.Add(50 * time.Minute)
	if _, _, err := get(t, c, u); !errors.Is(err, errDenied) {
		t.Fatalf("err = %v", err)
	}
	if c.Len() != 0 {
		t.Fatal("credentials still cached after an irrecoverable failure")
	}
	calls := u.calls.Load()
	for _, step := range []struct {
		advance time.Duration
		fetches int64
	}{
		{advance: time.Second, fetches: 0},     // inside the first 5 s
		{advance: 5 * time.Second, fetches: 1}, // after it: one try, which fails
		{advance: 6 * time.Second, fetches: 0}, // the second backoff is 10 s
		{advance: 5 * time.Second, fetches: 1},
	} {
		clk.Add(step.advance)
		if _, _, err := get(t, c, u); !errors.Is(err, errDenied) {
			t.Fatalf("err = %v", err)
		}
		if got := u.calls.Load() - calls; got != step.fetches {
			t.Fatalf("after %s: %d fetches, want %d", step.advance, got, step.fetches)
		}
		calls = u.calls.Load()
	}
}

func TestTransientFailureWithNothingCachedBacksOff(t *testing.T) {
	clk := start()
	c, u := newCache(t, clk, nil), &upstream{clk: clk}
	u.fail(errTransient)
	for range 5 {
		if _, _, err := get(t, c, u); !errors.Is(err, errTransient) {
			t.Fatalf("err = %v", err)
		}
	}
	if n := u.calls.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1 within the backoff", n)
	}
	u.fail(nil)
	clk.Add(1100 * time.Millisecond)
	v, r, err := get(t, c, u)
	want(t, v, r, err, 2, cache.Miss)
}

func TestConcurrentMissesShareOneFetch(t *testing.T) {
	clk := start()
	c := newCache(t, clk, nil)
	var calls atomic.Int64
	release := make(chan struct{})
	fetch := func(context.Context) (int64, time.Time, error) {
		calls.Add(1)
		<-release
		return 7, clk.Now().Add(time.Hour), nil
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, _, err := c.Get(context.Background(), k, fetch); err != nil || v != 7 {
				t.Errorf("Get = %d %v", v, err)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond) // let the callers pile up on the flight
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("50 concurrent misses made %d fetches, want 1", n)
	}
}

func TestCallerHangingUpDoesNotFailOtherWaiters(t *testing.T) {
	clk := start()
	c := newCache(t, clk, nil)
	started, release := make(chan struct{}), make(chan struct{})
	fetch := func(ctx context.Context) (int64, time.Time, error) {
		close(started)
		select {
		case <-release:
			return 9, clk.Now().Add(time.Hour), nil
		case <-ctx.Done():
			return 0, time.Time{}, ctx.Err()
		}
	}
	first, cancel := context.WithCancel(context.Background())
	firstErr := make(chan error, 1)
	go func() { _, _, err := c.Get(first, k, fetch); firstErr <- err }()
	<-started
	second := make(chan int64, 1)
	go func() {
		v, _, err := c.Get(context.Background(), k, fetch)
		if err != nil {
			t.Error(err)
		}
		second <- v
	}()
	cancel()
	if err := <-firstErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("first caller: %v", err)
	}
	close(release)
	if v := <-second; v != 9 {
		t.Fatalf("second caller got %d", v)
	}
}

func TestFetchTimeoutBoundsTheSharedFetch(t *testing.T) {
	c := newCache(t, start(), func(c *cache.Config) { c.FetchTimeout = 20 * time.Millisecond })
	fetch := func(ctx context.Context) (int64, time.Time, error) {
		<-ctx.Done()
		return 0, time.Time{}, ctx.Err()
	}
	if _, _, err := c.Get(context.Background(), k, fetch); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
}

func TestBackgroundRefreshesAreRateLimited(t *testing.T) {
	clk := start()
	c, u := newCache(t, clk, func(c *cache.Config) { c.BackgroundRate = 3 }), &upstream{clk: clk}
	for i := range 10 {
		c.Get(context.Background(), cache.Key{ID: fmt.Sprint(i)}, u.fetch)
	}
	clk.Add(31 * time.Minute)
	for i := range 10 {
		c.Get(context.Background(), cache.Key{ID: fmt.Sprint(i)}, u.fetch)
	}
	c.Wait()
	if n := u.calls.Load() - 10; n != 3 {
		t.Fatalf("background refreshes in one instant = %d, want the burst of 3", n)
	}
}

func TestMaxEntriesBoundsTheCacheAndCountsEvictions(t *testing.T) {
	clk := start()
	var evictions atomic.Int64
	c := newCache(t, clk, func(c *cache.Config) { c.MaxEntries = 10; c.OnEvict = func() { evictions.Add(1) } })
	u := &upstream{clk: clk}
	for i := range 100 {
		c.Get(context.Background(), cache.Key{ID: fmt.Sprint(i)}, u.fetch)
	}
	if c.Len() != 10 || evictions.Load() != 90 {
		t.Fatalf("Len = %d, evictions = %d; want 10 and 90", c.Len(), evictions.Load())
	}
}

func TestNewRefusesInconsistentSettings(t *testing.T) {
	for name, cfg := range map[string]cache.Config{
		"refresh-ahead over 1":      {RefreshAhead: 1.5},
		"shares adding up over 1":   {RefreshAhead: 0.7, Jitter: 0.4},
		"floor above min remaining": {MinRemaining: time.Minute, StaleFloor: 2 * time.Minute},
		"negative max entries":      {MaxEntries: -1},
		"negative background rate":  {BackgroundRate: -1},
	} {
		if _, err := cache.New[int](cfg, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCheckLifetime(t *testing.T) {
	tests := []struct {
		name string
		cfg  cache.Config
		life time.Duration
		ok   bool
	}{
		{name: "1h with the defaults", life: time.Hour, ok: true},
		{name: "15m with the defaults", life: 15 * time.Minute, ok: true},
		{name: "8m with the defaults: a quarter is the stale floor", life: 8 * time.Minute, ok: false},
		{name: "exactly twice min remaining", cfg: cache.Config{MinRemaining: 30 * time.Minute}, life: time.Hour, ok: true},
		{name: "under twice min remaining", cfg: cache.Config{MinRemaining: 31 * time.Minute}, life: time.Hour, ok: false},
		{name: "min remaining at the floor", cfg: cache.Config{MinRemaining: 5 * time.Minute, StaleFloor: 5 * time.Minute}, life: time.Hour, ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.CheckLifetime(tt.life); (err == nil) != tt.ok {
				t.Fatalf("CheckLifetime(%s) = %v, want ok %v", tt.life, err, tt.ok)
			}
		})
	}
}
