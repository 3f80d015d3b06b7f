// Package config loads and validates tokenvendor's YAML configuration. Every
// problem is reported at once, each naming its setting, and templates are
// compiled and linted here, so a bad config fails start-up rather than the
// first request.
package config

import (
	"bytes"
	"cmp"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tokenvendor/tokenvendor/internal/awsiam"
	"github.com/tokenvendor/tokenvendor/internal/cache"
	"github.com/tokenvendor/tokenvendor/internal/jwks"
	"github.com/tokenvendor/tokenvendor/internal/partition"
	"github.com/tokenvendor/tokenvendor/internal/policy"
	"github.com/tokenvendor/tokenvendor/internal/seal"
	"github.com/tokenvendor/tokenvendor/internal/shared"
	"github.com/tokenvendor/tokenvendor/wire"
)

// Defaults and STS limits applied by Validate.
const (
	DefaultListen        = "127.0.0.1:8080"
	DefaultRegion        = "us-east-1"
	DefaultDuration      = time.Hour
	MinDuration          = 15 * time.Minute
	MaxDuration          = 12 * time.Hour
	DefaultSTSTimeout    = cache.DefaultFetchTimeout
	DefaultMaxEntries    = cache.DefaultMaxEntries
	DefaultRefreshAhead  = cache.DefaultRefreshAhead
	DefaultRefreshJitter = cache.DefaultJitter
	DefaultStaleFloor    = cache.DefaultStaleFloor
	DefaultRefreshRate   = cache.DefaultBackgroundRate
	ChainedMaxDuration   = time.Hour
	MaxSTSRPS            = 10_000
	DefaultShutdown      = 20 * time.Second
	DefaultRedisPrefix   = shared.DefaultPrefix
	DefaultRedisTimeout  = shared.DefaultTimeout
)

var profileNamePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Config is the whole configuration.
type Config struct {
	Listen          string        `yaml:"listen"`
	AdminListen     string        `yaml:"admin_listen"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	Auth            Auth          `yaml:"auth"`
	STS             STS           `yaml:"sts"`
	Cache           Cache         `yaml:"cache"`
	Limits          Limits        `yaml:"limits"`
	Audit           Audit         `yaml:"audit"`
	Session         Session       `yaml:"session"`
	Tenants         Tenants       `yaml:"tenants"`
	TLS             TLS           `yaml:"tls"`
	Redis           Redis         `yaml:"redis"`
	Canary          Canary        `yaml:"canary"`
	Revocation      Revocation    `yaml:"revocation"`
	Tracing         Tracing       `yaml:"tracing"`
	Profiles        []Profile     `yaml:"profiles"`

	// TenantRule is the compiled tenant pattern, and SessionNamer the
	// compiled session settings, set by Validate.
	TenantRule   *policy.TenantRule   `yaml:"-"`
	SessionNamer *policy.SessionNamer `yaml:"-"`
	// Shared is the redis section with its files read, set by Validate;
	// nil when the section is not used.
	Shared *SharedTier `yaml:"-"`
}

// Redis configures the tier the replicas share. Without url or url_file,
// each replica is alone.
type Redis struct {
	// URL is redis:// or rediss://, with user:password@ if Redis wants
	// them; URLFile a file holding it (a mounted Secret). One of the two.
	URL     string `yaml:"url"`
	URLFile string `yaml:"url_file"`
	// Cluster says Redis is a Redis Cluster; URL names one node, more as
	// ?addr=host:port.
	Cluster bool `yaml:"cluster"`
	// PasswordFile holds the AUTH password, when the URL does not.
	PasswordFile string `yaml:"password_file"`
	// KeyFile holds the AES-256-GCM keys, base64 of 32 bytes, one a line:
	// the first seals, each opens.
	KeyFile string `yaml:"key_file"`
	// CAFile holds the authorities a rediss:// server's certificate must
	// chain to; default the system's.
	CAFile  string        `yaml:"ca_file"`
	Prefix  string        `yaml:"prefix"`
	Timeout time.Duration `yaml:"timeout"`
}

// Tracing configures what traces carry. Whether there are any is the
// standard OTEL_EXPORTER_OTLP_ENDPOINT's business.
type Tracing struct {
	// TenantAttribute puts the tenant id on spans; off by default.
	TenantAttribute bool `yaml:"tenant_attribute"`
}

// Canary configures the isolation canary: for two tenants kept for it, it
// vends each one's credentials as a caller would get them and checks they
// read the tenant's own object or item and are denied the other's.
type Canary struct {
	// Interval between runs in serve; zero: serve runs none.
	Interval time.Duration `yaml:"interval"`
	// Tenants are the two canary tenants, which callers never use.
	Tenants []string `yaml:"tenants"`
	// Endpoints override the services' endpoints (MinIO, moto in tests);
	// S3 is then addressed path-style.
	Endpoints CanaryEndpoints `yaml:"endpoints"`
	Probes    []CanaryProbe   `yaml:"probes"`
}

// CanaryEndpoints are optional endpoint overrides.
type CanaryEndpoints struct {
	S3       string `yaml:"s3"`
	DynamoDB string `yaml:"dynamodb"`
}

// CanaryProbe reads one object or one item with a profile's credentials.
// Key templates use {{ .TenantID }}.
type CanaryProbe struct {
	Profile  string               `yaml:"profile"`
	S3       *CanaryS3Probe       `yaml:"s3"`
	DynamoDB *CanaryDynamoDBProbe `yaml:"dynamodb"`
}

// CanaryS3Probe is an object per tenant.
type CanaryS3Probe struct {
	Bucket string `yaml:"bucket"`
	Key    string `yaml:"key"`
	// Compiled is Key compiled, set by Validate.
	Compiled *policy.Key `yaml:"-"`
}

// CanaryDynamoDBProbe is an item per tenant: its key's attributes, all
// strings.
type CanaryDynamoDBProbe struct {
	Table string            `yaml:"table"`
	Key   map[string]string `yaml:"key"`
	// Compiled is Key compiled, set by Validate.
	Compiled map[string]*policy.Key `yaml:"-"`
}

// SharedTier is what the redis section's files hold. It carries secrets:
// it prints as REDACTED.
type SharedTier struct {
	URL      string
	Password string
	Keys     *seal.Keyring
	RootCAs  *x509.CertPool
}

// Same reports whether s and o read the same URL, password and keys, so
// that a reload can tell that files it does not re-apply have changed.
func (s *SharedTier) Same(o *SharedTier) bool {
	if s == nil || o == nil {
		return s == o
	}
	return s.URL == o.URL && s.Password == o.Password && s.Keys.Equal(o.Keys)
}

// String keeps the URL and password out of formatted output.
func (SharedTier) String() string { return "REDACTED" }

// GoString is String, so %#v redacts too.
func (s SharedTier) GoString() string { return s.String() }

// LogValue keeps the URL and password out of every log.
func (SharedTier) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// Limits bound request rates; zero turns a limit off.
type Limits struct {
	PerCallerRPS   float64 `yaml:"per_caller_rps"`
	PerCallerBurst int     `yaml:"per_caller_burst"`
	PerTenantRPS   float64 `yaml:"per_tenant_rps"`
	PerTenantBurst int     `yaml:"per_tenant_burst"`
	MaxInFlight    int     `yaml:"max_in_flight"`
}

// Audit configures the audit log.
type Audit struct {
	// File is a path to append to, or "-" for stdout; empty is no audit log.
	File string `yaml:"file"`
}

// Session configures how sessions are named in CloudTrail.
type Session struct {
	NameTemplate   string `yaml:"name_template"`
	SourceIdentity bool   `yaml:"source_identity"`
}

// Tenants is the optional registry of known tenants: inline, a file, or a
// tenant store in DynamoDB (or several of them: a tenant is known when any
// knows it, and suspended when the store says so).
type Tenants struct {
	Allow    []string         `yaml:"allow"`
	File     string           `yaml:"file"`
	DynamoDB *TenantsDynamoDB `yaml:"dynamodb"`
}

// TenantsDynamoDB is the tenant store: a table whose hash key is tenant_id
// (S), with status (S: active or suspended) and optional attributes.
type TenantsDynamoDB struct {
	Table    string `yaml:"table"`
	Region   string `yaml:"region"`   // default sts.region
	Endpoint string `yaml:"endpoint"` // default the SDK's (AWS_ENDPOINT_URL_DYNAMODB)
	// Poll is how often every replica checks the store for changes; default
	// 1s with a redis section (which also carries notices), 5s without.
	Poll time.Duration `yaml:"poll"`
}

// Revocation configures `tokenvendor revoke`: the customer-managed policy,
// attached to every profile's access role, that holds the deny statements
// cutting off sessions issued before a time.
type Revocation struct {
	PolicyARN string `yaml:"policy_arn"`
}

// TLS configures HTTPS on the API listener.
type TLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// Auth configures how callers are known: by a JWT from the identity
// provider, by their AWS IAM identity (aws_iam), or both.
type Auth struct {
	Issuer        string        `yaml:"issuer"`
	JWKSURL       string        `yaml:"jwks_url"`
	Audiences     []string      `yaml:"audiences"`
	Algorithms    []string      `yaml:"algorithms"`
	TenantClaim   string        `yaml:"tenant_claim"`
	TenantPattern string        `yaml:"tenant_pattern"`
	OverrideScope string        `yaml:"override_scope"`
	Leeway        time.Duration `yaml:"leeway"`
	// JWKSRefresh is how often the key set is fetched, and so how long a
	// key removed from it is still accepted; default 5m.
	JWKSRefresh time.Duration `yaml:"jwks_refresh"`
	// TokenType, when set, is the "typ" every JWT must carry (at+jwt).
	TokenType string `yaml:"token_type"`
	// RequireBoundTokens refuses JWTs not bound to the caller's client
	// certificate (RFC 8705); needs tls.client_ca_file. AWS IAM callers
	// present no token and are not concerned.
	RequireBoundTokens bool `yaml:"require_bound_tokens"`
	// AWSIAM, when set, admits callers by a signed sts:GetCallerIdentity.
	AWSIAM *AWSIAM `yaml:"aws_iam"`
}

// AWSIAM configures callers known by their AWS IAM identity.
type AWSIAM struct {
	// ServerID is the value callers sign in X-Tokenvendor-Server-Id.
	ServerID string `yaml:"server_id"`
	// Region is the STS region callers sign for; default sts.region.
	Region string `yaml:"region"`
	// STSEndpoint is where every signed request goes; default
	// https://sts.REGION.amazonaws.com (.com.cn in China regions).
	STSEndpoint string `yaml:"sts_endpoint"`
	// CacheTTL bounds how long a proven identity is remembered for the
	// same signed request; default 1m, at most 5m, negative for never.
	CacheTTL   time.Duration  `yaml:"cache_ttl"`
	Principals []AWSPrincipal `yaml:"principals"`
}

// AWSPrincipal maps a role, and every session of it, to one tenant or to
// the right to name any tenant.
type AWSPrincipal struct {
	RoleARN   string `yaml:"role_arn"`
	Tenant    string `yaml:"tenant"`
	AnyTenant bool   `yaml:"any_tenant"`
	// TenantFrom "token": the tenant comes from a JWT signed upstream that
	// the caller forwards beside its signature (a Lambda function in
	// tenant isolation mode), never from the entry.
	TenantFrom string `yaml:"tenant_from"`
}

// STS configures the service's STS client.
type STS struct {
	Region   string        `yaml:"region"`
	Endpoint string        `yaml:"endpoint"`
	Timeout  time.Duration `yaml:"timeout"`
	// FIPS sends every STS call (the service's and the AWS IAM callers')
	// to the region's FIPS endpoint; a region without one fails start-up.
	FIPS bool `yaml:"fips"`
	// RoleChaining says whether the service's own credentials are a role
	// session, which caps every duration at one hour.
	RoleChaining RoleChaining `yaml:"role_chaining"`
	// MaxRPS, when set, paces AssumeRole calls: across the replicas that
	// share Redis, or per replica without it (and while Redis is away).
	// MaxBurst is the burst; default MaxRPS rounded up.
	MaxRPS   float64 `yaml:"max_rps"`
	MaxBurst int     `yaml:"max_burst"`

	// Partition is the region's, and URL the endpoint STS calls go to
	// (Endpoint, or the region's), set by Validate.
	Partition partition.Partition `yaml:"-"`
	URL       string              `yaml:"-"`
}

// RoleChaining is whether the service's own credentials are a role session.
type RoleChaining string

// The values of sts.role_chaining.
const (
	RoleChainingAuto RoleChaining = "auto" // ask STS GetCallerIdentity at start-up
	RoleChainingOn   RoleChaining = "on"
	RoleChainingOff  RoleChaining = "off"
)

// Isolation is what confines a session to its tenant.
type Isolation string

// The values of profiles[].isolation.
const (
	// IsolationSession: the session policy names the tenant in every Allow
	// statement.
	IsolationSession Isolation = "session"
	// IsolationRole: the access role's policy does, by the session's
	// TenantID tag (ABAC).
	IsolationRole Isolation = "role"
)

// Cache configures the credential cache.
type Cache struct {
	MaxEntries int `yaml:"max_entries"`
	// RefreshAhead is the share of the lifetime left when a background
	// refresh starts; RefreshJitter the random share added to it.
	RefreshAhead  float64 `yaml:"refresh_ahead"`
	RefreshJitter float64 `yaml:"refresh_jitter"`
	// MinRemaining is the least remaining life credentials are handed out
	// with; zero means a quarter of their duration.
	MinRemaining time.Duration `yaml:"min_remaining"`
	// StaleFloor is the least remaining life cached credentials are still
	// served with while STS fails recoverably.
	StaleFloor time.Duration `yaml:"stale_floor"`
	// BackgroundRefreshRate bounds background refreshes per second.
	BackgroundRefreshRate float64 `yaml:"background_refresh_rate"`
}

// Profile is one way of vending credentials.
type Profile struct {
	Name string `yaml:"name"`
	// RoleARN and ExternalID are literal, or templates over .TenantID,
	// .Partition, .Region and .Attr "name" (the tenant's attributes): a
	// role or an account per tenant. ExternalID "derived" is
	// HMAC-SHA256 of the tenant id under the key in ExternalIDKeyFile.
	RoleARN           string            `yaml:"role_arn"`
	Duration          time.Duration     `yaml:"duration"`
	ExternalID        string            `yaml:"external_id"`
	ExternalIDKeyFile string            `yaml:"external_id_key_file"`
	Policy            string            `yaml:"policy"`
	Tags              map[string]string `yaml:"tags"`
	Vars              map[string]string `yaml:"vars"`
	// Isolation says what confines a session to its tenant; default
	// session.
	Isolation Isolation `yaml:"isolation"`

	// Template is the compiled policy and tag template, and Role the
	// compiled role and ExternalId, set by Validate.
	Template *policy.Template `yaml:"-"`
	Role     *policy.Role     `yaml:"-"`
}

// Load reads, decodes and validates the file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(b)
}

// LoadWithoutListeners is Load for a command that serves nothing (the
// canary): the listeners' TLS files are neither checked nor kept, so it
// runs where the service's certificate and key are not mounted.
func LoadWithoutListeners(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := decode(b)
	if err != nil {
		return nil, err
	}
	c.TLS = TLS{}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Parse decodes and validates a YAML document. Unknown keys are errors, so a
// misspelt setting is not silently ignored.
func Parse(b []byte) (*Config, error) {
	c, err := decode(b)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// decode decodes a YAML document, refusing unknown keys.
func decode(b []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("decode config: %w", err)
	}
	return &c, nil
}

// Validate fills defaults, compiles the templates and reports every
// problem, section by section, as one error.
func (c *Config) Validate() error {
	var p problems
	c.validateListeners(p.bad)
	c.Auth.validate(c, p.bad)
	c.STS.validate(p.bad)
	c.Cache.validate(p.bad)
	c.Limits.validate(p.bad)
	c.validateSession(p.bad)
	c.Tenants.validate(c, p.bad)
	c.Revocation.validate(c.STS.Partition, p.bad)
	c.TLS.validate(p.bad)
	c.Shared = c.Redis.validate(c.STS.Timeout, p.bad)
	c.Canary.validate(c, p.bad)
	c.validateProfiles(&p)
	c.checkPrincipalsAgainstProfiles(p.bad)
	return errors.Join(p.errs...)
}

// checkPrincipalsAgainstProfiles refuses an AWS IAM caller that is a role a
// profile vends (the pool's access role, or a role a bridge or silo
// template may render): every tenant's session holds such a role, so any of
// them could ask for credentials. Roles are compared as the verifier
// matches a session to its role: by partition, account and name, whatever
// the path or the case.
func (c *Config) checkPrincipalsAgainstProfiles(bad reporter) {
	if c.Auth.AWSIAM == nil {
		return
	}
	for i, p := range c.Auth.AWSIAM.Principals {
		for _, prof := range c.Profiles {
			if prof.Role != nil && prof.Role.Matches(p.RoleARN) {
				bad(fmt.Sprintf("auth.aws_iam.principals[%d].role_arn", i),
					"is a role profile %s vends: every tenant's session of it holds that role, so any of them could ask for credentials", prof.Name)
			}
		}
	}
}

// reporter records one problem of a setting.
type reporter func(setting, format string, args ...any)

// problems gathers what Validate finds.
type problems struct{ errs []error }

func (p *problems) bad(setting, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s: %s", setting, fmt.Sprintf(format, args...)))
}

func (c *Config) validateListeners(bad reporter) {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "not host:port")
	}
	if c.AdminListen != "" {
		if _, _, err := net.SplitHostPort(c.AdminListen); err != nil {
			bad("admin_listen", "not host:port")
		}
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdown
	}
	if c.ShutdownTimeout < 0 {
		bad("shutdown_timeout", "negative")
	}
}

// validate checks the auth section and compiles the tenant rule
// (c.TenantRule), which the sections after it use.
func (a *Auth) validate(c *Config, bad reporter) {
	// Without an identity provider, AWS IAM callers alone may be admitted.
	if a.UsesJWT() || a.AWSIAM == nil {
		a.validateIdP(bad)
	}
	a.validateTokens(c, bad)
	tenants, err := policy.NewTenantRule(a.TenantPattern)
	if err != nil {
		bad("auth.tenant_pattern", "%v", err)
	}
	c.TenantRule = tenants
	if a.AWSIAM != nil {
		a.AWSIAM.validate(c, bad)
	}
}

// validateIdP checks that the identity provider is named in full.
func (a *Auth) validateIdP(bad reporter) {
	if a.Issuer == "" {
		bad("auth.issuer", "required (or, without an identity provider, auth.aws_iam alone)")
	}
	if err := checkFetchURL(a.JWKSURL); err != nil {
		bad("auth.jwks_url", "%v", err)
	}
	if len(a.Audiences) == 0 {
		bad("auth.audiences", "at least one required")
	}
}

// validateTokens checks how tokens are verified: every value set is
// checked, whether or not an identity provider is named.
func (a *Auth) validateTokens(c *Config, bad reporter) {
	setDefault(&a.JWKSRefresh, jwks.DefaultJWKSRefreshInterval)
	if a.JWKSRefresh < time.Second || a.JWKSRefresh > 24*time.Hour {
		bad("auth.jwks_refresh", "between 1s and 24h")
	}
	if a.TokenType != "" && (strings.TrimSpace(a.TokenType) != a.TokenType || strings.ContainsAny(a.TokenType, " \t\r\n")) {
		bad("auth.token_type", "a media type such as at+jwt, without spaces")
	}
	if a.RequireBoundTokens && c.TLS.ClientCAFile == "" {
		bad("auth.require_bound_tokens", "needs tls.client_ca_file: a token is bound to the client certificate the connection presents")
	}
	if len(a.Algorithms) == 0 {
		a.Algorithms = []string{"RS256", "ES256"}
	}
	for i, alg := range a.Algorithms {
		if !jwks.ValidAlgorithm(alg) {
			bad(fmt.Sprintf("auth.algorithms[%d]", i), "%q is not an asymmetric signature algorithm (none and HS* are never accepted)", alg)
		}
	}
	setDefault(&a.TenantClaim, "tenant_id")
	setDefault(&a.Leeway, jwks.DefaultLeeway)
	if a.Leeway < 0 || a.Leeway > jwks.MaxLeeway {
		bad("auth.leeway", "must be between 0s and %s", jwks.MaxLeeway)
	}
}

// validate fills the cache section's defaults and checks it.
func (cc *Cache) validate(bad reporter) {
	setDefault(&cc.MaxEntries, DefaultMaxEntries)
	if cc.MaxEntries < 0 {
		bad("cache.max_entries", "negative")
	}
	setDefault(&cc.RefreshAhead, DefaultRefreshAhead)
	setDefault(&cc.RefreshJitter, DefaultRefreshJitter)
	setDefault(&cc.StaleFloor, DefaultStaleFloor)
	setDefault(&cc.BackgroundRefreshRate, DefaultRefreshRate)
	if err := cache.CheckRefresh(cc.RefreshAhead, cc.RefreshJitter); err != nil {
		bad("cache.refresh_ahead", "%v", err)
	}
	if cc.MinRemaining < 0 {
		bad("cache.min_remaining", "negative")
	}
	if cc.StaleFloor < 0 {
		bad("cache.stale_floor", "negative")
	} else if err := cache.CheckStaleFloor(cc.StaleFloor, cc.MinRemaining); err != nil {
		bad("cache.stale_floor", "%v (cache.min_remaining)", err)
	}
	if cc.BackgroundRefreshRate < 0 {
		bad("cache.background_refresh_rate", "negative")
	}
}

// validate checks that no limit is negative.
func (l Limits) validate(bad reporter) {
	for name, v := range map[string]float64{
		"limits.per_caller_rps": l.PerCallerRPS, "limits.per_caller_burst": float64(l.PerCallerBurst),
		"limits.per_tenant_rps": l.PerTenantRPS, "limits.per_tenant_burst": float64(l.PerTenantBurst),
		"limits.max_in_flight": float64(l.MaxInFlight),
	} {
		if v < 0 {
			bad(name, "negative")
		}
	}
}

// validateSession compiles the session section (c.SessionNamer).
func (c *Config) validateSession(bad reporter) {
	namer, err := policy.NewSessionNamer(c.Session.NameTemplate, c.Session.SourceIdentity)
	if err != nil {
		bad("session.name_template", "%v", err)
	}
	c.SessionNamer = namer
}

// validate checks the revocation policy's ARN, in the STS partition.
func (r Revocation) validate(part partition.Partition, bad reporter) {
	if r.PolicyARN != "" && (!policyARNPattern.MatchString(r.PolicyARN) || !strings.HasPrefix(r.PolicyARN, "arn:"+part.ID+":")) {
		bad("revocation.policy_arn", "not a customer-managed IAM policy ARN of partition %s (arn:%s:iam::123456789012:policy/NAME)", part.ID, part.ID)
	}
}

// validate checks that the TLS files go together and exist.
func (t TLS) validate(bad reporter) {
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad("tls", "cert_file and key_file go together")
	}
	if t.ClientCAFile != "" && t.CertFile == "" {
		bad("tls.client_ca_file", "needs cert_file and key_file")
	}
	for name, path := range map[string]string{"tls.cert_file": t.CertFile, "tls.key_file": t.KeyFile, "tls.client_ca_file": t.ClientCAFile} {
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); err != nil {
			bad(name, "%v", err)
		}
	}
}

// validateProfiles checks every profile and compiles its templates.
func (c *Config) validateProfiles(p *problems) {
	if len(c.Profiles) == 0 {
		p.bad("profiles", "at least one required")
	}
	seen := map[string]bool{}
	for i := range c.Profiles {
		prof := &c.Profiles[i]
		at := fmt.Sprintf("profiles[%d]", i)
		if prof.Name != "" {
			at = fmt.Sprintf("profiles[%d] (%s)", i, prof.Name)
		}
		if !profileNamePattern.MatchString(prof.Name) {
			p.bad(at+".name", "must match %s", profileNamePattern)
		} else if seen[prof.Name] {
			p.bad(at+".name", "defined twice")
		}
		seen[prof.Name] = true
		prof.validate(c, at, p)
	}
}

// validate checks a profile's duration and isolation, and compiles its
// role and its policy and tag templates.
func (prof *Profile) validate(c *Config, at string, p *problems) {
	setDefault(&prof.Duration, DefaultDuration)
	if prof.Duration < MinDuration || prof.Duration > MaxDuration || prof.Duration%time.Second != 0 {
		p.bad(at+".duration", "must be whole seconds between %s and %s", MinDuration, MaxDuration)
	} else if err := (cache.Config{MinRemaining: c.Cache.MinRemaining, StaleFloor: c.Cache.StaleFloor}).CheckLifetime(prof.Duration); err != nil {
		p.bad(at+".duration", "does not fit cache.min_remaining and cache.stale_floor: %v", err)
	}
	setDefault(&prof.Isolation, IsolationSession)
	if prof.Isolation != IsolationSession && prof.Isolation != IsolationRole {
		p.bad(at+".isolation", "session or role")
	}
	if c.TenantRule == nil {
		return
	}
	prof.compileRole(c, at, p)
	tmpl, err := policy.Compile(policy.Spec{Profile: prof.Name, Policy: prof.Policy, Tags: prof.Tags, Vars: prof.Vars,
		RoleIsolates: prof.Isolation == IsolationRole, Partition: c.STS.Partition.ID, Region: c.STS.Region}, c.TenantRule)
	if err == nil {
		err = tmpl.Lint()
	}
	if err != nil {
		p.errs = append(p.errs, prefixed(at, err))
		return
	}
	prof.Template = tmpl
}

// compileRole reads the derived ExternalId's key and compiles the role
// ARN and ExternalId templates.
func (prof *Profile) compileRole(c *Config, at string, p *problems) {
	spec := policy.RoleSpec{RoleARN: prof.RoleARN, ExternalID: prof.ExternalID, Partition: c.STS.Partition, Region: c.STS.Region}
	if prof.ExternalIDKeyFile != "" {
		b, err := os.ReadFile(prof.ExternalIDKeyFile)
		if err != nil {
			p.bad(at+".external_id_key_file", "%v", err)
			return
		}
		spec.ExternalIDKey = bytes.TrimSpace(b)
	}
	if c.STS.Partition.ID == "" {
		return // the region is wrong, and said so
	}
	role, err := policy.CompileRole(spec, c.TenantRule)
	if err != nil {
		p.errs = append(p.errs, prefixed(at, err))
		return
	}
	prof.Role = role
}

// Tenant store polls: with a redis section its notices carry most changes
// at once and the poll catches what they miss; without, the poll is all.
const (
	DefaultTenantPoll      = 5 * time.Second
	DefaultTenantPollRedis = time.Second
	MinTenantPoll          = 100 * time.Millisecond
)

var (
	tableNamePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{3,255}$`)
	policyARNPattern = regexp.MustCompile(`^arn:aws[a-z-]*:iam::\d{12}:policy/[\w+=,.@/-]{1,512}$`)
)

