package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/tokenvendor/tokenvendor/client"
	"github.com/tokenvendor/tokenvendor/internal/config"
	"github.com/tokenvendor/tokenvendor/internal/server"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

const (
	serverID = "tokenvendor.test"
	account  = "123456789012"
	// Access keys the fake STS knows as sessions of two roles.
	ordersKey  = "ASIAORDERS0000001"
	billingKey = "ASIABILLING000001"
)

// baseline is a valid config: an identity provider, AWS IAM callers of the
// orders-api role for tenant acme, one profile. Tests replace parts of it.
const baseline = `listen: 127.0.0.1:0
auth:
  issuer: ` + testsupport.Issuer + `
  jwks_url: {{jwks}}
  audiences: [` + testsupport.Audience + `]
  tenant_pattern: '^[a-z]{1,20}$'
  override_scope: workers:any-tenant
  aws_iam:
    server_id: ` + serverID + `
    sts_endpoint: {{sts}}
    principals:
      - role_arn: arn:aws:iam::` + account + `:role/orders-api
        tenant: acme
sts:
  endpoint: {{sts}}
  role_chaining: "off"
cache:
  min_remaining: 20m
profiles:
  - name: objects
    role_arn: arn:aws:iam::` + account + `:role/TenantData
    policy: '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::data/{{ .TenantID }}/*"}]}'
    tags: {TenantID: "{{ .TenantID }}"}
`

// reports is a second profile, appended to baseline.
const reports = `  - name: reports
    role_arn: arn:aws:iam::` + account + `:role/TenantData
    duration: %s
    policy: '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::reports/{{ .TenantID }}/*"}]}'
    tags: {TenantID: "{{ .TenantID }}"}
`

