// Package awsiam knows callers by their AWS IAM identity, as Vault's aws
// auth method does: the caller signs an sts:GetCallerIdentity request with
// its own credentials and presents it instead of a token; the service sends
// it to its configured STS endpoint, and STS says who signed it. The
// configured principals map that identity to a tenant.
package awsiam

import (
	"context"
	"crypto/sha256"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"

	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/tracing"
)

// Limits and defaults.
const (
	// MaxSkew is how far X-Amz-Date may be from now, either way.
	MaxSkew = 5 * time.Minute
	// DefaultCacheTTL is how long a proven identity is remembered for the
	// exact signed request that proved it; never past MaxSkew.
	DefaultCacheTTL  = time.Minute
	defaultCacheSize = 10_000
	defaultTimeout   = 10 * time.Second
	maxResponseBytes = 64 << 10
)

// Principal maps an IAM role, and every session of it, to a tenant, to the
// right to name any tenant, or to a tenant a token signed upstream must
// name (TenantFromToken: a Lambda function in tenant isolation mode, whose
// every environment holds the one role).
type Principal struct {
	RoleARN         string
	TenantID        string
	AnyTenant       bool
	TenantFromToken bool
}

// Config configures a Verifier.
type Config struct {
	// ServerID is the value the signed X-Tokenvendor-Server-Id must hold.
	ServerID string
	// Endpoint is the STS endpoint every signed request is sent to, e.g.
	// https://sts.us-east-1.amazonaws.com; Region its region.
	Endpoint, Region string
	Principals       []Principal
	// CacheTTL bounds how long an identity is remembered; default 1 min,
	// at most MaxSkew. Negative turns the cache off.
	CacheTTL   time.Duration
	CacheSize  int
	HTTPClient *http.Client // default: the default transport; redirects are never followed
	// Timeout bounds one GetCallerIdentity, shared by the callers waiting
	// on it; default 10 s.
	Timeout    time.Duration
	Now        func() time.Time
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// TracerProvider traces verifications; default none.
	TracerProvider trace.TracerProvider
}

// Verifier checks signed requests. It is safe for concurrent use.
type Verifier struct {
	cfg      Config
	endpoint *url.URL
	roles    atomic.Pointer[map[roleKey]Principal]
	cache    *lru.Cache[[sha256.Size]byte, identity]
	flights  singleflight.Group
	results  *prometheus.CounterVec
	tracer   trace.Tracer
}

// identity is what STS said of one signed request, and until when it is
// remembered.
type identity struct {
	arn   string
	until time.Time
}

// roleKey is what an assumed-role ARN shares with its role's ARN: the
// partition, the account and the role's name, lower-cased (the ARN of a
// session drops the role's path, and a name is unique in an account,
// without regard to case).
type roleKey struct{ partition, account, name string }

var (
	roleARNPattern        = regexp.MustCompile(`^arn:(aws[a-z-]*):iam::(\d{12}):role/(?:[\w+=,.@/-]*/)?([\w+=,.@-]{1,64})$`)
	assumedRoleARNPattern = regexp.MustCompile(`^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([\w+=,.@-]{1,64})/[\w+=,.@-]{1,64}$`)
)

// results are the values of tokenvendor_aws_iam_requests_total's result.
var results = []string{"verified", "cached", "malformed", "stale", "server_id", "signature", "unknown_principal", "unavailable"}

