package shared_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenvendor/tokenvendor/internal/cache"
	"github.com/tokenvendor/tokenvendor/internal/clock"
	"github.com/tokenvendor/tokenvendor/internal/limit"
	"github.com/tokenvendor/tokenvendor/internal/metrictest"
	"github.com/tokenvendor/tokenvendor/internal/seal"
	"github.com/tokenvendor/tokenvendor/internal/shared"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

var ctx = context.Background()

// creds stands for the credentials the service keeps: strings that must
// never be readable in Redis.
type creds struct {
	AccessKeyID, SecretAccessKey, SessionToken string
}

var example = creds{
	AccessKeyID:     "ASIAEXAMPLEEXAMPLE01",
	SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
	SessionToken:    "FwoGZXIvYXdzEBYaDEXAMPLESESSIONTOKEN",
}

var key = cache.Key{ID: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}

type replica struct {
	tier *shared.Tier
	reg  *prometheus.Registry
	log  *testsupport.Buffer
	c    *shared.Cache[creds]
}

func newReplica(t *testing.T, url string, clk *clock.Fake, keys ...[]byte) *replica {
	t.Helper()
	if len(keys) == 0 {
		keys = [][]byte{bytes.Repeat([]byte{1}, seal.KeySize)}
	}
	ring, err := seal.New(keys...)
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{reg: prometheus.NewRegistry(), log: &testsupport.Buffer{}}
	r.tier, err = shared.New(shared.Config{
		URL: url, Keys: ring, Timeout: 200 * time.Millisecond,
		Registerer: r.reg, Logger: testsupport.JSONLogger(r.log), Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.tier.Close() })
	r.c = shared.NewCache[creds](r.tier)
	return r
}

func (r *replica) lookups(t *testing.T, result string) float64 {
	return metrictest.Counter(t, r.reg, "tokenvendor_shared_cache_requests_total", "result", result)
}

// sumErrors is tokenvendor_redis_errors_total over every operation.
func (r *replica) sumErrors(t *testing.T) float64 {
	var sum float64
	for _, op := range []string{"get", "lease", "set", "release", "limit", "budget", "ping"} {
		sum += metrictest.Counter(t, r.reg, "tokenvendor_redis_errors_total", "op", op)
	}
	return sum
}

func stored(clk *clock.Fake) cache.Stored[creds] {
	return cache.Stored[creds]{Value: example, Fetched: clk.Now(), Expires: clk.Now().Add(time.Hour)}
}

func setup(t *testing.T) (*miniredis.Miniredis, *clock.Fake) {
	t.Helper()
	m := miniredis.RunT(t)
	clk := clock.NewFake(time.Now())
	return m, clk
}

// store keeps s under k as a replica that fetched it would: under the
// key's lease.
func (r *replica) store(t *testing.T, k cache.Key, s cache.Stored[creds]) {
	t.Helper()
	a := r.c.Acquire(ctx, k, cache.Query{Lease: time.Second, Force: true})
	if a.Lease == nil {
		t.Fatal("no lease to store under")
	}
	a.Lease.Store(ctx, s)
}

// load looks k up as a replica that misses does, and gives back the lease
// it took, if any.
func (r *replica) load(k cache.Key) cache.Acquired[creds] {
	a := r.c.Acquire(ctx, k, cache.Query{Lease: time.Second})
	if a.Lease != nil {
		a.Lease.Release(ctx)
	}
	return a
}

func TestStoreAcquireAcrossReplicas(t *testing.T) {
	m, clk := setup(t)
	a, b := newReplica(t, "redis://"+m.Addr(), clk), newReplica(t, "redis://"+m.Addr(), clk)
	if got := b.load(key); !got.Expires.IsZero() {
		t.Fatal("Acquire before Store found a value")
	}
	a.store(t, key, stored(clk))
	got := b.c.Acquire(ctx, key, cache.Query{Lease: time.Second})
	if got.Lease != nil || got.Value != example || !got.Expires.Equal(clk.Now().Add(time.Hour)) {
		t.Fatalf("Acquire = %+v, want the value and no lease", got)
	}
	if b.lookups(t, "miss") != 1 || b.lookups(t, "hit") != 1 {
		t.Fatalf("lookups: miss %v hit %v, want 1 and 1", b.lookups(t, "miss"), b.lookups(t, "hit"))
	}
}