// env is a server built from baseline, its peers, and its log.
type env struct {
	srv    *server.Server
	path   string
	log    *testsupport.Buffer
	signer *testsupport.Key
	jwks   string
	sts    string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	// The service's own credentials, and nothing else of the machine's.
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIASERVICE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "service-secret")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	signer, err := testsupport.NewKey("k1", jwa.ES256)
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(testsupport.JWKS(signer))
	t.Cleanup(jwks.Close)
	sts := testsupport.NewSTSServer(t)
	sts.Know(ordersKey, "arn:aws:sts::"+account+":assumed-role/orders-api/task")
	sts.Know(billingKey, "arn:aws:sts::"+account+":assumed-role/billing-worker/task")
	e := &env{path: filepath.Join(t.TempDir(), "config.yaml"), log: &testsupport.Buffer{}, signer: signer, jwks: jwks.URL, sts: sts.URL}
	e.write(t, baseline)
	cfg, err := config.Load(e.path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e.srv, err = server.New(ctx, server.Config{Config: cfg, Logger: testsupport.JSONLogger(e.log)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.srv.Close)
	return e
}

// write writes a config, its peers' addresses filled in, where Reload
// reads it.
func (e *env) write(t *testing.T, yaml string) {
	t.Helper()
	yaml = strings.NewReplacer("{{jwks}}", e.jwks, "{{sts}}", e.sts).Replace(yaml)
	if err := os.WriteFile(e.path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
}

// token is a JWT of the identity provider for tenant, with scope.
func (e *env) token(t *testing.T, tenant, scope string) string {
	t.Helper()
	tok, err := jwt.NewBuilder().Issuer(testsupport.Issuer).Audience([]string{testsupport.Audience}).Subject("svc-"+tenant).
		Expiration(time.Now().Add(time.Hour)).Claim("tenant_id", tenant).Claim("scope", scope).Build()
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.signer.Sign(tok)
	if err != nil {
		t.Fatal(err)
	}
	return "Bearer " + s
}

// signed is the AWS-IAM authorization of a session whose access key is akid.
func (e *env) signed(t *testing.T, akid string) string {
	t.Helper()
	s, err := client.SignGetCallerIdentity(context.Background(), v4.NewSigner(),
		aws.Credentials{AccessKeyID: akid, SecretAccessKey: "secret", SessionToken: "session"}, e.sts, "us-east-1", serverID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return "AWS-IAM " + s
}

// vend asks for credentials and returns the status and the error code.
func (e *env) vend(t *testing.T, authorization, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/credentials", strings.NewReader(body))
	req.Header.Set("Authorization", authorization)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(rec, req)
	var answer struct{ Code string }
	_ = json.Unmarshal(rec.Body.Bytes(), &answer)
	return rec.Code, answer.Code
}

// request is one credentials request and the answer it gets.
type request struct {
	name, authorization, body string
	status                    int
	code                      string
}

func (e *env) expect(t *testing.T, when string, reqs []request) {
	t.Helper()
	for _, r := range reqs {
		if status, code := e.vend(t, r.authorization, r.body); status != r.status || code != r.code {
			t.Errorf("%s: %s: %d %q, want %d %q", when, r.name, status, code, r.status, r.code)
		}
	}
}

func TestReloadAppliesProfilesTenantRuleOverrideScopeAndPrincipals(t *testing.T) {
	e := newEnv(t)
	before := []request{
		{"profile reports", e.token(t, "acme", ""), `{"profile":"reports"}`, http.StatusNotFound, "unknown_profile"},
		{"tenant with a digit", e.token(t, "acme2", ""), `{"profile":"objects"}`, http.StatusBadRequest, "invalid_tenant"},
		{"the new override scope", e.token(t, "acme", "ops:all"), `{"profile":"objects","tenant_id":"globex"}`, http.StatusForbidden, "forbidden"},
		{"the old override scope", e.token(t, "acme", "workers:any-tenant"), `{"profile":"objects","tenant_id":"globex"}`, http.StatusOK, ""},
		{"billing-worker role", e.signed(t, billingKey), `{"profile":"objects","tenant_id":"globex"}`, http.StatusForbidden, "forbidden"},
		{"orders-api role", e.signed(t, ordersKey), `{"profile":"objects"}`, http.StatusOK, ""},
	}
	e.expect(t, "before the reload", before)

	next := strings.NewReplacer(
		`tenant_pattern: '^[a-z]{1,20}$'`, `tenant_pattern: '^[a-z0-9]{1,20}$'`,
		`override_scope: workers:any-tenant`, `override_scope: ops:all`,
		`        tenant: acme`, `        tenant: acme
      - role_arn: arn:aws:iam::`+account+`:role/billing-worker
        any_tenant: true`,
	).Replace(baseline) + fmt.Sprintf(reports, "1h")
	e.write(t, next)
	got, err := e.srv.Reload(e.path)
	if err != nil {
		t.Fatalf("reload of a valid config: %v", err)
	}
	if got.Profiles != 2 || got.AWSIAMPrincipals != 2 || len(got.RestartOnly) != 0 {
		t.Errorf("reload = %+v, want 2 profiles, 2 principals and nothing that needs a restart", got)
	}
	if !strings.Contains(e.log.String(), `"msg":"config reloaded","profiles":2,"aws_iam_principals":2`) {
		t.Errorf("the reload is not logged:\n%s", e.log)
	}
	e.expect(t, "after the reload", []request{
		{"profile reports", e.token(t, "acme", ""), `{"profile":"reports"}`, http.StatusOK, ""},
		{"tenant with a digit", e.token(t, "acme2", ""), `{"profile":"objects"}`, http.StatusOK, ""},
		{"the new override scope", e.token(t, "acme", "ops:all"), `{"profile":"objects","tenant_id":"globex"}`, http.StatusOK, ""},
		{"the old override scope", e.token(t, "acme", "workers:any-tenant"), `{"profile":"objects","tenant_id":"globex"}`, http.StatusForbidden, "forbidden"},
		{"billing-worker role", e.signed(t, billingKey), `{"profile":"objects","tenant_id":"globex"}`, http.StatusOK, ""},
		{"orders-api role", e.signed(t, ordersKey), `{"profile":"objects"}`, http.StatusOK, ""},
	})
}

func TestReloadKeepsTheRunningConfigWhenTheNewIsInvalidAndSaysWhy(t *testing.T) {
	tests := []struct {
		name   string
		config string // "" removes the file
		why    string
	}{
		{
			name:   "no file",
			config: "",
			why:    "read config",
		},
		{
			name:   "a statement not scoped by the tenant",
			config: strings.Replace(baseline, `data/{{ .TenantID }}/*`, `data/*`, 1) + fmt.Sprintf(reports, "1h"),
			why:    "does not reference the tenant",
		},
		{
			name:   "a principal outside the region's partition",
			config: strings.Replace(baseline, "role_arn: arn:aws:iam::"+account+":role/orders-api", "role_arn: arn:aws-cn:iam::"+account+":role/orders-api", 1) + fmt.Sprintf(reports, "1h"),
			why:    "auth.aws_iam.principals[0].role_arn: not in partition aws",
		},
		{
			// Valid on its own; but the profiles would render another
			// region than the running STS client serves.
			name:   "another STS region",
			config: strings.Replace(baseline, "sts:\n", "sts:\n  region: us-west-2\n", 1) + fmt.Sprintf(reports, "1h"),
			why:    "sts.region changed (us-east-1 to us-west-2)",
		},
		{
			// Valid on its own, with its own cache settings; but the cache
			// changes only on restart, and the running one cannot serve
			// 30m credentials.
			name:   "a duration the running cache cannot serve",
			config: strings.Replace(baseline, "min_remaining: 20m", "min_remaining: 10m", 1) + fmt.Sprintf(reports, "30m"),
			why:    "profile reports: duration 30m0s: 30m0s is less than twice the minimum remaining life 20m0s",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if tt.config == "" {
				os.Remove(e.path)
			} else {
				e.write(t, tt.config)
			}
			_, err := e.srv.Reload(e.path)
			if err == nil || !strings.Contains(err.Error(), tt.why) {
				t.Fatalf("reload = %v, want an error with %q", err, tt.why)
			}
			line := `"msg":"config reload failed; keeping the running config","err":"`
			if !strings.Contains(e.log.String(), line) || !strings.Contains(e.log.String(), tt.why) {
				t.Errorf("the failure and its reason are not logged:\n%s", e.log)
			}
			e.expect(t, "after the failed reload", []request{
				{"profile objects", e.token(t, "acme", ""), `{"profile":"objects"}`, http.StatusOK, ""},
				{"profile reports", e.token(t, "acme", ""), `{"profile":"reports"}`, http.StatusNotFound, "unknown_profile"},
				{"orders-api role", e.signed(t, ordersKey), `{"profile":"objects"}`, http.StatusOK, ""},
			})
		})
	}
}

func TestReloadReportsSettingsThatNeedARestart(t *testing.T) {
	tests := []struct {
		name    string
		old     string
		new     string
		restart []string
	}{
		{name: "listen", old: "listen: 127.0.0.1:0", new: "listen: 127.0.0.1:1", restart: []string{"listen"}},
		{name: "admin_listen", old: "listen: 127.0.0.1:0", new: "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0", restart: []string{"admin_listen"}},
		{name: "shutdown_timeout", old: "listen: 127.0.0.1:0", new: "listen: 127.0.0.1:0\nshutdown_timeout: 5s", restart: []string{"shutdown_timeout"}},
		{name: "auth.leeway", old: "  audiences: [tokenvendor]", new: "  audiences: [tokenvendor]\n  leeway: 5s", restart: []string{"auth"}},
		{name: "auth.aws_iam.cache_ttl", old: "    server_id: ", new: "    cache_ttl: 2m\n    server_id: ", restart: []string{"auth"}},
		{name: "sts.timeout", old: `  role_chaining: "off"`, new: `  role_chaining: "off"` + "\n  timeout: 5s", restart: []string{"sts"}},
		{name: "cache", old: "min_remaining: 20m", new: "min_remaining: 25m", restart: []string{"cache"}},
		{name: "limits", old: "cache:", new: "limits: {max_in_flight: 10}\ncache:", restart: []string{"limits"}},
		{name: "session", old: "cache:", new: "session: {source_identity: true}\ncache:", restart: []string{"session"}},
		{name: "tenants", old: "cache:", new: "tenants: {allow: [acme]}\ncache:", restart: []string{"tenants"}},
		{name: "audit", old: "cache:", new: "audit: {file: \"-\"}\ncache:", restart: []string{"audit"}},
		{name: "tracing", old: "cache:", new: "tracing: {tenant_attribute: true}\ncache:", restart: []string{"tracing"}},
		{name: "several", old: "listen: 127.0.0.1:0", new: "listen: 127.0.0.1:1\nshutdown_timeout: 5s", restart: []string{"listen", "shutdown_timeout"}},
		{name: "what reload applies", old: "override_scope: workers:any-tenant", new: "override_scope: ops:all", restart: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			next := strings.Replace(baseline, tt.old, tt.new, 1)
			if next == baseline {
				t.Fatalf("test bug: %q is not in the baseline", tt.old)
			}
			e.write(t, next+fmt.Sprintf(reports, "1h"))
			got, err := e.srv.Reload(e.path)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.RestartOnly, tt.restart) {
				t.Errorf("restart only = %q, want %q", got.RestartOnly, tt.restart)
			}
			warned := strings.Contains(e.log.String(), `"msg":"settings that change only on restart differ from the running ones; keeping the running values"`)
			if warned != (len(tt.restart) > 0) {
				t.Errorf("warned %t, want %t:\n%s", warned, len(tt.restart) > 0, e.log)
			}
			// What reload does apply is applied all the same.
			e.expect(t, "after the reload", []request{
				{"profile reports", e.token(t, "acme", ""), `{"profile":"reports"}`, http.StatusOK, ""},
			})
		})
	}
}

func TestRunServesUntilItsContextEndsThenDrains(t *testing.T) {
	e := newEnv(t)
	if err := e.srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var runErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		runErr = e.srv.Run(ctx)
	}()
	res, err := http.Get("http://" + e.srv.Addr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("/readyz = %d", res.StatusCode)
	}
	cancel()
	wg.Wait()
	if runErr != nil {
		t.Errorf("run = %v, want nil after its context ended", runErr)
	}
	for _, msg := range []string{`"msg":"listening","addr":"` + e.srv.Addr() + `","admin":false,"tls":false`, `"msg":"shutting down"`, `"msg":"stopped"`} {
		if !strings.Contains(e.log.String(), msg) {
			t.Errorf("no %s in the log:\n%s", msg, e.log)
		}
	}
	if _, err := http.Get("http://" + e.srv.Addr() + "/healthz"); err == nil {
		t.Error("still serving after Run returned")
	}
}
