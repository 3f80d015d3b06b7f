// Package shared is the tier that tokenvendor's replicas share, on Redis
// (one node or a Redis Cluster): sealed credentials with the leases that let
// one replica at a time fetch a key (Cache, a cache.Shared), and request
// budgets counted across replicas (Limiter).
//
// Redis is help, never a dependency. Every Redis failure, a round trip
// slower than Config.Timeout among them, makes the replica act alone: a
// lookup is a miss, a lease is granted, a budget is counted in the process.
// A breaker then keeps the replica from asking Redis for a while, so that an
// outage costs one timeout, not one per request, and is logged once; one
// probe at a time, at most every few seconds, finds Redis back.
package shared

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenvendor/tokenvendor/internal/seal"
	"github.com/tokenvendor/tokenvendor/internal/tracing"
)

// Defaults filled by New.
const (
	DefaultPrefix  = "tokenvendor:"
	DefaultTimeout = 250 * time.Millisecond
)

// How long the breaker keeps Redis out after a failure: doubling from
// breakerBase to breakerMax, so Redis back is used again within seconds.
const (
	breakerBase = 500 * time.Millisecond
	breakerMax  = 4 * time.Second
)

// errBypassed is what an operation returns while the breaker is open.
var errBypassed = errors.New("redis bypassed after a recent failure")

// Config configures a Tier.
type Config struct {
	// URL is redis:// or rediss:// (TLS), with user:password@ if Redis
	// wants them. With Cluster, it names one node; more as ?addr=host:port.
	URL     string
	Cluster bool
	// Password, when set, replaces the URL's.
	Password string
	// RootCAs, when set, are the authorities a rediss:// server's
	// certificate must chain to; default the system's.
	RootCAs *x509.CertPool
	// Keys seal every value stored.
	Keys *seal.Keyring
	// Prefix starts every key; it must hold no { or }. Default DefaultPrefix.
	Prefix string
	// Timeout bounds one round trip. Default DefaultTimeout.
	Timeout    time.Duration
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	Now        func() time.Time
	// TracerProvider traces every Redis operation; default none.
	TracerProvider trace.TracerProvider
}

// Tier is a connection to the shared Redis with its breaker. It is safe for
// concurrent use.
type Tier struct {
	cfg  Config
	rdb  goredis.UniversalClient
	rate *redis_rate.Limiter
	log  *slog.Logger
	brk  breaker

	lastRejectedLog atomic.Int64 // unix nanoseconds
	tracer          trace.Tracer

	errors  *prometheus.CounterVec
	lookups *prometheus.CounterVec
}

// New returns a Tier. It does not connect: the first operation does, and
// Ping tells whether Redis answers.
func New(cfg Config) (*Tier, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var errs []error
	if cfg.Keys == nil {
		errs = append(errs, errors.New("no keys"))
	}
	if strings.ContainsAny(cfg.Prefix, "{}") {
		errs = append(errs, errors.New("prefix holds { or }, which would break the hash tags"))
	}
	if cfg.Timeout < 0 {
		errs = append(errs, errors.New("negative timeout"))
	}
	rdb, err := client(cfg)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	t := &Tier{cfg: cfg, rdb: rdb, rate: redis_rate.NewLimiter(rdb), log: cfg.Logger,
		tracer: tracing.Tracer(cfg.TracerProvider, "github.com/tokenvendor/tokenvendor/internal/shared")}
	f := promauto.With(cfg.Registerer)
	t.errors = f.NewCounterVec(prometheus.CounterOpts{
		Name: "tokenvendor_redis_errors_total",
		Help: "Redis operations that failed or timed out, by operation (get, set, lease, release, limit, ping).",
	}, []string{"op"})
	t.lookups = f.NewCounterVec(prometheus.CounterOpts{
		Name: "tokenvendor_shared_cache_requests_total",
		Help: "Lookups in the shared tier on a local miss or refresh, by result (hit, miss, rejected: sealed value that does not open, error: Redis failed or is being bypassed).",
	}, []string{"result"})
	for _, op := range []string{"get", "set", "lease", "release", "limit", "ping"} {
		t.errors.WithLabelValues(op)
	}
	for _, result := range []string{"hit", "miss", "rejected", "error"} {
		t.lookups.WithLabelValues(result)
	}
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tokenvendor_redis_up",
		Help: "1 while this replica uses Redis, 0 while it acts alone after a Redis failure.",
	}, func() float64 {
		if t.brk.isOpen() {
			return 0
		}
		return 1
	})
	return t, nil
}

