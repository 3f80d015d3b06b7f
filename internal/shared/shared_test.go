package shared_test

import (
	"bytes"
	"context"
	"strings"
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

const key = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

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
	for _, op := range []string{"get", "set", "lease", "release", "limit", "ping"} {
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

func TestStoreLoadAcrossReplicas(t *testing.T) {
	m, clk := setup(t)
	a, b := newReplica(t, "redis://"+m.Addr(), clk), newReplica(t, "redis://"+m.Addr(), clk)
	if _, ok := b.c.Load(ctx, key); ok {
		t.Fatal("Load before Store found a value")
	}
	a.c.Store(ctx, key, stored(clk))
	got, ok := b.c.Load(ctx, key)
	if !ok || got.Value != example || !got.Expires.Equal(clk.Now().Add(time.Hour)) {
		t.Fatalf("Load = %+v %v", got, ok)
	}
	if b.lookups(t, "miss") != 1 || b.lookups(t, "hit") != 1 {
		t.Fatalf("lookups: miss %v hit %v, want 1 and 1", b.lookups(t, "miss"), b.lookups(t, "hit"))
	}
}

func TestStoredValueRevealsNoCredential(t *testing.T) {
	m, clk := setup(t)
	a := newReplica(t, "redis://"+m.Addr(), clk)
	a.c.Store(ctx, key, stored(clk))
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

func TestEntryKeyAndLeaseShareAHashTag(t *testing.T) {
	m, clk := setup(t)
	a := newReplica(t, "redis://"+m.Addr(), clk)
	a.c.Store(ctx, key, stored(clk))
	release, ok := a.c.Lease(ctx, key, time.Second)
	if !ok {
		t.Fatal("lease not taken")
	}
	defer release()
	tag := "{" + key + "}"
	want := map[string]bool{"tokenvendor:" + tag: true, "tokenvendor:" + tag + ":lease": true}
	for _, k := range m.Keys() {
		if !want[k] {
			t.Fatalf("unexpected key %q (want %v)", k, want)
		}
		if strings.Index(k, "{") != strings.Index(k, tag) {
			t.Fatalf("%q: the first hash tag is not the cache key", k)
		}
	}
}

func TestFailureNoteSitsBesideTheValueUntilAValueReplacesIt(t *testing.T) {
	m, clk := setup(t)
	a, b := newReplica(t, "redis://"+m.Addr(), clk), newReplica(t, "redis://"+m.Addr(), clk)
	a.c.Store(ctx, key, cache.Stored[creds]{Failure: &cache.Failure{Recoverable: true, Until: clk.Now().Add(time.Second)}})
	got, ok := b.c.Load(ctx, key)
	if !ok || got.Failure == nil || !got.Failure.Recoverable || !got.Expires.IsZero() {
		t.Fatalf("Load = %+v %v, want the recoverable failure note and no value", got, ok)
	}
	if ttl := m.TTL("tokenvendor:{" + key + "}:failed"); ttl <= 0 || ttl > time.Second {
		t.Fatalf("note TTL = %s, want at most 1s", ttl)
	}
	a.c.Store(ctx, key, stored(clk))
	if got, ok := b.c.Load(ctx, key); !ok || got.Failure != nil || got.Value != example {
		t.Fatalf("Load after a value = %+v %v, want the value and no note", got, ok)
	}
	a.c.Store(ctx, key, cache.Stored[creds]{Failure: &cache.Failure{Until: clk.Now().Add(5 * time.Second)}})
	if got, _ := b.c.Load(ctx, key); got.Failure == nil || got.Failure.Recoverable || got.Value != example {
		t.Fatalf("Load = %+v, want the value and the refusal note beside it", got)
	}
	if v, _ := m.Get("tokenvendor:{" + key + "}:failed"); v != "refused" {
		t.Fatalf("note = %q, want only the word refused", v)
	}
}

func TestTTLIsTheRemainingLife(t *testing.T) {
	m, clk := setup(t)
	a := newReplica(t, "redis://"+m.Addr(), clk)
	s := stored(clk)
	s.Expires = clk.Now().Add(20 * time.Minute)
	a.c.Store(ctx, key, s)
	if ttl := m.TTL("tokenvendor:{" + key + "}"); ttl <= 0 || ttl > 20*time.Minute {
		t.Fatalf("TTL = %s, want at most the 20m the credentials have left", ttl)
	}
	s.Expires = clk.Now().Add(-time.Second)
	a.c.Store(ctx, "expired", s)
	if m.Exists("tokenvendor:{expired}") {
		t.Fatal("expired credentials were stored")
	}
}

func TestEntryMovedUnderAnotherKeyIsRejected(t *testing.T) {
	m, clk := setup(t)
	a := newReplica(t, "redis://"+m.Addr(), clk)
	a.c.Store(ctx, key, stored(clk))
	other := strings.Repeat("0", 64)
	v, _ := m.Get("tokenvendor:{" + key + "}")
	m.Set("tokenvendor:{"+other+"}", v)
	if got, ok := a.c.Load(ctx, other); ok {
		t.Fatalf("an entry moved under another key was served: %+v", got)
	}
	for range 4 {
		a.c.Load(ctx, other)
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
	old.c.Store(ctx, key, stored(clk))

	rotated := newReplica(t, "redis://"+m.Addr(), clk, k2, k1)
	if _, ok := rotated.c.Load(ctx, key); !ok {
		t.Fatal("after adding a new first key, an entry sealed with the old one is not read")
	}
	retired := newReplica(t, "redis://"+m.Addr(), clk, k2)
	if _, ok := retired.c.Load(ctx, key); ok {
		t.Fatal("an entry sealed with a removed key was served")
	}
	if retired.lookups(t, "rejected") != 1 {
		t.Fatalf("rejected = %v, want 1", retired.lookups(t, "rejected"))
	}
}

func TestLeaseIsExclusiveAndReleasedByItsHolderOnly(t *testing.T) {
	m, clk := setup(t)
	a, b := newReplica(t, "redis://"+m.Addr(), clk), newReplica(t, "redis://"+m.Addr(), clk)
	releaseA, ok := a.c.Lease(ctx, key, time.Second)
	if !ok {
		t.Fatal("first lease refused")
	}
	if _, ok := b.c.Lease(ctx, key, time.Second); ok {
		t.Fatal("second lease granted while the first is held")
	}
	m.FastForward(2 * time.Second) // a's lease expires; b takes it
	releaseB, ok := b.c.Lease(ctx, key, time.Second)
	if !ok {
		t.Fatal("lease refused after the holder's expired")
	}
	releaseA() // late: must not delete b's lease
	if _, ok := a.c.Lease(ctx, key, time.Second); ok {
		t.Fatal("a late release deleted another replica's lease")
	}
	releaseB()
	if _, ok := a.c.Lease(ctx, key, time.Second); !ok {
		t.Fatal("lease refused after its holder released it")
	}
}

func TestRedisDownActsAloneAndLogsOncePerOutage(t *testing.T) {
	m, clk := setup(t)
	a := newReplica(t, "redis://"+m.Addr(), clk)
	addr := m.Addr()
	m.Close()
	for range 20 {
		if _, ok := a.c.Load(ctx, key); ok {
			t.Fatal("Load found a value with Redis down")
		}
		if release, ok := a.c.Lease(ctx, key, time.Second); !ok {
			t.Fatal("Lease refused with Redis down: the replica must fetch alone")
		} else {
			release()
		}
		a.c.Store(ctx, key, stored(clk))
	}
	if n := strings.Count(a.log.String(), "redis unavailable"); n != 1 {
		t.Fatalf("logged the outage %d times, want once:\n%s", n, a.log.String())
	}
	if errs := metrictest.Counter(t, a.reg, "tokenvendor_redis_errors_total", "op", "get"); errs != 1 {
		t.Fatalf("get errors = %v, want 1: the breaker let more through", errs)
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
	a.c.Store(ctx, key, stored(clk)) // the probe
	if _, ok := a.c.Load(ctx, key); !ok {
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
	a.c.Store(ctx, key, stored(clk))
	if _, ok := a.c.Lease(ctx, key, time.Second); !ok {
		t.Fatal("Lease refused while Redis refuses commands")
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
	a.c.Store(ctx, key, stored(clk))
	m.SetError("") // and answers reads
	clk.Add(time.Second)
	a.c.Load(ctx, key) // the probe: Redis answers
	m.SetError(oom)
	a.c.Store(ctx, key, stored(clk)) // refused again: the breaker opens for longer
	before := errs()
	clk.Add(600 * time.Millisecond)
	a.c.Store(ctx, key, stored(clk))
	if errs() != before {
		t.Fatal("the second opening of one outage was no longer than the first")
	}
	if count("redis unavailable") != 1 || count("redis answers again") != 1 {
		t.Fatalf("one outage of a partly failing Redis logged:\n%s", a.log.String())
	}

	m.SetError("")
	clk.Add(11 * time.Second)
	a.c.Load(ctx, key) // Redis answers, and goes on answering
	clk.Add(11 * time.Second)
	a.c.Load(ctx, key)
	m.SetError(oom)
	a.c.Store(ctx, key, stored(clk))
	if count("redis unavailable") != 2 {
		t.Fatalf("a failure after the quiet period was not logged as a new outage:\n%s", a.log.String())
	}
}
