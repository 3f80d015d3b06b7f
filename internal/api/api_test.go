package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/smithy-go"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenvendor/tokenvendor/internal/api"
	"github.com/tokenvendor/tokenvendor/internal/audit"
	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/jwks"
	"github.com/tokenvendor/tokenvendor/internal/metrictest"
	"github.com/tokenvendor/tokenvendor/internal/policy"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
	"github.com/tokenvendor/tokenvendor/internal/vend"
)

type env struct {
	idp     *testsupport.IdP
	sts     *testsupport.FakeSTS
	reg     *prometheus.Registry
	handler http.Handler
	logs    *testsupport.Buffer
	audit   *testsupport.Buffer
	ready   bool
	doc     *openapi3.T
	router  routers.Router
}

func newEnv(t testing.TB, profiles ...string) *env {
	t.Helper()
	return newEnvWith(t, nil, profiles...)
}

// newEnvWith lets a test change the vend and api configurations.
func newEnvWith(t testing.TB, mutate func(*vend.Config, *api.Config), profiles ...string) *env {
	t.Helper()
	if len(profiles) == 0 {
		profiles = []string{"objects"}
	}
	e := &env{idp: testsupport.NewIdP(t), sts: &testsupport.FakeSTS{}, reg: prometheus.NewRegistry(), logs: &testsupport.Buffer{}, audit: &testsupport.Buffer{}, ready: true}
	log := slog.New(slog.NewJSONHandler(e.logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	tenants, _ := policy.NewTenantRule("")
	var vps []vend.Profile
	for _, name := range profiles {
		tmpl, err := policy.Compile(policy.Spec{Profile: name, Policy: testsupport.Policy}, tenants)
		if err != nil {
			t.Fatal(err)
		}
		vps = append(vps, vend.Profile{Name: name, Role: testsupport.Role(t, tenants, "", ""), Duration: time.Hour, Template: tmpl})
	}
	vcfg := vend.Config{Profiles: vps, Tenants: tenants, OverrideScope: "tokenvendor:any-tenant", STS: e.sts, Registerer: e.reg, Logger: log}
	acfg := api.Config{
		Ready:    func() bool { return e.ready },
		Gatherer: e.reg, Registerer: e.reg, Logger: log, Auditor: audit.New(e.audit),
	}
	if mutate != nil {
		mutate(&vcfg, &acfg)
	}
	if vcfg.TracerProvider == nil {
		vcfg.TracerProvider = acfg.TracerProvider
	}
	verifier, err := jwks.New(jwks.Config{
		Issuer: testsupport.Issuer, JWKSURL: e.idp.JWKSURL(), Audiences: []string{testsupport.Audience},
		Algorithms: []string{"RS256", "ES256"}, HTTPClient: e.idp.Client(), Registerer: e.reg, Logger: log,
		TracerProvider: acfg.TracerProvider,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := verifier.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// A test may have set the AWS IAM method; the JWT one is the IdP's,
	// unless the test set an authenticator of another type.
	if methods, ok := acfg.Authenticator.(auth.Methods); ok || acfg.Authenticator == nil {
		methods.JWT = verifier
		acfg.Authenticator = methods
	}
	svc, err := vend.New(vcfg)
	if err != nil {
		t.Fatal(err)
	}
	acfg.Vendor = svc
	e.handler, err = api.NewHandler(acfg)
	if err != nil {
		t.Fatal(err)
	}
	e.doc, err = openapi3.NewLoader().LoadFromFile("../../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	e.doc.Servers = nil
	e.router, err = legacy.NewRouter(e.doc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, secret := range []string{"SECRETKEY", "SESSIONTOKEN", "eyJ"} {
			if strings.Contains(e.logs.String(), secret) {
				t.Errorf("log contains %q:\n%s", secret, e.logs.String())
			}
			if strings.Contains(e.audit.String(), secret) {
				t.Errorf("audit log contains %q:\n%s", secret, e.audit.String())
			}
		}
		e.auditEvents(t) // every line parses
	})
	return e
}

// auditEvents parses every line of the audit log, failing on any line that
// is not a complete event.
func (e *env) auditEvents(t testing.TB) []audit.Event {
	t.Helper()
	var events []audit.Event
	for _, line := range strings.Split(strings.TrimSpace(e.audit.String()), "\n") {
		if line == "" {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		var ev audit.Event
		if err := dec.Decode(&ev); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		if ev.Time.IsZero() || ev.RequestID == "" || ev.Route == "" || ev.Outcome == "" || ev.Status == 0 {
			t.Fatalf("audit line lacks a required field: %s", line)
		}
		events = append(events, ev)
	}
	return events
}

func (e *env) token(tenant string, mutate ...func(map[string]any)) string {
	claims := testsupport.Claims(time.Now(), "svc-"+tenant, tenant)
	for _, m := range mutate {
		m(claims)
	}
	return e.idp.Mint(e.idp.Key("rsa-1"), claims)
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

// do serves req and checks the response against openapi.yaml.
func (e *env) do(t *testing.T, req *http.Request) response {
	t.Helper()
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)
	res := response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	e.checkContract(t, req, res)
	return res
}

func (e *env) checkContract(t *testing.T, req *http.Request, res response) {
	t.Helper()
	route, params, err := e.router.FindRoute(req)
	if err != nil {
		// Routes the spec does not have still answer with its Error schema.
		var body any
		if err := json.Unmarshal(res.body, &body); err != nil {
			t.Fatalf("non-JSON body for unrouted request: %q", res.body)
		}
		if err := e.doc.Components.Schemas["Error"].Value.VisitJSON(body); err != nil {
			t.Fatalf("unrouted %s %s: body does not match Error: %v", req.Method, req.URL.Path, err)
		}
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status: res.status,
		Header: res.header,
		Body:   io.NopCloser(bytes.NewReader(res.body)),
		Options: &openapi3filter.Options{
			IncludeResponseStatus: true,
		},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Fatalf("%s %s -> %d does not match openapi.yaml: %v\nbody: %s", req.Method, req.URL.Path, res.status, err, res.body)
	}
}

func post(token, body string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/credentials", strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	return req
}

func wantError(t *testing.T, res response, status int, code string) {
	t.Helper()
	if res.status != status {
		t.Fatalf("status = %d, want %d; body %s", res.status, status, res.body)
	}
	if got := res.json(t)["code"]; got != code {
		t.Fatalf("code = %v, want %s", got, code)
	}
}

func TestPostCredentialsReturnsCachedCredentialsPerTenant(t *testing.T) {
	e := newEnv(t)
	first := e.do(t, post(e.token("acme"), ""))
	if first.status != http.StatusOK {
		t.Fatalf("status %d: %s", first.status, first.body)
	}
	if cc := first.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q", cc)
	}
	body := first.json(t)
	if body["Version"] != 1.0 || body["TenantId"] != "acme" || body["Profile"] != "objects" {
		t.Errorf("body = %v", body)
	}
	// Another token of the same tenant, with another subject, gets the same credentials.
	second := e.do(t, post(e.token("acme", func(c map[string]any) { c["sub"] = "svc-other" }), `{"profile":"objects"}`))
	if second.json(t)["AccessKeyId"] != body["AccessKeyId"] {
		t.Error("second token of the same tenant got other credentials")
	}
	other := e.do(t, post(e.token("globex"), ""))
	if other.json(t)["AccessKeyId"] == body["AccessKeyId"] {
		t.Error("tenant globex got acme's credentials")
	}
	if e.sts.Calls() != 2 {
		t.Errorf("STS calls = %d, want 2", e.sts.Calls())
	}
}

func TestConcurrentFirstCallsMakeOneAssumeRole(t *testing.T) {
	e := newEnv(t)
	e.sts.Latency = 30 * time.Millisecond
	tok := e.token("initech")
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := httptest.NewRecorder()
			e.handler.ServeHTTP(rec, post(tok, ""))
			if rec.Code != http.StatusOK {
				t.Errorf("status %d", rec.Code)
			}
		}()
	}
	wg.Wait()
	if got := metrictest.Counter(t, e.reg, "tokenvendor_sts_requests_total", "outcome", "success"); got != 1 {
		t.Fatalf("tokenvendor_sts_requests_total = %v, want 1", got)
	}
}

func TestForgedTokensGet401AndNeverReachSTS(t *testing.T) {
	e := newEnv(t)
	rsa := e.idp.Key("rsa-1")
	valid := func() map[string]any { return testsupport.Claims(time.Now(), "svc", "acme") }
	with := func(m func(map[string]any)) map[string]any { c := valid(); m(c); return c }
	tests := []struct {
		name  string
		token string
	}{
		{name: "no token", token: ""},
		{name: "garbage", token: "garbage"},
		{name: "alg none", token: e.idp.Unsigned("rsa-1", valid())},
		{name: "HS256 with the public key", token: e.idp.HMACWithPublicKey(rsa, valid())},
		{name: "expired", token: e.idp.Mint(rsa, with(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }))},
		{name: "no exp", token: e.idp.Mint(rsa, with(func(c map[string]any) { delete(c, "exp") }))},
		{name: "not yet valid", token: e.idp.Mint(rsa, with(func(c map[string]any) { c["nbf"] = time.Now().Add(time.Hour).Unix() }))},
		{name: "wrong iss", token: e.idp.Mint(rsa, with(func(c map[string]any) { c["iss"] = "https://evil/" }))},
		{name: "wrong aud", token: e.idp.Mint(rsa, with(func(c map[string]any) { c["aud"] = "other" }))},
		{name: "unknown kid", token: e.idp.Mint(e.idp.NewKey("ghost", jwa.RS256), valid())},
		{name: "known kid, other key", token: e.idp.Mint(e.idp.NewKey("rsa-1", jwa.RS256), valid())},
		{name: "tampered signature", token: testsupport.Tamper(e.idp.Mint(rsa, valid()))},
		{name: "algorithm outside the allow-list", token: e.idp.MintAs(rsa, "rsa-1", jwa.PS256, valid())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.do(t, post(tt.token, ""))
			wantError(t, res, http.StatusUnauthorized, "unauthenticated")
			if !strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Bearer ") {
				t.Errorf("WWW-Authenticate = %q", res.header.Get("WWW-Authenticate"))
			}
		})
	}
	if e.sts.Calls() != 0 {
		t.Fatalf("forged tokens made %d STS calls", e.sts.Calls())
	}
}

