package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awscreds "github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/tokenvendor/tokenvendor/client"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
	"github.com/tokenvendor/tokenvendor/wire"
)

const (
	iamServerID = "tokenvendor.e2e"
	motoAccount = "123456789012"
)

// motoWithSignatures is a moto_server started with
// INITIAL_NO_AUTH_ACTION_COUNT=0: it checks every request's SigV4 signature
// against the IAM users and assumed roles it knows, so a GetCallerIdentity
// signed with a wrong secret is refused as AWS would refuse it.
type motoWithSignatures struct {
	url string
}

// startMotoWithSignatures starts it with two roles, orders-api and
// intruder, and a session of each.
func startMotoWithSignatures(t *testing.T) (m *motoWithSignatures, orders, intruder aws.Credentials) {
	t.Helper()
	m, sessions := startMotoWithRoles(t, "orders-api", "intruder")
	return m, sessions["orders-api"], sessions["intruder"]
}

// startMotoWithRoles starts it and, in a window opened through
// /moto-api/reset-auth and closed again before it returns, creates roles
// and assumes each once (session task-1): the only way to give moto
// credentials it will then accept.
func startMotoWithRoles(t *testing.T, roles ...string) (*motoWithSignatures, map[string]aws.Credentials) {
	t.Helper()
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		t.Fatalf("moto_server not on PATH: %v", err)
	}
	port := freePort()
	m := &motoWithSignatures{url: fmt.Sprintf("http://127.0.0.1:%d", port)}
	p, err := start("moto-iam", bin, []string{"-H", "127.0.0.1", "-p", fmt.Sprint(port)}, []string{"INITIAL_NO_AUTH_ACTION_COUNT=0"}, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	if err := waitHTTP(m.url+"/moto-api/data.json", 60*time.Second); err != nil {
		t.Fatal(err)
	}
	setup := aws.Credentials{AccessKeyID: "AKIASETUP000000000", SecretAccessKey: "setup"}
	// Before the window: moto refuses what it cannot authenticate.
	if status, _ := m.iam(t, setup, "ListRoles"); status != http.StatusForbidden {
		t.Fatalf("moto with INITIAL_NO_AUTH_ACTION_COUNT=0 answered %d to an unknown key, want 403", status)
	}
	m.resetAuth(t, "inf")
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + motoAccount + `:root"},"Action":"sts:AssumeRole"}]}`
	for _, role := range roles {
		if status, body := m.iam(t, setup, "CreateRole", "RoleName", role, "AssumeRolePolicyDocument", trust); status != http.StatusOK {
			t.Fatalf("CreateRole %s: %d %s", role, status, body)
		}
	}
	stsClient := sts.New(sts.Options{Region: "us-east-1", BaseEndpoint: aws.String(m.url),
		Credentials: awscreds.NewStaticCredentialsProvider(setup.AccessKeyID, setup.SecretAccessKey, "")})
	assume := func(role string) aws.Credentials {
		out, err := stsClient.AssumeRole(context.Background(), &sts.AssumeRoleInput{
			RoleArn: aws.String("arn:aws:iam::" + motoAccount + ":role/" + role), RoleSessionName: aws.String("task-1")})
		if err != nil {
			t.Fatalf("AssumeRole %s: %v", role, err)
		}
		c := out.Credentials
		return aws.Credentials{AccessKeyID: *c.AccessKeyId, SecretAccessKey: *c.SecretAccessKey, SessionToken: *c.SessionToken}
	}
	sessions := map[string]aws.Credentials{}
	for _, role := range roles {
		sessions[role] = assume(role)
	}
	m.resetAuth(t, "0")
	if status, _ := m.iam(t, setup, "ListRoles"); status != http.StatusForbidden {
		t.Fatalf("after the set-up window moto answered %d to an unknown key, want 403", status)
	}
	return m, sessions
}

func (m *motoWithSignatures) resetAuth(t *testing.T, count string) {
	t.Helper()
	res, err := http.Post(m.url+"/moto-api/reset-auth", "text/plain", strings.NewReader(count))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("reset-auth %s: %d", count, res.StatusCode)
	}
}

