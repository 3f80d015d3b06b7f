package cache_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/cache"
	"github.com/tokenvendor/tokenvendor/internal/clock"
)

// tier is a shared tier in memory, as several processes would see Redis.
// With down set it behaves as an unreachable tier does: nothing is found,
// every lease is granted and stores nothing.
type tier struct {
	mu       sync.Mutex
	values   map[cache.Key]cache.Stored[int64]
	notes    map[cache.Key]*cache.Failure
	leases   map[cache.Key]bool
	changed  map[cache.Key]chan struct{}
	acquires atomic.Int64
	stores   atomic.Int64
	down     atomic.Bool
	// holdLeases makes every lease look held by a process that never stores,
	// one that lapses in lapse (0: the tier does not say).
	holdLeases atomic.Bool
	lapse      time.Duration
}

func newTier() *tier {
	return &tier{values: map[cache.Key]cache.Stored[int64]{}, notes: map[cache.Key]*cache.Failure{},
		leases: map[cache.Key]bool{}, changed: map[cache.Key]chan struct{}{}}
}

func (t *tier) Watch(key cache.Key) (<-chan struct{}, func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ch, ok := t.changed[key]
	if !ok {
		ch = make(chan struct{})
		t.changed[key] = ch
	}
	return ch, func() {}
}

// notify wakes the key's watchers; t.mu is held.
func (t *tier) notify(key cache.Key) {
	if ch, ok := t.changed[key]; ok {
		close(ch)
		delete(t.changed, key)
	}
}

func (t *tier) Acquire(_ context.Context, key cache.Key, q cache.Query) cache.Acquired[int64] {
	t.acquires.Add(1)
	if t.down.Load() {
		return cache.Acquired[int64]{Lease: noLease{}}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var a cache.Acquired[int64]
	if !q.Force {
		if s, ok := t.values[key]; ok && s.Expires.After(q.After) {
			a.Stored = s
		}
		a.Failure = t.notes[key]
		if !a.Expires.IsZero() || a.Failure != nil {
			return a
		}
	}
	if t.holdLeases.Load() || t.leases[key] {
		a.Lapse = t.lapse
		return a
	}
	t.leases[key] = true
	a.Lease = &lease{t: t, key: key}
	return a
}

type noLease struct{}

func (noLease) Store(context.Context, cache.Stored[int64]) {}
func (noLease) Release(context.Context)                    {}

type lease struct {
	t   *tier
	key cache.Key
}

func (l *lease) Store(_ context.Context, s cache.Stored[int64]) {
	t := l.t
	if t.down.Load() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if s.Failure != nil {
		t.notes[l.key] = s.Failure
	} else {
		t.stores.Add(1)
		t.values[l.key] = s
		delete(t.notes, l.key)
	}
	delete(t.leases, l.key)
	t.notify(l.key)
}

func (l *lease) Release(context.Context) {
	l.t.mu.Lock()
	defer l.t.mu.Unlock()
	delete(l.t.leases, l.key)
	l.t.notify(l.key)
}

// k is the key most tests use.
var k = cache.Key{ID: "k"}

// replicas are n caches, one a process, sharing one tier and one upstream.
func replicas(t *testing.T, n int, clk *clock.Fake, sh *tier, mutate func(*cache.Config)) []*cache.Cache[int64] {
	t.Helper()
	var cs []*cache.Cache[int64]
	for range n {
		cs = append(cs, newCacheSharing(t, clk, sh, mutate))
	}
	return cs
}

func TestSharedReplicaTakesAnotherReplicasValue(t *testing.T) {
	clk := start()
	sh := newTier()
	cs, u := replicas(t, 2, clk, sh, nil), &upstream{clk: clk}
	v, r, err := cs[0].Get(context.Background(), k, u.fetch)
	want(t, v, r, err, 1, cache.Miss)
	v, r, err = cs[1].Get(context.Background(), k, u.fetch)
	want(t, v, r, err, 1, cache.Miss)
	if u.calls.Load() != 1 {
		t.Fatalf("upstream calls = %d, want 1: the second replica fetched instead of taking the first one's value", u.calls.Load())
	}
}

func TestSharedColdBurstFetchesOncePerKey(t *testing.T) {
	clk := start()
	sh := newTier()
	cs := replicas(t, 3, clk, sh, nil)
	u := &slowUpstream{upstream: upstream{clk: clk}, delay: 50 * time.Millisecond}
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, _, err := cs[i%3].Get(context.Background(), k, u.fetch); err != nil || v != 1 {
				t.Errorf("Get = %d, %v; want 1", v, err)
			}
		}()
	}
	wg.Wait()
	if u.calls.Load() != 1 {
		t.Fatalf("upstream calls = %d across 3 replicas, want 1", u.calls.Load())
	}
}