func TestHostileTenantClaimsNeverReachSTS(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name  string
		claim any
	}{
		{name: "star", claim: "*"},
		{name: "prefix star", claim: "acme/*"},
		{name: "trailing star", claim: "acme*"},
		{name: "quote", claim: `a"b`},
		{name: "IAM variable", claim: "${aws:username}"},
		{name: "empty", claim: ""},
		{name: "200 characters", claim: strings.Repeat("a", 200)},
		{name: "Cyrillic lookalike", claim: "аcme"},
		{name: "NUL", claim: "ac\x00me"},
		{name: "path traversal", claim: "../x"},
		{name: "number", claim: 42},
		{name: "object", claim: map[string]any{"id": "acme"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.do(t, post(e.token("", func(c map[string]any) { c["tenant_id"] = tt.claim }), ""))
			if res.status != http.StatusBadRequest && res.status != http.StatusForbidden {
				t.Fatalf("status = %d: %s", res.status, res.body)
			}
			if code := res.json(t)["code"]; code != "invalid_tenant" && code != "forbidden" {
				t.Fatalf("code = %v", code)
			}
			if s, ok := tt.claim.(string); ok && len(s) > 1 && strings.Contains(string(res.body), s) {
				t.Errorf("response echoes the hostile tenant id: %s", res.body)
			}
		})
	}
	if e.sts.Calls() != 0 {
		t.Fatalf("hostile tenants made %d STS calls", e.sts.Calls())
	}
}

