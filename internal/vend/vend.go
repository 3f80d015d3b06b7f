// Package vend is the use case: it decides which tenant a caller may have
// credentials for, renders that tenant's session policy and tags, and
// returns cached or freshly assumed role credentials.
package vend

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/cache"
	"github.com/tokenvendor/tokenvendor/internal/policy"
	"github.com/tokenvendor/tokenvendor/internal/tenants"
	"github.com/tokenvendor/tokenvendor/internal/tracing"
)

// packedPolicyWarnPercent is the share of STS's packed policy limit above
// which every AssumeRole logs a warning.
const packedPolicyWarnPercent = 90

// Errors returned by Vend; the api package maps each to a status.
var (
	ErrInvalidRequest      = errors.New("invalid request")
	ErrInvalidTenant       = errors.New("invalid tenant")
	ErrForbidden           = errors.New("forbidden")
	ErrUnknownProfile      = errors.New("unknown profile")
	ErrUpstream            = errors.New("sts refused the request")
	ErrUpstreamUnavailable = errors.New("sts unavailable")
	ErrRateLimited         = errors.New("rate limited")
	// ErrTenantUnsettled is a tenant that changed while the tenant store
	// cannot confirm how yet; it wraps ErrUpstreamUnavailable too.
	ErrTenantUnsettled = errors.New("the tenant changed and the tenant store cannot confirm how yet")
)

// STS is the part of the STS API the service consumes; *sts.Client has it.
type STS interface {
	AssumeRole(ctx context.Context, in *sts.AssumeRoleInput, optFns ...func(*sts.Options)) (*sts.AssumeRoleOutput, error)
}

// Limiter bounds requests per key (a caller, a tenant). *limit.Limiter
// counts in the process; the shared tier's limiter across replicas.
type Limiter interface {
	Allow(ctx context.Context, key string) (bool, time.Duration)
}

// Budget paces AssumeRole calls (sts.max_rps). *limit.Pace counts in the
// process; the shared tier's budget across replicas.
type Budget interface {
	// Take takes a turn: for a call that must happen (spare false), the
	// next one within maxWait, saying how long to wait for it; for a call
	// that may be put off, one only when it is free now.
	Take(ctx context.Context, spare bool, maxWait time.Duration) (wait time.Duration, ok bool)
}

// Directory knows the tenants: the registry's allow-list and file, and the
// tenant store.
type Directory interface {
	Standing(tenant string) tenants.Standing
	// Attributes are the tenant's attributes (its store item's), which
	// role templates read; nil when it has none.
	Attributes(tenant string) map[string]string
}

// Reasons a tenant is refused: the label of tokenvendor_tenant_refusals_total
// and the audit line's refusal.
const (
	RefusedOtherTenant = "other_tenant" // named a tenant the caller may not name
	RefusedUnknown     = "unknown"      // not in the registry or store
	RefusedSuspended   = "suspended"    // suspended in the tenant store
	RefusedInvalid     = "invalid"      // outside the tenant pattern or floor
)

// refusal is a tenant refused for a reason.
type refusal struct {
	reason string
	err    error
}

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

func refuse(reason string, err error) error { return &refusal{reason: reason, err: err} }

// Refusal is the reason err refuses a tenant, or "".
func Refusal(err error) string {
	var r *refusal
	if errors.As(err, &r) {
		return r.reason
	}
	return ""
}

// Profile is one configured way of vending credentials.
type Profile struct {
	Name string
	// Role renders the role each tenant's session assumes and the
	// ExternalId it presents: one for all (the pool), or each tenant's own.
	Role     *policy.Role
	Duration time.Duration
	Template *policy.Template
}

