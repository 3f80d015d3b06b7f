package api_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/api"
	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/jwks"
	"github.com/tokenvendor/tokenvendor/internal/metrictest"
	"github.com/tokenvendor/tokenvendor/internal/tlsconfig/tlstest"
	"github.com/tokenvendor/tokenvendor/internal/vend"
	"github.com/tokenvendor/tokenvendor/wire"
)

// signedRequests stands in for the AWS IAM method: it knows "signed-<tenant>"
// and answers the error it is set to for anything else.
type signedRequests struct {
	mu   sync.Mutex
	seen []string
	err  error
}

func (s *signedRequests) Verify(_ context.Context, signed string) (auth.Caller, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, signed)
	if s.err != nil {
		return auth.Caller{}, s.err
	}
	return auth.Caller{Issuer: auth.IssuerAWSIAM, Subject: "arn:aws:sts::123456789012:assumed-role/orders-api/task", TenantID: signed[len("signed-"):]}, nil
}

func TestAWSIAMSchemeReachesItsMethodOnBothRoutes(t *testing.T) {
	iam := &signedRequests{}
	e := newEnvWith(t, func(_ *vend.Config, a *api.Config) { a.Authenticator = auth.Methods{AWSIAM: iam} })

	req := post("", "")
	req.Header.Set("Authorization", "AWS-IAM signed-acme")
	res := e.do(t, req)
	if res.status != http.StatusOK || res.json(t)["TenantId"] != "acme" {
		t.Fatalf("POST /credentials with AWS-IAM: %d %s", res.status, res.body)
	}
	req = httptest.NewRequest(http.MethodGet, "/v1/container-credentials/objects", nil)
	req.Header.Set("Authorization", "aws-iam signed-globex")
	if res := e.do(t, req); res.status != http.StatusOK {
		t.Fatalf("container route with AWS-IAM: %d %s", res.status, res.body)
	}
	if fmt.Sprint(iam.seen) != "[signed-acme signed-globex]" {
		t.Errorf("the method saw %v", iam.seen)
	}
	// Bearer tokens still go to the identity provider's verifier.
	if res := e.do(t, post(e.token("initech"), "")); res.status != http.StatusOK {
		t.Fatalf("bearer beside AWS IAM: %d %s", res.status, res.body)
	}
	if len(iam.seen) != 2 {
		t.Errorf("a bearer token reached the AWS IAM method")
	}

	for _, tt := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("%w: signed request is for another server", auth.ErrUnauthenticated), http.StatusUnauthorized, "unauthenticated"},
		{fmt.Errorf("%w: arn:aws:sts::1:assumed-role/x/y", auth.ErrUnknownPrincipal), http.StatusForbidden, "forbidden"},
		{fmt.Errorf("%w: STS answered 500", auth.ErrIdentityUnavailable), http.StatusServiceUnavailable, "upstream_unavailable"},
	} {
		iam.err = tt.err
		req := post("", "")
		req.Header.Set("Authorization", "AWS-IAM signed-acme")
		res := e.do(t, req)
		wantError(t, res, tt.status, tt.code)
		if tt.status == http.StatusUnauthorized && res.header.Get("WWW-Authenticate") != `AWS-IAM realm="tokenvendor", error="invalid_token"` {
			t.Errorf("WWW-Authenticate = %q", res.header.Get("WWW-Authenticate"))
		}
		if tt.status == http.StatusServiceUnavailable && res.header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
	}
}

// iamOnly is a service without an identity provider.
type iamOnly struct{ auth.Methods }