// New returns a Verifier.
func New(cfg Config) (*Verifier, error) {
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = defaultCacheSize
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	// A copy that never follows a redirect: STS answers where it is asked.
	client := *cfg.HTTPClient
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cfg.HTTPClient = &client
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	if cfg.ServerID == "" {
		errs = append(errs, settingError("server_id", "required"))
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.User != nil {
		errs = append(errs, settingError("sts_endpoint", "not an http(s) URL without query or user"))
	}
	if u != nil && ((u.Scheme == "https" && u.Port() == "443") || (u.Scheme == "http" && u.Port() == "80")) {
		// SigV4 signers drop a default port from the Host they sign.
		errs = append(errs, settingError("sts_endpoint", "leave out the scheme's default port"))
	}
	if !regionPattern.MatchString(cfg.Region) {
		errs = append(errs, settingError("region", "not an AWS region"))
	}
	if cfg.CacheTTL > MaxSkew {
		errs = append(errs, settingError("cache_ttl", "at most %s, the life of a signature", MaxSkew))
	}
	roles, err := compilePrincipals(cfg.Principals)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if u.Path == "" {
		u.Path = "/"
	}
	cfg.Principals = nil // in roles from now on, which a reload replaces
	v := &Verifier{cfg: cfg, endpoint: u, tracer: tracing.Tracer(cfg.TracerProvider, tracerName)}
	v.roles.Store(&roles)
	if cfg.CacheTTL > 0 {
		v.cache, err = lru.New[[sha256.Size]byte, identity](cfg.CacheSize)
		if err != nil {
			return nil, err
		}
	}
	v.results = promauto.With(cfg.Registerer).NewCounterVec(prometheus.CounterOpts{
		Name: "tokenvendor_aws_iam_requests_total",
		Help: "Signed AWS requests presented by callers, by result.",
	}, []string{"result"})
	for _, r := range results {
		v.results.WithLabelValues(r)
	}
	return v, nil
}

const tracerName = "github.com/tokenvendor/tokenvendor/internal/awsiam"

// SettingError is a problem of one setting of a Config, named as in the
// aws_iam section of tokenvendor's config (server_id, principals[2].role_arn).
type SettingError struct {
	Setting, Problem string
}

func (e *SettingError) Error() string { return e.Setting + ": " + e.Problem }

func settingError(setting, format string, args ...any) error {
	return &SettingError{Setting: setting, Problem: fmt.Sprintf(format, args...)}
}

// compilePrincipals checks ps and indexes them by role.
func compilePrincipals(ps []Principal) (map[roleKey]Principal, error) {
	var errs []error
	roles := map[roleKey]Principal{}
	for i, p := range ps {
		m := roleARNPattern.FindStringSubmatch(p.RoleARN)
		switch {
		case m == nil:
			errs = append(errs, settingError(fmt.Sprintf("principals[%d].role_arn", i), "not an IAM role ARN"))
			continue
		case count(p.TenantID != "", p.AnyTenant, p.TenantFromToken) != 1:
			errs = append(errs, settingError(fmt.Sprintf("principals[%d]", i), "one of tenant, any_tenant or tenant_from"))
		}
		k := roleKey{m[1], m[2], strings.ToLower(m[3])}
		if _, dup := roles[k]; dup {
			errs = append(errs, settingError(fmt.Sprintf("principals[%d].role_arn", i), "the same role as an entry before (a role's path does not tell it apart)"))
		}
		roles[k] = p
	}
	return roles, errors.Join(errs...)
}

// SameRole reports whether two role ARNs name one role: the same
// partition, account and name, whatever their paths (a session's ARN drops
// the path) and the case of the name (unique regardless of it). Two
// strings that are not role ARNs are compared as they are.
func SameRole(a, b string) bool {
	ma, mb := roleARNPattern.FindStringSubmatch(a), roleARNPattern.FindStringSubmatch(b)
	if ma == nil || mb == nil {
		return strings.EqualFold(a, b)
	}
	return ma[1] == mb[1] && ma[2] == mb[2] && strings.EqualFold(ma[3], mb[3])
}

// count is how many of bs hold.
func count(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// Principals are checked principals, ready to be used.
type Principals struct{ roles map[roleKey]Principal }

// CompilePrincipals checks ps, for a config reload that must check
// everything before it changes anything.
func CompilePrincipals(ps []Principal) (*Principals, error) {
	roles, err := compilePrincipals(ps)
	if err != nil {
		return nil, err
	}
	return &Principals{roles: roles}, nil
}

// UsePrincipals replaces the principals. Identities already remembered are
// mapped anew on their next use: the cache holds who signed, not what that
// was allowed.
func (v *Verifier) UsePrincipals(p *Principals) { v.roles.Store(&p.roles) }

// PrincipalCount is the number of principals in force.
func (v *Verifier) PrincipalCount() int { return len(*v.roles.Load()) }

// refusal is an authentication failure with its result label.
type refusal struct {
	result string
	err    error
}

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

func refuse(result, format string, args ...any) *refusal {
	return &refusal{result: result, err: fmt.Errorf("%w: %s", auth.ErrUnauthenticated, fmt.Sprintf(format, args...))}
}

// Verify returns the caller that signed the request in signed, the value
// of an "Authorization: AWS-IAM" header. A request that is malformed,
// signed for another server, dated more than MaxSkew from now or refused
// by STS wraps auth.ErrUnauthenticated; an identity no principal names,
// auth.ErrUnknownPrincipal; STS unreachable or throttling,
// auth.ErrIdentityUnavailable.
func (v *Verifier) Verify(ctx context.Context, signed string) (auth.Caller, error) {
	ctx, span := tracing.Start(ctx, v.tracer, "verify.aws_iam")
	defer span.End()
	caller, result, err := v.verify(ctx, signed)
	v.results.WithLabelValues(result).Inc()
	if span.IsRecording() {
		span.SetAttributes(attribute.String("tokenvendor.auth.result", result))
		if err != nil {
			span.SetStatus(codes.Error, "signed request refused")
		}
	}
	return caller, err
}

func (v *Verifier) verify(ctx context.Context, signed string) (auth.Caller, string, error) {
	arn, cached, err := v.identify(ctx, signed)
	if err != nil {
		result := "unavailable"
		var r *refusal
		if errors.As(err, &r) {
			result = r.result
		}
		return auth.Caller{}, result, err
	}
	result := "verified"
	if cached {
		result = "cached"
	}
	p, ok := v.principal(arn)
	if !ok {
		// Not a secret, and what the operator needs to add the entry.
		v.cfg.Logger.Info("AWS principal refused: not among auth.aws_iam.principals", "arn", arn)
		return auth.Caller{}, "unknown_principal", fmt.Errorf("%w: %s is not among auth.aws_iam.principals", auth.ErrUnknownPrincipal, arn)
	}
	// The session is the subject (audit, session names); the role it is a
	// session of is the client, whose budget every session shares.
	return auth.Caller{Issuer: auth.IssuerAWSIAM, Subject: arn, ClientID: p.RoleARN, TenantID: p.TenantID, AnyTenant: p.AnyTenant,
		TenantFromToken: p.TenantFromToken}, result, nil
}

// identify returns the ARN that signed the request, from the cache or STS.
// Its refusals are *refusal, naming their result; anything else is STS
// unavailable.
func (v *Verifier) identify(ctx context.Context, signed string) (arn string, cached bool, err error) {
	if signed == "" {
		return "", false, refuse("malformed", "no signed request")
	}
	// The cache holds only requests that passed every check below, under
	// the hash of their exact bytes, until at most their own window ends:
	// the same bytes would pass them again.
	now := v.cfg.Now()
	sum := sha256.Sum256([]byte(signed))
	if v.cache != nil {
		if id, ok := v.cache.Get(sum); ok && now.Before(id.until) {
			return id.arn, true, nil
		}
	}
	req, err := Parse(signed)
	if err != nil {
		return "", false, refuse("malformed", "signed request: %v", err)
	}
	if d := now.Sub(req.Date); d > MaxSkew || d < -MaxSkew {
		return "", false, refuse("stale", "signed request dated %s, more than %s from now", req.Date.Format(time.RFC3339), MaxSkew)
	}
	if req.Header.Get(ServerIDHeader) != v.cfg.ServerID {
		return "", false, refuse("server_id", "signed request is for another server (%s)", ServerIDHeader)
	}
	if req.Region != v.cfg.Region {
		return "", false, refuse("malformed", "signed request is scoped to region %s, the service's STS is in %s", req.Region, v.cfg.Region)
	}
	if h := req.Header.Get("Host"); h != "" && h != v.endpoint.Host {
		return "", false, refuse("malformed", "signed request names host %q; sign it for %s", h, v.endpoint.Host)
	}
	// Concurrent callers presenting the same request share one STS call,
	// on a context no one of them can cancel for the others.
	res, err, _ := v.flights.Do(string(sum[:]), func() (any, error) {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), v.cfg.Timeout)
		defer cancel()
		return v.callSTS(sctx, req)
	})
	if err != nil {
		return "", false, err
	}
	arn = res.(string)
	if v.cache != nil {
		until := now.Add(v.cfg.CacheTTL)
		if end := req.Date.Add(MaxSkew); end.Before(until) {
			// Never remembered past the request's own window: a cached
			// request is answered before its date is checked again.
			until = end
		}
		v.cache.Add(sum, identity{arn: arn, until: until})
	}
	return arn, false, nil
}