// validate fills the tenant store's defaults and checks it.
func (d *TenantsDynamoDB) validate(c *Config, bad reporter) {
	if !tableNamePattern.MatchString(d.Table) {
		bad("tenants.dynamodb.table", "a DynamoDB table name: 3 to 255 characters of [A-Za-z0-9_.-]")
	}
	if d.Region == "" {
		d.Region = c.STS.Region
		if d.Region == "" {
			d.Region = DefaultRegion
		}
	}
	if d.Endpoint != "" {
		if err := checkFetchURL(d.Endpoint); err != nil {
			bad("tenants.dynamodb.endpoint", "%v", err)
		}
	}
	if d.Poll == 0 {
		d.Poll = DefaultTenantPoll
		if c.Redis.URL != "" || c.Redis.URLFile != "" {
			d.Poll = DefaultTenantPollRedis
		}
	}
	if d.Poll < MinTenantPoll || d.Poll > time.Hour {
		bad("tenants.dynamodb.poll", "between %s and 1h", MinTenantPoll)
	}
}

// validate fills the sts section's defaults and checks it.
func (st *STS) validate(bad reporter) {
	setDefault(&st.Region, DefaultRegion)
	part, err := partition.ForRegion(st.Region)
	switch {
	case err != nil && st.Endpoint != "" && !st.FIPS:
		// Another STS (MinIO, a local stand-in) may call its region
		// anything: the ARNs are then the aws partition's.
		part, err = partition.AWS, nil
	case err != nil:
		bad("sts.region", "%v", err)
	}
	st.Partition = part
	switch {
	case st.Endpoint != "" && st.FIPS:
		bad("sts.fips", "with sts.endpoint: set one (fips picks the region's FIPS endpoint, and never another)")
	case st.Endpoint != "":
		if err := checkFetchURL(st.Endpoint); err != nil {
			bad("sts.endpoint", "%v", err)
		}
		st.URL = st.Endpoint
	case err == nil:
		if st.URL, err = partition.STSEndpoint(st.Region, st.FIPS); err != nil {
			bad("sts.fips", "%v: there is no FIPS endpoint to use, and tokenvendor never falls back to the standard one", err)
		}
	}
	if st.Timeout == 0 {
		st.Timeout = DefaultSTSTimeout
	}
	if st.Timeout < 0 {
		bad("sts.timeout", "negative")
	}
	switch {
	case st.MaxRPS < 0 || st.MaxRPS > MaxSTSRPS:
		bad("sts.max_rps", "between 0 (no budget) and %d calls a second", MaxSTSRPS)
	case st.MaxBurst < 0:
		bad("sts.max_burst", "negative")
	case st.MaxBurst > 0 && st.MaxRPS == 0:
		bad("sts.max_burst", "needs sts.max_rps")
	}
	setDefault(&st.RoleChaining, RoleChainingAuto)
	switch st.RoleChaining {
	case RoleChainingAuto, RoleChainingOn, RoleChainingOff:
	default:
		bad("sts.role_chaining", "must be auto, on or off")
	}
}

