// Package jwks verifies callers' JWTs against the identity provider's key
// set (its JWKS), kept and refreshed here, and turns their claims into an
// auth.Caller.
package jwks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"

	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/tracing"
)

// Limits on tokens and on the key set refresh.
const (
	DefaultMaxTokenBytes        = 16 << 10
	DefaultLeeway               = 30 * time.Second
	MaxLeeway                   = 60 * time.Second
	DefaultUnknownKIDInterval   = 10 * time.Second
	DefaultJWKSRefreshInterval  = 5 * time.Minute
	defaultJWKSFetchTimeout     = 10 * time.Second
	defaultTenantClaim          = "tenant_id"
	scopeClaim, scopeArrayClaim = "scope", "scp"
)

// Config configures a Verifier.
type Config struct {
	Issuer     string
	JWKSURL    string
	Audiences  []string
	Algorithms []string // signature algorithms accepted; asymmetric only
	// TenantClaim is a dotted path into the claims; default "tenant_id".
	TenantClaim string
	// Leeway is the clock skew allowed on exp and nbf; default 30 s, at most 60 s.
	Leeway time.Duration
	// MaxTokenBytes caps the size of a token; default 16 KiB.
	MaxTokenBytes int
	// UnknownKIDInterval is the least time between two key set fetches
	// triggered by tokens with a kid not in the set; default 10 s.
	UnknownKIDInterval time.Duration
	// RefreshInterval is how often the key set is fetched in the
	// background, and so how long a key removed from it is still accepted
	// while fetches succeed (a failing fetch keeps the keys held); default
	// 5 min.
	RefreshInterval time.Duration
	// TokenType, when set, is the JWT "typ" header every token must carry
	// (e.g. "at+jwt", RFC 9068); compared without case and without an
	// "application/" prefix.
	TokenType string
	// RequireBoundTokens refuses tokens not bound to a client certificate
	// (RFC 8705 "cnf" with "x5t#S256").
	RequireBoundTokens bool
	// VerifiedCacheSize bounds the tokens remembered as verified, so that a
	// caller presenting the same token again skips the signature check;
	// default 10,000, negative to turn it off.
	VerifiedCacheSize int
	HTTPClient        *http.Client
	Now               func() time.Time
	Registerer        prometheus.Registerer
	Logger            *slog.Logger
	// TracerProvider traces verifications; default none.
	TracerProvider trace.TracerProvider
}

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	cfg      Config
	algs     map[jwa.SignatureAlgorithm]bool
	keys     atomic.Pointer[jwk.Set] // nil until a fetch succeeds
	ready    atomic.Bool
	flights  singleflight.Group
	mu       sync.Mutex
	lastKick time.Time
	failures *prometheus.CounterVec
	fetches  *prometheus.CounterVec
	verified *lru.Cache[[sha256.Size]byte, verifiedToken]
	tracer   trace.Tracer
}

// verifiedToken is a token that passed every check, remembered under the
// SHA-256 of its exact text until it expires or its key leaves the key set.
type verifiedToken struct {
	caller    auth.Caller
	cnf       string // the x5t#S256 the token is bound to, or ""
	kid       string
	notBefore time.Time
	notAfter  time.Time
}

// asymmetric lists the algorithms a public JWKS can verify. HS* is never
// accepted: with a public key set, an HMAC "secret" is public knowledge.
var asymmetric = map[string]jwa.SignatureAlgorithm{
	"RS256": jwa.RS256, "RS384": jwa.RS384, "RS512": jwa.RS512,
	"PS256": jwa.PS256, "PS384": jwa.PS384, "PS512": jwa.PS512,
	"ES256": jwa.ES256, "ES384": jwa.ES384, "ES512": jwa.ES512,
	"EdDSA": jwa.EdDSA,
}

// ValidAlgorithm reports whether name may appear in the algorithm allow-list.
func ValidAlgorithm(name string) bool { _, ok := asymmetric[name]; return ok }

// New returns a Verifier. It does not fetch the key set; Start does.
func New(cfg Config) (*Verifier, error) {
	cfg.fillDefaults()
	algs, err := cfg.check()
	if err != nil {
		return nil, err
	}
	v := &Verifier{cfg: cfg, algs: algs, tracer: tracing.Tracer(cfg.TracerProvider, tracerName)}
	if cfg.VerifiedCacheSize > 0 {
		verified, err := lru.New[[sha256.Size]byte, verifiedToken](cfg.VerifiedCacheSize)
		if err != nil {
			return nil, fmt.Errorf("verified token cache: %w", err)
		}
		v.verified = verified
	}
	v.register(promauto.With(cfg.Registerer))
	return v, nil
}

