package config

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/partition"
)

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

// validate checks the revocation policy's ARN, in the STS partition.
func (r Revocation) validate(part partition.Partition, bad reporter) {
	if r.PolicyARN != "" && (!policyARNPattern.MatchString(r.PolicyARN) || !strings.HasPrefix(r.PolicyARN, "arn:"+part.ID+":")) {
		bad("revocation.policy_arn", "not a customer-managed IAM policy ARN of partition %s (arn:%s:iam::123456789012:policy/NAME)", part.ID, part.ID)
	}
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