func TestAcquireTakesTheLeaseOverAValueThatLivesNoLongerThanAsked(t *testing.T) {
	m, clk := setup(t)
	a, b := newReplica(t, "redis://"+m.Addr(), clk), newReplica(t, "redis://"+m.Addr(), clk)
	s := stored(clk)
	a.store(t, key, s)
	// A replica holding the same value, due to refresh it, leases...
	got := b.c.Acquire(ctx, key, cache.Query{After: s.Expires, Lease: time.Second})
	if got.Lease == nil || !got.Expires.IsZero() {
		t.Fatalf("Acquire after the stored expiry = %+v, want the lease and no value", got)
	}
	// ...once: the other replica due too waits.
	if again := a.c.Acquire(ctx, key, cache.Query{After: s.Expires, Lease: time.Second}); again.Lease != nil {
		t.Fatal("a second replica took the lease while the first held it")
	}
	got.Lease.Release(ctx)
	// A replica whose value expires sooner takes the stored one.
	if got := a.c.Acquire(ctx, key, cache.Query{After: s.Expires.Add(-time.Minute), Lease: time.Second}); got.Lease != nil || got.Value != example {
		t.Fatalf("Acquire before the stored expiry = %+v, want the value", got)
	}
}

func TestStoredValueRevealsNoCredential(t *testing.T) {
	m, clk := setup(t)
	a := newReplica(t, "redis://"+m.Addr(), clk)
	a.store(t, key, stored(clk))
	for _, k := range m.Keys() {
		v, _ := m.Get(k)
		for _, secret := range []string{example.AccessKeyID, example.SecretAccessKey, example.SessionToken} {
			for _, form := range testsupport.Encodings(secret) {
				if strings.Contains(v, form) || strings.Contains(k, form) {
					t.Fatalf("Redis key %q holds a credential (%q)", k, form)
				}
			}
		}
	}
}

func TestEntryLeaseAndNoteShareTheGroupsHashTag(t *testing.T) {
	m, clk := setup(t)
	a := newReplica(t, "redis://"+m.Addr(), clk)
	k := cache.Key{Group: "g1", ID: key.ID}
	a.store(t, k, stored(clk))
	held := a.c.Acquire(ctx, k, cache.Query{Lease: time.Second, Force: true})
	defer held.Lease.Release(ctx)
	a.store(t, cache.Key{Group: "g1", ID: "other"}, cache.Stored[creds]{Failure: &cache.Failure{Until: clk.Now().Add(time.Minute)}})
	tag := "{g1}"
	want := map[string]bool{"tokenvendor:" + tag + ":" + key.ID: true, "tokenvendor:" + tag + ":" + key.ID + ":lease": true,
		"tokenvendor:" + tag + ":other:failed": true}
	if len(m.Keys()) != len(want) {
		t.Fatalf("keys %v, want %v", m.Keys(), want)
	}
	for _, k := range m.Keys() {
		if !want[k] {
			t.Fatalf("unexpected key %q (want %v)", k, want)
		}
		if strings.Index(k, "{") != strings.Index(k, tag) {
			t.Fatalf("%q: the first hash tag is not the group", k)
		}
	}
}

func TestFailureNoteSitsBesideTheValueUntilAValueReplacesIt(t *testing.T) {
	m, clk := setup(t)
	a, b := newReplica(t, "redis://"+m.Addr(), clk), newReplica(t, "redis://"+m.Addr(), clk)
	a.store(t, key, cache.Stored[creds]{Failure: &cache.Failure{Recoverable: true, Until: clk.Now().Add(time.Second)}})
	got := b.c.Acquire(ctx, key, cache.Query{Lease: time.Second})
	if got.Failure == nil || !got.Failure.Recoverable || !got.Expires.IsZero() || got.Lease != nil {
		t.Fatalf("Acquire = %+v, want the recoverable failure note, no value and no lease", got)
	}
	if ttl := m.TTL("tokenvendor:{" + key.ID + "}:failed"); ttl <= 0 || ttl > time.Second {
		t.Fatalf("note TTL = %s, want at most 1s", ttl)
	}
	a.store(t, key, stored(clk))
	if got := b.load(key); got.Failure != nil || got.Value != example {
		t.Fatalf("Acquire after a value = %+v, want the value and no note", got)
	}
	a.store(t, key, cache.Stored[creds]{Failure: &cache.Failure{Until: clk.Now().Add(5 * time.Second)}})
	if got := b.load(key); got.Failure == nil || got.Failure.Recoverable || got.Value != example {
		t.Fatalf("Acquire = %+v, want the value and the refusal note beside it", got)
	}
	if v, _ := m.Get("tokenvendor:{" + key.ID + "}:failed"); v != "refused" {
		t.Fatalf("note = %q, want only the word refused", v)
	}
}