func (cfg *Config) fillDefaults() {
	setDefault(&cfg.TenantClaim, defaultTenantClaim)
	setDefault(&cfg.Leeway, DefaultLeeway)
	setDefault(&cfg.MaxTokenBytes, DefaultMaxTokenBytes)
	setDefault(&cfg.UnknownKIDInterval, DefaultUnknownKIDInterval)
	setDefault(&cfg.RefreshInterval, DefaultJWKSRefreshInterval)
	setDefault(&cfg.VerifiedCacheSize, 10_000)
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: defaultJWKSFetchTimeout}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// check reports every problem of cfg, and returns the algorithms it
// accepts.
func (cfg *Config) check() (map[jwa.SignatureAlgorithm]bool, error) {
	var errs []error
	if cfg.RefreshInterval < 0 {
		errs = append(errs, errors.New("jwks refresh interval: negative"))
	}
	if cfg.Issuer == "" {
		errs = append(errs, errors.New("issuer: required"))
	}
	if cfg.JWKSURL == "" {
		errs = append(errs, errors.New("jwks_url: required"))
	}
	if len(cfg.Audiences) == 0 {
		errs = append(errs, errors.New("audiences: at least one required"))
	}
	if cfg.Leeway < 0 || cfg.Leeway > MaxLeeway {
		errs = append(errs, fmt.Errorf("leeway: must be between 0 and %s", MaxLeeway))
	}
	algs := map[jwa.SignatureAlgorithm]bool{}
	for _, a := range cfg.Algorithms {
		alg, ok := asymmetric[a]
		if !ok {
			errs = append(errs, fmt.Errorf("algorithms: %q is not an asymmetric signature algorithm", a))
			continue
		}
		algs[alg] = true
	}
	if len(cfg.Algorithms) == 0 {
		errs = append(errs, errors.New("algorithms: at least one required"))
	}
	return algs, errors.Join(errs...)
}

// register makes the verifier's metrics, every series at 0 from the start,
// so that alerts on a rate see the first failure, and dashboards are not
// empty.
func (v *Verifier) register(f promauto.Factory) {
	v.failures = f.NewCounterVec(prometheus.CounterOpts{
		Name: "tokenvendor_auth_failures_total",
		Help: "Tokens refused, by reason.",
	}, []string{"reason"})
	v.fetches = f.NewCounterVec(prometheus.CounterOpts{
		Name: "tokenvendor_jwks_refreshes_total",
		Help: "Fetches of the identity provider's key set, by outcome.",
	}, []string{"outcome"})
	for _, reason := range failureReasons {
		v.failures.WithLabelValues(reason)
	}
	for _, outcome := range []string{"success", "error"} {
		v.fetches.WithLabelValues(outcome)
	}
}

// Start fetches the key set once, so that Ready reports true, and keeps it
// fresh in the background until ctx ends: every RefreshInterval, or every
// UnknownKIDInterval while no fetch has succeeded yet. A failed first fetch
// is returned but not fatal.
//
// The key set is held behind an atomic pointer and fetched off the request
// path, so a slow identity provider never stalls the verification of tokens
// whose key is already known; only callers presenting an unknown kid wait,
// on one shared, rate-limited fetch.
func (v *Verifier) Start(ctx context.Context) error {
	_, err := v.fetch(ctx)
	go v.refreshLoop(ctx)
	if err != nil {
		return fmt.Errorf("fetch key set: %w", err)
	}
	return nil
}

func (v *Verifier) refreshLoop(ctx context.Context) {
	for {
		wait := v.cfg.RefreshInterval
		if v.keys.Load() == nil {
			wait = v.cfg.UnknownKIDInterval
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if _, err := v.fetch(ctx); err != nil {
			v.cfg.Logger.Warn("key set refresh failed; keeping the keys fetched before", "err", err)
		}
	}
}

// fetch gets the key set, shared by every concurrent caller, on a context
// detached from any one of them.
func (v *Verifier) fetch(ctx context.Context) (jwk.Set, error) {
	r, err, _ := v.flights.Do("fetch", func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), defaultJWKSFetchTimeout)
		defer cancel()
		set, err := v.get(fctx)
		if err != nil {
			v.fetches.WithLabelValues("error").Inc()
			return nil, err
		}
		v.fetches.WithLabelValues("success").Inc()
		v.keys.Store(&set)
		v.ready.Store(true)
		return set, nil
	})
	if err != nil {
		return nil, err
	}
	return r.(jwk.Set), nil
}

