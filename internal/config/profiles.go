package config

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/cache"
	"github.com/tokenvendor/tokenvendor/internal/policy"
)

var profileNamePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

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