// Config configures a Service.
type Config struct {
	Profiles []Profile
	Tenants  *policy.TenantRule
	// OverrideScope, when set, lets a caller whose token carries it ask for
	// any tenant's credentials.
	OverrideScope string
	STS           STS
	// MaxDuration, when set, caps every profile's duration: AWS allows at
	// most one hour for a session assumed with a role session's credentials
	// (role chaining).
	MaxDuration time.Duration
	// Directory, when set, says which tenants are known and which are
	// suspended; without one every valid tenant id is known.
	Directory Directory
	// CallerLimit and TenantLimit, when set, bound requests per caller
	// subject and per tenant.
	CallerLimit, TenantLimit Limiter
	// Budget, when set, paces AssumeRole calls: callers that wait on STS
	// take turns in order, and refreshes ahead only turns left spare.
	Budget Budget
	// Sessions names role sessions and source identities; default
	// tenant@profile and no source identity.
	Sessions *policy.SessionNamer
	// Cache configures the credential cache; Recoverable and OnEvict are
	// set by New.
	Cache cache.Config
	// Shared, when set, is the tier of credentials the service's replicas
	// share (Redis): one AssumeRole per key across all of them.
	Shared     cache.Shared[Credentials]
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	Now        func() time.Time
	// TracerProvider traces vending, the cache and STS; default none.
	TracerProvider trace.TracerProvider
	// TenantAttribute puts the tenant id on spans; off by default, as
	// tenants are not metric labels either.
	TenantAttribute bool
}

// Request is what a caller asks for. Both fields are optional.
type Request struct {
	Profile  string
	TenantID string
}

// Credentials are temporary AWS credentials for one tenant of one profile.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Expiration      time.Time
	TenantID        string
	Profile         string
}

// LogValue keeps the secret parts of credentials out of every log.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("access_key_id", c.AccessKeyID),
		slog.String("secret_access_key", "REDACTED"),
		slog.String("session_token", "REDACTED"),
		slog.Time("expiration", c.Expiration),
		slog.String("tenant", c.TenantID),
		slog.String("profile", c.Profile),
	)
}

// String keeps the secret parts of credentials out of formatted output.
func (c Credentials) String() string {
	return fmt.Sprintf("{AccessKeyID:%s SecretAccessKey:REDACTED SessionToken:REDACTED Expiration:%s TenantID:%s Profile:%s}",
		c.AccessKeyID, c.Expiration.Format(time.RFC3339), c.TenantID, c.Profile)
}

// GoString is String, so %#v redacts too.
func (c Credentials) GoString() string { return c.String() }

// Service vends credentials. It is safe for concurrent use.
type Service struct {
	cfg   Config
	rules atomic.Pointer[rules]
	creds *cache.Cache[Credentials]
	log   *slog.Logger

	cacheRequests *prometheus.CounterVec
	stsRequests   *prometheus.CounterVec
	budgetWaits   *prometheus.CounterVec
	refusals      *prometheus.CounterVec
	stsDuration   prometheus.Histogram
	tracer        trace.Tracer
}

// rules are the parts of the configuration a reload replaces as a whole.
type rules struct {
	profiles      map[string]Profile
	only          string // the profile's name when exactly one is configured
	tenants       *policy.TenantRule
	overrideScope string
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Cache.Now == nil {
		cfg.Cache.Now = cfg.Now
	}
	if cfg.STS == nil {
		return nil, errors.New("no STS client")
	}

	if cfg.Sessions == nil {
		n, err := policy.NewSessionNamer("", false)
		if err != nil {
			return nil, err
		}
		cfg.Sessions = n
	}
	s := &Service{cfg: cfg, log: cfg.Logger, tracer: tracing.Tracer(cfg.TracerProvider, "github.com/tokenvendor/tokenvendor/internal/vend")}
	if s.tracer != nil {
		// A refresh ahead runs after the hit that started it has ended: it
		// gets a trace of its own, linked to that hit's.
		cfg.Cache.Background = func(ctx context.Context) (context.Context, func()) {
			ctx, span := s.tracer.Start(ctx, "cache.refresh", trace.WithNewRoot(), trace.WithLinks(trace.LinkFromContext(ctx)))
			return ctx, func() { span.End() }
		}
	}
	f := promauto.With(cfg.Registerer)
	evictions := f.NewCounter(prometheus.CounterOpts{
		Name: "tokenvendor_cache_evictions_total",
		Help: "Credentials dropped from the cache to respect its size bound.",
	})
	cfg.Cache.Recoverable = func(err error) bool { return errors.Is(err, ErrUpstreamUnavailable) }
	cfg.Cache.OnEvict = evictions.Inc
	creds, err := cache.New[Credentials](cfg.Cache, cfg.Shared)
	if err != nil {
		return nil, err
	}
	s.creds = creds
	if err := s.Update(cfg.Profiles, cfg.Tenants, cfg.OverrideScope); err != nil {
		return nil, err
	}
	s.register(f)
	return s, nil
}

