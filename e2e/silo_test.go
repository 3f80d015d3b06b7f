package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awscreds "github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// tieredProfiles are a pool, a bridge and a silo profile over one policy:
// the shared role; a role of each tenant's own in the shared account; the
// same role name in each tenant's own account, with a derived ExternalId.
const tieredProfiles = `
  - name: pool
    role_arn: arn:aws:iam::123456789012:role/TenantData
    policy: &policy |
      {"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:{{ .Partition }}:s3:::data/{{ .TenantID }}/*"]}]}
    tags: {TenantID: "{{ .TenantID }}"}
  - name: bridge
    role_arn: 'arn:{{ .Partition }}:iam::123456789012:role/tenants/{{ .TenantID }}'
    policy: *policy
    tags: {TenantID: "{{ .TenantID }}"}
  - name: silo
    role_arn: 'arn:{{ .Partition }}:iam::{{ .Attr "account_id" }}:role/TenantAccess'
    external_id: derived
    external_id_key_file: %s
    policy: *policy
    tags: {TenantID: "{{ .TenantID }}"}
`

// callerARN is what moto's GetCallerIdentity says the credentials are.
func callerARN(t *testing.T, c credentials) string {
	t.Helper()
	client := sts.New(sts.Options{Region: "us-east-1", BaseEndpoint: aws.String(peers.moto),
		Credentials: awscreds.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)})
	id, err := client.GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("GetCallerIdentity with the vended credentials: %v", err)
	}
	return aws.ToString(id.Arn)
}

// TestEachTenantLandsInItsOwnAccountAndRoleOnMoto runs pool, bridge and
// silo profiles against moto_server's STS, with the tenants' accounts in
// the tenant store (moto's DynamoDB). GetCallerIdentity with the vended
// credentials shows where each tenant landed; moto's record shows the
// derived ExternalId sent, each tenant's own; a tenant whose item has no
// account_id is refused 403 with no AssumeRole.
func TestEachTenantLandsInItsOwnAccountAndRoleOnMoto(t *testing.T) {
	key := filepath.Join(t.TempDir(), "external-id.key")
	if err := os.WriteFile(key, []byte("an external id key of 32 bytes or more\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A bridge role is named after its tenant, and IAM role names ignore
	// case: tenant ids of one case only.
	config := writeConfig(t, configOptions{stsEndpoint: peers.moto, roleChaining: "off", extra: fmt.Sprintf(tieredProfiles, key),
		authExtra: "  tenant_pattern: '^[a-z0-9][a-z0-9_-]{0,62}$'\n"})
	appendConfig(t, config, createTenantTable(t))
	tenantsCommand(t, config, "add", "--attr", "account_id=222233334444", "acme")
	tenantsCommand(t, config, "add", "--attr", "account_id=555566667777", "globex")
	tenantsCommand(t, config, "add", "--attr", "tier=premium", "initech")
	v := startVendor(t, config, "AKIAMOTOEXAMPLE", "moto-secret")
	worker := token(t, "worker")
	before := len(motoAssumedRoles(t))

	want := map[string]string{
		"pool/acme":     "arn:aws:sts::123456789012:assumed-role/TenantData/acme@pool",
		"pool/globex":   "arn:aws:sts::123456789012:assumed-role/TenantData/globex@pool",
		"bridge/acme":   "arn:aws:sts::123456789012:assumed-role/acme/acme@bridge",
		"bridge/globex": "arn:aws:sts::123456789012:assumed-role/globex/globex@bridge",
		"silo/acme":     "arn:aws:sts::222233334444:assumed-role/TenantAccess/acme@silo",
		"silo/globex":   "arn:aws:sts::555566667777:assumed-role/TenantAccess/globex@silo",
	}
	for at, arn := range want {
		profile, tenant, _ := strings.Cut(at, "/")
		c := v.vend(t, worker, fmt.Sprintf(`{"profile":%q,"tenant_id":%q}`, profile, tenant))
		if got := callerARN(t, c); got != arn {
			t.Errorf("%s: GetCallerIdentity says %s, want %s", at, got, arn)
		}
	}

	externalIDs := map[string]string{}
	for _, r := range motoAssumedRoles(t)[before:] {
		if arn, _ := r["role_arn"].(string); strings.HasSuffix(arn, ":role/TenantAccess") {
			externalIDs[arn], _ = r["external_id"].(string)
		}
	}
	for _, tenant := range []string{"acme", "globex"} {
		// render reads the tenant's item from the store, as an operator would.
		cmd := exec.Command(peers.bin, "render", "--config", config, "--profile", "silo", "--tenant", tenant)
		cmd.Env = []string{"AWS_ACCESS_KEY_ID=operator", "AWS_SECRET_ACCESS_KEY=operator-secret", "AWS_REGION=us-east-1",
			"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true"}
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("render: %v", err)
		}
		out := string(b)
		account := strings.Split(want["silo/"+tenant], ":")[4]
		sent := externalIDs["arn:aws:iam::"+account+":role/TenantAccess"]
		if len(sent) != 64 || !strings.Contains(out, `"ExternalId":"`+sent+`"`) {
			t.Errorf("%s: moto received ExternalId %q; render prints %s", tenant, sent, out)
		}
	}
	if externalIDs["arn:aws:iam::222233334444:role/TenantAccess"] == externalIDs["arn:aws:iam::555566667777:role/TenantAccess"] {
		t.Error("two silo tenants presented the same ExternalId")
	}

	calls := len(motoAssumedRoles(t))
	status, body := v.post(t, worker, `{"profile":"silo","tenant_id":"initech"}`)
	if status != http.StatusForbidden || !strings.Contains(string(body), `account_id`) {
		t.Errorf("a tenant without account_id: %d %s, want 403 naming account_id", status, body)
	}
	if n := len(motoAssumedRoles(t)); n != calls {
		t.Errorf("%d AssumeRole calls for a tenant without account_id, want 0", n-calls)
	}
	// The pool does not need the attribute: the same tenant is served there.
	if c := v.vend(t, worker, `{"profile":"pool","tenant_id":"initech"}`); callerARN(t, c) != "arn:aws:sts::123456789012:assumed-role/TenantData/initech@pool" {
		t.Error("initech not on the shared role in the pool")
	}
}
