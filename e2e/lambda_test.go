package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

// lambdaRole is the function's execution role, which every tenant's
// environment holds.
const lambdaRole = "tenant-fn"

// lambdaSetup is what the Lambda tests share: the function built from
// e2e/lambdafn, the Runtime Interface Emulator, moto checking signatures,
// tokenvendor, and how to start an emulator.
type lambdaSetup struct {
	rie, function string
	moto          *motoWithSignatures
	role          aws.Credentials // a session of lambdaRole
	vendor        *vendor
	keys          *testKeys
}

// rieBinary is the emulator `make tools` installs (scripts/tools.sh), or
// one on PATH.
func rieBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(peers.tools, "bin", "aws-lambda-rie")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	bin, err := exec.LookPath("aws-lambda-rie")
	if err != nil {
		t.Fatalf("the Runtime Interface Emulator is neither in %s/bin nor on PATH (run `make tools`)", peers.tools)
	}
	return bin
}

// testKeys signs tokens as the identity provider would not: expired, or
// for another audience. tokenvendor trusts its key beside the provider's
// (its jwks_url serves both), so that it refuses those tokens for what
// they say, not for an unknown key.
type testKeys struct {
	signer *testsupport.Key
	jwks   *httptest.Server
}

const testKID = "lambda-e2e"

func newTestKeys(t *testing.T) *testKeys {
	t.Helper()
	signer, err := testsupport.NewKey(testKID, jwa.ES256)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.Get(peers.oidc + "/jwks")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var set struct {
		Keys []any `json:"keys"`
	}
	if err := json.NewDecoder(res.Body).Decode(&set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("the identity provider's key set: %v", err)
	}
	set.Keys = append(set.Keys, signer.Public())
	both, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(both)
	}))
	t.Cleanup(jwks.Close)
	return &testKeys{signer: signer, jwks: jwks}
}

// token is a token of the identity provider's issuer for svc-acme of
// tenant acme, with aud and exp as given.
func (k *testKeys) token(t *testing.T, aud string, exp time.Time) string {
	t.Helper()
	tok, err := jwt.NewBuilder().Issuer(peers.oidc).Audience([]string{aud}).Subject("svc-acme").
		IssuedAt(exp.Add(-time.Hour)).Expiration(exp).Claim("tenant_id", "acme").Build()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := k.signer.Sign(tok)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func startLambdaSetup(t *testing.T) *lambdaSetup {
	t.Helper()
	s := &lambdaSetup{rie: rieBinary(t), function: filepath.Join(t.TempDir(), "bootstrap")}
	build := exec.Command("go", "build", "-o", s.function, "./e2e/lambdafn")
	build.Dir = peers.root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the function: %v\n%s", err, out)
	}
	var sessions map[string]aws.Credentials
	s.moto, sessions = startMotoWithRoles(t, lambdaRole)
	s.role = sessions[lambdaRole]
	s.keys = newTestKeys(t)
	s.vendor = startVendor(t, writeConfig(t, configOptions{stsEndpoint: peers.minio, roleChaining: "off", jwksURL: s.keys.jwks.URL,
		authExtra: `  aws_iam:
    server_id: ` + iamServerID + `
    region: us-east-1
    sts_endpoint: ` + s.moto.url + `
    principals:
      - {role_arn: "arn:aws:iam::` + motoAccount + `:role/` + lambdaRole + `", tenant_from: token}
`}), minioUser, minioPassword)
	root := s3Client(aws.Credentials{AccessKeyID: minioUser, SecretAccessKey: minioPassword})
	for _, tenant := range []string{"acme", "globex"} {
		if _, err := root.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket),
			Key: aws.String(tenant + "/lambda/object.txt"), Body: strings.NewReader(tenant + "'s object")}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// emulator is one Runtime Interface Emulator running the function: one
// execution environment.
type emulator struct {
	*process
	url string
}

