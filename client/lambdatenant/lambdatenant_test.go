package lambdatenant_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	awscreds "github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/tokenvendor/tokenvendor/client"
	"github.com/tokenvendor/tokenvendor/client/lambdatenant"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
	"github.com/tokenvendor/tokenvendor/wire"
)

// request is what the fake tokenvendor saw of one POST /credentials.
type request struct {
	authorization, tenantToken string
	hasTenantToken             bool
	profile, tenantID          string
}

// fakeVendor answers like tokenvendor: credentials for the tenant named in
// tenant_id (or answerFor, when set), living life; status refuses instead.
type fakeVendor struct {
	mu        sync.Mutex
	requests  []request
	life      time.Duration
	answerFor string
	status    int
}

func (f *fakeVendor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body wire.CredentialsRequest
	_ = json.NewDecoder(r.Body).Decode(&body)
	_, has := r.Header[http.CanonicalHeaderKey(wire.TenantTokenHeader)]
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, request{r.Header.Get("Authorization"), r.Header.Get(wire.TenantTokenHeader), has, body.Profile, body.TenantID})
	w.Header().Set("Content-Type", "application/json")
	if f.status != 0 {
		w.WriteHeader(f.status)
		_ = json.NewEncoder(w).Encode(wire.ErrorBody{Code: wire.CodeForbidden, Message: "refused by the fake"})
		return
	}
	tenant := body.TenantID
	if f.answerFor != "" {
		tenant = f.answerFor
	}
	life := f.life
	if life == 0 {
		life = time.Hour
	}
	_ = json.NewEncoder(w).Encode(wire.Credentials{
		ProcessCredentials: wire.ProcessCredentials{Version: wire.CredentialsVersion, AccessKeyID: fmt.Sprintf("ASIA-%s-%d", tenant, len(f.requests)),
			SecretAccessKey: "s", SessionToken: "t", Expiration: wire.Time{Time: time.Now().Add(life)}},
		TenantID: tenant, Profile: body.Profile,
	})
}

func (f *fakeVendor) seen() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.requests...)
}

func newVendor(t *testing.T, f *fakeVendor) *lambdatenant.Vendor {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return newVendorWith(t, lambdatenant.Config{URL: srv.URL})
}

// newVendorWith is a Vendor of profile objects signing as the test's
// execution role, reaching tokenvendor as cfg says.
func newVendorWith(t *testing.T, cfg lambdatenant.Config) *lambdatenant.Vendor {
	t.Helper()
	cfg.Profile = "objects"
	cfg.AWSIAM = client.AWSIAMConfig{
		Credentials: awscreds.NewStaticCredentialsProvider("ASIAEXECUTIONROLE", "role-secret", "role-session"),
		ServerID:    "tokenvendor.test", Region: "us-east-1",
	}
	v, err := lambdatenant.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// invoke is the context of an invoke for tenant, as aws-lambda-go builds it.
func invoke(tenant string) context.Context {
	return lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: "req", TenantID: tenant})
}

// retrieve is an invoke's Credentials and one Retrieve of them.
func retrieve(v *lambdatenant.Vendor, tenant, token string) (aws.Credentials, error) {
	p, err := v.Credentials(invoke(tenant), token)
	if err != nil {
		return aws.Credentials{}, err
	}
	return p.Retrieve(invoke(tenant))
}

func TestCredentialsSendTheFunctionsSignatureTheTenantTokenAndTheInvokesTenant(t *testing.T) {
	f := &fakeVendor{}
	v := newVendor(t, f)
	creds, err := retrieve(v, "acme", "jwt-of-acmes-user")
	if err != nil {
		t.Fatal(err)
	}
	if creds.AccessKeyID != "ASIA-acme-1" {
		t.Fatalf("credentials %s, want acme's", creds.AccessKeyID)
	}
	r := f.seen()[0]
	if !strings.HasPrefix(r.authorization, wire.SchemeAWSIAM+" ") {
		t.Errorf("Authorization %.20q…, want the function's signed GetCallerIdentity", r.authorization)
	}
	if r.tenantToken != "jwt-of-acmes-user" || r.tenantID != "acme" || r.profile != "objects" {
		t.Errorf("request %+v: want the tenant token in %s, tenant_id acme, profile objects", r, wire.TenantTokenHeader)
	}
}