// maxJWKSBytes bounds the key set document read from the identity provider.
const maxJWKSBytes = 1 << 20

func (v *Verifier) get(ctx context.Context) (jwk.Set, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.cfg.JWKSURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	res, err := v.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("key set answered %d", res.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("key set over %d bytes", maxJWKSBytes)
	}
	set, err := jwk.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	return set, nil
}

// Ready reports whether a key set has been fetched.
func (v *Verifier) Ready() bool { return v.ready.Load() }

// Missing counts a request that presented no token where one was needed
// (a tenant token a caller must forward).
func (v *Verifier) Missing() { v.failures.WithLabelValues("missing").Inc() }

// tracerName names the spans' instrumentation scope.
const tracerName = "github.com/tokenvendor/tokenvendor/internal/jwks"

// failureReasons are the values of tokenvendor_auth_failures_total's reason.
var failureReasons = []string{"missing", "malformed", "too_large", "algorithm", "type", "unknown_kid", "signature", "expired",
	"not_yet_valid", "issuer", "audience", "claims", "unbound", "certificate", "jwks_unavailable"}

// Verify checks a token presented without a client certificate. Failures
// wrap auth.ErrUnauthenticated with a reason that never contains the token.
func (v *Verifier) Verify(ctx context.Context, token string) (auth.Caller, error) {
	return v.VerifyFrom(ctx, token, nil)
}

// VerifyFrom checks token, presented over a connection whose verified
// client certificate is cert (nil for none), and returns its caller. A
// token bound to a certificate (RFC 8705) is accepted only with that
// certificate; with RequireBoundTokens, an unbound token is refused.
func (v *Verifier) VerifyFrom(ctx context.Context, token string, cert *x509.Certificate) (auth.Caller, error) {
	ctx, span := tracing.Start(ctx, v.tracer, "verify")
	defer span.End()
	caller, result, err := v.check(ctx, token, cert)
	if err != nil {
		v.failures.WithLabelValues(result).Inc()
	}
	// The result is one of a fixed set; never the token or a claim.
	if span.IsRecording() {
		span.SetAttributes(attribute.String("tokenvendor.auth.result", result))
		if err != nil {
			span.SetStatus(codes.Error, "token refused")
		}
	}
	if err != nil {
		return auth.Caller{}, err
	}
	return caller, nil
}

// check returns token's caller and how it was known ("remembered" or
// "verified"), or the reason it is refused.
func (v *Verifier) check(ctx context.Context, token string, cert *x509.Certificate) (auth.Caller, string, error) {
	var (
		sum    [sha256.Size]byte
		caller auth.Caller
		cnf    string
		result = "remembered"
		ok     bool
	)
	if token != "" && len(token) <= v.cfg.MaxTokenBytes {
		sum = sha256.Sum256([]byte(token))
		caller, cnf, ok = v.remembered(ctx, sum)
	}
	if !ok {
		var reason string
		var err error
		if caller, cnf, reason, err = v.verify(ctx, token, sum); err != nil {
			return auth.Caller{}, reason, err
		}
		result = "verified"
	}
	// The binding is a property of the connection, so it is checked on
	// every request, remembered tokens too.
	if reason, err := v.bound(cnf, cert); err != nil {
		return auth.Caller{}, reason, err
	}
	return caller, result, nil
}

// bound checks the token's certificate binding against the connection's
// client certificate: the SHA-256 thumbprint of its DER, base64url.
func (v *Verifier) bound(cnf string, cert *x509.Certificate) (string, error) {
	switch {
	case cnf == "" && v.cfg.RequireBoundTokens:
		return "unbound", fmt.Errorf("%w: token not bound to a client certificate", auth.ErrUnauthenticated)
	case cnf == "":
		return "", nil
	case cert == nil:
		return "certificate", fmt.Errorf("%w: token bound to a client certificate, and none was presented", auth.ErrUnauthenticated)
	}
	if Thumbprint(cert) != cnf {
		return "certificate", fmt.Errorf("%w: token bound to another client certificate", auth.ErrUnauthenticated)
	}
	return "", nil
}