// CheckURL reports whether url is one the client accepts, a cluster node's
// when cluster is set, without connecting. The error never shows the URL.
func CheckURL(url string, cluster bool) error {
	var err error
	if cluster {
		_, err = goredis.ParseClusterURL(url)
	} else {
		_, err = goredis.ParseURL(url)
	}
	if err != nil || !(strings.HasPrefix(url, "redis://") || strings.HasPrefix(url, "rediss://")) {
		return errors.New("not a redis:// or rediss:// URL (user:password@host:port, /db, known query parameters only)")
	}
	return nil
}

// client makes the Redis client from the URL's address, database, user,
// password and TLS; the timeouts are Config.Timeout, whatever the URL says.
// Errors never show the URL: it may hold a password.
func client(cfg Config) (goredis.UniversalClient, error) {
	if err := CheckURL(cfg.URL, cfg.Cluster); err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	o := &goredis.UniversalOptions{IsClusterMode: cfg.Cluster}
	if cfg.Cluster {
		c, _ := goredis.ParseClusterURL(cfg.URL)
		o.Addrs, o.Username, o.Password, o.TLSConfig = c.Addrs, c.Username, c.Password, c.TLSConfig
	} else {
		c, _ := goredis.ParseURL(cfg.URL)
		o.Addrs, o.DB, o.Username, o.Password, o.TLSConfig = []string{c.Addr}, c.DB, c.Username, c.Password, c.TLSConfig
	}
	if cfg.Password != "" {
		o.Password = cfg.Password
	}
	if o.TLSConfig != nil {
		o.TLSConfig.MinVersion = tls.VersionTLS12
		if cfg.RootCAs != nil {
			o.TLSConfig.RootCAs = cfg.RootCAs
		}
	}
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = cfg.Timeout, cfg.Timeout, cfg.Timeout, cfg.Timeout
	o.ContextTimeoutEnabled = true
	o.MaxRetries = -1 // a retry doubles the wait; the breaker decides instead
	o.DisableIdentity = true
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return goredis.NewUniversalClient(o), nil
}

// clientLog passes the Redis client's own messages (pool and cluster
// chatter, repeated on every failed dial) to the log at debug level, so
// that an outage is still logged once.
type clientLog struct{ log *slog.Logger }

func (l clientLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client", "msg", fmt.Sprintf(format, v...))
}

// SetClientLogger sends the Redis client library's messages to log at
// debug level. The library keeps one logger for the process, so the
// composition root calls this once.
func SetClientLogger(log *slog.Logger) { goredis.SetLogger(clientLog{log}) }

// Close closes the connections.
func (t *Tier) Close() error { return t.rdb.Close() }

// Ping asks Redis whether it answers, through the breaker, so that a Redis
// down at start-up is logged once and bypassed like any outage.
func (t *Tier) Ping(ctx context.Context) error {
	return t.do(ctx, "ping", func(ctx context.Context) error { return t.rdb.Ping(ctx).Err() })
}