// slowUpstream takes delay to answer, so that concurrent misses overlap.
type slowUpstream struct {
	upstream
	delay time.Duration
}

func (u *slowUpstream) fetch(ctx context.Context) (int64, time.Time, error) {
	time.Sleep(u.delay)
	return u.upstream.fetch(ctx)
}

func TestSharedRefreshAheadOnceAcrossReplicas(t *testing.T) {
	clk := start()
	sh := newTier()
	cs, u := replicas(t, 2, clk, sh, nil), &upstream{clk: clk}
	for _, c := range cs {
		c.Get(context.Background(), k, u.fetch)
	}
	clk.Add(31 * time.Minute) // past half the lifetime: both are due
	for _, c := range cs {
		if v, r, err := c.Get(context.Background(), k, u.fetch); err != nil || r != cache.Hit || v != 1 {
			t.Fatalf("Get while refreshing = %d %s %v, want the held 1 as a hit", v, r, err)
		}
		c.Wait()
	}
	if u.calls.Load() != 2 {
		t.Fatalf("upstream calls = %d, want 2 (the first fetch and one refresh for both replicas)", u.calls.Load())
	}
	for i, c := range cs {
		if v, _, _ := c.Get(context.Background(), k, u.fetch); v != 2 {
			t.Fatalf("replica %d serves %d after the refresh, want 2", i, v)
		}
	}
}

func TestSharedValueBelowMinRemainingIsNotTaken(t *testing.T) {
	clk := start()
	sh := newTier()
	cs, u := replicas(t, 2, clk, sh, nil), &upstream{clk: clk}
	cs[0].Get(context.Background(), k, u.fetch)
	clk.Add(50 * time.Minute) // 10 minutes left of 60: under a quarter
	v, r, err := cs[1].Get(context.Background(), k, u.fetch)
	want(t, v, r, err, 2, cache.Miss)
}

func TestSharedHitDoesNotReachTheTier(t *testing.T) {
	clk := start()
	sh := newTier()
	cs, u := replicas(t, 1, clk, sh, nil), &upstream{clk: clk}
	cs[0].Get(context.Background(), k, u.fetch)
	loads := sh.acquires.Load()
	for range 100 {
		cs[0].Get(context.Background(), k, u.fetch)
	}
	if sh.acquires.Load() != loads {
		t.Fatalf("100 hits made %d loads from the shared tier, want 0", sh.acquires.Load()-loads)
	}
}

func TestSharedTierDownEachReplicaFetchesAlone(t *testing.T) {
	clk := start()
	sh := newTier()
	sh.down.Store(true)
	cs, u := replicas(t, 2, clk, sh, nil), &upstream{clk: clk}
	for i, c := range cs {
		v, r, err := c.Get(context.Background(), k, u.fetch)
		want(t, v, r, err, int64(i+1), cache.Miss)
	}
	sh.down.Store(false)
	cs2 := replicas(t, 1, clk, sh, nil)
	cs2[0].Get(context.Background(), k, u.fetch)
	if sh.stores.Load() != 1 {
		t.Fatalf("stores = %d once the tier is back, want 1", sh.stores.Load())
	}
}

func TestSharedLeaseNeverDeliveredFailsRecoverablyWithoutFetching(t *testing.T) {
	clk := start()
	sh := newTier()
	sh.holdLeases.Store(true)
	cs := replicas(t, 1, clk, sh, func(c *cache.Config) { c.FetchTimeout = 50 * time.Millisecond })
	u := &upstream{clk: clk}
	_, _, err := cs[0].Get(context.Background(), k, u.fetch)
	var elsewhere *cache.ElsewhereError
	if !errors.As(err, &elsewhere) || !elsewhere.Recoverable {
		t.Fatalf("err = %v, want a recoverable ElsewhereError", err)
	}
	if u.calls.Load() != 0 {
		t.Fatalf("upstream calls = %d: the waiter fetched while another process held the lease", u.calls.Load())
	}
	if n := sh.acquires.Load(); n != 1 {
		t.Fatalf("acquires = %d while the lease was held and nothing changed, want 1: a waiter looks again only when told", n)
	}
}