func TestTTLIsTheRemainingLife(t *testing.T) {
	m, clk := setup(t)
	a := newReplica(t, "redis://"+m.Addr(), clk)
	s := stored(clk)
	s.Expires = clk.Now().Add(20 * time.Minute)
	a.store(t, key, s)
	if ttl := m.TTL("tokenvendor:{" + key.ID + "}"); ttl <= 0 || ttl > 20*time.Minute {
		t.Fatalf("TTL = %s, want at most the 20m the credentials have left", ttl)
	}
	s.Expires = clk.Now().Add(-time.Second)
	a.store(t, cache.Key{ID: "expired"}, s)
	if m.Exists("tokenvendor:{expired}") || m.Exists("tokenvendor:{expired}:lease") {
		t.Fatal("expired credentials were stored, or their lease kept")
	}
}

func TestEntryMovedUnderAnotherKeyIsRejected(t *testing.T) {
	m, clk := setup(t)
	a := newReplica(t, "redis://"+m.Addr(), clk)
	a.store(t, key, stored(clk))
	other := cache.Key{ID: strings.Repeat("0", 64)}
	v, _ := m.Get("tokenvendor:{" + key.ID + "}")
	m.Set("tokenvendor:{"+other.ID+"}", v)
	got := a.c.Acquire(ctx, other, cache.Query{Lease: time.Second})
	if !got.Expires.IsZero() || got.Lease == nil {
		t.Fatalf("an entry moved under another key: %+v, want no value and the lease to fetch over it", got)
	}
	got.Lease.Release(ctx)
	for range 4 {
		a.load(other)
	}
	if a.lookups(t, "rejected") != 5 {
		t.Fatalf("rejected = %v, want 5", a.lookups(t, "rejected"))
	}
	if n := strings.Count(a.log.String(), "entry rejected"); n != 1 {
		t.Fatalf("5 rejections logged %d times, want once a minute", n)
	}
	if strings.Contains(a.log.String(), example.SecretAccessKey) {
		t.Fatal("the log holds a secret")
	}
}

func TestEntryUnderARemovedKeyIsRejectedAndRotationKeepsOldEntries(t *testing.T) {
	m, clk := setup(t)
	k1, k2 := bytes.Repeat([]byte{1}, seal.KeySize), bytes.Repeat([]byte{2}, seal.KeySize)
	old := newReplica(t, "redis://"+m.Addr(), clk, k1)
	old.store(t, key, stored(clk))

	rotated := newReplica(t, "redis://"+m.Addr(), clk, k2, k1)
	if got := rotated.load(key); got.Expires.IsZero() {
		t.Fatal("after adding a new first key, an entry sealed with the old one is not read")
	}
	retired := newReplica(t, "redis://"+m.Addr(), clk, k2)
	if got := retired.load(key); !got.Expires.IsZero() {
		t.Fatal("an entry sealed with a removed key was served")
	}
	if retired.lookups(t, "rejected") != 1 {
		t.Fatalf("rejected = %v, want 1", retired.lookups(t, "rejected"))
	}
}

func TestLeaseIsExclusiveAndReleasedByItsHolderOnly(t *testing.T) {
	m, clk := setup(t)
	a, b := newReplica(t, "redis://"+m.Addr(), clk), newReplica(t, "redis://"+m.Addr(), clk)
	q := cache.Query{Lease: time.Second}
	first := a.c.Acquire(ctx, key, q)
	if first.Lease == nil {
		t.Fatal("first lease refused")
	}
	if got := b.c.Acquire(ctx, key, q); got.Lease != nil {
		t.Fatal("second lease granted while the first is held")
	}
	m.FastForward(3 * time.Second) // a's lease lapses unrenewed; b takes it
	second := b.c.Acquire(ctx, key, q)
	if second.Lease == nil {
		t.Fatal("lease refused after the holder's expired")
	}
	first.Lease.Release(ctx) // late: must not delete b's lease
	if got := a.c.Acquire(ctx, key, q); got.Lease != nil {
		t.Fatal("a late release deleted another replica's lease")
	}
	second.Lease.Release(ctx)
	if got := a.c.Acquire(ctx, key, q); got.Lease == nil {
		t.Fatal("lease refused after its holder released it")
	}
}