// Thumbprint is RFC 8705's x5t#S256 of cert: the base64url SHA-256 of its
// DER, the value a token bound to it carries in cnf.
func Thumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// remembered returns the caller of a token verified before, and the
// certificate it is bound to, while it is within its validity and its key
// is still published.
func (v *Verifier) remembered(ctx context.Context, sum [sha256.Size]byte) (auth.Caller, string, bool) {
	if v.verified == nil {
		return auth.Caller{}, "", false
	}
	t, ok := v.verified.Get(sum)
	if !ok {
		return auth.Caller{}, "", false
	}
	now := v.cfg.Now()
	if now.After(t.notAfter) || now.Before(t.notBefore) {
		v.verified.Remove(sum)
		return auth.Caller{}, "", false
	}
	set := v.keys.Load()
	if set == nil {
		return auth.Caller{}, "", false
	}
	if _, ok := (*set).LookupKeyID(t.kid); !ok {
		v.verified.Remove(sum)
		return auth.Caller{}, "", false
	}
	return t.caller, t.cnf, true
}

func (v *Verifier) verify(ctx context.Context, token string, sum [sha256.Size]byte) (auth.Caller, string, string, error) {
	fail := func(reason string) (auth.Caller, string, string, error) {
		return auth.Caller{}, "", reason, fmt.Errorf("%w: %s", auth.ErrUnauthenticated, strings.ReplaceAll(reason, "_", " "))
	}
	payload, kid, reason, err := v.signed(ctx, token)
	if err != nil {
		return auth.Caller{}, "", reason, err
	}
	if reason != "" {
		return fail(reason)
	}
	tok, reason := v.validated(payload)
	if reason != "" {
		return fail(reason)
	}
	claims, err := tok.AsMap(ctx)
	if err != nil {
		return fail("malformed")
	}
	cnf, ok := confirmation(claims)
	if !ok {
		return fail("claims")
	}
	caller := auth.Caller{
		Issuer:   tok.Issuer(),
		Subject:  tok.Subject(),
		ClientID: clientID(claims),
		TenantID: tenantClaim(claims, v.cfg.TenantClaim),
		Scopes:   scopes(claims),
	}
	if v.verified != nil {
		v.verified.Add(sum, verifiedToken{
			caller:    caller,
			cnf:       cnf,
			kid:       kid,
			notBefore: tok.NotBefore().Add(-v.cfg.Leeway),
			notAfter:  tok.Expiration().Add(v.cfg.Leeway),
		})
	}
	return caller, cnf, "", nil
}

// signed checks token's form, algorithm, type and signature, and returns
// its payload and key id, or the reason it is refused; err only when the
// key set is unavailable, which no token can be judged without.
func (v *Verifier) signed(ctx context.Context, token string) (payload []byte, kid, reason string, err error) {
	switch {
	case token == "":
		return nil, "", "missing", nil
	case len(token) > v.cfg.MaxTokenBytes:
		return nil, "", "too_large", nil
	case strings.Count(token, ".") != 2:
		return nil, "", "malformed", nil
	}
	msg, err := jws.ParseString(token)
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, "", "malformed", nil
	}
	hdr := msg.Signatures()[0].ProtectedHeaders()
	alg := hdr.Algorithm()
	switch kid = hdr.KeyID(); {
	case !v.algs[alg]:
		return nil, "", "algorithm", nil
	case v.cfg.TokenType != "" && !sameMediaType(hdr.Type(), v.cfg.TokenType):
		return nil, "", "type", nil
	case kid == "":
		return nil, "", "unknown_kid", nil
	}
	key, err := v.lookup(ctx, kid)
	if errors.Is(err, auth.ErrJWKSUnavailable) {
		return nil, "", "jwks_unavailable", err
	}
	if err != nil {
		return nil, "", "unknown_kid", nil
	}
	if ka := key.Algorithm(); ka != nil && ka.String() != "" && ka.String() != alg.String() {
		return nil, "", "algorithm", nil
	}
	payload, err = jws.Verify([]byte(token), jws.WithKey(alg, key))
	if err != nil {
		return nil, "", "signature", nil
	}
	// The signed payload must be the claims themselves: jwt.Parse would
	// unwrap a nested JWS without verifying it.
	if p := bytes.TrimSpace(payload); len(p) == 0 || p[0] != '{' {
		return nil, "", "malformed", nil
	}
	return payload, kid, "", nil
}

// validated parses verified claims and checks them: expiry (required),
// not-before, issuer, audience; or returns the reason they are refused.
func (v *Verifier) validated(payload []byte) (jwt.Token, string) {
	tok, err := jwt.Parse(payload, jwt.WithVerify(false), jwt.WithValidate(false))
	if err != nil {
		return nil, "malformed"
	}
	err = jwt.Validate(tok,
		jwt.WithClock(jwt.ClockFunc(v.cfg.Now)),
		jwt.WithAcceptableSkew(v.cfg.Leeway),
		jwt.WithIssuer(v.cfg.Issuer),
		jwt.WithRequiredClaim("exp"),
	)
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenExpired()):
		return nil, "expired"
	case errors.Is(err, jwt.ErrTokenNotYetValid()):
		return nil, "not_yet_valid"
	case errors.Is(err, jwt.ErrInvalidIssuer()):
		return nil, "issuer"
	default:
		return nil, "claims"
	}
	if !v.audienceOK(tok.Audience()) {
		return nil, "audience"
	}
	return tok, ""
}

