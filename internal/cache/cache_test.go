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
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// counter is a fetch that counts its calls and returns the call number,
// valid for an hour.
type counter struct {
	clk   *clock
	calls atomic.Int64
}

func (f *counter) fetch(context.Context) (int64, time.Time, error) {
	return f.calls.Add(1), f.clk.Now().Add(time.Hour), nil
}

func newCache(t *testing.T, clk *clock, mutate func(*cache.Config)) *cache.Cache[int64] {
	t.Helper()
	cfg := cache.Config{MaxEntries: 100, RefreshMargin: 5 * time.Minute, FetchTimeout: time.Second, Now: clk.Now}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := cache.New[int64](cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestGetMissThenHitUntilRefreshMargin(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	c := newCache(t, clk, nil)
	f := &counter{clk: clk}
	ctx := context.Background()

	v, res, err := c.Get(ctx, "k", f.fetch)
	if err != nil || v != 1 || res != cache.Miss {
		t.Fatalf("first Get = %v %v %v", v, res, err)
	}
	clk.Add(54 * time.Minute)
	if v, res, _ := c.Get(ctx, "k", f.fetch); v != 1 || res != cache.Hit {
		t.Fatalf("at 54 min: %v %v, want hit of 1", v, res)
	}
	clk.Add(2 * time.Minute) // 4 minutes left, inside the 5-minute margin
	if v, res, _ := c.Get(ctx, "k", f.fetch); v != 2 || res != cache.Miss {
		t.Fatalf("inside margin: %v %v, want fresh fetch 2", v, res)
	}
}

func TestKeysAreIndependent(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	c := newCache(t, clk, nil)
	f := &counter{clk: clk}
	a, _, _ := c.Get(context.Background(), "a", f.fetch)
	b, _, _ := c.Get(context.Background(), "b", f.fetch)
	if a == b {
		t.Fatalf("keys a and b share value %d", a)
	}
}

func TestConcurrentMissesShareOneFetch(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	c := newCache(t, clk, nil)
	var calls atomic.Int64
	release := make(chan struct{})
	fetch := func(context.Context) (int64, time.Time, error) {
		calls.Add(1)
		<-release
		return 7, clk.Now().Add(time.Hour), nil
	}
	var wg sync.WaitGroup
	results := make(chan int64, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, _, err := c.Get(context.Background(), "k", fetch)
			if err != nil {
				t.Error(err)
			}
			results <- v
		}()
	}
	time.Sleep(50 * time.Millisecond) // let the callers pile up on the flight
	close(release)
	wg.Wait()
	close(results)
	for v := range results {
		if v != 7 {
			t.Fatalf("caller got %d", v)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("50 concurrent misses made %d fetches, want 1", n)
	}
}

func TestCallerHangingUpDoesNotFailOtherWaiters(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
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
	go func() { _, _, err := c.Get(first, "k", fetch); firstErr <- err }()
	<-started
	second := make(chan int64, 1)
	go func() {
		v, _, err := c.Get(context.Background(), "k", fetch)
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
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	c := newCache(t, clk, func(c *cache.Config) { c.FetchTimeout = 20 * time.Millisecond })
	fetch := func(ctx context.Context) (int64, time.Time, error) {
		<-ctx.Done()
		return 0, time.Time{}, ctx.Err()
	}
	_, _, err := c.Get(context.Background(), "k", fetch)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
}

func TestErrorsAreNotCached(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	c := newCache(t, clk, nil)
	boom := errors.New("boom")
	if _, _, err := c.Get(context.Background(), "k", func(context.Context) (int64, time.Time, error) { return 0, time.Time{}, boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	f := &counter{clk: clk}
	if v, _, err := c.Get(context.Background(), "k", f.fetch); err != nil || v != 1 {
		t.Fatalf("after error: %v %v", v, err)
	}
}

func TestMaxEntriesBoundsTheCache(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	c := newCache(t, clk, func(c *cache.Config) { c.MaxEntries = 10 })
	f := &counter{clk: clk}
	for i := range 100 {
		_, _, _ = c.Get(context.Background(), fmt.Sprint(i), f.fetch)
	}
	if c.Len() != 10 {
		t.Fatalf("Len = %d, want 10", c.Len())
	}
}