func TestWatchWakesWhenAnotherReplicaStoresOrReleases(t *testing.T) {
	m, clk := setup(t)
	a, b := newReplica(t, "redis://"+m.Addr(), clk), newReplica(t, "redis://"+m.Addr(), clk)
	waitLive(t, b)
	for _, finish := range []func(cache.Lease[creds]){
		func(l cache.Lease[creds]) { l.Store(ctx, stored(clk)) },
		func(l cache.Lease[creds]) { l.Release(ctx) },
	} {
		held := a.c.Acquire(ctx, key, cache.Query{Lease: time.Minute, Force: true})
		changed, stop := b.c.Watch(key)
		other, stopOther := b.c.Watch(cache.Key{ID: "another"})
		finish(held.Lease)
		select {
		case <-changed:
		case <-time.After(5 * time.Second):
			t.Fatal("the watcher was not woken")
		}
		select {
		case <-other:
			t.Fatal("a watcher of another key was woken")
		case <-time.After(50 * time.Millisecond):
		}
		stop()
		stopOther()
	}
}

// waitLive waits until r's subscription is in place: a watch that ends
// only when told.
func waitLive(t *testing.T, r *replica) {
	t.Helper()
	testsupport.Eventually(t, 5*time.Second, func() error {
		done, stop := r.c.Watch(cache.Key{ID: "probe-live"})
		defer stop()
		select {
		case <-done:
			return errors.New("the subscription is not in place: a watch ended untold")
		case <-time.After(300 * time.Millisecond):
			return nil
		}
	})
}

func TestRedisDownActsAloneAndLogsOncePerOutage(t *testing.T) {
	m, clk := setup(t)
	a := newReplica(t, "redis://"+m.Addr(), clk)
	addr := m.Addr()
	m.Close()
	for range 20 {
		got := a.c.Acquire(ctx, key, cache.Query{Lease: time.Second})
		if !got.Expires.IsZero() || got.Lease == nil {
			t.Fatalf("Acquire with Redis down = %+v: the replica must fetch alone", got)
		}
		got.Lease.Store(ctx, stored(clk))
	}
	if n := strings.Count(a.log.String(), "redis unavailable"); n != 1 {
		t.Fatalf("logged the outage %d times, want once:\n%s", n, a.log.String())
	}
	if errs := a.sumErrors(t); errs != 1 {
		t.Fatalf("errors = %v, want 1: the breaker let more through", errs)
	}
	if up := metrictest.Gauge(t, a.reg, "tokenvendor_redis_up"); up != 0 {
		t.Fatalf("tokenvendor_redis_up = %v during the outage", up)
	}

	m2 := miniredis.NewMiniRedis()
	if err := m2.StartAddr(addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m2.Close)
	clk.Add(10 * time.Second)
	a.store(t, key, stored(clk)) // the probe, then the store
	if got := a.load(key); got.Expires.IsZero() {
		t.Fatal("Redis back, but the replica does not use it")
	}
	if !strings.Contains(a.log.String(), "redis answers again") {
		t.Fatalf("the end of the outage was not logged:\n%s", a.log.String())
	}
	if up := metrictest.Gauge(t, a.reg, "tokenvendor_redis_up"); up != 1 {
		t.Fatalf("tokenvendor_redis_up = %v after the outage", up)
	}
}

func TestRedisRefusingWritesActsAlone(t *testing.T) {
	m, clk := setup(t)
	a := newReplica(t, "redis://"+m.Addr(), clk)
	m.SetError("OOM command not allowed when used memory > 'maxmemory'.")
	if got := a.c.Acquire(ctx, key, cache.Query{Lease: time.Second}); got.Lease == nil {
		t.Fatal("no lease while Redis refuses commands: the replica must fetch alone")
	}
	if n := strings.Count(a.log.String(), "redis unavailable"); n != 1 {
		t.Fatalf("logged %d times, want once", n)
	}
}