func TestManyInvokesOneRequest(t *testing.T) {
	f := &fakeVendor{}
	v := newVendor(t, f)
	first, err := v.Credentials(invoke("acme"), "jwt-0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := v.Credentials(invoke("acme"), fmt.Sprint("jwt-", i))
			if err != nil || p != first {
				t.Errorf("invoke %d: %v, same provider %v", i, err, p == first)
				return
			}
			if creds, err := p.Retrieve(context.Background()); err != nil || creds.AccessKeyID != "ASIA-acme-1" {
				t.Errorf("invoke %d: %s, %v", i, creds.AccessKeyID, err)
			}
		}()
	}
	wg.Wait()
	if n := len(f.seen()); n != 1 {
		t.Fatalf("%d requests to tokenvendor for 20 invokes, want 1", n)
	}
}

func TestTheTripwireFailsClosed(t *testing.T) {
	t.Run("no tenant id", func(t *testing.T) {
		f := &fakeVendor{}
		v := newVendor(t, f)
		for name, ctx := range map[string]context.Context{"outside an invoke": context.Background(), "an empty tenant id": invoke("")} {
			if _, err := v.Credentials(ctx, "jwt"); !errors.Is(err, lambdatenant.ErrNoTenant) {
				t.Errorf("%s: err = %v, want ErrNoTenant", name, err)
			}
		}
		// Refused, but nothing was pinned: the environment's tenant is
		// still the first that names one.
		if _, err := retrieve(v, "acme", "jwt"); err != nil {
			t.Fatalf("acme after invokes without a tenant: %v", err)
		}
		if _, err := v.Credentials(invoke(""), "jwt"); !errors.Is(err, lambdatenant.ErrNoTenant) {
			t.Errorf("an empty tenant id once pinned: err = %v, want ErrNoTenant", err)
		}
	})

	t.Run("a second tenant trips the process for good", func(t *testing.T) {
		f := &fakeVendor{}
		v := newVendor(t, f)
		handedOut, err := v.Credentials(invoke("acme"), "jwt-acme")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := handedOut.Retrieve(context.Background()); err != nil {
			t.Fatal(err)
		}
		_, err = v.Credentials(invoke("globex"), "jwt-globex")
		if !errors.Is(err, lambdatenant.ErrTripped) || !strings.Contains(err.Error(), `"acme"`) || !strings.Contains(err.Error(), `"globex"`) {
			t.Fatalf("globex in acme's environment: err = %v, want ErrTripped naming both", err)
		}
		if strings.Contains(err.Error(), "jwt-") {
			t.Fatalf("the error shows a token: %v", err)
		}
		for _, tenant := range []string{"acme", "globex", "initech"} {
			if _, err := v.Credentials(invoke(tenant), "jwt-"+tenant); !errors.Is(err, lambdatenant.ErrTripped) {
				t.Errorf("%s after the trip: err = %v, want ErrTripped", tenant, err)
			}
		}
		// The provider an earlier invoke holds stops too, cached
		// credentials and all.
		if creds, err := handedOut.Retrieve(context.Background()); !errors.Is(err, lambdatenant.ErrTripped) {
			t.Errorf("acme's provider after the trip: %s, %v; want ErrTripped", creds.AccessKeyID, err)
		}
		if n := len(f.seen()); n != 1 {
			t.Errorf("%d requests to tokenvendor, want acme's first only", n)
		}
	})
}