// register makes the service's metrics, every series of a known label set
// at 0 from the start, for alerts on rates.
func (s *Service) register(f promauto.Factory) {
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tokenvendor_cache_entries",
		Help: "Credentials held in the cache.",
	}, func() float64 { return float64(s.creds.Len()) })
	counters := func(name, help, label string, values ...string) *prometheus.CounterVec {
		c := f.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label})
		for _, v := range values {
			c.WithLabelValues(v)
		}
		return c
	}
	s.cacheRequests = counters("tokenvendor_cache_requests_total", "Credential cache lookups, by result (hit, miss, stale).",
		"result", string(cache.Hit), string(cache.Miss), string(cache.Stale))
	s.stsRequests = counters("tokenvendor_sts_requests_total", "AssumeRole calls made to STS, by outcome (success, throttled, refused, unavailable).",
		"outcome", "success", "throttled", "refused", "unavailable")
	s.refusals = counters("tokenvendor_tenant_refusals_total",
		"Requests refused for their tenant, by reason (other_tenant: a tenant the caller may not name; unknown: in no registry or store; suspended; invalid: outside the pattern).",
		"reason", RefusedOtherTenant, RefusedUnknown, RefusedSuspended, RefusedInvalid)
	s.budgetWaits = counters("tokenvendor_sts_budget_waits_total",
		"AssumeRole calls held back by sts.max_rps, by kind (miss: a caller waited for a turn or found none in time; refresh: a refresh ahead was put off).",
		"kind", "miss", "refresh")
	s.stsDuration = f.NewHistogram(prometheus.HistogramOpts{
		Name:    "tokenvendor_sts_request_duration_seconds",
		Help:    "Duration of AssumeRole calls.",
		Buckets: prometheus.DefBuckets,
	})
}

