// Package config loads and validates tokenvendor's YAML configuration. Every
// problem is reported at once, each naming its setting, and templates are
// compiled and linted here, so a bad config fails start-up rather than the
// first request.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tokenvendor/tokenvendor/internal/cache"
	"github.com/tokenvendor/tokenvendor/internal/policy"
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

// Tracing configures what traces carry. Whether there are any is the
// standard OTEL_EXPORTER_OTLP_ENDPOINT's business.
type Tracing struct {
	// TenantAttribute puts the tenant id on spans; off by default.
	TenantAttribute bool `yaml:"tenant_attribute"`
}

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

// TLS configures HTTPS on the API listener.
type TLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
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