func TestSharedWaiterTakesOverALeaseThatLapses(t *testing.T) {
	clk := start()
	sh := newTier()
	sh.holdLeases.Store(true) // a holder that lost the tier: it will never store nor tell
	sh.lapse = 20 * time.Millisecond
	cs := replicas(t, 1, clk, sh, nil)
	u := &upstream{clk: clk}
	go func() {
		time.Sleep(10 * time.Millisecond)
		sh.holdLeases.Store(false) // its lease lapses
	}()
	v, r, err := cs[0].Get(context.Background(), k, u.fetch)
	want(t, v, r, err, 1, cache.Miss)
	if u.calls.Load() != 1 || sh.stores.Load() != 1 {
		t.Fatalf("upstream calls %d, stores %d; want 1 and 1: the waiter took the lapsed lease", u.calls.Load(), sh.stores.Load())
	}
	if n := sh.acquires.Load(); n != 2 {
		t.Fatalf("acquires = %d, want 2: once, and once more when the lease would lapse", n)
	}
}

func TestSharedFailureIsNotedNotRepeated(t *testing.T) {
	for _, tc := range []struct {
		name        string
		err         error
		recoverable bool
	}{
		{name: "recoverable", err: errTransient, recoverable: true},
		{name: "refused", err: errDenied, recoverable: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := start()
			sh := newTier()
			cs, u := replicas(t, 2, clk, sh, nil), &upstream{clk: clk}
			u.fail(tc.err)
			if _, _, err := cs[0].Get(context.Background(), k, u.fetch); !errors.Is(err, tc.err) {
				t.Fatalf("the fetching replica got %v, want %v", err, tc.err)
			}
			_, _, err := cs[1].Get(context.Background(), k, u.fetch)
			var elsewhere *cache.ElsewhereError
			if !errors.As(err, &elsewhere) || elsewhere.Recoverable != tc.recoverable {
				t.Fatalf("the other replica got %v, want an ElsewhereError, recoverable %v", err, tc.recoverable)
			}
			if u.calls.Load() != 1 {
				t.Fatalf("upstream calls = %d, want 1: the failure was repeated", u.calls.Load())
			}
			if sh.stores.Load() != 0 || len(sh.leases) != 0 {
				t.Fatalf("after a failure: %d values stored, leases %v", sh.stores.Load(), sh.leases)
			}
			// A replica holding nothing takes a value despite the note.
			// Once the note and the backoff are over, a value is shared again.
			u.fail(nil)
			clk.Add(10 * time.Minute)
			sh.mu.Lock()
			delete(sh.notes, k) // a real tier lets the note expire
			sh.mu.Unlock()
			if _, _, err := cs[0].Get(context.Background(), k, u.fetch); err != nil {
				t.Fatal(err)
			}
			if v, _, err := cs[1].Get(context.Background(), k, u.fetch); err != nil || v != 2 {
				t.Fatalf("after recovery the other replica gets %d, %v; want 2", v, err)
			}
		})
	}
}

func TestSharedConcurrentRefreshAheadFetchesOnce(t *testing.T) {
	clk := start()
	sh := newTier()
	cs := replicas(t, 3, clk, sh, nil)
	u := &slowUpstream{upstream: upstream{clk: clk}, delay: 50 * time.Millisecond}
	for _, c := range cs {
		c.Get(context.Background(), k, u.fetch)
	}
	clk.Add(31 * time.Minute) // every replica is due at once
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Get(context.Background(), k, u.fetch)
			c.Wait()
		}()
	}
	wg.Wait()
	if u.calls.Load() != 2 {
		t.Fatalf("upstream calls = %d, want 2: the first fetch and one refresh for three replicas refreshing at once", u.calls.Load())
	}
}

func TestSharedFailureNoteDoesNotHideAServableValue(t *testing.T) {
	clk := start()
	sh := newTier()
	cs, u := replicas(t, 2, clk, sh, nil), &upstream{clk: clk}
	cs[0].Get(context.Background(), k, u.fetch)
	clk.Add(31 * time.Minute) // due for refresh, still servable
	u.fail(errTransient)
	cs[0].Get(context.Background(), k, u.fetch) // its refresh fails: a note
	cs[0].Wait()
	if len(sh.notes) != 1 {
		t.Fatalf("notes = %v, want the failed refresh noted", sh.notes)
	}
	// A replica holding nothing takes the value the note sits beside.
	v, _, err := cs[1].Get(context.Background(), k, u.fetch)
	if err != nil || v != 1 {
		t.Fatalf("a replica without the value got %d, %v; want the stored 1", v, err)
	}
	if u.calls.Load() != 2 {
		t.Fatalf("upstream calls = %d, want 2 (the fetch and the failed refresh)", u.calls.Load())
	}
}