// sameMediaType compares a typ header with the configured type as RFC 7515
// says: without case, "application/" implied.
func sameMediaType(typ, want string) bool {
	norm := func(s string) string {
		s = strings.ToLower(strings.TrimSpace(s))
		return strings.TrimPrefix(s, "application/")
	}
	return norm(typ) == norm(want)
}

// confirmation returns the certificate thumbprint a token is bound to
// (cnf["x5t#S256"], RFC 8705), "" for an unbound token, and false for a
// cnf the service cannot honour: a binding it would otherwise ignore.
func confirmation(claims map[string]any) (string, bool) {
	raw, ok := claims["cnf"]
	if !ok {
		return "", true
	}
	cnf, ok := raw.(map[string]any)
	if !ok {
		return "", false
	}
	x5t, ok := cnf["x5t#S256"].(string)
	if !ok || len(cnf) != 1 {
		return "", false
	}
	if b, err := base64.RawURLEncoding.DecodeString(x5t); err != nil || len(b) != sha256.Size {
		return "", false
	}
	return x5t, true
}

func (v *Verifier) audienceOK(aud []string) bool {
	for _, a := range aud {
		for _, want := range v.cfg.Audiences {
			if a == want {
				return true
			}
		}
	}
	return false
}

// lookup finds kid in the key set. A kid it does not know triggers one
// re-fetch, shared by concurrent callers and at most one per
// UnknownKIDInterval, so a newly published key works within seconds and a
// flood of bogus kids cannot hammer the identity provider.
func (v *Verifier) lookup(ctx context.Context, kid string) (jwk.Key, error) {
	if set := v.keys.Load(); set != nil {
		if key, ok := (*set).LookupKeyID(kid); ok {
			return key, nil
		}
	}
	set, err := v.refetch(ctx)
	if err != nil {
		if v.keys.Load() == nil {
			return nil, fmt.Errorf("%w: %w", auth.ErrJWKSUnavailable, err)
		}
		return nil, err
	}
	if key, ok := set.LookupKeyID(kid); ok {
		return key, nil
	}
	return nil, errors.New("unknown kid")
}

// refetch fetches the key set for a kid it does not hold (or when it holds
// none), at most once per UnknownKIDInterval, so a flood of bogus kids cannot
// hammer the identity provider.
func (v *Verifier) refetch(ctx context.Context) (jwk.Set, error) {
	v.mu.Lock()
	now := v.cfg.Now()
	if !v.lastKick.IsZero() && now.Sub(v.lastKick) < v.cfg.UnknownKIDInterval {
		v.mu.Unlock()
		return nil, errors.New("key set refresh rate-limited")
	}
	v.lastKick = now
	v.mu.Unlock()
	return v.fetch(ctx)
}

// tenantClaim follows the dotted path into claims; only a non-empty string
// counts as a tenant. Claim names may hold dots themselves (Kubernetes puts
// the namespace at "kubernetes.io" -> "namespace"), so at each level the
// longest name that exists is tried first.
func tenantClaim(claims map[string]any, path string) string {
	return lookupClaim(claims, strings.Split(path, "."))
}

func lookupClaim(v any, parts []string) string {
	if len(parts) == 0 {
		s, _ := v.(string)
		return s
	}
	m, ok := v.(map[string]any)
	if !ok {
		return ""
	}
	for i := len(parts); i >= 1; i-- {
		if child, ok := m[strings.Join(parts[:i], ".")]; ok {
			if s := lookupClaim(child, parts[i:]); s != "" {
				return s
			}
		}
	}
	return ""
}

func clientID(claims map[string]any) string {
	for _, name := range []string{"client_id", "azp"} {
		if s, ok := claims[name].(string); ok && s != "" {
			return s
		}
	}
	return ""
}

func scopes(claims map[string]any) []string {
	var out []string
	if s, ok := claims[scopeClaim].(string); ok {
		out = append(out, strings.Fields(s)...)
	}
	if arr, ok := claims[scopeArrayClaim].([]any); ok {
		for _, a := range arr {
			if s, ok := a.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}
