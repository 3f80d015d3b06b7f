package awsiam_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenvendor/tokenvendor/client"
	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/awsiam"
	"github.com/tokenvendor/tokenvendor/internal/clock"
	"github.com/tokenvendor/tokenvendor/internal/metrictest"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

const (
	serverID = "tokenvendor.test"
	region   = "us-east-1"
	account  = "123456789012"
	// ordersKey signs as a session of the orders-api role, which every
	// fakeSTS knows.
	ordersKey     = "ASIAORDERS0000001"
	ordersSession = "arn:aws:sts::" + account + ":assumed-role/orders-api/task-1"
)

// newFakeSTS is an STS that knows the orders-api session's access key. It
// checks no signature: that is moto's part, end to end.
func newFakeSTS(t testing.TB) *testsupport.STSServer {
	f := testsupport.NewSTSServer(t)
	f.Know(ordersKey, ordersSession)
	return f
}

var principals = []awsiam.Principal{
	{RoleARN: "arn:aws:iam::" + account + ":role/orders-api", TenantID: "acme"},
	{RoleARN: "arn:aws:iam::" + account + ":role/service/billing-worker", AnyTenant: true},
}

func newVerifier(t testing.TB, sts *testsupport.STSServer, clk *clock.Fake, mutate func(*awsiam.Config)) (*awsiam.Verifier, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := awsiam.Config{ServerID: serverID, Endpoint: sts.URL, Region: region, Principals: principals, Now: clk.Now, Registerer: reg}
	if mutate != nil {
		mutate(&cfg)
	}
	v, err := awsiam.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v, reg
}

// setup is a fake STS, a clock standing now and a verifier of both.
func setup(t testing.TB, mutate func(*awsiam.Config)) (*testsupport.STSServer, *clock.Fake, *awsiam.Verifier, *prometheus.Registry) {
	t.Helper()
	sts := newFakeSTS(t)
	clk := clock.NewFake(time.Now())
	v, reg := newVerifier(t, sts, clk, mutate)
	return sts, clk, v, reg
}