func TestSharedWaiterLooksAgainOnlyWhenTold(t *testing.T) {
	clk := start()
	sh := newTier()
	cs := replicas(t, 2, clk, sh, nil)
	u := &slowUpstream{upstream: upstream{clk: clk}, delay: 100 * time.Millisecond}
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, _, err := c.Get(context.Background(), k, u.fetch); err != nil || v != 1 {
				t.Errorf("Get = %d, %v; want 1", v, err)
			}
		}()
	}
	wg.Wait()
	if u.calls.Load() != 1 {
		t.Fatalf("upstream calls = %d, want 1", u.calls.Load())
	}
	// One look for the holder; two for the waiter: before and once told.
	if n := sh.acquires.Load(); n != 3 {
		t.Fatalf("acquires = %d for one holder and one waiter, want 3", n)
	}
}

func TestSkippedFetchIsNeitherRememberedNorNoted(t *testing.T) {
	clk := start()
	sh := newTier()
	cs := replicas(t, 2, clk, sh, nil)
	errRule := errors.New("a rule refused first")
	var calls atomic.Int64
	skip := func(context.Context) (int64, time.Time, error) {
		calls.Add(1)
		return 0, time.Time{}, cache.Skip(errRule)
	}
	if _, _, err := cs[0].Get(context.Background(), k, skip); !errors.Is(err, errRule) {
		t.Fatalf("err = %v, want the rule's", err)
	}
	if len(sh.notes) != 0 || len(sh.leases) != 0 {
		t.Fatalf("after a skipped fetch: notes %v, leases %v; want none", sh.notes, sh.leases)
	}
	// Neither this process nor the other remembers it: the next Get fetches.
	u := &upstream{clk: clk}
	for i, c := range cs {
		if v, _, err := c.Get(context.Background(), k, u.fetch); err != nil || v != 1 {
			t.Fatalf("replica %d after the skip: %d, %v; want 1", i, v, err)
		}
	}
	if calls.Load() != 1 || u.calls.Load() != 1 {
		t.Fatalf("skipped fetches %d, fetches %d; want 1 and 1", calls.Load(), u.calls.Load())
	}
}

func TestRefreshingTellsARefreshAheadFromAMiss(t *testing.T) {
	clk := start()
	c := newCache(t, clk, nil)
	var mu sync.Mutex
	var kinds []bool
	n := int64(0)
	fetch := func(ctx context.Context) (int64, time.Time, error) {
		mu.Lock()
		defer mu.Unlock()
		kinds = append(kinds, cache.Refreshing(ctx))
		n++
		return n, clk.Now().Add(time.Hour), nil
	}
	c.Get(context.Background(), k, fetch)
	clk.Add(31 * time.Minute)
	c.Get(context.Background(), k, fetch)
	c.Wait()
	if len(kinds) != 2 || kinds[0] || !kinds[1] {
		t.Fatalf("Refreshing in the miss and the refresh ahead = %v, want [false true]", kinds)
	}
}

func TestRemoveGroupDropsOnlyThatGroup(t *testing.T) {
	clk := start()
	c, u := newCache(t, clk, nil), &upstream{clk: clk}
	a1, a2, b := cache.Key{Group: "a", ID: "1"}, cache.Key{Group: "a", ID: "2"}, cache.Key{Group: "b", ID: "1"}
	for _, key := range []cache.Key{a1, a2, b} {
		c.Get(context.Background(), key, u.fetch)
	}
	c.RemoveGroup("a")
	if c.Len() != 1 {
		t.Fatalf("Len = %d after dropping group a, want 1", c.Len())
	}
	if _, r, _ := c.Get(context.Background(), b, u.fetch); r != cache.Hit {
		t.Fatalf("group b's key: %s, want a hit", r)
	}
	if _, r, _ := c.Get(context.Background(), a1, u.fetch); r != cache.Miss {
		t.Fatalf("group a's key: %s, want a miss", r)
	}
}

func TestAFetchUnderWayWhenItsGroupIsRemovedIsNotKept(t *testing.T) {
	clk := start()
	c := newCache(t, clk, nil)
	key := cache.Key{Group: "acme", ID: "1"}
	started, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	fetch := func(context.Context) (int64, time.Time, error) {
		n := calls.Add(1)
		if n == 1 {
			close(started)
			<-release
		}
		return n, clk.Now().Add(time.Hour), nil
	}
	done := make(chan int64)
	go func() {
		v, _, _ := c.Get(context.Background(), key, fetch)
		done <- v
	}()
	<-started
	c.RemoveGroup("acme") // the tenant is suspended while its fetch runs
	close(release)
	if v := <-done; v != 1 {
		t.Fatalf("the caller that waited got %d, want the fetched 1", v)
	}
	if v, r, _ := c.Get(context.Background(), key, fetch); v != 2 || r != cache.Miss {
		t.Fatalf("after the removal: %d %s, want a fresh fetch (2, miss): the value fetched before was kept", v, r)
	}
}