// environment starts an emulator: bound to loopback (its default is
// 0.0.0.0:8080, and its runtime API's 127.0.0.1:9001, which two would
// share), started with nothing of the test's environment (as `env -i`),
// only what Lambda gives a function (the execution role's session, the
// region, a timeout) and the function's own settings.
func (s *lambdaSetup) environment(t *testing.T, name string) *emulator {
	t.Helper()
	port := freePort()
	cmd := exec.Command(s.rie, "--runtime-interface-emulator-address", fmt.Sprintf("127.0.0.1:%d", port),
		"--runtime-api-address", fmt.Sprintf("127.0.0.1:%d", freePort()), s.function)
	cmd.Env = []string{
		"AWS_ACCESS_KEY_ID=" + s.role.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + s.role.SecretAccessKey,
		"AWS_SESSION_TOKEN=" + s.role.SessionToken, "AWS_REGION=us-east-1",
		"AWS_LAMBDA_FUNCTION_NAME=" + lambdaRole, "AWS_LAMBDA_FUNCTION_TIMEOUT=30",
		"TOKENVENDOR_URL=" + s.vendor.url, "TOKENVENDOR_PROFILE=objects", "TOKENVENDOR_SERVER_ID=" + iamServerID,
		"TOKENVENDOR_STS_ENDPOINT=" + s.moto.url, "S3_ENDPOINT=" + peers.minio, "BUCKET=" + bucket,
	}
	cmd.Dir = t.TempDir()
	p, err := startCmd("rie-"+name, cmd, "")
	if err != nil {
		t.Fatal(err)
	}
	e := &emulator{process: p, url: fmt.Sprintf("http://127.0.0.1:%d/2015-03-31/functions/function/invocations", port)}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("emulator %s output:\n%s", name, p.out.String())
		}
	})
	if err := testsupport.Poll(20*time.Second, func() error {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Fatalf("emulator %s not listening: %v\n%s", name, err, p.out.String())
	}
	return e
}

// result is what an invoke returned: the function's proxy response, or
// its error.
type result struct {
	StatusCode   int    `json:"statusCode"`
	Body         string `json:"body"`
	ErrorMessage string `json:"errorMessage"`
	answer       struct {
		Tenant      string
		Reads       map[string]int
		Tokenvendor *struct {
			Status int
			Code   string
		}
	}
}

// invoke calls the function as an API Gateway proxy integration does: the
// tenant (from the authorizer's verified claim) in X-Amz-Tenant-Id, none
// when empty, and the caller's request, its Authorization header
// forwarded, in the event. other is the tenant whose object it also tries.
func (e *emulator) invoke(t *testing.T, tenant, token, other string) result {
	t.Helper()
	event := map[string]any{"resource": "/objects", "path": "/objects", "httpMethod": "GET",
		"headers": map[string]string{}, "queryStringParameters": map[string]string{"other": other},
		"requestContext": map[string]any{"stage": "prod", "authorizer": map[string]any{"tenant_id": tenant}}}
	if token != "" {
		event["headers"] = map[string]string{"Authorization": "Bearer " + token}
	}
	b, _ := json.Marshal(event)
	req, _ := http.NewRequest(http.MethodPost, e.url, bytes.NewReader(b))
	if tenant != "" {
		req.Header.Set("X-Amz-Tenant-Id", tenant)
	}
	c := &http.Client{Timeout: 60 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var r result
	if res.StatusCode != http.StatusOK || json.Unmarshal(body, &r) != nil {
		t.Fatalf("invoke: the emulator answered %d %s", res.StatusCode, body)
	}
	if r.ErrorMessage == "" {
		if err := json.Unmarshal([]byte(r.Body), &r.answer); err != nil {
			t.Fatalf("the function answered %d %q", r.StatusCode, r.Body)
		}
	}
	return r
}

// read wants an invoke that read its own object and was refused the
// other's.
func (r result) read(t *testing.T, own, other string) {
	t.Helper()
	if r.StatusCode != http.StatusOK || r.answer.Tenant != own || r.answer.Reads[own] != http.StatusOK || r.answer.Reads[other] != http.StatusForbidden {
		t.Errorf("the function for %s: %d %s %s; want %s's object read and %s's refused (403)", own, r.StatusCode, r.Body, r.ErrorMessage, own, other)
	}
}

// refused wants an invoke that tokenvendor refused with status and code.
func (r result) refused(t *testing.T, status int, code string) {
	t.Helper()
	if tv := r.answer.Tokenvendor; r.StatusCode != status || tv == nil || tv.Status != status || tv.Code != code || r.answer.Reads != nil {
		t.Errorf("the function: %d %s %s; want tokenvendor's %d %s and nothing read", r.StatusCode, r.Body, r.ErrorMessage, status, code)
	}
}

// failed wants an invoke failed by the function's tripwire, saying says.
func (r result) failed(t *testing.T, says string) {
	t.Helper()
	if !strings.Contains(r.ErrorMessage, says) || r.Body != "" {
		t.Errorf("the function: %d %s %q; want the invoke failed with %q", r.StatusCode, r.Body, r.ErrorMessage, says)
	}
}

// credentialRequests is how many POST /credentials tokenvendor answered,
// whatever the answer.
func credentialRequests(t *testing.T, v *vendor) float64 {
	t.Helper()
	var sum float64
	for _, line := range strings.Split(v.metricsText(t), "\n") {
		if strings.HasPrefix(line, "tokenvendor_requests_total{") && strings.Contains(line, `route="/credentials"`) {
			var f float64
			fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &f)
			sum += f
		}
	}
	return sum
}