// Update replaces the profiles, the tenant rule and the override scope at
// once, for a configuration reload. Requests in flight finish with the rules
// they started with. Cached credentials stay valid: their keys hold every STS
// input, so a changed policy simply makes new keys, and old entries age out.
func (s *Service) Update(profiles []Profile, tenants *policy.TenantRule, overrideScope string) error {
	var errs []error
	if tenants == nil {
		errs = append(errs, errors.New("no tenant rule"))
	}
	if len(profiles) == 0 {
		errs = append(errs, errors.New("no profiles"))
	}
	r := &rules{profiles: make(map[string]Profile, len(profiles)), tenants: tenants, overrideScope: overrideScope}
	for _, p := range profiles {
		if _, dup := r.profiles[p.Name]; dup {
			errs = append(errs, fmt.Errorf("profile %s: defined twice", p.Name))
		}
		if p.Template == nil || p.Role == nil {
			errs = append(errs, fmt.Errorf("profile %s: no template or no role", p.Name))
		}
		if s.cfg.MaxDuration > 0 && p.Duration > s.cfg.MaxDuration {
			s.log.Warn("clamping profile duration: the service's own credentials are a role session, and AWS caps chained sessions",
				"profile", p.Name, "configured", p.Duration.String(), "clamped", s.cfg.MaxDuration.String())
			p.Duration = s.cfg.MaxDuration
		}
		// Checked after the clamp: a duration the cache cannot serve would
		// send every request to STS.
		if err := s.creds.CheckLifetime(p.Duration); err != nil {
			errs = append(errs, fmt.Errorf("profile %s: duration %s: %w", p.Name, p.Duration, err))
		}
		r.profiles[p.Name] = p
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if len(profiles) == 1 {
		r.only = profiles[0].Name
	}
	s.rules.Store(r)
	return nil
}

// Wait blocks until background refreshes in progress have finished.
func (s *Service) Wait() { s.creds.Wait() }

// Forget drops every credential cached for tenant, in every profile: the
// tenant changed (suspended, resumed), and what was minted before must not
// be served after.
func (s *Service) Forget(tenant string) { s.creds.RemoveGroup(tenants.Group(tenant)) }

// Grant is the outcome of a Vend: the credentials and how they were decided,
// for the audit log. On a refusal it holds what was decided before it.
type Grant struct {
	Credentials
	SessionName string
	// Cache is how the credential cache answered, "" when it was not reached.
	Cache cache.Result
	// Refusal is why the tenant was refused (RefusedOtherTenant, …), "" when
	// it was not.
	Refusal string
}

// Vend returns credentials for the tenant the caller may act for.
func (s *Service) Vend(ctx context.Context, caller auth.Caller, req Request) (g Grant, err error) {
	ctx, span := tracing.Start(ctx, s.tracer, "vend")
	defer func() {
		if g.Refusal = Refusal(err); g.Refusal != "" {
			s.refusals.WithLabelValues(g.Refusal).Inc()
		}
		if span.IsRecording() {
			span.SetAttributes(attribute.String("tokenvendor.profile", g.Profile))
			if s.cfg.TenantAttribute && g.TenantID != "" {
				span.SetAttributes(attribute.String("tokenvendor.tenant", g.TenantID))
			}
			if err != nil {
				span.SetStatus(codes.Error, "not vended")
			}
		}
		span.End()
	}()
	if s.cfg.CallerLimit != nil {
		if ok, wait := s.cfg.CallerLimit.Allow(ctx, caller.LimitKey()); !ok {
			return g, &rateLimitedError{what: "caller", retryAfter: wait}
		}
	}
	rules := s.rules.Load()
	prof, err := rules.profile(req.Profile)
	if err != nil {
		return g, err
	}
	g.Profile = prof.Name
	tenant, err := rules.tenant(caller, req.TenantID)
	if err != nil {
		if Refusal(err) == RefusedOtherTenant {
			g.TenantID = req.TenantID // valid (checked first): who was reached for, for the audit line
		}
		return g, err
	}
	g.TenantID = tenant
	if err := s.standing(tenant); err != nil {
		return g, err
	}
	if ok, wait := allow(ctx, s.cfg.TenantLimit, tenant); !ok {
		return g, &rateLimitedError{what: "tenant", retryAfter: wait}
	}
	in, err := s.input(prof, tenant, caller.Subject)
	if err != nil {
		return g, err
	}
	g.SessionName = aws.ToString(in.RoleSessionName)
	key := cache.Key{Group: tenants.Group(tenant), ID: cacheKey(prof.Name, in)}
	creds, result, err := s.cached(ctx, key, in, prof.Name, tenant)
	g.Cache = result
	if err != nil {
		return g, elsewhere(err, tenant)
	}
	// The key holds the tenant and profile, and a shared entry is bound to
	// its key; this is the last line of defence, should either ever fail.
	if creds.TenantID != tenant || creds.Profile != prof.Name {
		s.creds.Remove(key)
		s.log.Error("cached credentials are another tenant's or profile's; refused and dropped", "profile", prof.Name, "tenant", tenant)
		return g, fmt.Errorf("cached credentials for tenant %s of profile %s belong to another", tenant, prof.Name)
	}
	g.Credentials = creds
	return g, nil
}

// Input is the AssumeRole request Vend sends for a tenant of a profile
// and a calling subject, should the cache not answer: for `tokenvendor
// render`, which prints exactly that. The tenant's standing and the
// caller's rights are not checked.
func (s *Service) Input(profile, tenant, subject string) (*sts.AssumeRoleInput, error) {
	prof, err := s.rules.Load().profile(profile)
	if err != nil {
		return nil, err
	}
	return s.input(prof, tenant, subject)
}

// input is the AssumeRole request for a tenant of a profile and a caller:
// the tenant's role and ExternalId, the rendered policy and tags, the
// session name and source identity, the duration after any clamp.
func (s *Service) input(prof Profile, tenant, subject string) (*sts.AssumeRoleInput, error) {
	r, err := prof.Template.Render(tenant)
	if err != nil {
		if errors.Is(err, policy.ErrInvalidTenant) {
			return nil, refuse(RefusedInvalid, fmt.Errorf("%w: %w", ErrInvalidTenant, err))
		}
		return nil, fmt.Errorf("render profile %s for tenant %s: %w", prof.Name, tenant, err)
	}
	target, err := s.target(prof, tenant)
	if err != nil {
		return nil, err
	}
	name, err := s.cfg.Sessions.Name(tenant, prof.Name, subject)
	if err != nil {
		return nil, err
	}
	in := &sts.AssumeRoleInput{
		RoleArn:         aws.String(target.RoleARN),
		RoleSessionName: aws.String(name),
		DurationSeconds: aws.Int32(int32(prof.Duration / time.Second)),
		Policy:          aws.String(r.Policy),
	}
	if si := s.cfg.Sessions.SourceIdentity(subject); si != "" {
		in.SourceIdentity = aws.String(si)
	}
	if target.ExternalID != "" {
		in.ExternalId = aws.String(target.ExternalID)
	}
	for _, t := range r.Tags {
		in.Tags = append(in.Tags, ststypes.Tag{Key: aws.String(t.Key), Value: aws.String(t.Value)})
	}
	return in, nil
}

// target is the role and ExternalId of a tenant of a profile. A tenant
// whose item lacks what the profile's role needs (its account, say) is
// refused before STS is called: the operator has not finished setting it
// up, and no malformed call is made.
func (s *Service) target(prof Profile, tenant string) (policy.Target, error) {
	var attrs map[string]string
	if s.cfg.Directory != nil {
		attrs = s.cfg.Directory.Attributes(tenant)
	}
	t, err := prof.Role.Render(tenant, attrs)
	switch {
	case errors.Is(err, policy.ErrInvalidTenant):
		return t, refuse(RefusedInvalid, fmt.Errorf("%w: %w", ErrInvalidTenant, err))
	case errors.Is(err, policy.ErrTenantNotSetUp):
		s.log.Warn("tenant not set up for the profile's role: refused", "profile", prof.Name, "tenant", tenant, "err", err)
		return t, fmt.Errorf("%w: profile %s, tenant %s: %w", ErrForbidden, prof.Name, tenant, err)
	case err != nil:
		return t, fmt.Errorf("render profile %s's role for tenant %s: %w", prof.Name, tenant, err)
	}
	return t, nil
}

// cached returns the credentials of key from the cache, which calls STS
// with in when it must: after checking the tenant's standing once more
// (what the shared tier just read may have told this replica that it
// changed) and taking a turn in the STS budget.
func (s *Service) cached(ctx context.Context, key cache.Key, in *sts.AssumeRoleInput, profile, tenant string) (Credentials, cache.Result, error) {
	ctx, span := tracing.Start(ctx, s.tracer, "cache")
	defer span.End()
	creds, result, err := s.creds.Get(ctx, key, func(ctx context.Context) (Credentials, time.Time, error) {
		if err := s.standing(tenant); err != nil {
			return Credentials{}, time.Time{}, cache.Skip(err)
		}
		if err := s.takeTurn(ctx, tenant); err != nil {
			return Credentials{}, time.Time{}, err
		}
		return s.assumeRole(ctx, in, profile, tenant)
	})
	if span.IsRecording() {
		span.SetAttributes(attribute.String("tokenvendor.cache.result", string(result)))
	}
	s.cacheRequests.WithLabelValues(string(result)).Inc()
	return creds, result, err
}

// elsewhere gives the failure of another replica's AssumeRole, which this
// one waited on, the sentinel its own failure would have had.
func elsewhere(err error, tenant string) error {
	var e *cache.ElsewhereError
	if !errors.As(err, &e) {
		return err
	}
	sentinel := ErrUpstream
	if e.Recoverable {
		sentinel = ErrUpstreamUnavailable
	}
	return fmt.Errorf("%w: assume role for tenant %s: %w", sentinel, tenant, err)
}

// allow asks l, when there is one, for a request of key.
func allow(ctx context.Context, l Limiter, key string) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	return l.Allow(ctx, key)
}