func TestOtherTenantNeedsTheOverrideScope(t *testing.T) {
	e := newEnv(t)
	wantError(t, e.do(t, post(e.token("acme"), `{"tenant_id":"globex"}`)), http.StatusForbidden, "forbidden")
	wantError(t, e.do(t, post(e.token("acme"), `{"tenant_id":"*"}`)), http.StatusBadRequest, "invalid_tenant")
	if e.sts.Calls() != 0 {
		t.Fatal("refused requests reached STS")
	}
	var refusals []string
	for _, ev := range e.auditEvents(t) {
		refusals = append(refusals, ev.Refusal+" "+ev.TenantID)
	}
	if !slices.Equal(refusals, []string{"other_tenant globex", "invalid "}) {
		t.Fatalf("audit refusals %q, want other_tenant for globex (the tenant reached for), then invalid with no tenant", refusals)
	}
	for reason, want := range map[string]float64{"other_tenant": 1, "invalid": 1} {
		if got := metrictest.Counter(t, e.reg, "tokenvendor_tenant_refusals_total", "reason", reason); got != want {
			t.Fatalf("tokenvendor_tenant_refusals_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	worker := e.token("", func(c map[string]any) { c["scope"] = "tokenvendor:any-tenant" })
	res := e.do(t, post(worker, `{"tenant_id":"globex"}`))
	if res.status != http.StatusOK || res.json(t)["TenantId"] != "globex" {
		t.Fatalf("worker: %d %s", res.status, res.body)
	}
}

func TestRequestErrors(t *testing.T) {
	tests := []struct {
		name     string
		profiles []string
		req      func(e *env) *http.Request
		status   int
		code     string
	}{
		{name: "malformed JSON", req: func(e *env) *http.Request { return post(e.token("acme"), `{"profile":`) }, status: 400, code: "invalid_request"},
		{name: "unknown field", req: func(e *env) *http.Request { return post(e.token("acme"), `{"tenant":"x"}`) }, status: 400, code: "invalid_request"},
		{name: "trailing data", req: func(e *env) *http.Request { return post(e.token("acme"), `{} {}`) }, status: 400, code: "invalid_request"},
		{name: "wrong type", req: func(e *env) *http.Request { return post(e.token("acme"), `{"profile":1}`) }, status: 400, code: "invalid_request"},
		{name: "body over 64 KiB", req: func(e *env) *http.Request {
			return post(e.token("acme"), `{"profile":"`+strings.Repeat("x", 70<<10)+`"}`)
		}, status: 413, code: "request_too_large"},
		{name: "no profile with several configured", profiles: []string{"a", "b"}, req: func(e *env) *http.Request { return post(e.token("acme"), "") }, status: 400, code: "invalid_request"},
		{name: "unknown profile", req: func(e *env) *http.Request { return post(e.token("acme"), `{"profile":"nope"}`) }, status: 404, code: "unknown_profile"},
		{name: "GET on /credentials", req: func(e *env) *http.Request { return httptest.NewRequest(http.MethodGet, "/credentials", nil) }, status: 405, code: "method_not_allowed"},
		{name: "unknown route", req: func(e *env) *http.Request { return httptest.NewRequest(http.MethodGet, "/nope", nil) }, status: 404, code: "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.profiles...)
			wantError(t, e.do(t, tt.req(e)), tt.status, tt.code)
			if e.sts.Calls() != 0 {
				t.Fatal("a refused request reached STS")
			}
		})
	}
}

func TestSTSFailuresMapToGatewayStatuses(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		status     int
		code       string
		retryAfter bool
	}{
		{name: "throttled", err: &smithy.GenericAPIError{Code: "Throttling", Message: "Rate exceeded"}, status: 503, code: "upstream_unavailable", retryAfter: true},
		{name: "access denied", err: &smithy.GenericAPIError{Code: "AccessDenied", Message: "User arn:aws:iam::123456789012:user/x is not authorized"}, status: 502, code: "upstream_error"},
		{name: "unreachable", err: fmt.Errorf("dial tcp: connection refused"), status: 503, code: "upstream_unavailable", retryAfter: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.sts.Fail(tt.err)
			res := e.do(t, post(e.token("acme"), ""))
			wantError(t, res, tt.status, tt.code)
			if tt.retryAfter && res.header.Get("Retry-After") == "" {
				t.Error("no Retry-After")
			}
			if strings.Contains(string(res.body), "arn:aws") || strings.Contains(string(res.body), "Rate exceeded") || strings.Contains(string(res.body), "dial tcp") {
				t.Errorf("STS text reached the caller: %s", res.body)
			}
			if !strings.Contains(e.logs.String(), "assume role failed") {
				t.Error("STS failure not logged")
			}
		})
	}
}