// principal finds the configured principal of an assumed-role ARN.
func (v *Verifier) principal(arn string) (Principal, bool) {
	m := assumedRoleARNPattern.FindStringSubmatch(arn)
	if m == nil {
		return Principal{}, false
	}
	p, ok := (*v.roles.Load())[roleKey{m[1], m[2], strings.ToLower(m[3])}]
	return p, ok
}

// callerIdentity is STS's answer, or its error.
type callerIdentity struct {
	Arn     string `xml:"GetCallerIdentityResult>Arn"`
	Account string `xml:"GetCallerIdentityResult>Account"`
}

// stsError is STS's error document: <ErrorResponse><Error><Code>, or
// <Errors><Error><Code> as some AWS-shaped servers (moto) write it.
type stsError struct {
	Code    string `xml:"Error>Code"`
	Wrapped string `xml:"Errors>Error>Code"`
}

// refusedCodes are STS's answers to a signature it does not accept, safe
// to tell the caller.
var refusedCodes = map[string]bool{
	"SignatureDoesNotMatch": true, "InvalidClientTokenId": true, "ExpiredToken": true,
	"IncompleteSignature": true, "AccessDenied": true, "MissingAuthenticationToken": true,
	"InvalidAccessKeyId": true, "RequestExpired": true,
}