// sign signs a GetCallerIdentity for endpoint as the tokenvendor clients do.
func sign(t testing.TB, endpoint, akid, sid string, at time.Time) string {
	t.Helper()
	s, err := client.SignGetCallerIdentity(context.Background(), v4.NewSigner(),
		aws.Credentials{AccessKeyID: akid, SecretAccessKey: "secret-" + akid, SessionToken: "session-" + akid}, endpoint, region, sid, at)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signWith signs as sign does, with one more header signed.
func signWith(t testing.TB, endpoint, name, value string, at time.Time) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader("Action=GetCallerIdentity&Version=2011-06-15"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	req.Header.Set(awsiam.ServerIDHeader, serverID)
	req.Header.Set(name, value)
	creds := aws.Credentials{AccessKeyID: ordersKey, SecretAccessKey: "secret", SessionToken: "session"}
	sum := sha256.Sum256([]byte("Action=GetCallerIdentity&Version=2011-06-15"))
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "sts", region, at); err != nil {
		t.Fatal(err)
	}
	h := map[string]string{"Host": req.URL.Host, "Content-Length": "43"}
	for k := range req.Header {
		h[k] = req.Header.Get(k)
	}
	b, _ := json.Marshal(map[string]any{"method": "POST", "headers": h, "body": "Action=GetCallerIdentity&Version=2011-06-15"})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decoded(t testing.TB, signed string) []byte {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(signed)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// rewrite decodes a signed request, lets edit change its JSON, and encodes it again.
func rewrite(t testing.TB, signed string, edit func(map[string]any)) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(signed)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, _ := json.Marshal(m)
	return base64.RawURLEncoding.EncodeToString(b)
}

func headers(m map[string]any) map[string]any { return m["headers"].(map[string]any) }

func TestSessionsOfAConfiguredRoleGetItsTenantOrAnyTenant(t *testing.T) {
	sts, clk, v, reg := setup(t, nil)
	sts.Know("ASIAWORKER0000001", "arn:aws:sts::"+account+":assumed-role/billing-worker/worker-7")
	sts.Know("ASIAOTHERROLE0001", "arn:aws:sts::"+account+":assumed-role/orders-api-v2/task-1")
	sts.Know("ASIAOTHERACCOUNT1", "arn:aws:sts::210987654321:assumed-role/orders-api/task-1")
	sts.Know("AKIAUSER000000001", "arn:aws:iam::"+account+":user/orders-api")
	sts.Know("ASIAORDERSCASE001", "arn:aws:sts::"+account+":assumed-role/Orders-API/task-2")

	caller, err := v.Verify(context.Background(), sign(t, sts.URL, ordersKey, serverID, clk.Now()))
	if err != nil {
		t.Fatal(err)
	}
	want := auth.Caller{Issuer: auth.IssuerAWSIAM, Subject: ordersSession,
		ClientID: "arn:aws:iam::" + account + ":role/orders-api", TenantID: "acme"}
	if fmt.Sprint(caller) != fmt.Sprint(want) {
		t.Errorf("orders-api session: %+v, want %+v", caller, want)
	}
	// The worker role has a path; its sessions' ARNs do not.
	caller, err = v.Verify(context.Background(), sign(t, sts.URL, "ASIAWORKER0000001", serverID, clk.Now()))
	if err != nil || !caller.AnyTenant || caller.TenantID != "" {
		t.Errorf("billing-worker session: %+v, %v; want any tenant", caller, err)
	}
	// IAM role names are unique without regard to case; STS says the
	// role's own spelling.
	if caller, err := v.Verify(context.Background(), sign(t, sts.URL, "ASIAORDERSCASE001", serverID, clk.Now())); err != nil || caller.TenantID != "acme" {
		t.Errorf("a session ARN spelling the role in other case: %+v, %v", caller, err)
	}
	for _, akid := range []string{"ASIAOTHERROLE0001", "ASIAOTHERACCOUNT1", "AKIAUSER000000001"} {
		_, err := v.Verify(context.Background(), sign(t, sts.URL, akid, serverID, clk.Now()))
		if !errors.Is(err, auth.ErrUnknownPrincipal) {
			t.Errorf("%s: err = %v, want ErrUnknownPrincipal", akid, err)
		}
	}
	if n := metrictest.Counter(t, reg, "tokenvendor_aws_iam_requests_total", "result", "unknown_principal"); n != 3 {
		t.Errorf("unknown_principal = %v, want 3", n)
	}
}

func TestRefusedBeforeAnyOutboundCall(t *testing.T) {
	sts, clk, v, reg := setup(t, nil)
	elsewhere := newFakeSTS(t)
	good := func() string { return sign(t, sts.URL, ordersKey, serverID, clk.Now()) }
	elsewhereHost := strings.TrimPrefix(elsewhere.URL, "http://")

	tests := []struct {
		name, signed, result string
	}{
		{"empty", "", "malformed"},
		{"not base64url", "!!!", "malformed"},
		{"padded base64", good() + "==", "malformed"},
		{"another server's id", sign(t, sts.URL, ordersKey, "someone-else", clk.Now()), "server_id"},
		{"server id not signed", rewrite(t, good(), func(m map[string]any) { delete(headers(m), awsiam.ServerIDHeader) }), "malformed"},
		{"dated 6 minutes ago", sign(t, sts.URL, ordersKey, serverID, clk.Now().Add(-6*time.Minute)), "stale"},
		{"dated 6 minutes ahead", sign(t, sts.URL, ordersKey, serverID, clk.Now().Add(6*time.Minute)), "stale"},
		{"signed for another host", sign(t, elsewhere.URL, ordersKey, serverID, clk.Now()), "malformed"},
		{"a url field", rewrite(t, good(), func(m map[string]any) { m["url"] = elsewhere.URL }), "malformed"},
		{"another action", rewrite(t, good(), func(m map[string]any) {
			m["body"] = "Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam::123456789012:role/admin&RoleSessionName=x"
		}), "malformed"},
		{"an extra parameter", rewrite(t, good(), func(m map[string]any) { m["body"] = "Action=GetCallerIdentity&Version=2011-06-15&Extra=1" }), "malformed"},
		{"GET", rewrite(t, good(), func(m map[string]any) { m["method"] = "GET" }), "malformed"},
		{"an unsigned header", rewrite(t, good(), func(m map[string]any) { headers(m)["X-Forwarded-Host"] = elsewhereHost }), "malformed"},
		{"a hop-by-hop header", rewrite(t, good(), func(m map[string]any) { headers(m)["Transfer-Encoding"] = "chunked" }), "malformed"},
		{"a signed Accept", signWith(t, sts.URL, "Accept", "application/json", clk.Now()), "malformed"},
		{"a signed Accept-Encoding", signWith(t, sts.URL, "Accept-Encoding", "gzip", clk.Now()), "malformed"},
		{"trailing brackets", base64.RawURLEncoding.EncodeToString(append(decoded(t, good()), []byte("}} ]")...)), "malformed"},
		{"the Host of another server", rewrite(t, good(), func(m map[string]any) { headers(m)["Host"] = elsewhereHost }), "malformed"},
		{"not SigV4", rewrite(t, good(), func(m map[string]any) { headers(m)["Authorization"] = "Bearer x" }), "malformed"},
		{"scoped to another region", rewrite(t, good(), func(m map[string]any) {
			h := headers(m)
			h["Authorization"] = strings.Replace(h["Authorization"].(string), "/us-east-1/", "/eu-west-1/", 1)
		}), "malformed"},
		{"signed for s3", rewrite(t, good(), func(m map[string]any) {
			h := headers(m)
			h["Authorization"] = strings.Replace(h["Authorization"].(string), "/sts/", "/s3/", 1)
		}), "malformed"},
		{"over 16 KiB", rewrite(t, good(), func(m map[string]any) { headers(m)["X-Pad"] = strings.Repeat("x", 17<<10) }), "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := metrictest.Counter(t, reg, "tokenvendor_aws_iam_requests_total", "result", tt.result)
			_, err := v.Verify(context.Background(), tt.signed)
			if !errors.Is(err, auth.ErrUnauthenticated) {
				t.Fatalf("err = %v, want ErrUnauthenticated", err)
			}
			if got := metrictest.Counter(t, reg, "tokenvendor_aws_iam_requests_total", "result", tt.result) - before; got != 1 {
				t.Errorf("result %q grew by %v (err %v)", tt.result, got, err)
			}
		})
	}
	if len(sts.Received()) != 0 || len(elsewhere.Received()) != 0 {
		t.Errorf("refused requests reached STS %d times and the other server %d times, want 0 and 0", len(sts.Received()), len(elsewhere.Received()))
	}
	// The same signer's request, well formed, does reach STS: the refusals
	// above were the checks', not a broken signer's.
	if _, err := v.Verify(context.Background(), good()); err != nil {
		t.Fatal(err)
	}
}

