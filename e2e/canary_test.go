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
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awscreds "github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

var canaryTenants = []string{"canary-a", "canary-b"}

// canaryConfig writes a config whose STS is stsEndpoint, with profiles s3
// (prefix) and, when withOrders, orders (DynamoDB LeadingKeys), and a canary
// section probing them at the given endpoints.
func canaryConfig(t *testing.T, stsEndpoint, s3Endpoint, dynamoEndpoint string, withOrders bool, interval string) string {
	t.Helper()
	extra := strings.Replace(objectsProfile, "name: objects", "name: s3", 1)
	extra = fmt.Sprintf(extra, bucket)
	probes := "    - profile: s3\n      s3: {bucket: " + bucket + `, key: "{{ .TenantID }}/canary"}` + "\n"
	endpoints := "s3: " + s3Endpoint
	if withOrders {
		extra += `  - name: orders
    role_arn: arn:aws:iam::123456789012:role/TenantData
    policy: |
      {"Version":"2012-10-17","Statement":[{"Effect":"Allow",
        "Action":["dynamodb:GetItem","dynamodb:Query"],
        "Resource":"arn:aws:dynamodb:us-east-1:123456789012:table/Orders",
        "Condition":{"ForAllValues:StringEquals":{"dynamodb:LeadingKeys":["TENANT#{{ .TenantID }}"]},
                     "Null":{"dynamodb:LeadingKeys":"false"}}}]}
    tags: {TenantID: "{{ .TenantID }}"}
`
		probes += "    - profile: orders\n      dynamodb: {table: Orders, key: {pk: \"TENANT#{{ .TenantID }}\", sk: CANARY}}\n"
		endpoints += ", dynamodb: " + dynamoEndpoint
	}
	path := writeConfig(t, configOptions{stsEndpoint: stsEndpoint, roleChaining: "off", extra: extra})
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	top := "canary:\n  tenants: [" + strings.Join(canaryTenants, ", ") + "]\n  endpoints: {" + endpoints + "}\n  probes:\n" + probes
	if interval != "" {
		top += "  interval: " + interval + "\n"
	}
	if err := os.WriteFile(path, append([]byte(top), b...), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// putCanaryObjects writes each canary tenant's object with c.
func putCanaryObjects(t *testing.T, c *s3.Client) {
	t.Helper()
	for _, tenant := range canaryTenants {
		if _, err := c.PutObject(context.Background(), &s3.PutObjectInput{
			Bucket: aws.String(bucket), Key: aws.String(tenant + "/canary"), Body: strings.NewReader("canary"),
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// runCanaryCommand runs `tokenvendor canary` with the service's own
// credentials and returns its output and exit code.
func runCanaryCommand(t *testing.T, config string, creds aws.Credentials) (string, int) {
	t.Helper()
	cmd := exec.Command(peers.bin, "canary", "--config", config)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+creds.SecretAccessKey,
		"AWS_REGION=us-east-1", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true")
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// verdicts counts the lines of canary output by their first word.
func verdicts(out string) map[string]int {
	n := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], "profile=") {
			n[f[0]]++
		}
	}
	return n
}

func TestCanaryOnMinIOFindsEveryProbeIsolated(t *testing.T) {
	putCanaryObjects(t, s3Client(aws.Credentials{AccessKeyID: minioUser, SecretAccessKey: minioPassword}))
	out, code := runCanaryCommand(t, canaryConfig(t, peers.minio, peers.minio, "", false, ""),
		aws.Credentials{AccessKeyID: minioUser, SecretAccessKey: minioPassword})
	t.Logf("tokenvendor canary on MinIO (exit %d):\n%s", code, out)
	if code != 0 || verdicts(out)["isolated"] != 2 || len(verdicts(out)) != 1 {
		t.Fatalf("exit %d, verdicts %v; want 0 and two isolated directions", code, verdicts(out))
	}
	if strings.Contains(out, minioPassword) {
		t.Fatal("the output holds the service's secret")
	}
}

func TestCanaryOnMotoWhichEnforcesNothingFindsABreachPerProbe(t *testing.T) {
	ctx := context.Background()
	root := awscreds.NewStaticCredentialsProvider("test", "test", "")
	s3c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(peers.moto), UsePathStyle: true, Credentials: root})
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil && !strings.Contains(err.Error(), "BucketAlready") {
		t.Fatal(err)
	}
	putCanaryObjects(t, s3c)
	ddb := dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: aws.String(peers.moto), Credentials: root})
	_, err := ddb.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String("Orders"), BillingMode: ddbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []ddbtypes.AttributeDefinition{
			{AttributeName: aws.String("pk"), AttributeType: ddbtypes.ScalarAttributeTypeS},
			{AttributeName: aws.String("sk"), AttributeType: ddbtypes.ScalarAttributeTypeS},
		},
		KeySchema: []ddbtypes.KeySchemaElement{
			{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash},
			{AttributeName: aws.String("sk"), KeyType: ddbtypes.KeyTypeRange},
		},
	})
	if err != nil && !strings.Contains(err.Error(), "ResourceInUse") {
		t.Fatal(err)
	}
	for _, tenant := range canaryTenants {
		if _, err := ddb.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("Orders"), Item: map[string]ddbtypes.AttributeValue{
			"pk": &ddbtypes.AttributeValueMemberS{Value: "TENANT#" + tenant}, "sk": &ddbtypes.AttributeValueMemberS{Value: "CANARY"},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	out, code := runCanaryCommand(t, canaryConfig(t, peers.moto, peers.moto, peers.moto, true, ""), aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"})
	t.Logf("tokenvendor canary on moto (exit %d):\n%s", code, out)
	if code != 3 || verdicts(out)["breach"] != 4 || len(verdicts(out)) != 1 {
		t.Fatalf("exit %d, verdicts %v; want 3 (a breach) and a breach for each probe in both directions", code, verdicts(out))
	}
	for _, want := range []string{"profile=s3 canary-a -> canary-b", "profile=orders canary-b -> canary-a", "read succeeded"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output does not say %q", want)
		}
	}
}

func TestServeRunsTheCanaryInTheBackground(t *testing.T) {
	putCanaryObjects(t, s3Client(aws.Credentials{AccessKeyID: minioUser, SecretAccessKey: minioPassword}))
	v := startVendor(t, canaryConfig(t, peers.minio, peers.minio, "", false, "1m"), minioUser, minioPassword)
	acme := token(t, "svc-acme")
	client := loadClient(true)
	// Callers are served whatever the canary is doing.
	load := startLoad(2, func(int, int) outcome {
		return call(client, http.MethodPost, v.url+"/credentials", acme, `{"profile":"objects"}`)
	})
	testsupport.Eventually(t, 30*time.Second, func() error {
		if g := v.metric(t, `tokenvendor_isolation_canary{profile="s3"}`); g != 1 {
			return fmt.Errorf("tokenvendor_isolation_canary{profile=\"s3\"} = %v, want 1:\n%s", g, v.out.String())
		}
		return nil
	})
	load.waitFor(t, 20)
	results := load.finish()
	for _, o := range results {
		if o.err != nil || o.status != http.StatusOK {
			t.Fatalf("a caller while the canary runs: %d %s %v", o.status, o.body, o.err)
		}
	}
	if runs := v.metric(t, `tokenvendor_isolation_canary_runs_total{profile="s3",result="isolated"}`); runs != 1 {
		t.Fatalf("isolated runs = %v, want 1", runs)
	}
	t.Logf("canary isolated on MinIO; %d caller requests served, all 200", len(results))
}

// TestCanaryProbesASiloProfileOnMinIO has the canary vend a silo profile,
// each canary tenant's role in its own account (from tenants.file), and
// find it isolated: it vends through the same directory and role templates
// as serve. (MinIO ignores the role; the session policy isolates there.)
func TestCanaryProbesASiloProfileOnMinIO(t *testing.T) {
	putCanaryObjects(t, s3Client(aws.Credentials{AccessKeyID: minioUser, SecretAccessKey: minioPassword}))
	config := canaryConfig(t, peers.minio, peers.minio, "", false, "")
	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	pool := "name: s3\n    role_arn: arn:aws:iam::123456789012:role/TenantData\n"
	if !strings.Contains(string(b), pool) {
		t.Fatal("no s3 profile to make a silo of")
	}
	file := filepath.Join(t.TempDir(), "tenants.txt")
	if err := os.WriteFile(file, []byte("canary-a account_id=222233334444\ncanary-b account_id=555566667777\nacme account_id=888899990000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	silo := strings.Replace(string(b), pool, "name: s3\n    role_arn: 'arn:{{ .Partition }}:iam::{{ .Attr \"account_id\" }}:role/TenantAccess'\n", 1)
	if err := os.WriteFile(config, []byte("tenants:\n  file: "+file+"\n"+silo), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := runCanaryCommand(t, config, aws.Credentials{AccessKeyID: minioUser, SecretAccessKey: minioPassword})
	t.Logf("tokenvendor canary of a silo profile on MinIO (exit %d):\n%s", code, out)
	if code != 0 || verdicts(out)["isolated"] != 2 || len(verdicts(out)) != 1 {
		t.Fatalf("exit %d, verdicts %v; want 0 and two isolated directions", code, verdicts(out))
	}
}