// validate checks the tenants section: the allow-list against the tenant
// rule, the file's presence, the store.
func (t *Tenants) validate(c *Config, bad reporter) {
	if c.TenantRule != nil {
		for i, id := range t.Allow {
			if err := c.TenantRule.Check(id); err != nil {
				bad(fmt.Sprintf("tenants.allow[%d]", i), "%v", err)
			}
		}
	}
	if t.File != "" {
		if _, err := os.Stat(t.File); err != nil {
			bad("tenants.file", "%v", err)
		}
	}
	if d := t.DynamoDB; d != nil {
		d.validate(c, bad)
	}
}

// UsesJWT reports whether callers may present JWTs: any identity provider
// setting is given.
func (a *Auth) UsesJWT() bool {
	return a.Issuer != "" || a.JWKSURL != "" || len(a.Audiences) > 0
}

// awsServerIDPattern is printable ASCII without spaces.
var awsServerIDPattern = regexp.MustCompile(`^[!-~]{1,256}$`)

// validate fills the aws_iam section's defaults and checks it.
func (w *AWSIAM) validate(c *Config, bad reporter) {
	if w.ServerID != "" && !awsServerIDPattern.MatchString(w.ServerID) { // "required" is the verifier's
		bad("auth.aws_iam.server_id", "1 to 256 printable characters without spaces, the same in every caller's signed %s", wire.ServerIDHeader)
	}
	setDefault(&w.Region, cmp.Or(c.STS.Region, DefaultRegion))
	part, err := partition.ForRegion(w.Region)
	if err != nil {
		bad("auth.aws_iam.region", "%v", err)
	}
	if w.STSEndpoint != "" && c.STS.FIPS {
		bad("auth.aws_iam.sts_endpoint", "with sts.fips: leave it out, and callers are sent to the region's FIPS endpoint")
	}
	if w.STSEndpoint == "" && err == nil {
		// As the service's own calls: the FIPS endpoint with sts.fips.
		if w.STSEndpoint, err = partition.STSEndpoint(w.Region, c.STS.FIPS); err != nil {
			bad("auth.aws_iam.region", "%v (sts.fips): there is no FIPS endpoint to send callers' requests to", err)
		}
	}
	if err := checkFetchURL(w.STSEndpoint); err != nil && w.STSEndpoint != "" {
		bad("auth.aws_iam.sts_endpoint", "%v", err)
	}
	if w.CacheTTL == 0 {
		w.CacheTTL = awsiam.DefaultCacheTTL
	}
	if len(w.Principals) == 0 {
		bad("auth.aws_iam.principals", "at least one: the roles admitted, each with a tenant or any_tenant")
	}
	for i, p := range w.Principals {
		if p.Tenant != "" && c.TenantRule != nil {
			if err := c.TenantRule.Check(p.Tenant); err != nil {
				bad(fmt.Sprintf("auth.aws_iam.principals[%d].tenant", i), "%v", err)
			}
		}
		if part.ID != "" && !strings.HasPrefix(p.RoleARN, "arn:"+part.ID+":") {
			bad(fmt.Sprintf("auth.aws_iam.principals[%d].role_arn", i), "not in partition %s, the region's: its sessions could never sign for this region's STS", part.ID)
		}
		switch p.TenantFrom {
		case "":
		case "token":
			if !c.Auth.UsesJWT() {
				bad(fmt.Sprintf("auth.aws_iam.principals[%d].tenant_from", i), "token needs an identity provider to verify the tokens (auth.issuer, auth.jwks_url, auth.audiences)")
			}
			if c.Auth.RequireBoundTokens {
				bad(fmt.Sprintf("auth.aws_iam.principals[%d].tenant_from", i), "token cannot be used with auth.require_bound_tokens: a forwarded token is bound to its user's certificate, never the caller's")
			}
		default:
			bad(fmt.Sprintf("auth.aws_iam.principals[%d].tenant_from", i), "only token")
		}
	}
	// The rest is the verifier's own check, so that check and serve agree.
	if _, err := awsiam.New(w.VerifierConfig()); err != nil {
		for _, e := range flatten(err) {
			var se *awsiam.SettingError
			if errors.As(e, &se) {
				bad("auth.aws_iam."+se.Setting, "%s", se.Problem)
			} else {
				bad("auth.aws_iam", "%v", e)
			}
		}
	}
}