func TestAnAnswerForAnotherTenantIsRefused(t *testing.T) {
	v := newVendor(t, &fakeVendor{answerFor: "globex"})
	creds, err := retrieve(v, "acme", "jwt")
	var e *client.Error
	if !errors.As(err, &e) || e.Code != "tenant_mismatch" || creds.HasKeys() {
		t.Fatalf("asked for acme, answered for globex: %s, %v; want tenant_mismatch", creds.AccessKeyID, err)
	}
}

func TestARefreshSendsTheNewestToken(t *testing.T) {
	// Two-minute credentials: refreshed once half their life is gone. The
	// bubble's clock moves only when every goroutine waits, so the test
	// sleeps through that minute at once.
	synctest.Test(t, func(t *testing.T) {
		f := &fakeVendor{life: 2 * time.Minute}
		v := newVendorWith(t, lambdatenant.Config{URL: "https://tokenvendor.test", HTTPClient: testsupport.HandlerClient(f)})
		if _, err := retrieve(v, "acme", "jwt-1"); err != nil {
			t.Fatal(err)
		}
		p, err := v.Credentials(invoke("acme"), "jwt-2") // served from the cache
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Retrieve(invoke("acme")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		creds, err := p.Retrieve(invoke("acme")) // an AWS client of that invoke, later: refreshed with the newest token
		if err != nil || creds.AccessKeyID != "ASIA-acme-2" {
			t.Fatalf("past half their life: %s, %v; want fresh credentials", creds.AccessKeyID, err)
		}
		seen := f.seen()
		if len(seen) != 2 || seen[0].tenantToken != "jwt-1" || seen[1].tenantToken != "jwt-2" {
			t.Fatalf("requests %+v: want jwt-1, then the newest, jwt-2", seen)
		}
	})
}

func TestAnInvokeWithoutATokenGetsNothing(t *testing.T) {
	f := &fakeVendor{}
	v := newVendor(t, f)
	if _, err := retrieve(v, "acme", "jwt-of-acmes-user"); err != nil {
		t.Fatal(err)
	}
	// Warm: the credentials are cached, and still an invoke without a
	// token is refused, and not tripped.
	if _, err := v.Credentials(invoke("acme"), ""); !errors.Is(err, lambdatenant.ErrNoTenantToken) {
		t.Fatalf("err = %v, want ErrNoTenantToken", err)
	}
	if _, err := retrieve(v, "acme", "jwt-of-acmes-user"); err != nil {
		t.Fatalf("an invoke without a token tripped the process: %v", err)
	}
	if n := len(f.seen()); n != 1 {
		t.Fatalf("%d requests to tokenvendor, want the first one only", n)
	}
}

func TestNewRefuses(t *testing.T) {
	good := lambdatenant.Config{URL: "https://tokenvendor.example", AWSIAM: client.AWSIAMConfig{
		Credentials: awscreds.NewStaticCredentialsProvider("k", "s", ""), ServerID: "tv", Region: "us-east-1"}}
	if _, err := lambdatenant.New(good); err != nil {
		t.Fatalf("a valid config: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*lambdatenant.Config)
	}{
		{"no execution role credentials", func(c *lambdatenant.Config) { c.AWSIAM.Credentials = nil }},
		{"no server id", func(c *lambdatenant.Config) { c.AWSIAM.ServerID = "" }},
		{"plain http beyond loopback", func(c *lambdatenant.Config) { c.URL = "http://tokenvendor.example" }},
	} {
		cfg := good
		tc.mutate(&cfg)
		if _, err := lambdatenant.New(cfg); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    string
	}{
		{"REST API", map[string]string{"Authorization": "Bearer eyJ.a.b"}, "eyJ.a.b"},
		{"HTTP API, lower case", map[string]string{"authorization": "bearer  eyJ.a.b "}, "eyJ.a.b"},
		{"another scheme", map[string]string{"Authorization": "Basic dXNlcjpwdw=="}, ""},
		{"no scheme", map[string]string{"Authorization": "eyJ.a.b"}, ""},
		{"none", map[string]string{"Host": "api.example"}, ""},
		{"no headers", nil, ""},
	} {
		if got := lambdatenant.BearerToken(tc.headers); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