// rateLimitedError is a refusal for a caller or tenant over its budget.
type rateLimitedError struct {
	what       string
	retryAfter time.Duration
}

func (e *rateLimitedError) Error() string {
	return fmt.Sprintf("%s: too many requests for this %s", ErrRateLimited, e.what)
}

func (e *rateLimitedError) Is(target error) bool { return target == ErrRateLimited }

// RetryAfter says how long the caller of a refused request should wait.
func RetryAfter(err error) (time.Duration, bool) {
	var rl *rateLimitedError
	if errors.As(err, &rl) {
		return rl.retryAfter, true
	}
	return 0, false
}

func (r *rules) profile(name string) (Profile, error) {
	if name == "" {
		if r.only == "" {
			return Profile{}, fmt.Errorf("%w: several profiles are configured; name one", ErrInvalidRequest)
		}
		name = r.only
	}
	p, ok := r.profiles[name]
	if !ok {
		return Profile{}, fmt.Errorf("%w: no such profile", ErrUnknownProfile)
	}
	return p, nil
}

// tenant decides whose credentials the caller gets: its own tenant, or
// the one it names when that is the same or the caller holds the override
// scope or may name any tenant (AnyTenant). The id is checked before anything else sees it, so registries,
// limits and logs only ever hold valid tenant ids.
func (r *rules) tenant(caller auth.Caller, requested string) (string, error) {
	if caller.TenantFromToken && caller.TenantID == "" {
		return "", refuse(RefusedInvalid, fmt.Errorf("%w: the tenant token names no tenant (no usable tenant claim)", ErrForbidden))
	}
	if caller.TenantFromToken && requested == "" {
		// The caller serves one tenant at a time (a Lambda environment):
		// it names it, and the token must agree.
		return "", fmt.Errorf("%w: a caller whose tenant comes from a token names it in tenant_id (a Lambda function: the invoke's tenant)", ErrInvalidRequest)
	}
	if requested == "" || requested == caller.TenantID {
		if caller.TenantID == "" {
			return "", fmt.Errorf("%w: the caller has no tenant of its own (no usable tenant claim); name one with tenant_id if it may", ErrForbidden)
		}
		if err := r.tenants.Check(caller.TenantID); err != nil {
			return "", refuse(RefusedInvalid, fmt.Errorf("%w: the token's tenant claim: %w", ErrInvalidTenant, err))
		}
		return caller.TenantID, nil
	}
	if err := r.tenants.Check(requested); err != nil {
		return "", refuse(RefusedInvalid, fmt.Errorf("%w: %w", ErrInvalidTenant, err))
	}
	if !caller.AnyTenant && (r.overrideScope == "" || !caller.HasScope(r.overrideScope)) {
		return "", refuse(RefusedOtherTenant, fmt.Errorf("%w: the caller may not act for another tenant", ErrForbidden))
	}
	return requested, nil
}