// VerifierConfig is the section as awsiam reads it; the caller adds the
// metrics, logger and tracer.
func (w *AWSIAM) VerifierConfig() awsiam.Config {
	ps := make([]awsiam.Principal, 0, len(w.Principals))
	for _, p := range w.Principals {
		ps = append(ps, awsiam.Principal{RoleARN: p.RoleARN, TenantID: p.Tenant, AnyTenant: p.AnyTenant, TenantFromToken: p.TenantFrom != ""})
	}
	return awsiam.Config{ServerID: w.ServerID, Endpoint: w.STSEndpoint, Region: w.Region, CacheTTL: w.CacheTTL, Principals: ps}
}

// validate checks the canary section against the rest of the config.
func (cn *Canary) validate(c *Config, bad reporter) {
	if cn.Interval == 0 && len(cn.Tenants) == 0 && len(cn.Probes) == 0 && cn.Endpoints == (CanaryEndpoints{}) {
		return
	}
	if cn.Interval < 0 {
		bad("canary.interval", "negative")
	} else if cn.Interval > 0 && cn.Interval < time.Minute {
		// A run reads from S3 and DynamoDB with every canary tenant's
		// credentials: more often than a minute only adds cost.
		bad("canary.interval", "at least 1m, or 0 for no runs in serve")
	}
	cn.validateTenants(c, bad)
	for name, u := range map[string]string{"canary.endpoints.s3": cn.Endpoints.S3, "canary.endpoints.dynamodb": cn.Endpoints.DynamoDB} {
		if u == "" {
			continue
		}
		if err := checkFetchURL(u); err != nil {
			bad(name, "%v", err)
		}
	}
	if len(cn.Probes) == 0 {
		bad("canary.probes", "at least one")
	}
	profiles := map[string]bool{}
	for _, p := range c.Profiles {
		profiles[p.Name] = true
	}
	for i := range cn.Probes {
		cn.Probes[i].validate(fmt.Sprintf("canary.probes[%d]", i), profiles, bad)
	}
}