func TestContainerCredentials(t *testing.T) {
	e := newEnv(t)
	tok := e.token("acme")
	for _, auth := range []string{tok, "Bearer " + tok} {
		req := httptest.NewRequest(http.MethodGet, "/v1/container-credentials/objects", nil)
		req.Header.Set("Authorization", auth)
		res := e.do(t, req)
		if res.status != http.StatusOK {
			t.Fatalf("status %d: %s", res.status, res.body)
		}
		if res.json(t)["Token"] == "" {
			t.Fatal("no Token")
		}
	}
	req := httptest.NewRequest(http.MethodGet, "/v1/container-credentials/objects", nil)
	wantError(t, e.do(t, req), http.StatusUnauthorized, "unauthenticated")
	req = httptest.NewRequest(http.MethodGet, "/v1/container-credentials/nope", nil)
	req.Header.Set("Authorization", tok)
	wantError(t, e.do(t, req), http.StatusNotFound, "unknown_profile")
}

func TestHealthAndReadiness(t *testing.T) {
	e := newEnv(t)
	if res := e.do(t, httptest.NewRequest(http.MethodGet, "/healthz", nil)); res.status != 200 {
		t.Fatalf("healthz %d", res.status)
	}
	if res := e.do(t, httptest.NewRequest(http.MethodGet, "/readyz", nil)); res.status != 200 {
		t.Fatalf("readyz %d", res.status)
	}
	e.ready = false
	if res := e.do(t, httptest.NewRequest(http.MethodGet, "/readyz", nil)); res.status != 503 {
		t.Fatalf("readyz not ready: %d", res.status)
	}
}

func TestMetricsLabelRoutesByPattern(t *testing.T) {
	e := newEnv(t)
	e.do(t, post(e.token("acme"), ""))
	req := httptest.NewRequest(http.MethodGet, "/v1/container-credentials/objects", nil)
	req.Header.Set("Authorization", e.token("acme"))
	e.do(t, req)
	res := e.do(t, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	text := string(res.body)
	for _, want := range []string{
		`tokenvendor_requests_total{code="200",route="/credentials"} 1`,
		`tokenvendor_requests_total{code="200",route="/v1/container-credentials/{profile}"} 1`,
		`tokenvendor_cache_requests_total{result="hit"} 1`,
		`tokenvendor_cache_requests_total{result="miss"} 1`,
		`tokenvendor_sts_requests_total{outcome="success"} 1`,
		`tokenvendor_cache_entries 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(text, "acme") {
		t.Error("a metric label carries the tenant")
	}
}