// do runs one Redis operation through the breaker, bounded by the timeout.
// redis.Nil (no such key) is an answer, not a failure.
func (t *Tier) do(ctx context.Context, op string, f func(context.Context) error) error {
	ctx, span := tracing.Start(ctx, t.tracer, "redis."+op, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system", "redis")))
	defer span.End()
	probe, ok := t.brk.allow(t.cfg.Now())
	if !ok {
		span.SetAttributes(attribute.Bool("tokenvendor.redis.bypassed", true))
		return errBypassed
	}
	octx, cancel := context.WithTimeout(ctx, t.cfg.Timeout)
	defer cancel()
	err := f(octx)
	if err != nil && !errors.Is(err, goredis.Nil) && ctx.Err() == nil {
		span.SetStatus(codes.Error, "redis failed")
	}
	switch {
	case err == nil || errors.Is(err, goredis.Nil):
		if t.brk.success(t.cfg.Now(), probe) {
			t.log.Info("redis answers again; replicas share once more")
		}
	case ctx.Err() != nil:
		// The caller stopped waiting; that says nothing about Redis.
		t.brk.abandon(probe)
	case errors.Is(err, goredis.ErrPoolTimeout):
		// Every connection busy: this replica is congested, not Redis
		// down. This operation goes without; the others carry on.
		t.errors.WithLabelValues(op).Inc()
		t.brk.abandon(probe)
	default:
		t.errors.WithLabelValues(op).Inc()
		if t.brk.failure(t.cfg.Now(), probe) {
			t.log.Warn("redis unavailable; this replica acts alone (own cache, STS and limits) until it answers again",
				"op", op, "err", err)
		}
	}
	return err
}

// rejectedLogEvery spaces the warnings about entries that do not open: a
// key file missing a key makes one per lookup.
const rejectedLogEvery = time.Minute

// rejected logs an entry that does not open, at most once a rejectedLogEvery.
func (t *Tier) rejected(key, reason string) {
	now := t.cfg.Now()
	last := t.lastRejectedLog.Load()
	if last != 0 && now.Sub(time.Unix(0, last)) < rejectedLogEvery {
		return
	}
	if t.lastRejectedLog.CompareAndSwap(last, now.UnixNano()) {
		t.log.Warn("shared cache entry rejected and fetched anew (logged at most once a minute; tokenvendor_shared_cache_requests_total{result=\"rejected\"} counts them all)",
			"key", key, "reason", reason)
	}
}

// quietPeriod is how long Redis must go without a failure for an outage to
// be over; a failure after it is a new outage, logged again.
const quietPeriod = 10 * time.Second

// breaker keeps Redis out after a failure. Closed, every operation runs.
// Open, none does until the wait has passed; then one probe at a time runs,
// and only a probe's success closes it again, so answers to operations that
// started before the failure do not make it flap. Each opening within one
// outage doubles the wait, so a Redis that fails only in part (full, it
// answers reads and refuses writes) is asked less and less often. An
// outage is logged when it starts and when Redis first answers again; it
// ends after quietPeriod without a failure.
type breaker struct {
	open   atomic.Bool // read on every operation without the lock
	outage atomic.Bool

	mu          sync.Mutex
	until       time.Time
	probing     bool
	openings    int // in this outage
	announced   bool
	lastFailure time.Time
}

func (b *breaker) isOpen() bool { return b.open.Load() }

// allow says whether an operation may run, and whether it is the probe.
func (b *breaker) allow(now time.Time) (probe, ok bool) {
	if !b.open.Load() {
		return false, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open.Load() {
		return false, true
	}
	if b.probing || now.Before(b.until) {
		return false, false
	}
	b.probing = true
	return true, true
}

// success reports whether this is the first answer of an outage.
func (b *breaker) success(now time.Time, probe bool) bool {
	if !probe && !b.outage.Load() {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
		b.open.Store(false)
	}
	if b.outage.Load() && b.announced && now.Sub(b.lastFailure) >= quietPeriod {
		b.outage.Store(false)
	}
	if !b.outage.Load() || b.announced {
		return false
	}
	b.announced = true
	return true
}

// failure reports whether it starts an outage.
func (b *breaker) failure(now time.Time, probe bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.outage.Load() && now.Sub(b.lastFailure) >= quietPeriod {
		b.outage.Store(false) // the last one is long over
	}
	b.lastFailure = now
	if probe {
		b.probing = false
	}
	if probe || !b.open.Load() {
		if !b.outage.Load() {
			b.openings, b.announced = 0, false
		}
		b.until = now.Add(min(breakerBase<<min(b.openings, 8), breakerMax))
		b.openings++
		b.open.Store(true)
	}
	if b.outage.Load() {
		return false
	}
	b.outage.Store(true)
	return true
}

// abandon lets another probe run when this one ended for its caller's sake.
func (b *breaker) abandon(probe bool) {
	if !probe {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
}
