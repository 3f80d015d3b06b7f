package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/config"
)

// prepend puts sections in front of the baseline.
func prepend(sections string) func(*string) {
	return func(y *string) { *y = sections + *y }
}

func TestTenantStoreRevocationAndSTSBudgetSections(t *testing.T) {
	c, err := config.Parse([]byte(mutated(prepend("tenants:\n  dynamodb: {table: tenants}\nrevocation:\n  policy_arn: arn:aws:iam::123456789012:policy/tokenvendor-revocation\nsts:\n  max_rps: 20\n"))))
	if err != nil {
		t.Fatal(err)
	}
	if d := c.Tenants.DynamoDB; d.Region != "us-east-1" || d.Poll != 5*time.Second || c.STS.MaxRPS != 20 {
		t.Errorf("defaults: store %+v, max_rps %v", *d, c.STS.MaxRPS)
	}
	withRedis, err := config.Parse([]byte(mutated(prepend("tenants:\n  dynamodb: {table: tenants}\nredis:\n  url: redis://127.0.0.1:6379\n  key_file: " + newRedisFiles(t).keys + "\n"))))
	if err != nil {
		t.Fatal(err)
	}
	if p := withRedis.Tenants.DynamoDB.Poll; p != time.Second {
		t.Errorf("the store's poll with a redis section = %s, want 1s (its notices carry most changes at once)", p)
	}
	for name, tc := range map[string]struct{ sections, want string }{
		"a table name DynamoDB refuses": {"tenants:\n  dynamodb: {table: 'a b'}\n", "tenants.dynamodb.table"},
		"no table":                      {"tenants:\n  dynamodb: {region: eu-west-1}\n", "tenants.dynamodb.table"},
		"http beyond loopback":          {"tenants:\n  dynamodb: {table: tenants, endpoint: 'http://dynamo.example.com'}\n", "tenants.dynamodb.endpoint"},
		"a poll too short":              {"tenants:\n  dynamodb: {table: tenants, poll: 10ms}\n", "tenants.dynamodb.poll"},
		"a role, not a policy":          {"revocation:\n  policy_arn: arn:aws:iam::123456789012:role/x\n", "revocation.policy_arn"},
		"an AWS managed policy":         {"revocation:\n  policy_arn: arn:aws:iam::aws:policy/AdministratorAccess\n", "revocation.policy_arn"},
		"a negative budget":             {"sts:\n  max_rps: -1\n", "sts.max_rps"},
		"a budget past what STS takes":  {"sts:\n  max_rps: 100000\n", "sts.max_rps"},
		"a burst without a rate":        {"sts:\n  max_burst: 5\n", "sts.max_burst: needs sts.max_rps"},
	} {
		_, err := config.Parse([]byte(mutated(prepend(tc.sections))))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}
