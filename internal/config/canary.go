package config

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/policy"
)

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
