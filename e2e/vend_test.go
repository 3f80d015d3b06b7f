package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awscreds "github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

// putGet writes and reads back key in the bucket with c, returning the first error.
func putGet(c credentials, key string) error {
	return sdkPutGet(s3Client(c.aws()), key, "hello from "+c.TenantID)
}

// get reads key with c.
func get(c credentials, key string) error {
	out, err := s3Client(c.aws()).GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err == nil {
		out.Body.Close()
	}
	return err
}

func accessDenied(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == "AccessDenied"
}

// noSecretsIn fails when the vendor's output holds any secret it handled.
func noSecretsIn(t *testing.T, v *vendor, creds []credentials, tokens []string) {
	t.Helper()
	out := v.out.String()
	for _, c := range creds {
		if strings.Contains(out, c.SecretAccessKey) || strings.Contains(out, c.SessionToken) {
			t.Errorf("tokenvendor output contains credentials of tenant %s", c.TenantID)
		}
	}
	for _, tok := range tokens {
		if strings.Contains(out, tok) || strings.Contains(out, tok[strings.LastIndexByte(tok, '.')+1:]) {
			t.Error("tokenvendor output contains a caller's token")
		}
	}
}

func TestTenantsTouchOnlyTheirOwnPrefixOnMinIO(t *testing.T) {
	v := startVendor(t, writeConfig(t, configOptions{stsEndpoint: peers.minio}), minioUser, minioPassword)
	acmeTok, globexTok := token(t, "svc-acme"), token(t, "svc-globex")
	acme := v.vend(t, acmeTok, `{"profile":"objects"}`)
	globex := v.vend(t, globexTok, "")
	if acme.TenantID != "acme" || globex.TenantID != "globex" {
		t.Fatalf("tenants: %s, %s", acme.TenantID, globex.TenantID)
	}

	for _, tt := range []struct {
		creds credentials
		own   string
		other string
	}{{acme, "acme/", "globex/"}, {globex, "globex/", "acme/"}} {
		if err := putGet(tt.creds, tt.own+"report.txt"); err != nil {
			t.Errorf("%s on its own prefix: %v", tt.creds.TenantID, err)
		}
		if err := putGet(tt.creds, tt.other+"stolen.txt"); !accessDenied(err) {
			t.Errorf("%s writing under %s: err = %v, want AccessDenied", tt.creds.TenantID, tt.other, err)
		}
		if err := get(tt.creds, tt.other+"report.txt"); !accessDenied(err) {
			t.Errorf("%s reading %sreport.txt: err = %v, want AccessDenied", tt.creds.TenantID, tt.other, err)
		}
		if err := putGet(tt.creds, "top-level.txt"); !accessDenied(err) {
			t.Errorf("%s writing outside any prefix: err = %v, want AccessDenied", tt.creds.TenantID, err)
		}
	}
	noSecretsIn(t, v, []credentials{acme, globex}, []string{acmeTok, globexTok})
}

func TestOneTenantSharesCredentialsAndAColdBurstMakesOneAssumeRole(t *testing.T) {
	v := startVendor(t, writeConfig(t, configOptions{stsEndpoint: peers.minio}), minioUser, minioPassword)
	tok1, tok2 := token(t, "svc-acme"), token(t, "svc-acme-2")
	a1, a2 := v.vend(t, tok1, ""), v.vend(t, tok2, "")
	again := v.vend(t, tok1, "")
	if a1.AccessKeyID != a2.AccessKeyID || a1.AccessKeyID != again.AccessKeyID {
		t.Fatalf("one tenant got several credentials: %s %s %s", a1.AccessKeyID, a2.AccessKeyID, again.AccessKeyID)
	}
	if n := v.metric(t, `tokenvendor_sts_requests_total{outcome="success"}`); n != 1 {
		t.Fatalf("sts requests after three calls for one tenant = %v, want 1", n)
	}

	initech := token(t, "svc-initech")
	var wg sync.WaitGroup
	keys := make(chan string, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, b := v.post(t, initech, "")
			if status != http.StatusOK {
				t.Errorf("status %d: %s", status, b)
				return
			}
			var c credentials
			_ = json.Unmarshal(b, &c)
			keys <- c.AccessKeyID
		}()
	}
	wg.Wait()
	close(keys)
	distinct := map[string]bool{}
	for k := range keys {
		distinct[k] = true
	}
	if len(distinct) != 1 {
		t.Errorf("50 concurrent first calls got %d distinct credentials", len(distinct))
	}
	if n := v.metric(t, `tokenvendor_sts_requests_total{outcome="success"}`); n != 2 {
		t.Fatalf("tokenvendor_sts_requests_total = %v after a cold burst of 50 for a new tenant, want 2 (1 + 1)", n)
	}
	noSecretsIn(t, v, []credentials{a1}, []string{tok1, tok2, initech})
}