// callSTS sends the signed request to the configured endpoint, and only
// there: the URL, the method and the Host are the service's, the headers
// and body the caller's signed ones.
func (v *Verifier) callSTS(ctx context.Context, sr *SignedRequest) (string, error) {
	ctx, span := tracing.Start(ctx, v.tracer, "sts.GetCallerIdentity", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("rpc.system", "aws-api"), attribute.String("rpc.service", "STS"),
			attribute.String("rpc.method", "GetCallerIdentity")))
	defer span.End()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.endpoint.String(), strings.NewReader(sr.Body))
	if err != nil {
		return "", err
	}
	for name, values := range sr.Header {
		if name != "Host" && name != "Content-Length" {
			req.Header[name] = values
		}
	}
	req.Host = v.endpoint.Host
	res, err := v.cfg.HTTPClient.Do(req)
	if err != nil {
		span.SetStatus(codes.Error, "unreachable")
		v.cfg.Logger.Warn("STS GetCallerIdentity failed", "err", err)
		return "", fmt.Errorf("%w: %w", auth.ErrIdentityUnavailable, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBytes))
	if err != nil {
		return "", fmt.Errorf("%w: %w", auth.ErrIdentityUnavailable, err)
	}
	if res.StatusCode == http.StatusOK {
		var id callerIdentity
		if err := xml.Unmarshal(body, &id); err != nil || !strings.HasPrefix(id.Arn, "arn:") {
			v.cfg.Logger.Warn("STS GetCallerIdentity answered 200 without an ARN")
			return "", fmt.Errorf("%w: no ARN in the answer", auth.ErrIdentityUnavailable)
		}
		return id.Arn, nil
	}
	var e stsError
	_ = xml.Unmarshal(body, &e)
	if e.Code == "" {
		e.Code = e.Wrapped
	}
	span.SetStatus(codes.Error, e.Code)
	switch {
	case res.StatusCode >= 500, res.StatusCode == http.StatusTooManyRequests,
		e.Code == "Throttling", e.Code == "RequestLimitExceeded":
		v.cfg.Logger.Warn("STS GetCallerIdentity failed", "status", res.StatusCode, "code", e.Code)
		return "", fmt.Errorf("%w: STS answered %d", auth.ErrIdentityUnavailable, res.StatusCode)
	case res.StatusCode >= 300 && res.StatusCode < 400:
		v.cfg.Logger.Error("STS GetCallerIdentity answered a redirect; check auth.aws_iam.sts_endpoint", "status", res.StatusCode)
		return "", fmt.Errorf("%w: STS answered %d", auth.ErrIdentityUnavailable, res.StatusCode)
	}
	// Debug: a caller can make as many of these as it likes; the code
	// reaches the caller in the 401.
	v.cfg.Logger.Debug("STS refused a caller's signed request", "status", res.StatusCode, "code", e.Code)
	code := "refused"
	if refusedCodes[e.Code] {
		code = e.Code
	}
	return "", refuse("signature", "STS did not accept the signed request (%s)", code)
}
