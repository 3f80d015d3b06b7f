package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awscreds "github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

// cutOffWithin is how soon a suspension or a resumption must reach every
// replica.
const cutOffWithin = 2 * time.Second

// createTenantTable makes a tenant store of the test's own in moto's
// DynamoDB and returns the tenants section that names it.
func createTenantTable(t *testing.T) string {
	t.Helper()
	name := strings.ReplaceAll("tenants-"+t.Name(), "/", "-")
	if _, err := testsupport.CreateTenantTable(peers.moto, name); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("tenants:\n  dynamodb:\n    table: %s\n    endpoint: %s\n", name, peers.moto)
}

// tenantsCommand runs `tokenvendor tenants ARGS` as an operator would, with
// credentials of its own, and returns what it printed.
func tenantsCommand(t *testing.T, config string, args ...string) string {
	t.Helper()
	verb, rest := args[0], args[1:]
	cmd := exec.Command(peers.bin, append([]string{"tenants", verb, "--config", config}, rest...)...)
	cmd.Env = []string{"AWS_ACCESS_KEY_ID=operator", "AWS_SECRET_ACCESS_KEY=operator-secret", "AWS_REGION=us-east-1",
		"AWS_ENDPOINT_URL_IAM=" + peers.moto,
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tokenvendor tenants %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// untilEvery asks every replica of f for tenant's credentials until each
// answers want (and, for a refusal, says message), and returns how long
// each took from start. It gives up after 10 s.
func (f fleet) untilEvery(t *testing.T, worker, tenant string, want int, message string, start time.Time) []time.Duration {
	t.Helper()
	client := loadClient(true)
	took := make([]time.Duration, len(f))
	var wg sync.WaitGroup
	for i, v := range f {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				o := call(client, http.MethodPost, v.url+"/credentials", worker, fmt.Sprintf(`{"tenant_id":%q}`, tenant))
				if o.err == nil && o.status == want && strings.Contains(string(o.body), message) {
					took[i] = time.Since(start)
					return
				}
				if time.Since(start) > 10*time.Second {
					t.Errorf("replica %d still answers %d %s for %s after 10 s", i, o.status, o.body, tenant)
					took[i] = time.Since(start)
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	return took
}

func slowest(took []time.Duration) time.Duration {
	var most time.Duration
	for _, d := range took {
		most = max(most, d)
	}
	return most
}

// TestSuspensionReachesEveryReplicaWithinTwoSeconds runs three replicas
// over a real redis-server and a tenant store in moto's DynamoDB, the
// tenants warm in every replica and in Redis. `tokenvendor tenants suspend`
// makes every replica refuse the tenant within 2 s, with no AssumeRole for
// it and nothing changed for the others; `resume` restores it within 2 s.
// The same holds with the replicas' pub/sub connections cut (the poll
// catches it), and with Redis down (the poll alone; the suspension holds).
func TestSuspensionReachesEveryReplicaWithinTwoSeconds(t *testing.T) {
	redis := startRedis(t)
	config, _ := replicaConfig(t, redisSection("redis://"+redis.addr(), defaultRedisTimeout)+createTenantTable(t))
	for _, id := range []string{"bystander", "notified", "cut", "alone"} {
		tenantsCommand(t, config, "add", id)
	}
	f := startFleet(t, 3, config)
	worker := token(t, "worker")
	warm := func(tenant string) credentials {
		t.Helper()
		got := sameCredentials(t, f.burst(t, worker, []string{tenant}, 3))
		return got[tenant]
	}
	bystander := warm("bystander")

	for _, tc := range []struct {
		tenant string
		// around runs the suspension and the resumption, with whatever it
		// does to Redis around them.
		around func(t *testing.T, change func())
		told   string // what the command says of Redis
	}{
		{tenant: "notified", told: "replicas told through Redis", around: func(t *testing.T, change func()) { change() }},
		{tenant: "cut", told: "replicas told through Redis", around: func(t *testing.T, change func()) {
			// Every replica's subscription cut over and over while the
			// change is made and spreads.
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				c := redis.client(t)
				for {
					c.ClientKillByFilter(context.Background(), "TYPE", "pubsub")
					select {
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond):
					}
				}
			}()
			change()
			close(stop)
			<-done
		}},
		{tenant: "alone", told: "Redis not told", around: func(t *testing.T, change func()) {
			redis.proc.kill()
			change()
			redis.run(t)
		}},
	} {
		t.Run(tc.tenant, func(t *testing.T) {
			warm(tc.tenant)
			tc.around(t, func() {
				calls := f.stsCalls(t)
				out := tenantsCommand(t, config, "suspend", tc.tenant)
				written := time.Now()
				if !strings.Contains(out, tc.told) {
					t.Errorf("tenants suspend said:\n%s\nwant %q", out, tc.told)
				}
				took := f.untilEvery(t, worker, tc.tenant, http.StatusForbidden, "tenant suspended", written)
				t.Logf("%s: suspended on every replica within %s of the write (%v)", tc.tenant, slowest(took).Round(time.Millisecond), took)
				if slowest(took) > cutOffWithin {
					t.Errorf("%s: the suspension took %s to reach every replica, want at most %s", tc.tenant, slowest(took), cutOffWithin)
				}
				// It holds, and costs STS nothing.
				time.Sleep(500 * time.Millisecond)
				for i, v := range f {
					if status, body := v.post(t, worker, fmt.Sprintf(`{"tenant_id":%q}`, tc.tenant)); status != http.StatusForbidden {
						t.Errorf("replica %d serves suspended %s: %d %s", i, tc.tenant, status, body)
					}
				}
				if made := f.stsCalls(t) - calls; made != 0 {
					t.Errorf("%s: %v AssumeRole calls after the suspension was written, want 0", tc.tenant, made)
				}

				out = tenantsCommand(t, config, "resume", tc.tenant)
				written = time.Now()
				took = f.untilEvery(t, worker, tc.tenant, http.StatusOK, `"TenantId":"`+tc.tenant+`"`, written)
				t.Logf("%s: resumed on every replica within %s of the write (%v)", tc.tenant, slowest(took).Round(time.Millisecond), took)
				if slowest(took) > cutOffWithin {
					t.Errorf("%s: the resumption took %s to reach every replica, want at most %s", tc.tenant, slowest(took), cutOffWithin)
				}
			})
		})
	}

	// The others never noticed: same credentials, not one AssumeRole.
	calls := f.stsCalls(t)
	for i, v := range f {
		if c := v.vend(t, worker, `{"tenant_id":"bystander"}`); c.AccessKeyID != bystander.AccessKeyID {
			t.Errorf("replica %d: bystander's credentials changed to %s", i, c.AccessKeyID)
		}
	}
	if made := f.stsCalls(t) - calls; made != 0 {
		t.Errorf("bystander: %v AssumeRole calls, want 0", made)
	}
	for i, v := range f {
		if n := v.metric(t, `tokenvendor_tenant_refusals_total{reason="suspended"}`); n == 0 {
			t.Errorf("replica %d counted no refusal of a suspended tenant", i)
		}
	}
}

// TestSuspendRevokeSuspendsAndCutsOffWhatIsOut runs `tenants suspend
// --revoke` against moto (DynamoDB for the store, IAM for the revocation
// policy): the tenant is suspended in the store, and the policy's default
// version denies its sessions issued before now. moto evaluates no
// condition: this proves what is written; examples/profiles proves what
// the statement denies.
func TestSuspendRevokeSuspendsAndCutsOffWhatIsOut(t *testing.T) {
	ctx := context.Background()
	creds := awscreds.NewStaticCredentialsProvider("testing", "testing", "")
	client := iam.New(iam.Options{Region: "us-east-1", BaseEndpoint: aws.String(peers.moto), Credentials: creds})
	name := strings.ReplaceAll("revocation-"+t.Name(), "/", "-")
	created, err := client.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String(name), PolicyDocument: aws.String(
		`{"Version":"2012-10-17","Statement":[{"Sid":"Placeholder","Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/TenantID":"tokenvendor-revocation-placeholder"}}}]}`)})
	if err != nil {
		t.Fatal(err)
	}
	config := writeConfig(t, configOptions{stsEndpoint: peers.minio})
	appendConfig(t, config, createTenantTable(t)+"revocation:\n  policy_arn: "+aws.ToString(created.Policy.Arn)+"\n")
	tenantsCommand(t, config, "add", "acme")
	start := time.Now().UTC().Truncate(time.Second)
	out := tenantsCommand(t, config, "suspend", "--revoke", "acme")
	for _, want := range []string{"suspend: acme at store revision 2", "revoked: sessions of tenant acme issued before"} {
		if !strings.Contains(out, want) {
			t.Errorf("tenants suspend --revoke printed:\n%s\nwant %q", out, want)
		}
	}
	if list := tenantsCommand(t, config, "list"); !strings.Contains(list, "acme    suspended") {
		t.Errorf("tenants list after the suspension:\n%s", list)
	}
	pol, err := client.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: created.Policy.Arn})
	if err != nil {
		t.Fatal(err)
	}
	v, err := client.GetPolicyVersion(ctx, &iam.GetPolicyVersionInput{PolicyArn: created.Policy.Arn, VersionId: pol.Policy.DefaultVersionId})
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := url.QueryUnescape(aws.ToString(v.PolicyVersion.Document))
	if !strings.Contains(doc, `"aws:PrincipalTag/TenantID":["acme"]`) || !strings.Contains(doc, `"DateLessThan":{"aws:TokenIssueTime":"`) {
		t.Fatalf("the revocation policy's default version does not cut acme off:\n%s", doc)
	}
	cut := doc[strings.Index(doc, `"aws:TokenIssueTime":"`)+len(`"aws:TokenIssueTime":"`):]
	cutoff, err := time.Parse(time.RFC3339, cut[:strings.Index(cut, `"`)])
	if err != nil || cutoff.Before(start) || cutoff.After(time.Now().Add(2*time.Second)) {
		t.Fatalf("cut-off %v (%v), want the time of the suspension (%s)", cutoff, err, start)
	}
}

// appendConfig adds top-level sections at the end of a config.
func appendConfig(t *testing.T, config, sections string) {
	t.Helper()
	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(config, append(b, []byte("\n"+sections)...), 0o600); err != nil {
		t.Fatal(err)
	}
}
