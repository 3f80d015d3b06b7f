package testsupport

import (
	"testing"

	"github.com/tokenvendor/tokenvendor/internal/partition"
	"github.com/tokenvendor/tokenvendor/internal/policy"
)

// PoolRoleARN is the shared access role of the tests' profiles.
const PoolRoleARN = "arn:aws:iam::123456789012:role/TenantData"

// Role compiles a profile's role ARN (and ExternalId) template in the aws
// partition, us-east-1; PoolRoleARN when roleARN is empty.
func Role(t testing.TB, tenants *policy.TenantRule, roleARN, externalID string) *policy.Role {
	t.Helper()
	if roleARN == "" {
		roleARN = PoolRoleARN
	}
	r, err := policy.CompileRole(policy.RoleSpec{RoleARN: roleARN, ExternalID: externalID, Partition: partition.AWS, Region: "us-east-1"}, tenants)
	if err != nil {
		t.Fatalf("compile role %q: %v", roleARN, err)
	}
	return r
}