// iam calls an IAM action on moto, signed with creds.
func (m *motoWithSignatures) iam(t *testing.T, creds aws.Credentials, action string, params ...string) (int, string) {
	t.Helper()
	values := url.Values{"Action": {action}, "Version": {"2010-05-08"}}
	for i := 0; i < len(params); i += 2 {
		values.Set(params[i], params[i+1])
	}
	form := values.Encode()
	req, _ := http.NewRequest(http.MethodPost, m.url+"/", strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	sum := sha256.Sum256([]byte(form))
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "iam", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// iamOnlyConfig is the usual config with the identity provider replaced by
// auth.aws_iam: a service whose callers have no JWT at all.
func iamOnlyConfig(t *testing.T, stsEndpoint string) string {
	t.Helper()
	path := writeConfig(t, configOptions{stsEndpoint: peers.minio, roleChaining: "off"})
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	start, end := strings.Index(cfg, "auth:\n"), strings.Index(cfg, "sts:\n")
	cfg = cfg[:start] + `auth:
  aws_iam:
    server_id: ` + iamServerID + `
    region: us-east-1
    sts_endpoint: ` + stsEndpoint + `
    principals:
      - {role_arn: "arn:aws:iam::` + motoAccount + `:role/orders-api", tenant: acme}
` + cfg[end:]
	path = filepath.Join(t.TempDir(), "iam.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// signed signs a GetCallerIdentity as the Go client does.
func signed(t *testing.T, creds aws.Credentials, endpoint, serverID string, at time.Time) string {
	t.Helper()
	s, err := client.SignGetCallerIdentity(context.Background(), v4.NewSigner(), creds, endpoint, "us-east-1", serverID, at)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signatureOf is the hex signature in a signed request's Authorization.
func signatureOf(t *testing.T, s string) string {
	t.Helper()
	var sig string
	edited(t, s, func(_, h map[string]any) {
		_, sig, _ = strings.Cut(h["Authorization"].(string), "Signature=")
	})
	if len(sig) != 64 {
		t.Fatalf("no signature in %q", s)
	}
	return sig
}

// edited decodes a signed request, lets edit change it, and encodes it again.
func edited(t *testing.T, s string, edit func(m map[string]any, headers map[string]any)) string {
	t.Helper()
	raw, _ := base64.RawURLEncoding.DecodeString(s)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	edit(m, m["headers"].(map[string]any))
	b, _ := json.Marshal(m)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestAWSIAMCallersWithoutAnIdentityProvider(t *testing.T) {
	moto, orders, intruder := startMotoWithSignatures(t)
	const gci = "Action=GetCallerIdentity"
	stsProxy := startProxy(t, strings.TrimPrefix(moto.url, "http://"), gci, "Action=AssumeRole")
	elsewhere := startProxy(t, strings.TrimPrefix(peers.minio, "http://"))
	v := startVendor(t, iamOnlyConfig(t, stsProxy.url()), minioUser, minioPassword)

	// A caller signing with its role's credentials, through the Go client:
	// its tenant's credentials, which MinIO confines to acme's prefix.
	token, err := client.AWSIAMToken(client.AWSIAMConfig{
		Credentials: awscreds.NewStaticCredentialsProvider(orders.AccessKeyID, orders.SecretAccessKey, orders.SessionToken),
		ServerID:    iamServerID, Region: "us-east-1", STSEndpoint: stsProxy.url(),
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Config{URL: v.url, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	s3c := tenantS3(c.Provider(""))
	if err := sdkPutGet(s3c, "acme/aws-iam", "from an ECS task"); err != nil {
		t.Fatalf("acme's own prefix with credentials vended to its role: %v", err)
	}
	if err := sdkPutGet(s3c, "globex/aws-iam", "from an ECS task"); !accessDenied(err) {
		t.Fatalf("globex's prefix: err = %v, want AccessDenied", err)
	}
	if err := sdkPutGet(tenantS3(c.Provider("globex")), "globex/aws-iam", "x"); err == nil {
		t.Fatal("a principal of one tenant was vended another's credentials")
	}
	reached := stsProxy.count(gci)
	if reached != 1 {
		t.Fatalf("STS received %d GetCallerIdentity for one signature used twice, want 1 (the identity is cached)", reached)
	}

	// The container route takes the same credential, as AWS SDKs send it.
	// Dated apart from the client's own signature, so as not to be the
	// same request (which tokenvendor would answer from its cache).
	now := time.Now().Add(-30 * time.Second)
	good := signed(t, orders, stsProxy.url(), iamServerID, now)
	if status, body := v.call(t, http.MethodGet, "/v1/container-credentials/objects", "AWS-IAM "+good, ""); status != http.StatusOK {
		t.Fatalf("container route: %d %s", status, body)
	}
	reached++

	wrongSecret := orders
	wrongSecret.SecretAccessKey = "not-the-secret"
	elsewhereHost := strings.TrimPrefix(elsewhere.url(), "http://")
	cases := []struct {
		name   string
		signed string
		status int
		toSTS  bool   // the request reaches STS, which decides
		says   string // in the answer's message
	}{
		// moto, not tokenvendor, decides: the 401 carries its code.
		{"a wrong secret", signed(t, wrongSecret, stsProxy.url(), iamServerID, now), http.StatusUnauthorized, true, "SignatureDoesNotMatch"},
		{"an unknown role", signed(t, intruder, stsProxy.url(), iamServerID, now), http.StatusForbidden, true, "assumed-role/intruder/task-1 is not among"},
		{"a wrong server id", signed(t, orders, stsProxy.url(), "another-tokenvendor", now), http.StatusUnauthorized, false, "for another server"},
		{"no server id header", edited(t, good, func(_, h map[string]any) { delete(h, wire.ServerIDHeader) }), http.StatusUnauthorized, false, "x-tokenvendor-server-id is missing"},
		{"a server id header not signed", edited(t, good, func(_, h map[string]any) {
			h["Authorization"] = strings.Replace(h["Authorization"].(string), ";x-tokenvendor-server-id", "", 1)
		}), http.StatusUnauthorized, false, ""},
		{"replayed after the window", signed(t, orders, stsProxy.url(), iamServerID, now.Add(-6*time.Minute)), http.StatusUnauthorized, false, "more than 5m0s from now"},
		{"a url in the body", edited(t, good, func(m, _ map[string]any) { m["url"] = elsewhere.url() }), http.StatusUnauthorized, false, "not a JSON object of method, headers and body"},
		{"another host", edited(t, good, func(_, h map[string]any) { h["Host"] = elsewhereHost }), http.StatusUnauthorized, false, ""},
		{"signed for another host", signed(t, orders, elsewhere.url(), iamServerID, now), http.StatusUnauthorized, false, ""},
		{"another action", edited(t, good, func(m, _ map[string]any) {
			m["body"] = "Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam::" + motoAccount + ":role/intruder&RoleSessionName=x"
		}), http.StatusUnauthorized, false, ""},
		{"a forwarding header", edited(t, good, func(_, h map[string]any) { h["X-Forwarded-Host"] = elsewhereHost }), http.StatusUnauthorized, false, "X-Forwarded-Host may not be sent on"},
	}
	for _, tt := range cases {
		status, body := v.call(t, http.MethodPost, "/credentials", "AWS-IAM "+tt.signed, "")
		if status != tt.status || !strings.Contains(string(body), tt.says) {
			t.Errorf("%s: %d %s, want %d %s", tt.name, status, body, tt.status, tt.says)
		}
		if tt.toSTS {
			reached++
		}
		if got := stsProxy.count(gci); got != reached {
			t.Errorf("%s: STS has received %d GetCallerIdentity in all, want %d", tt.name, got, reached)
			reached = got
		}
	}
	// The Python client, signing with botocore, as a Lambda function would.
	runPython(t, "e2e_awsiam", "TV_URL="+v.url, "TV_SERVER_ID="+iamServerID, "TV_STS_URL="+stsProxy.url(),
		"ROLE_KEY="+orders.AccessKeyID, "ROLE_SECRET="+orders.SecretAccessKey, "ROLE_TOKEN="+orders.SessionToken,
		"MINIO_URL="+peers.minio, "BUCKET="+bucket)
	if got := stsProxy.count(gci); got != reached+1 {
		t.Errorf("the Python client's signature: STS has received %d GetCallerIdentity in all, want %d", got, reached+1)
	}

	if n := v.metric(t, `tokenvendor_aws_iam_requests_total{result="verified"}`); n != 3 {
		t.Errorf(`tokenvendor_aws_iam_requests_total{result="verified"} = %v, want 3 (Go client, container route, Python client)`, n)
	}

	// The unmodified AWS CLI, through credential_process: the process
	// signs with the role's own profile (a VM's or task's credentials).
	awsConfig := filepath.Join(t.TempDir(), "config")
	writeFile(t, awsConfig, fmt.Sprintf(`[profile tenant-app]
credential_process = %s credential-process --url %s --profile objects --aws-iam-server-id %s --aws-iam-region us-east-1 --aws-iam-sts-endpoint %s --aws-iam-profile role
region = us-east-1
[profile role]
aws_access_key_id = %s
aws_secret_access_key = %s
aws_session_token = %s
`, peers.bin, v.url, iamServerID, stsProxy.url(), orders.AccessKeyID, orders.SecretAccessKey, orders.SessionToken))
	checkCLIIsolation(t, v, newAWSCLI(t, "AWS_CONFIG_FILE="+awsConfig, "AWS_PROFILE=tenant-app"), credentialsOK, "acme", "globex")

	// SIGHUP reloads the principals: the intruder's role, mapped now,
	// gets its tenant.
	intruderSigned := signed(t, intruder, stsProxy.url(), iamServerID, time.Now())
	cfg, err := os.ReadFile(v.config)
	if err != nil {
		t.Fatal(err)
	}
	mapped := strings.Replace(string(cfg), "    principals:\n", "    principals:\n      - {role_arn: \"arn:aws:iam::"+motoAccount+":role/intruder\", tenant: globex}\n", 1)
	if err := os.WriteFile(v.config, []byte(mapped), 0o600); err != nil {
		t.Fatal(err)
	}
	v.signal(syscall.SIGHUP)
	v.waitLog(t, `"aws_iam_principals":2`, 1)
	if strings.Contains(v.out.String(), "settings that change only on restart") {
		t.Errorf("a principals change was taken for a restart-only one:\n%s", v.out.String())
	}
	status, body := v.call(t, http.MethodPost, "/credentials", "AWS-IAM "+intruderSigned, "")
	if status != http.StatusOK || !strings.Contains(string(body), `"TenantId":"globex"`) {
		t.Errorf("the newly mapped role after SIGHUP: %d %s", status, body)
	}

	if n := stsProxy.count("Action=AssumeRole"); n != 0 {
		t.Errorf("the STS that proves identities received %d AssumeRole", n)
	}
	if n := elsewhere.connections(); n != 0 {
		t.Errorf("a server the callers named received %d connections, want 0", n)
	}
	// Nothing a caller presented is in the log: not its session token, not
	// a signed request, not a signature.
	logs := v.out.String()
	for name, secret := range map[string]string{"session token": orders.SessionToken, "secret": orders.SecretAccessKey,
		"signed request": good, "signature": signatureOf(t, good)} {
		for _, enc := range testsupport.Encodings(secret) {
			if strings.Contains(logs, enc) {
				t.Errorf("the caller's %s is in tokenvendor's log", name)
			}
		}
	}
	if errs := v.serverErrors(t); len(errs) > 0 {
		t.Errorf("5xx answered: %v", errs)
	}
}

// TestCredentialProcessRefusesToSignWithItself: a profile whose
// credential_process signs with that same profile would start itself
// forever; the real binary, through the real SDK, stops at the first
// repeat and says why.
func TestCredentialProcessRefusesToSignWithItself(t *testing.T) {
	awsConfig := filepath.Join(t.TempDir(), "config")
	self := "credential_process = " + peers.bin + " credential-process --url http://127.0.0.1:1 --profile objects" +
		" --aws-iam-server-id tokenvendor.e2e --aws-iam-region us-east-1 --aws-iam-profile loop"
	writeFile(t, awsConfig, "[profile loop]\n"+self+"\n")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := strings.Fields(strings.TrimPrefix(self, "credential_process = "))
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "AWS_CONFIG_FILE=" + awsConfig,
		"AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull, "AWS_EC2_METADATA_DISABLED=true"}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("credential-process signing with its own profile ran for 30 s:\n%s", out)
	}
	if err == nil || !strings.Contains(string(out), "this command again") {
		t.Fatalf("err = %v, output:\n%s", err, out)
	}
}