// standing refuses a tenant the directory does not know, or knows as
// suspended; a tenant whose change the store cannot confirm yet is refused
// as if STS were unavailable, for a moment, rather than served on what may
// be a lifted suspension.
func (s *Service) standing(tenant string) error {
	if s.cfg.Directory == nil {
		return nil
	}
	switch s.cfg.Directory.Standing(tenant) {
	case tenants.Unknown:
		return refuse(RefusedUnknown, fmt.Errorf("%w: tenant not in the registry", ErrForbidden))
	case tenants.Suspended:
		return refuse(RefusedSuspended, fmt.Errorf("%w: tenant suspended", ErrForbidden))
	case tenants.Unsettled:
		return fmt.Errorf("%w: %w: tenant %s", ErrTenantUnsettled, ErrUpstreamUnavailable, tenant)
	}
	return nil
}

// takeTurn waits for an AssumeRole's turn in the STS budget, when there is
// one. A caller's call waits at most half of what is left of its fetch
// timeout, keeping the rest for STS; a refresh ahead goes only on a spare
// turn, and is otherwise put off (cache.Skip), so that it never makes a
// caller wait.
func (s *Service) takeTurn(ctx context.Context, tenant string) error {
	if s.cfg.Budget == nil {
		return nil
	}
	refresh := cache.Refreshing(ctx)
	var maxWait time.Duration
	if deadline, ok := ctx.Deadline(); ok {
		maxWait = time.Until(deadline) / 2 // the deadline is the real clock's
	}
	wait, ok := s.cfg.Budget.Take(ctx, refresh, maxWait)
	switch {
	case !ok && refresh:
		s.budgetWaits.WithLabelValues("refresh").Inc()
		return cache.Skip(fmt.Errorf("%w: refresh for tenant %s put off: no spare turn in sts.max_rps", ErrUpstreamUnavailable, tenant))
	case !ok:
		// Not a failure of STS, which was never asked: nothing to note for
		// the other replicas' waiters, who may have time to wait.
		s.budgetWaits.WithLabelValues("miss").Inc()
		return cache.Skip(fmt.Errorf("%w: assume role for tenant %s: no turn in sts.max_rps within the time the request may wait", ErrUpstreamUnavailable, tenant))
	case wait > 0:
		s.budgetWaits.WithLabelValues("miss").Inc()
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("%w: assume role for tenant %s: waiting for a turn in sts.max_rps: %w", ErrUpstreamUnavailable, tenant, ctx.Err())
		}
	}
	return nil
}