// validateTenants checks the two canary tenants: valid ids, and known
// when tenants.allow lists the tenants.
func (cn *Canary) validateTenants(c *Config, bad reporter) {
	if len(cn.Tenants) != 2 || cn.Tenants[0] == cn.Tenants[1] {
		bad("canary.tenants", "two different tenant ids")
	}
	if c.TenantRule == nil {
		return
	}
	for i, id := range cn.Tenants {
		if err := c.TenantRule.Check(id); err != nil {
			bad(fmt.Sprintf("canary.tenants[%d]", i), "%v", err)
		} else if len(c.Tenants.Allow) > 0 && !slices.Contains(c.Tenants.Allow, id) {
			bad(fmt.Sprintf("canary.tenants[%d]", i), "not in tenants.allow: the canary vends as a caller would")
		}
	}
}

// validate checks the probe at at, and compiles its key templates.
func (p *CanaryProbe) validate(at string, profiles map[string]bool, bad reporter) {
	if !profiles[p.Profile] {
		bad(at+".profile", "no such profile")
	}
	switch {
	case (p.S3 == nil) == (p.DynamoDB == nil):
		bad(at, "one of s3 or dynamodb")
	case p.S3 != nil:
		p.S3.validate(at+".s3", bad)
	default:
		p.DynamoDB.validate(at+".dynamodb", bad)
	}
}