// TestLambdaTenantIsolationMode runs the function built from e2e/lambdafn
// under the real Runtime Interface Emulator, one emulator per execution
// environment, invoked as API Gateway invokes a function in tenant
// isolation mode. The function proves its execution role to tokenvendor
// with a GetCallerIdentity that moto checks, and its tenant with the
// forwarded token; MinIO vends and enforces.
func TestLambdaTenantIsolationMode(t *testing.T) {
	s := startLambdaSetup(t)
	v := s.vendor
	counter := func(series string) func() float64 { return func() float64 { return v.metric(t, series) } }
	var (
		assumeRoles = counter(`tokenvendor_sts_requests_total{outcome="success"}`)
		answered    = counter(`tokenvendor_requests_total{code="200",route="/credentials"}`)
		requests    = func() float64 { return credentialRequests(t, v) }
		otherTenant = counter(`tokenvendor_tenant_refusals_total{reason="other_tenant"}`)
		invalid     = counter(`tokenvendor_tenant_refusals_total{reason="invalid"}`)
		expired     = counter(`tokenvendor_auth_failures_total{reason="expired"}`)
		otherAud    = counter(`tokenvendor_auth_failures_total{reason="audience"}`)
	)
	if n := answered(); n != 0 || requests() != 0 {
		t.Fatalf("before any request: %v answered, %v requests; the series are not as named", n, requests())
	}
	// Each invoke brings its caller's token, fresh from the identity provider.
	acmeToken := func() string { return token(t, "svc-acme") }
	var tokens []string
	keep := func(tok string) string { tokens = append(tokens, tok); return tok }

	acme, globex := s.environment(t, "acme"), s.environment(t, "globex")

	t.Run("a token for another tenant is refused", func(t *testing.T) {
		before := otherTenant()
		acme.invoke(t, "acme", keep(token(t, "svc-globex")), "globex").refused(t, http.StatusForbidden, "forbidden")
		if n := otherTenant() - before; n != 1 {
			t.Errorf("other_tenant refusals +%v, want +1", n)
		}
		if n := assumeRoles(); n != 0 {
			t.Errorf("%v AssumeRole for a refusal", n)
		}
	})

	t.Run("no token is refused", func(t *testing.T) {
		// By the handler package, before anything is asked of tokenvendor
		// (which refuses a tenant_from caller without the header with 403:
		// internal/api's TestATenantFromATokenNeedsBothProofsAndOneTenant).
		before := requests()
		globex.invoke(t, "globex", "", "acme").failed(t, "the invoke forwards no tenant token")
		if n := requests() - before; n != 0 {
			t.Errorf("%v requests reached tokenvendor", n)
		}
		if n := assumeRoles(); n != 0 {
			t.Errorf("%v AssumeRole for a refusal", n)
		}
	})

	t.Run("each tenant reads its own prefix and is refused the other's, N invokes cost one AssumeRole", func(t *testing.T) {
		for range 5 {
			acme.invoke(t, "acme", keep(acmeToken()), "globex").read(t, "acme", "globex")
		}
		if n, m := assumeRoles(), answered(); n != 1 || m != 1 {
			t.Errorf("5 invokes for acme: %v AssumeRole, %v credentials answered; want 1 and 1", n, m)
		}
		for range 5 {
			globex.invoke(t, "globex", keep(token(t, "svc-globex")), "acme").read(t, "globex", "acme")
		}
		if n, m := assumeRoles(), answered(); n != 2 || m != 2 {
			t.Errorf("5 invokes for each tenant: %v AssumeRole, %v credentials answered; want 2 and 2", n, m)
		}
	})

	t.Run("no tenant header is refused by the tripwire", func(t *testing.T) {
		before := requests()
		acme.invoke(t, "", keep(acmeToken()), "globex").failed(t, "no tenant id")
		if n := requests() - before; n != 0 {
			t.Errorf("%v requests reached tokenvendor", n)
		}
		// Refused, not tripped: the environment still serves its tenant.
		acme.invoke(t, "acme", keep(acmeToken()), "globex").read(t, "acme", "globex")
	})

	t.Run("one environment invoked for two tenants trips the wire", func(t *testing.T) {
		env := s.environment(t, "tripped")
		before := requests()
		env.invoke(t, "acme", keep(acmeToken()), "globex").read(t, "acme", "globex")
		env.invoke(t, "globex", keep(token(t, "svc-globex")), "acme").failed(t, `a second tenant in one execution environment: the process serves tenant "acme", this invoke is for "globex"`)
		env.invoke(t, "acme", keep(acmeToken()), "globex").failed(t, "a second tenant in one execution environment")
		if n := requests() - before; n != 1 {
			t.Errorf("%v requests reached tokenvendor, want acme's first only", n)
		}
	})

	t.Run("ids Lambda accepts and the tenant floor does not are refused", func(t *testing.T) {
		before := invalid()
		for name, id := range map[string]string{"slash": "a/b", "space": "a b", "256 characters": strings.Repeat("a", 256)} {
			s.environment(t, strings.ReplaceAll(name, " ", "-")).invoke(t, id, keep(acmeToken()), "acme").refused(t, http.StatusBadRequest, "invalid_tenant")
		}
		if n := invalid() - before; n != 3 {
			t.Errorf("invalid refusals +%v, want +3", n)
		}
	})

	t.Run("an expired token and one for another audience are refused", func(t *testing.T) {
		env := s.environment(t, "tokens")
		beforeExpired, beforeAudience := expired(), otherAud()
		env.invoke(t, "acme", keep(s.keys.token(t, audience, time.Now().Add(-10*time.Minute))), "globex").refused(t, http.StatusUnauthorized, "unauthenticated")
		env.invoke(t, "acme", keep(s.keys.token(t, "another-api", time.Now().Add(time.Hour))), "globex").refused(t, http.StatusUnauthorized, "unauthenticated")
		if e, a := expired()-beforeExpired, otherAud()-beforeAudience; e != 1 || a != 1 {
			t.Errorf("auth failures: expired +%v, audience +%v; want +1 each", e, a)
		}
		// Refusals are not kept: the next invoke's valid token is sent.
		env.invoke(t, "acme", keep(acmeToken()), "globex").read(t, "acme", "globex")
	})

	// moto, checking signatures, proved the function's role, and refused
	// none of the environments' signatures.
	if n := v.metric(t, `tokenvendor_aws_iam_requests_total{result="verified"}`); n < 1 {
		t.Errorf("no signed GetCallerIdentity was verified by moto")
	}
	for _, result := range []string{"signature", "unknown_principal", "stale", "server_id", "malformed"} {
		if n := v.metric(t, `tokenvendor_aws_iam_requests_total{result="`+result+`"}`); n != 0 {
			t.Errorf(`tokenvendor_aws_iam_requests_total{result=%q} = %v, want 0`, result, n)
		}
	}
	if n := assumeRoles(); n != 2 {
		t.Errorf("%v AssumeRole in all, want 2: one per tenant, none for a refusal", n)
	}
	if errs := v.serverErrors(t); len(errs) > 0 {
		t.Errorf("5xx answered: %v", errs)
	}
	// No token, signature or credential reaches a log: tokenvendor's, nor
	// the function's and the emulators'.
	var logs strings.Builder
	logs.WriteString(v.out.String())
	procsMu.Lock()
	for _, p := range procs {
		if strings.HasPrefix(p.name, "rie-") {
			logs.WriteString(p.out.String())
		}
	}
	procsMu.Unlock()
	for _, secret := range append(tokens, s.role.SecretAccessKey, s.role.SessionToken) {
		if strings.Contains(logs.String(), secret) || strings.Contains(logs.String(), secret[strings.LastIndexByte(secret, '.')+1:]) {
			t.Errorf("a token or the role's secret is in a log")
		}
	}
}