func TestOnlyTheSignedRequestGoesOnlyToTheConfiguredEndpoint(t *testing.T) {
	sts, clk, v, _ := setup(t, nil)
	signed := sign(t, sts.URL, ordersKey, serverID, clk.Now())
	if _, err := v.Verify(context.Background(), signed); err != nil {
		t.Fatal(err)
	}
	req, err := awsiam.Parse(signed)
	if err != nil {
		t.Fatal(err)
	}
	got := sts.Received()[0]
	u, _ := url.Parse(sts.URL)
	if got.Method != http.MethodPost || got.Path != "/" || got.RawQuery != "" || got.Host != u.Host {
		t.Errorf("STS received %s %s?%s (Host %s)", got.Method, got.Path, got.RawQuery, got.Host)
	}
	if got.Body != "Action=GetCallerIdentity&Version=2011-06-15" {
		t.Errorf("STS received body %q", got.Body)
	}
	for name := range req.Header {
		if name != "Host" && got.Header.Get(name) != req.Header.Get(name) {
			t.Errorf("header %s: STS received %q, the caller signed %q", name, got.Header.Get(name), req.Header.Get(name))
		}
	}
}

func TestSTSRefusalIs401AndItsOutageIsUnavailable(t *testing.T) {
	tests := []struct {
		status int
		code   string
		want   error
	}{
		{http.StatusForbidden, "SignatureDoesNotMatch", auth.ErrUnauthenticated},
		{http.StatusForbidden, "InvalidClientTokenId", auth.ErrUnauthenticated},
		{http.StatusBadRequest, "ExpiredToken", auth.ErrUnauthenticated},
		{http.StatusBadRequest, "Throttling", auth.ErrIdentityUnavailable},
		{http.StatusInternalServerError, "InternalFailure", auth.ErrIdentityUnavailable},
		{http.StatusTemporaryRedirect, "", auth.ErrIdentityUnavailable},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status, tt.code), func(t *testing.T) {
			sts, clk, v, _ := setup(t, nil)
			sts.Refuse(tt.status, tt.code)
			_, err := v.Verify(context.Background(), sign(t, sts.URL, ordersKey, serverID, clk.Now()))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), testsupport.STSServerMessage) {
				t.Errorf("STS's message reached the caller: %v", err)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		sts, clk, v, _ := setup(t, nil)
		signed := sign(t, sts.URL, ordersKey, serverID, clk.Now())
		sts.Close()
		if _, err := v.Verify(context.Background(), signed); !errors.Is(err, auth.ErrIdentityUnavailable) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestAnIdentityIsRememberedForItsSignedRequestOnlyAndBriefly(t *testing.T) {
	sts, clk, v, reg := setup(t, func(c *awsiam.Config) { c.CacheTTL = time.Minute })
	first := sign(t, sts.URL, ordersKey, serverID, clk.Now())
	for range 3 {
		if _, err := v.Verify(context.Background(), first); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(sts.Received()); n != 1 {
		t.Fatalf("the same signed request 3 times made %d STS calls, want 1", n)
	}
	if n := metrictest.Counter(t, reg, "tokenvendor_aws_iam_requests_total", "result", "cached"); n != 2 {
		t.Errorf("cached = %v, want 2", n)
	}
	// The same access key, signed a second later: another signature, so
	// STS is asked again; the key alone proves nothing.
	clk.Add(time.Second)
	if _, err := v.Verify(context.Background(), sign(t, sts.URL, ordersKey, serverID, clk.Now())); err != nil {
		t.Fatal(err)
	}
	if n := len(sts.Received()); n != 2 {
		t.Fatalf("a new signature by the same key made %d STS calls in all, want 2", n)
	}
	// Past the cache's time, the first request is sent again.
	clk.Add(time.Minute)
	if _, err := v.Verify(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	if n := len(sts.Received()); n != 3 {
		t.Fatalf("after cache_ttl: %d STS calls in all, want 3", n)
	}
	// Never past the request's own window, whatever the cache's time.
	v2, _ := newVerifier(t, sts, clk, func(c *awsiam.Config) { c.CacheTTL = 5 * time.Minute })
	old := sign(t, sts.URL, ordersKey, serverID, clk.Now().Add(-4*time.Minute))
	if _, err := v2.Verify(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	clk.Add(90 * time.Second)
	if _, err := v2.Verify(context.Background(), old); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("a request past its 5 minutes, remembered before: err = %v, want ErrUnauthenticated", err)
	}
}

func TestNewRefusesABadConfig(t *testing.T) {
	for name, cfg := range map[string]awsiam.Config{
		"no server id":       {Endpoint: "https://sts.us-east-1.amazonaws.com", Region: region},
		"no endpoint":        {ServerID: serverID, Region: region},
		"default port":       {ServerID: serverID, Endpoint: "https://sts.us-east-1.amazonaws.com:443", Region: region},
		"endpoint with user": {ServerID: serverID, Endpoint: "https://u:p@sts.example", Region: region},
		"bad region":         {ServerID: serverID, Endpoint: "https://sts.us-east-1.amazonaws.com", Region: "mars"},
		"ttl over 5m":        {ServerID: serverID, Endpoint: "https://sts.us-east-1.amazonaws.com", Region: region, CacheTTL: 6 * time.Minute},
		"user principal": {ServerID: serverID, Endpoint: "https://sts.us-east-1.amazonaws.com", Region: region,
			Principals: []awsiam.Principal{{RoleARN: "arn:aws:iam::123456789012:user/x", TenantID: "acme"}}},
		"tenant and any": {ServerID: serverID, Endpoint: "https://sts.us-east-1.amazonaws.com", Region: region,
			Principals: []awsiam.Principal{{RoleARN: "arn:aws:iam::123456789012:role/x", TenantID: "acme", AnyTenant: true}}},
		"same role twice, in other case": {ServerID: serverID, Endpoint: "https://sts.us-east-1.amazonaws.com", Region: region,
			Principals: []awsiam.Principal{{RoleARN: "arn:aws:iam::123456789012:role/Orders", TenantID: "acme"}, {RoleARN: "arn:aws:iam::123456789012:role/orders", TenantID: "globex"}}},
		"same role twice": {ServerID: serverID, Endpoint: "https://sts.us-east-1.amazonaws.com", Region: region,
			Principals: []awsiam.Principal{{RoleARN: "arn:aws:iam::123456789012:role/a/x", TenantID: "acme"}, {RoleARN: "arn:aws:iam::123456789012:role/b/x", TenantID: "globex"}}},
	} {
		if _, err := awsiam.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestUsePrincipalsRemapsEvenRememberedIdentities(t *testing.T) {
	sts, clk, v, _ := setup(t, nil)
	signed := sign(t, sts.URL, ordersKey, serverID, clk.Now())
	if c, err := v.Verify(context.Background(), signed); err != nil || c.TenantID != "acme" {
		t.Fatalf("before: %+v, %v", c, err)
	}
	if _, err := awsiam.CompilePrincipals([]awsiam.Principal{{RoleARN: "arn:aws:iam::" + account + ":role/orders-api", TenantID: "acme", AnyTenant: true}}); err == nil {
		t.Fatal("an invalid entry was accepted")
	}
	use := func(ps []awsiam.Principal) {
		t.Helper()
		p, err := awsiam.CompilePrincipals(ps)
		if err != nil {
			t.Fatal(err)
		}
		v.UsePrincipals(p)
	}
	use([]awsiam.Principal{{RoleARN: "arn:aws:iam::" + account + ":role/orders-api", TenantID: "globex"}})
	if c, err := v.Verify(context.Background(), signed); err != nil || c.TenantID != "globex" {
		t.Fatalf("remembered identity after the reload: %+v, %v; want globex", c, err)
	}
	use(nil)
	if _, err := v.Verify(context.Background(), signed); !errors.Is(err, auth.ErrUnknownPrincipal) {
		t.Fatalf("remembered identity whose entry was removed: err = %v", err)
	}
	if len(sts.Received()) != 1 {
		t.Errorf("%d STS calls, want 1", len(sts.Received()))
	}
}