// validate checks an S3 probe and compiles its key.
func (p *CanaryS3Probe) validate(at string, bad reporter) {
	if p.Bucket == "" {
		bad(at+".bucket", "required")
	}
	k, err := policy.CompileKey(p.Key)
	if err != nil {
		bad(at+".key", "%v", err)
	}
	p.Compiled = k
}

// validate checks a DynamoDB probe and compiles its key's attributes, at
// least one of which must name the tenant.
func (p *CanaryDynamoDBProbe) validate(at string, bad reporter) {
	if p.Table == "" {
		bad(at+".table", "required")
	}
	if n := len(p.Key); n < 1 || n > 2 {
		bad(at+".key", "the partition key and, for a composite key, the sort key")
	}
	var perTenant bool
	p.Compiled = map[string]*policy.Key{}
	for name, v := range p.Key {
		k, err := policy.CompileKey(v)
		p.Compiled[name] = k // a sort key may be the same for both tenants
		switch {
		case err == nil:
			perTenant = true
		case !errors.Is(err, policy.ErrKeyWithoutTenant):
			bad(at+".key."+name, "%v", err)
		}
	}
	if !perTenant {
		bad(at+".key", "no attribute holds {{ .TenantID }}: both tenants would read one item")
	}
}

// validate fills the redis section's defaults, reads its files and reports
// each problem through bad. No message shows the URL or a file's content:
// they hold secrets.
func (r *Redis) validate(stsTimeout time.Duration, bad reporter) *SharedTier {
	if r.URL == "" && r.URLFile == "" {
		if *r != (Redis{}) {
			bad("redis", "url or url_file required when the section is used")
		}
		return nil
	}
	s := &SharedTier{URL: r.URL}
	u := r.readURL(s, bad)
	r.readPassword(s, u, bad)
	if r.KeyFile == "" {
		bad("redis.key_file", "required: the keys that seal what is stored in Redis")
	} else if keys, err := seal.LoadKeyFile(r.KeyFile); err != nil {
		bad("redis.key_file", "%v", err)
	} else {
		s.Keys = keys
	}
	r.readCA(s, u, bad)
	if r.Prefix == "" {
		r.Prefix = DefaultRedisPrefix
	}
	if strings.ContainsAny(r.Prefix, "{} \t\r\n") {
		bad("redis.prefix", "no braces (they would break the hash tags) or spaces")
	}
	if r.Timeout == 0 {
		r.Timeout = DefaultRedisTimeout
	}
	if r.Timeout < 0 || r.Timeout >= stsTimeout {
		bad("redis.timeout", "must be positive and below sts.timeout (%s): Redis is there to save STS calls, not to wait longer than one", stsTimeout)
	}
	return s
}