func TestTheChallengeNamesTheSchemesTheServiceAccepts(t *testing.T) {
	for _, tt := range []struct {
		name          string
		authenticator api.Authenticator // nil: the identity provider's alone
		want          string
	}{
		{"JWT only", nil, `Bearer realm="tokenvendor"`},
		{"JWT and AWS IAM", auth.Methods{AWSIAM: &signedRequests{}}, `Bearer realm="tokenvendor", AWS-IAM realm="tokenvendor"`},
		{"AWS IAM only", iamOnly{auth.Methods{AWSIAM: &signedRequests{}}}, `AWS-IAM realm="tokenvendor"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnvWith(t, func(_ *vend.Config, a *api.Config) { a.Authenticator = tt.authenticator })
			res := e.do(t, post("", ""))
			wantError(t, res, http.StatusUnauthorized, "unauthenticated")
			if got := res.header.Get("WWW-Authenticate"); got != tt.want {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.want)
			}
			// A scheme the service does not accept is answered like none.
			req := post("", "")
			req.Header.Set("Authorization", "Basic dXNlcjpwYXNz")
			if got := e.do(t, req).header.Get("WWW-Authenticate"); got != tt.want {
				t.Errorf("after Basic: WWW-Authenticate = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAWSIAMSchemeWithoutTheMethodIs401(t *testing.T) {
	e := newEnv(t)
	req := post("", "")
	req.Header.Set("Authorization", "AWS-IAM signed-acme")
	wantError(t, e.do(t, req), http.StatusUnauthorized, "unauthenticated")
}

func TestTheConnectionsClientCertificateReachesTheVerifier(t *testing.T) {
	e := newEnv(t)
	ca := tlstest.NewCA(t, "clients")
	_, _, pairA := ca.Issue(1, "svc-a")
	_, _, pairB := ca.Issue(2, "svc-b")
	certA, _ := x509.ParseCertificate(pairA.Certificate[0])
	certB, _ := x509.ParseCertificate(pairB.Certificate[0])
	tok := e.token("acme", func(c map[string]any) { c["cnf"] = map[string]any{"x5t#S256": jwks.Thumbprint(certA)} })
	over := func(cert *x509.Certificate) response {
		req := post(tok, "")
		if cert != nil {
			req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
		}
		return e.do(t, req)
	}
	if res := over(certA); res.status != http.StatusOK {
		t.Fatalf("bound token over its certificate: %d %s", res.status, res.body)
	}
	wantError(t, over(certB), http.StatusUnauthorized, "unauthenticated")
	wantError(t, over(nil), http.StatusUnauthorized, "unauthenticated")
}

// lambdaRole stands in for the AWS IAM method knowing a function's role
// whose tenant comes from a token.
type lambdaRole struct{}

func (lambdaRole) Verify(context.Context, string) (auth.Caller, error) {
	return auth.Caller{Issuer: auth.IssuerAWSIAM, Subject: "arn:aws:sts::123456789012:assumed-role/orders-fn/orders-fn",
		ClientID: "arn:aws:iam::123456789012:role/orders-fn", TenantFromToken: true}, nil
}

func TestATenantFromATokenNeedsBothProofsAndOneTenant(t *testing.T) {
	e := newEnvWith(t, func(_ *vend.Config, a *api.Config) { a.Authenticator = auth.Methods{AWSIAM: lambdaRole{}} })
	worker := e.token("", func(c map[string]any) { c["scope"] = "tokenvendor:any-tenant" })
	call := func(tenantToken, body string) response {
		req := post("", body)
		req.Header.Set("Authorization", "AWS-IAM signed-by-the-function")
		if tenantToken != "" {
			req.Header.Set(wire.TenantTokenHeader, tenantToken)
		}
		return e.do(t, req)
	}
	res := call(e.token("acme"), `{"tenant_id":"acme"}`)
	if res.status != http.StatusOK || res.json(t)["TenantId"] != "acme" {
		t.Fatalf("both proofs for one tenant: %d %s", res.status, res.body)
	}
	for _, tc := range []struct {
		name, token, body string
		status            int
		code              string
	}{
		{name: "no tenant token", body: `{"tenant_id":"acme"}`, status: http.StatusForbidden, code: "forbidden"},
		{name: "a token for another tenant", token: e.token("globex"), body: `{"tenant_id":"acme"}`, status: http.StatusForbidden, code: "forbidden"},
		{name: "a token naming no tenant, its override scope granting nothing", token: worker, body: `{"tenant_id":"acme"}`, status: http.StatusForbidden, code: "forbidden"},
		{name: "no tenant named", token: e.token("acme"), body: ``, status: http.StatusBadRequest, code: "invalid_request"},
		{name: "an expired token", token: e.token("acme", func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }), body: `{"tenant_id":"acme"}`, status: http.StatusUnauthorized, code: "unauthenticated"},
		{name: "a token for another audience", token: e.token("acme", func(c map[string]any) { c["aud"] = "another-api" }), body: `{"tenant_id":"acme"}`, status: http.StatusUnauthorized, code: "unauthenticated"},
		{name: "an id Lambda takes and the floor does not", token: e.token("acme"), body: `{"tenant_id":"a/b"}`, status: http.StatusBadRequest, code: "invalid_tenant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, call(tc.token, tc.body), tc.status, tc.code)
		})
	}
	if e.sts.Calls() != 1 {
		t.Fatalf("STS calls = %d, want 1: a refused request reached STS", e.sts.Calls())
	}
	for reason, want := range map[string]float64{"other_tenant": 1, "invalid": 2} {
		if got := metrictest.Counter(t, e.reg, "tokenvendor_tenant_refusals_total", "reason", reason); got != want {
			t.Errorf("%s refusals = %v, want %v", reason, got, want)
		}
	}
	if got := metrictest.Counter(t, e.reg, "tokenvendor_auth_failures_total", "reason", "missing"); got != 1 {
		t.Errorf("missing tenant tokens counted %v, want 1", got)
	}
}
