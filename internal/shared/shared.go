// Package shared is the tier that tokenvendor's replicas share, on Redis
// (one node or a Redis Cluster): sealed credentials with the leases that let
// one replica at a time fetch a key and the notices that wake the replicas
// waiting for it (Cache, a cache.Shared), request budgets counted across
// replicas (Limiter), and the pace of STS calls (Budget).
//
// Redis is help, never a dependency. When Redis is down, refusing or slow
// past Config.Timeout, the replica acts alone: a lookup is a miss, a lease
// is granted, a budget is counted in the process. A breaker then keeps the
// replica from asking Redis for a while, so that an outage costs one
// timeout, not one per request, and is logged once; one probe at a time, at
// most every few seconds, finds Redis back.
//
// The breaker tells an outage from load. Redis refusing outright (no
// server, AUTH refused, full) opens it at once. A timeout or a cut
// connection opens it only when several come in a row with no answer in
// between, or when they are most of a second's operations; a timeout while
// Redis answers other operations is this replica's own load, and the
// operation is tried again. Waiting for a connection of the replica's own
// pool is never a failure of Redis.
package shared

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
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

// The connection pool is sized for a storm: hundreds of misses in flight on
// one replica, each a round trip or two. A wait for a connection is bounded
// by the caller's own deadline and by poolWaitTimeouts round-trip timeouts,
// and it ends at once when the breaker opens.
const (
	poolPerCPU       = 32
	poolMin          = 64
	poolWaitTimeouts = 8
)

// maxAttempts bounds how often an operation is sent when it timed out while
// Redis answered others.
const maxAttempts = 3

// confirmTimeouts is how many timeouts the check of a suspect breaker may
// wait for Redis's answer before the breaker opens.
const confirmTimeouts = 2

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
	// Timeout bounds one round trip, from when it is sent. Default
	// DefaultTimeout.
	Timeout time.Duration
	// PoolSize is the most connections the replica opens; default
	// poolPerCPU a CPU, at least poolMin.
	PoolSize   int
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	Now        func() time.Time
	// TracerProvider traces every Redis operation; default none.
	TracerProvider trace.TracerProvider
	// KnownRevision, when set, is the revision the replica knows of a group
	// (the tenant store's, for a tenant); a lookup raises Redis's to it.
	// Revisions, when set, is told a group's revision whenever a lookup
	// reads one beyond it (the tenant changed, and this replica was not
	// told yet), before the replica fetches anything for it.
	KnownRevision func(group string) int64
	Revisions     func(group string, rev int64)
	// Tenants, when set, is told what other processes announce of a tenant
	// group (AnnounceTenant); Resync when announcements may have been
	// missed (the subscription was lost and is back).
	Tenants func(group string, rev int64, suspended bool)
	Resync  func()
}

// Tier is a connection to the shared Redis with its breaker. It is safe for
// concurrent use.
type Tier struct {
	cfg     Config
	rdb     goredis.UniversalClient
	check   goredis.UniversalClient // for the check of a suspect breaker
	rate    *redis_rate.Limiter
	log     *slog.Logger
	brk     breaker
	notices *notices

	epoch time.Time
	// lastAnswer is when Redis last answered, as time since epoch: a
	// timeout that began before it is load, not an outage.
	lastAnswer      atomic.Int64
	lastRejectedLog atomic.Int64 // unix nanoseconds
	tracer          trace.Tracer

	errors  *prometheus.CounterVec
	lookups *prometheus.CounterVec
}

// Operation labels of tokenvendor_redis_errors_total.
var operations = []string{"get", "lease", "set", "release", "limit", "budget", "ping"}