// readURL puts the URL of url or url_file in s, and returns it parsed;
// nil when it cannot be read or is not a Redis URL.
func (r *Redis) readURL(s *SharedTier, bad reporter) *url.URL {
	if r.URL != "" && r.URLFile != "" {
		bad("redis", "url and url_file: set one")
	}
	at := "redis.url"
	if r.URLFile != "" {
		at = "redis.url_file"
		b, err := os.ReadFile(r.URLFile)
		if err != nil {
			bad(at, "%v", err)
			return nil
		}
		s.URL = strings.TrimSpace(string(b))
	}
	if err := shared.CheckURL(s.URL, r.Cluster); err != nil {
		bad(at, "%v", err)
		return nil
	}
	u, _ := url.Parse(s.URL)
	return u
}

// readPassword puts the password of password_file in s; the URL u, when
// read, must not carry one too.
func (r *Redis) readPassword(s *SharedTier, u *url.URL, bad reporter) {
	if r.PasswordFile == "" {
		return
	}
	b, err := os.ReadFile(r.PasswordFile)
	switch pw := strings.TrimRight(string(b), "\r\n"); {
	case err != nil:
		bad("redis.password_file", "%v", err)
	case pw == "":
		bad("redis.password_file", "empty")
	default:
		s.Password = pw
	}
	if u != nil {
		if _, inURL := u.User.Password(); inURL {
			bad("redis.password_file", "the URL carries a password too; keep one")
		}
	}
}

// readCA puts the authorities of ca_file in s; only a rediss:// URL u
// takes them.
func (r *Redis) readCA(s *SharedTier, u *url.URL, bad reporter) {
	if r.CAFile == "" {
		return
	}
	pem, err := os.ReadFile(r.CAFile)
	pool := x509.NewCertPool()
	switch {
	case err != nil:
		bad("redis.ca_file", "%v", err)
	case !pool.AppendCertsFromPEM(pem):
		bad("redis.ca_file", "no PEM certificate")
	default:
		s.RootCAs = pool
	}
	if u != nil && u.Scheme != "rediss" {
		bad("redis.ca_file", "only for rediss:// URLs")
	}
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// prefixed names the setting in each of a joined error's parts.
func prefixed(at string, err error) error {
	parts := unjoin(err)
	if len(parts) == 1 {
		return fmt.Errorf("%s.%w", at, err)
	}
	for i, e := range parts {
		parts[i] = prefixed(at, e)
	}
	return errors.Join(parts...)
}

// unjoin is the parts of an errors.Join, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return append([]error(nil), j.Unwrap()...)
	}
	return []error{err}
}

// flatten is the parts of an errors.Join and of every join in it.
func flatten(err error) []error {
	var out []error
	for _, e := range unjoin(err) {
		if _, joined := e.(interface{ Unwrap() []error }); joined {
			out = append(out, flatten(e)...)
		} else {
			out = append(out, e)
		}
	}
	return out
}

// checkFetchURL accepts https URLs, and http only on a loopback address,
// where nothing can be intercepted on the way.
func checkFetchURL(raw string) error {
	if raw == "" {
		return errors.New("required")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return errors.New("not an absolute URL")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if wire.Loopback(u.Hostname()) {
			return nil
		}
		return errors.New("http is allowed only on a loopback address; use https")
	default:
		return errors.New("scheme must be https")
	}
}