func (s *Service) assumeRole(ctx context.Context, in *sts.AssumeRoleInput, profile, tenant string) (Credentials, time.Time, error) {
	// Not the session policy, nor the role session name (it holds the
	// tenant): a trace shows where the time went, not what was asked.
	ctx, span := tracing.Start(ctx, s.tracer, "sts.AssumeRole", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("rpc.system", "aws-api"), attribute.String("rpc.service", "STS"),
			attribute.String("rpc.method", "AssumeRole")))
	defer span.End()
	start := s.cfg.Now()
	out, err := s.cfg.STS.AssumeRole(ctx, in)
	s.stsDuration.Observe(s.cfg.Now().Sub(start).Seconds())
	if err != nil {
		outcome, sentinel := classify(err)
		span.SetAttributes(attribute.String("tokenvendor.sts.outcome", outcome))
		span.SetStatus(codes.Error, outcome)
		s.stsRequests.WithLabelValues(outcome).Inc()
		s.log.Warn("assume role failed", "profile", profile, "tenant", tenant, "outcome", outcome, "err", err)
		return Credentials{}, time.Time{}, fmt.Errorf("%w: assume role for tenant %s: %w", sentinel, tenant, err)
	}
	c := out.Credentials
	if c == nil || c.AccessKeyId == nil || c.SecretAccessKey == nil || c.SessionToken == nil || c.Expiration == nil {
		s.stsRequests.WithLabelValues("refused").Inc()
		span.SetAttributes(attribute.String("tokenvendor.sts.outcome", "refused"))
		span.SetStatus(codes.Error, "no credentials in the answer")
		s.log.Warn("assume role returned no credentials", "profile", profile, "tenant", tenant)
		return Credentials{}, time.Time{}, fmt.Errorf("%w: assume role for tenant %s: no credentials in response", ErrUpstream, tenant)
	}
	s.stsRequests.WithLabelValues("success").Inc()
	span.SetAttributes(attribute.String("tokenvendor.sts.outcome", "success"))
	// STS packs the session policy and tags together and reports how much of
	// the packed limit they use; near 100 % the next tag or statement fails
	// with PackedPolicyTooLarge, so say so before it does.
	if p := out.PackedPolicySize; p != nil && *p >= packedPolicyWarnPercent {
		s.log.Warn("session policy and tags near STS's packed size limit", "profile", profile, "tenant", tenant, "packed_policy_percent", *p)
	}
	creds := Credentials{
		AccessKeyID:     *c.AccessKeyId,
		SecretAccessKey: *c.SecretAccessKey,
		SessionToken:    *c.SessionToken,
		Expiration:      c.Expiration.UTC(),
		TenantID:        tenant,
		Profile:         profile,
	}
	return creds, creds.Expiration, nil
}

// classify sorts an AssumeRole failure into an outcome label and the sentinel
// the caller sees: throttling, server errors, transport failures and errors
// about the service's own credentials are transient; every other answer from
// STS is a refusal of this request.
func classify(err error) (string, error) {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException":
			return "throttled", ErrUpstreamUnavailable
		case "ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "SignatureDoesNotMatch",
			"RequestExpired", "IncompleteSignature":
			// The service's own credentials, not the tenant's request: they
			// rotate, and the clock can drift. Not a reason to evict every
			// tenant's valid credentials.
			return "unavailable", ErrUpstreamUnavailable
		}
		var status interface{ HTTPStatusCode() int }
		if errors.As(err, &status) && status.HTTPStatusCode() >= 500 {
			return "unavailable", ErrUpstreamUnavailable
		}
		return "refused", ErrUpstream
	}
	return "unavailable", ErrUpstreamUnavailable
}

// cacheKey hashes every input that shapes the credentials. The caller's
// token is not one of them.
func cacheKey(profile string, in *sts.AssumeRoleInput) string {
	h := sha256.New()
	write := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	write(profile)
	write(aws.ToString(in.RoleArn))
	write(aws.ToString(in.RoleSessionName))
	write(fmt.Sprint(aws.ToInt32(in.DurationSeconds)))
	write(aws.ToString(in.Policy))
	write(aws.ToString(in.ExternalId))
	write(aws.ToString(in.SourceIdentity))
	write(fmt.Sprint(len(in.Tags)))
	for _, t := range in.Tags {
		write(aws.ToString(t.Key))
		write(aws.ToString(t.Value))
	}
	return hex.EncodeToString(h.Sum(nil))
}