// New returns a Tier. It does not connect: the first operation does, and
// Ping tells whether Redis answers. Close releases it.
func New(cfg Config) (*Tier, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.PoolSize == 0 {
		cfg.PoolSize = max(poolMin, poolPerCPU*runtime.GOMAXPROCS(0))
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
	if cfg.Timeout < 0 || cfg.PoolSize < 0 {
		errs = append(errs, errors.New("negative timeout or pool size"))
	}
	rdb, err := client(cfg)
	if err != nil {
		errs = append(errs, err)
	}
	// The check of a suspect breaker waits longer for its answer, on a
	// connection of its own.
	checkCfg := cfg
	checkCfg.Timeout, checkCfg.PoolSize = confirmTimeouts*cfg.Timeout, 1
	check, _ := client(checkCfg)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	t := &Tier{cfg: cfg, rdb: rdb, check: check, rate: redis_rate.NewLimiter(rdb), log: cfg.Logger, epoch: time.Now(),
		tracer: tracing.Tracer(cfg.TracerProvider, "github.com/tokenvendor/tokenvendor/internal/shared")}
	t.brk.init()
	f := promauto.With(cfg.Registerer)
	t.errors = f.NewCounterVec(prometheus.CounterOpts{
		Name: "tokenvendor_redis_errors_total",
		Help: "Redis operations that failed or timed out, by operation (get: look up and lease, lease: keep a lease alive, set: store, release, limit, budget, ping).",
	}, []string{"op"})
	t.lookups = f.NewCounterVec(prometheus.CounterOpts{
		Name: "tokenvendor_shared_cache_requests_total",
		Help: "Lookups in the shared tier on a local miss or refresh, by result (hit, miss, rejected: sealed value that does not open, error: Redis failed or is being bypassed).",
	}, []string{"result"})
	for _, op := range operations {
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
	t.notices = startNotices(rdb, cfg)
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
// password and TLS; the timeouts and pool are the Config's, whatever the
// URL says. Errors never show the URL: it may hold a password.
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
	// A round trip is bounded from when it is sent (socket deadlines), not
	// from when it waited for a connection; the caller's context bounds
	// both.
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = cfg.Timeout, cfg.Timeout, cfg.Timeout
	o.PoolSize, o.PoolTimeout = cfg.PoolSize, poolWaitTimeouts*cfg.Timeout
	o.ContextTimeoutEnabled = true
	o.MaxRetries = -1   // the breaker decides what is tried again
	o.DialerRetries = 1 // a refused dial is an answer: Redis is not there
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

// Close stops the notices and closes the connections.
func (t *Tier) Close() error {
	t.notices.close()
	t.check.Close()
	return t.rdb.Close()
}

// Ping asks Redis whether it answers, through the breaker, so that a Redis
// down at start-up is logged once and bypassed like any outage.
func (t *Tier) Ping(ctx context.Context) error {
	return t.do(ctx, "ping", true, func(ctx context.Context) error { return t.rdb.Ping(ctx).Err() })
}

// since is the monotonic time since the tier was made.
func (t *Tier) since() int64 { return int64(time.Since(t.epoch)) }

// do runs one Redis operation through the breaker. redis.Nil (no such key)
// is an answer, not a failure. An idempotent operation that timed out while
// Redis answered others is sent again, up to maxAttempts times.
func (t *Tier) do(ctx context.Context, op string, idempotent bool, f func(context.Context) error) error {
	ctx, span := tracing.Start(ctx, t.tracer, "redis."+op, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system", "redis")))
	defer span.End()
	for attempt := 1; ; attempt++ {
		probe, ok := t.brk.allow(t.cfg.Now())
		if !ok {
			span.SetAttributes(attribute.Bool("tokenvendor.redis.bypassed", true))
			return errBypassed
		}
		sent := t.since()
		err, gated := t.attempt(ctx, probe, f)
		switch kind := classify(err); {
		case kind == answered:
			t.lastAnswer.Store(t.since())
			if t.brk.success(t.cfg.Now(), probe) {
				t.log.Info("redis answers again; replicas share once more")
			}
			return err
		case ctx.Err() != nil || gated || kind == abandoned:
			// The caller stopped waiting, or the breaker opened while this
			// waited: that says nothing more about Redis.
			t.brk.abandon(probe)
			if gated {
				return errBypassed
			}
			return err
		case kind == congested:
			// No connection free within the wait: this replica is busy,
			// Redis is not down. This operation goes without.
			t.errors.WithLabelValues(op).Inc()
			t.brk.abandon(probe)
			return err
		default:
			span.SetStatus(codes.Error, "redis failed")
			t.errors.WithLabelValues(op).Inc()
			if c, ok := t.rdb.(*goredis.ClusterClient); ok {
				// A node failed: the cluster may have promoted its replica.
				// The client learns only from a redirect or once a minute.
				c.ReloadState(ctx)
			}
			alive := t.lastAnswer.Load() > sent
			t.judge(t.brk.failure(t.cfg.Now(), probe, kind == hard, alive), op, err)
			if !idempotent || !alive || kind != soft || attempt >= maxAttempts {
				return err
			}
		}
	}
}

// judge acts on what a failure made of the breaker: a suspect breaker is
// checked, in the background, with a ping bounded by confirmTimeouts
// timeouts (a replica that merely waited on its own CPU gets its answer;
// meanwhile each request still meets at most one timeout); an opening
// wakes every replica's waiter here, for no notice will come through a
// Redis this replica no longer asks, and an outage is logged once.
func (t *Tier) judge(v verdict, op string, err error) {
	switch v {
	case suspect:
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), confirmTimeouts*t.cfg.Timeout)
			defer cancel()
			perr := t.check.Ping(ctx).Err()
			if errors.Is(perr, goredis.ErrClosed) {
				return // the tier was closed meanwhile
			}
			if perr != nil {
				t.errors.WithLabelValues("ping").Inc()
			}
			// The check's answer is no evidence for the operations that
			// wait: they are retried only on answers of their own kind.
			t.judge(t.brk.confirmed(t.cfg.Now(), perr == nil), op, errors.Join(err, perr))
		}()
	case opened, outage:
		t.notices.wakeAll()
		if v == outage {
			t.log.Warn("redis unavailable; this replica acts alone (own cache, STS and limits) until it answers again",
				"op", op, "err", err)
		}
	}
}

// attempt runs f once. Unless it is the probe, it is cut short when the
// breaker opens meanwhile (gated): what waits for a connection or an answer
// then acts alone at once.
func (t *Tier) attempt(ctx context.Context, probe bool, f func(context.Context) error) (err error, gated bool) {
	if probe {
		return f(ctx), false
	}
	octx, cancel := context.WithCancel(ctx)
	defer cancel()
	var cut atomic.Bool
	stop := context.AfterFunc(t.brk.gate(), func() { cut.Store(true); cancel() })
	err = f(octx)
	stop()
	return err, cut.Load() && err != nil
}

// failureKind sorts what an operation returned.
type failureKind int

const (
	answered  failureKind = iota // Redis answered (redis.Nil included)
	abandoned                    // the client was closed
	congested                    // no connection of the pool's free in time
	soft                         // a timeout or a cut connection: Redis may only be slow
	hard                         // refused outright: no server, AUTH, full, read-only
)

func classify(err error) failureKind {
	var redisErr goredis.Error
	var opErr *net.OpError
	switch {
	case err == nil || errors.Is(err, goredis.Nil):
		return answered
	case errors.Is(err, goredis.ErrClosed):
		return abandoned
	case errors.Is(err, goredis.ErrPoolTimeout):
		return congested
	case errors.As(err, &redisErr):
		return hard
	case errors.As(err, &opErr) && opErr.Op == "dial" && !opErr.Timeout():
		return hard
	}
	return soft
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
