package config

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/awsiam"
	"github.com/tokenvendor/tokenvendor/internal/jwks"
	"github.com/tokenvendor/tokenvendor/internal/partition"
	"github.com/tokenvendor/tokenvendor/internal/policy"
	"github.com/tokenvendor/tokenvendor/wire"
)

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