func TestLimiterHoldsAcrossReplicasAndFallsBackToLocal(t *testing.T) {
	m, clk := setup(t)
	a, b := newReplica(t, "redis://"+m.Addr(), clk), newReplica(t, "redis://"+m.Addr(), clk)
	local := func() *limit.Limiter {
		l, err := limit.New(limit.Config{RPS: 2, Burst: 4, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	la, err := shared.NewLimiter(a.tier, "caller", local())
	if err != nil {
		t.Fatal(err)
	}
	lb, _ := shared.NewLimiter(b.tier, "caller", local())
	if _, err := shared.NewLimiter(a.tier, "caller", nil); err == nil {
		t.Fatal("NewLimiter accepted no local limiter")
	}
	allowed := 0
	for i := range 12 {
		l := la
		if i%2 == 1 {
			l = lb
		}
		if ok, _ := l.Allow(ctx, "svc-a"); ok {
			allowed++
		}
	}
	// GCRA in Redis on real time: the burst of 4, and one more if the
	// requests straddled a 500 ms emission interval.
	if allowed < 4 || allowed > 5 {
		t.Fatalf("allowed %d of 12 requests over two replicas, want the burst of 4 (5 at most)", allowed)
	}
	ok, wait := la.Allow(ctx, "svc-a")
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("Allow over budget = %v, wait %s; want refused with a wait under 1s", ok, wait)
	}
	if ok, _ := la.Allow(ctx, "svc-b"); !ok {
		t.Fatal("another caller was refused")
	}
	for _, k := range m.Keys() {
		if strings.Contains(k, "svc-") {
			t.Fatalf("Redis key %q names the caller", k)
		}
	}

	m.Close()
	allowed = 0
	for range 10 {
		if ok, _ := la.Allow(ctx, "svc-c"); ok {
			allowed++
		}
	}
	if allowed != 4 {
		t.Fatalf("with Redis down, allowed %d of 10, want the local burst of 4", allowed)
	}
}

func TestNewRefuses(t *testing.T) {
	ring, _ := seal.New(bytes.Repeat([]byte{1}, seal.KeySize))
	for _, tc := range []struct {
		name string
		cfg  shared.Config
		want string
	}{
		{name: "no keys", cfg: shared.Config{URL: "redis://127.0.0.1:6379"}, want: "no keys"},
		{name: "brace in prefix", cfg: shared.Config{URL: "redis://127.0.0.1:6379", Keys: ring, Prefix: "tv{"}, want: "prefix"},
		{name: "bad scheme, password not echoed", cfg: shared.Config{URL: "http://u:hunter2hunter2@h:6379", Keys: ring}, want: "url"},
		{name: "bad cluster url", cfg: shared.Config{URL: "redis://u:hunter2hunter2@h:6379?bogus=1", Cluster: true, Keys: ring}, want: "url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := shared.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}

func TestPartlyFailingRedisIsOneOutageAskedLessAndLess(t *testing.T) {
	m, clk := setup(t)
	a := newReplica(t, "redis://"+m.Addr(), clk)
	const oom = "OOM command not allowed when used memory > 'maxmemory'."
	errs := func() float64 { return a.sumErrors(t) }
	count := func(msg string) int { return strings.Count(a.log.String(), msg) }

	m.SetError(oom) // as a full Redis refuses writes
	a.load(key)
	m.SetError("") // and answers reads
	clk.Add(time.Second)
	a.load(key) // the probe: Redis answers
	m.SetError(oom)
	a.load(key) // refused again: the breaker opens for longer
	before := errs()
	clk.Add(600 * time.Millisecond)
	a.load(key)
	if errs() != before {
		t.Fatal("the second opening of one outage was no longer than the first")
	}
	if count("redis unavailable") != 1 || count("redis answers again") != 1 {
		t.Fatalf("one outage of a partly failing Redis logged:\n%s", a.log.String())
	}

	m.SetError("")
	clk.Add(11 * time.Second)
	a.load(key) // Redis answers, and goes on answering
	clk.Add(11 * time.Second)
	a.load(key)
	m.SetError(oom)
	a.load(key)
	if count("redis unavailable") != 2 {
		t.Fatalf("a failure after the quiet period was not logged as a new outage:\n%s", a.log.String())
	}
}

func TestBudgetIsOnePaceAcrossReplicasAndEachOwnWithoutRedis(t *testing.T) {
	m, clk := setup(t)
	a, b := newReplica(t, "redis://"+m.Addr(), clk), newReplica(t, "redis://"+m.Addr(), clk)
	pace := func() *limit.Pace {
		p, err := limit.NewPace(1, 4, clk.Now) // a turn a second, bursts of 4
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	ba, bb := shared.NewBudget(a.tier, pace()), shared.NewBudget(b.tier, pace())
	// Four turns at once between the two replicas, then a wait of about a
	// second for the next (Redis's clock: real time).
	for i := range 4 {
		budget := ba
		if i%2 == 1 {
			budget = bb
		}
		if wait, ok := budget.Take(ctx, false, 0); !ok || wait != 0 {
			t.Fatalf("turn %d of the burst: wait %s, ok %v; want at once", i+1, wait, ok)
		}
	}
	if wait, ok := bb.Take(ctx, false, 5*time.Second); !ok || wait < 500*time.Millisecond || wait > time.Second {
		t.Fatalf("turn 5: wait %s, ok %v; want about a second, the burst being spent by both replicas", wait, ok)
	}
	if _, ok := ba.Take(ctx, true, 0); ok {
		t.Fatal("a refresh took a turn while a caller waited")
	}
	if _, ok := ba.Take(ctx, false, 100*time.Millisecond); ok {
		t.Fatal("a turn was given beyond the longest wait")
	}

	m.Close()
	for i := range 4 {
		if _, ok := ba.Take(ctx, false, 0); !ok {
			t.Fatalf("with Redis down, turn %d of the replica's own burst refused", i+1)
		}
	}
	if _, ok := ba.Take(ctx, false, 0); ok {
		t.Fatal("with Redis down, a turn beyond the replica's own burst")
	}
}

// newTenantReplica is newReplica with the tenant hooks: known holds the
// revision it knows per group, seen what lookups told it, notices what
// AnnounceTenant told it.
type tenantReplica struct {
	*replica
	mu      sync.Mutex
	known   map[string]int64
	seen    []int64
	notices []string
}

func newTenantReplica(t *testing.T, url string, clk *clock.Fake) *tenantReplica {
	t.Helper()
	ring, _ := seal.New(bytes.Repeat([]byte{1}, seal.KeySize))
	r := &tenantReplica{replica: &replica{reg: prometheus.NewRegistry(), log: &testsupport.Buffer{}}, known: map[string]int64{}}
	var err error
	r.tier, err = shared.New(shared.Config{
		URL: url, Keys: ring, Timeout: 200 * time.Millisecond, Registerer: r.reg, Logger: testsupport.JSONLogger(r.log), Now: clk.Now,
		KnownRevision: func(group string) int64 { r.mu.Lock(); defer r.mu.Unlock(); return r.known[group] },
		Revisions:     func(group string, rev int64) { r.mu.Lock(); defer r.mu.Unlock(); r.seen = append(r.seen, rev) },
		Tenants: func(group string, rev int64, suspended bool) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.notices = append(r.notices, fmt.Sprintf("%s %d %v", group, rev, suspended))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.tier.Close() })
	r.c = shared.NewCache[creds](r.tier)
	return r
}

func TestAnEntryMintedBeforeItsTenantChangedIsNotServed(t *testing.T) {
	m, clk := setup(t)
	a, b := newTenantReplica(t, "redis://"+m.Addr(), clk), newTenantReplica(t, "redis://"+m.Addr(), clk)
	waitLive(t, b.replica)
	k := cache.Key{Group: "acme-group", ID: key.ID}
	a.store(t, k, stored(clk))
	before, _ := m.Get("tokenvendor:{acme-group}:" + key.ID)
	// A fetch under way when the tenant is suspended...
	held := a.c.Acquire(ctx, cache.Key{Group: "acme-group", ID: "other"}, cache.Query{Lease: time.Second})
	if err := a.tier.AnnounceTenant(ctx, "acme-group", 7, true); err != nil {
		t.Fatal(err)
	}
	// ...stores nothing when it ends.
	held.Lease.Store(ctx, stored(clk))
	if m.Exists("tokenvendor:{acme-group}:other") {
		t.Fatal("a value fetched under the old revision was stored after the tenant changed")
	}
	if m.Exists("tokenvendor:{acme-group}:" + key.ID) {
		t.Fatal("the announcement left the tenant's entry in Redis")
	}
	// An entry put back as it was (a copy from before) is not served, and
	// the replica is told of the revision before it fetches.
	m.Set("tokenvendor:{acme-group}:"+key.ID, before)
	got := b.c.Acquire(ctx, k, cache.Query{Lease: time.Second})
	if !got.Expires.IsZero() || got.Lease == nil {
		t.Fatalf("after the announcement: %+v, want no value and the lease", got)
	}
	got.Lease.Release(ctx)
	b.mu.Lock()
	seen, notices := b.seen, b.notices
	b.mu.Unlock()
	if !slices.Equal(seen, []int64{7}) {
		t.Fatalf("revisions told %v, want [7]", seen)
	}
	testsupport.Eventually(t, 5*time.Second, func() error {
		b.mu.Lock()
		notices = b.notices
		b.mu.Unlock()
		if len(notices) == 0 {
			return errors.New("no notice of the suspension")
		}
		return nil
	})
	if !slices.Equal(notices, []string{"acme-group 7 true"}) {
		t.Fatalf("notices %v, want the suspension at revision 7", notices)
	}
	if v, _ := m.Get("tokenvendor:{acme-group}:rev"); v != "7" {
		t.Fatalf("the group's revision in Redis = %q, want 7", v)
	}
	// An older announcement never lowers it.
	if err := a.tier.AnnounceTenant(ctx, "acme-group", 3, false); err != nil {
		t.Fatal(err)
	}
	if v, _ := m.Get("tokenvendor:{acme-group}:rev"); v != "7" {
		t.Fatalf("an older announcement lowered the revision to %q", v)
	}
}

func TestARevisionTheReplicaKnowsBeyondRedisIsWrittenAndOlderEntriesNotServed(t *testing.T) {
	m, clk := setup(t)
	a := newTenantReplica(t, "redis://"+m.Addr(), clk)
	k := cache.Key{Group: "g", ID: key.ID}
	a.store(t, k, stored(clk)) // minted at revision 0
	// The store moved to revision 4 while Redis was not told.
	a.mu.Lock()
	a.known["g"] = 4
	a.mu.Unlock()
	got := a.c.Acquire(ctx, k, cache.Query{Lease: time.Second})
	if !got.Expires.IsZero() || got.Lease == nil {
		t.Fatalf("an entry older than the revision the replica knows: %+v, want no value and the lease", got)
	}
	got.Lease.Store(ctx, stored(clk))
	if v, _ := m.Get("tokenvendor:{g}:rev"); v != "4" {
		t.Fatalf("Redis's revision = %q, want raised to 4", v)
	}
	if got := a.load(k); got.Expires.IsZero() {
		t.Fatal("the entry minted at the known revision is not served")
	}
	if len(a.seen) != 0 {
		t.Fatalf("revisions told %v: Redis's was never beyond the known one", a.seen)
	}
}

func TestALeaseLivesWhileItsHolderFetchesAndLapsesWhenItIsGone(t *testing.T) {
	m, clk := setup(t)
	a, b := newReplica(t, "redis://"+m.Addr(), clk), newReplica(t, "redis://"+m.Addr(), clk)
	q := cache.Query{Lease: time.Minute}
	held := a.c.Acquire(ctx, key, q)
	if held.Lease == nil {
		t.Fatal("no lease")
	}
	// Redis's clock moves on 1.5 s of the lease's 2 s; the holder, still
	// fetching, renews it within a real second.
	m.FastForward(1500 * time.Millisecond)
	time.Sleep(time.Second)
	m.FastForward(time.Second)
	got := b.c.Acquire(ctx, key, q)
	if got.Lease != nil {
		t.Fatal("a lease its holder kept alive lapsed")
	}
	if got.Lapse < time.Second || got.Lapse > 2*time.Second {
		t.Fatalf("Lapse = %s, want what the renewed lease has left (1-2 s)", got.Lapse)
	}
	// The holder is gone (its Redis client closed): nothing renews the
	// lease, and a waiter takes it once it lapses.
	a.tier.Close()
	time.Sleep(time.Second)
	m.FastForward(2 * time.Second)
	if got := b.c.Acquire(ctx, key, q); got.Lease == nil {
		t.Fatal("a lease whose holder is gone did not lapse")
	}
}