func TestOverrideScopeOnMinIO(t *testing.T) {
	v := startVendor(t, writeConfig(t, configOptions{stsEndpoint: peers.minio}), minioUser, minioPassword)
	status, body := v.post(t, token(t, "svc-acme"), `{"tenant_id":"globex"}`)
	if status != http.StatusForbidden || !strings.Contains(string(body), `"forbidden"`) {
		t.Fatalf("acme asking for globex: %d %s", status, body)
	}
	worker := token(t, "worker")
	status, body = v.post(t, worker, "")
	if status != http.StatusForbidden {
		t.Fatalf("worker without a tenant named: %d %s", status, body)
	}
	// The worker as a service serving many tenants would: the Go client.
	globex := tenantS3(newTenantClient(t, v, worker).Provider("globex"))
	if err := sdkPutGet(globex, "globex/by-worker.txt", "worker"); err != nil {
		t.Errorf("worker's globex credentials on globex/: %v", err)
	}
	if err := sdkPutGet(globex, "acme/by-worker.txt", "worker"); !accessDenied(err) {
		t.Errorf("worker's globex credentials on acme/: err = %v, want AccessDenied", err)
	}
	if n := v.metric(t, `tokenvendor_sts_requests_total{outcome="success"}`); n != 1 {
		t.Errorf("sts requests = %v, want 1 (the refusals never reach STS)", n)
	}
}

func TestHostileTenantClaimsFromTheProviderNeverReachSTS(t *testing.T) {
	v := startVendor(t, writeConfig(t, configOptions{stsEndpoint: peers.minio}), minioUser, minioPassword)
	for client, want := range map[string]int{"svc-star": http.StatusBadRequest, "svc-number": http.StatusForbidden} {
		status, body := v.post(t, token(t, client), "")
		if status != want {
			t.Errorf("%s: %d %s, want %d", client, status, body, want)
		}
	}
	status, _ := v.post(t, testsupport.Tamper(token(t, "svc-acme")), "")
	if status != http.StatusUnauthorized {
		t.Errorf("tampered provider token: %d", status)
	}
	for _, outcome := range []string{"success", "refused", "unavailable", "throttled"} {
		if n := v.metric(t, `tokenvendor_sts_requests_total{outcome="`+outcome+`"}`); n != 0 {
			t.Errorf("sts requests{%s} = %v, want 0", outcome, n)
		}
	}
}

// motoAssumedRoles reads what moto_server recorded of every AssumeRole.
func motoAssumedRoles(t *testing.T) []map[string]any {
	t.Helper()
	res, err := http.Get(peers.moto + "/moto-api/data.json")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var data map[string]map[string][]map[string]any
	if err := json.NewDecoder(res.Body).Decode(&data); err != nil {
		t.Fatal(err)
	}
	return data["sts"]["AssumedRole"]
}

func TestWhatReachesSTSIsExactlyWhatWasConfiguredOnMoto(t *testing.T) {
	cfg := writeConfig(t, configOptions{stsEndpoint: peers.moto})
	rendered, err := exec.Command(peers.bin, "render", "--config", cfg, "--profile", "objects", "--tenant", "acme").Output()
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	var want struct {
		RoleArn, RoleSessionName string
		Policy                   json.RawMessage
	}
	if err := json.Unmarshal(rendered, &want); err != nil {
		t.Fatal(err)
	}
	before := len(motoAssumedRoles(t))

	// Two processes, so two real AssumeRole calls for the same tenant: the
	// session name must be the same in both.
	tok := token(t, "svc-acme")
	for range 2 {
		v := startVendor(t, cfg, "AKIAMOTOEXAMPLE", "moto-secret")
		c := v.vend(t, tok, "")
		if c.AccessKeyID == "" {
			t.Fatal("no credentials from moto")
		}
		v.stop()
	}
	roles := motoAssumedRoles(t)[before:]
	if len(roles) != 2 {
		t.Fatalf("moto recorded %d AssumeRole calls, want 2", len(roles))
	}
	sessionName := regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
	for i, r := range roles {
		if r["role_arn"] != want.RoleArn {
			t.Errorf("call %d: role_arn = %v, want %s", i, r["role_arn"], want.RoleArn)
		}
		name, _ := r["session_name"].(string)
		if !sessionName.MatchString(name) || name != want.RoleSessionName {
			t.Errorf("call %d: session_name = %q, want %q within STS's rules", i, name, want.RoleSessionName)
		}
		if r["policy"] != string(want.Policy) {
			t.Errorf("call %d: policy = %v\nwant %s", i, r["policy"], want.Policy)
		}
	}
}

func TestSIGTERMStopsCleanly(t *testing.T) {
	v := startVendor(t, writeConfig(t, configOptions{stsEndpoint: peers.minio}), minioUser, minioPassword)
	v.vend(t, token(t, "svc-acme"), "")
	v.signal(syscall.SIGTERM)
	select {
	case <-v.done:
	case <-time.After(15 * time.Second):
		t.Fatal("tokenvendor still running 15 s after SIGTERM")
	}
	if code := v.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, v.out.String())
	}
	if !strings.Contains(v.out.String(), `"msg":"stopped"`) {
		t.Errorf("no clean stop logged:\n%s", v.out.String())
	}
}

func TestRoleChainingIsDetectedAndClampsTheDurationOnMoto(t *testing.T) {
	// The service's own credentials are a role session from moto, as an ECS
	// task role or EKS IRSA would be.
	client := sts.New(sts.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(peers.moto),
		Credentials: awscreds.NewStaticCredentialsProvider("AKIAMOTOEXAMPLE", "moto-secret", ""),
	})
	out, err := client.AssumeRole(context.Background(), &sts.AssumeRoleInput{
		RoleArn: aws.String("arn:aws:iam::123456789012:role/tokenvendor"), RoleSessionName: aws.String("tokenvendor-task"),
	})
	if err != nil {
		t.Fatal(err)
	}
	own := aws.Credentials{AccessKeyID: *out.Credentials.AccessKeyId, SecretAccessKey: *out.Credentials.SecretAccessKey, SessionToken: *out.Credentials.SessionToken}

	cfg := writeConfig(t, configOptions{stsEndpoint: peers.moto, duration: "4h"})
	v := startVendorAs(t, cfg, own)
	if !strings.Contains(v.out.String(), `"role_chaining":true`) {
		t.Fatalf("role chaining not detected:\n%s", v.out.String())
	}
	if !strings.Contains(v.out.String(), "clamping profile duration") {
		t.Errorf("no clamp logged:\n%s", v.out.String())
	}
	c := v.vend(t, token(t, "svc-acme"), `{"profile":"objects"}`)
	if left := time.Until(c.Expiration.Time); left > time.Hour+time.Minute {
		t.Fatalf("credentials valid for %s under role chaining, want at most 1h", left)
	}
}
