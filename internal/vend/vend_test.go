package vend_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/cache"
	"github.com/tokenvendor/tokenvendor/internal/clock"
	"github.com/tokenvendor/tokenvendor/internal/limit"
	"github.com/tokenvendor/tokenvendor/internal/metrictest"
	"github.com/tokenvendor/tokenvendor/internal/policy"
	"github.com/tokenvendor/tokenvendor/internal/tenants"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
	"github.com/tokenvendor/tokenvendor/internal/vend"
)

// failingSTS fails every call with err.
func failingSTS(err error) *testsupport.FakeSTS {
	f := &testsupport.FakeSTS{}
	f.Fail(err)
	return f
}

// lastInput is the last AssumeRole fake received.
func lastInput(fake *testsupport.FakeSTS) *sts.AssumeRoleInput {
	in := fake.Inputs()
	return in[len(in)-1]
}

func newService(t *testing.T, fake *testsupport.FakeSTS, mutate func(*vend.Config)) *vend.Service {
	t.Helper()
	tenants, err := policy.NewTenantRule("")
	if err != nil {
		t.Fatal(err)
	}
	profile := func(name string) vend.Profile {
		tmpl, err := policy.Compile(policy.Spec{Profile: name, Policy: testsupport.Policy, Tags: map[string]string{"TenantID": "{{ .TenantID }}"}}, tenants)
		if err != nil {
			t.Fatal(err)
		}
		return vend.Profile{Name: name, Role: testsupport.Role(t, tenants, "", ""), Duration: time.Hour, Template: tmpl}
	}
	now := time.Now
	fake.Now = now
	cfg := vend.Config{
		Profiles:      []vend.Profile{profile("objects")},
		Tenants:       tenants,
		OverrideScope: "tokenvendor:any-tenant",
		STS:           fake,
		Now:           now,
	}
	if mutate != nil {
		mutate(&cfg)
		for i, p := range cfg.Profiles {
			if p.Template == nil {
				cfg.Profiles[i] = profile(p.Name)
			}
		}
	}
	fake.Now = cfg.Now
	s, err := vend.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVendSendsTheRenderedInputs(t *testing.T) {
	fake := &testsupport.FakeSTS{}
	s := newService(t, fake, func(c *vend.Config) { c.Profiles[0].Role = testsupport.Role(t, c.Tenants, "", "ext-123") })
	creds, err := s.Vend(context.Background(), auth.Caller{Subject: "svc", TenantID: "acme"}, vend.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if creds.TenantID != "acme" || creds.Profile != "objects" || creds.AccessKeyID == "" {
		t.Fatalf("creds = %v", creds)
	}
	in := fake.Inputs()[0]
	want := `{"Statement":[{"Action":"s3:GetObject","Effect":"Allow","Resource":"arn:aws:s3:::data/acme/*"}],"Version":"2012-10-17"}`
	if got := aws.ToString(in.Policy); got != want {
		t.Errorf("Policy = %s\nwant %s", got, want)
	}
	if aws.ToString(in.RoleArn) != "arn:aws:iam::123456789012:role/TenantData" || aws.ToString(in.RoleSessionName) != "acme@objects" ||
		aws.ToInt32(in.DurationSeconds) != 3600 || aws.ToString(in.ExternalId) != "ext-123" {
		t.Errorf("input = %+v", in)
	}
	if len(in.Tags) != 1 || aws.ToString(in.Tags[0].Key) != "TenantID" || aws.ToString(in.Tags[0].Value) != "acme" || len(in.TransitiveTagKeys) != 0 {
		t.Errorf("tags = %+v transitive = %v", in.Tags, in.TransitiveTagKeys)
	}
}

func TestVendCachesPerTenantNotPerCaller(t *testing.T) {
	fake := &testsupport.FakeSTS{}
	s := newService(t, fake, func(c *vend.Config) { c.Profiles = append(c.Profiles, vend.Profile{Name: "other"}) })
	ctx := context.Background()
	get := func(caller auth.Caller, req vend.Request) vend.Credentials {
		t.Helper()
		if req.Profile == "" {
			req.Profile = "objects"
		}
		c, err := s.Vend(ctx, caller, req)
		if err != nil {
			t.Fatal(err)
		}
		return c.Credentials
	}
	a1 := get(auth.Caller{Subject: "svc-1", TenantID: "acme"}, vend.Request{})
	a2 := get(auth.Caller{Subject: "svc-2", TenantID: "acme"}, vend.Request{})
	b := get(auth.Caller{Subject: "svc-1", TenantID: "globex"}, vend.Request{})
	aOther := get(auth.Caller{Subject: "svc-1", TenantID: "acme"}, vend.Request{Profile: "other"})

	if a1.AccessKeyID != a2.AccessKeyID {
		t.Error("two callers of one tenant got different credentials")
	}
	if b.AccessKeyID == a1.AccessKeyID || b.TenantID != "globex" {
		t.Error("tenant globex got acme's credentials")
	}
	if aOther.AccessKeyID == a1.AccessKeyID {
		t.Error("two profiles share credentials")
	}
	if fake.Calls() != 3 {
		t.Errorf("STS calls = %d, want 3", fake.Calls())
	}
}

func TestVendDecidesTheTenant(t *testing.T) {
	tests := []struct {
		name       string
		caller     auth.Caller
		req        vend.Request
		wantErr    error
		wantTenant string
	}{
		{name: "own tenant", caller: auth.Caller{TenantID: "acme"}, wantTenant: "acme"},
		{name: "own tenant named", caller: auth.Caller{TenantID: "acme"}, req: vend.Request{TenantID: "acme"}, wantTenant: "acme"},
		{name: "another tenant without the scope", caller: auth.Caller{TenantID: "acme"}, req: vend.Request{TenantID: "globex"}, wantErr: vend.ErrForbidden},
		{name: "another tenant with the scope", caller: auth.Caller{TenantID: "acme", Scopes: []string{"tokenvendor:any-tenant"}}, req: vend.Request{TenantID: "globex"}, wantTenant: "globex"},
		{name: "worker without tenant claim", caller: auth.Caller{Scopes: []string{"tokenvendor:any-tenant"}}, req: vend.Request{TenantID: "globex"}, wantTenant: "globex"},
		{name: "no tenant claim", caller: auth.Caller{}, wantErr: vend.ErrForbidden},
		{name: "wildcard claim", caller: auth.Caller{TenantID: "*"}, wantErr: vend.ErrInvalidTenant},
		{name: "wildcard requested by a worker", caller: auth.Caller{Scopes: []string{"tokenvendor:any-tenant"}}, req: vend.Request{TenantID: "acme/*"}, wantErr: vend.ErrInvalidTenant},
		{name: "unknown profile", caller: auth.Caller{TenantID: "acme"}, req: vend.Request{Profile: "nope"}, wantErr: vend.ErrUnknownProfile},
		{name: "AWS principal of any tenant", caller: auth.Caller{Issuer: auth.IssuerAWSIAM, AnyTenant: true}, req: vend.Request{TenantID: "globex"}, wantTenant: "globex"},
		{name: "AWS principal of any tenant naming none", caller: auth.Caller{Issuer: auth.IssuerAWSIAM, AnyTenant: true}, wantErr: vend.ErrForbidden},
		{name: "AWS principal of one tenant naming another", caller: auth.Caller{Issuer: auth.IssuerAWSIAM, TenantID: "acme"}, req: vend.Request{TenantID: "globex"}, wantErr: vend.ErrForbidden},
		{name: "any tenant still checked", caller: auth.Caller{AnyTenant: true}, req: vend.Request{TenantID: "${aws:username}"}, wantErr: vend.ErrInvalidTenant},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &testsupport.FakeSTS{}
			s := newService(t, fake, nil)
			creds, err := s.Vend(context.Background(), tt.caller, tt.req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if fake.Calls() != 0 {
					t.Fatal("a refused request reached STS")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if creds.TenantID != tt.wantTenant {
				t.Fatalf("tenant = %q, want %q", creds.TenantID, tt.wantTenant)
			}
		})
	}
}

func TestVendNeedsAProfileNameWhenSeveralAreConfigured(t *testing.T) {
	s := newService(t, &testsupport.FakeSTS{}, func(c *vend.Config) { c.Profiles = append(c.Profiles, vend.Profile{Name: "other"}) })
	_, err := s.Vend(context.Background(), auth.Caller{TenantID: "acme"}, vend.Request{})
	if !errors.Is(err, vend.ErrInvalidRequest) {
		t.Fatalf("err = %v", err)
	}
}

func TestVendClassifiesSTSFailures(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error
	}{
		{name: "throttling", err: &smithy.GenericAPIError{Code: "Throttling", Message: "Rate exceeded"}, want: vend.ErrUpstreamUnavailable},
		{name: "request limit", err: &smithy.GenericAPIError{Code: "RequestLimitExceeded"}, want: vend.ErrUpstreamUnavailable},
		{name: "access denied", err: &smithy.GenericAPIError{Code: "AccessDenied", Message: "not authorized"}, want: vend.ErrUpstream},
		{name: "malformed policy", err: &smithy.GenericAPIError{Code: "MalformedPolicyDocument"}, want: vend.ErrUpstream},
		{name: "packed policy too large", err: &smithy.GenericAPIError{Code: "PackedPolicyTooLarge"}, want: vend.ErrUpstream},
		{name: "the service's own token expired", err: &smithy.GenericAPIError{Code: "ExpiredToken"}, want: vend.ErrUpstreamUnavailable},
		{name: "the service's own signature refused", err: &smithy.GenericAPIError{Code: "SignatureDoesNotMatch"}, want: vend.ErrUpstreamUnavailable},
		{name: "connection refused", err: errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), want: vend.ErrUpstreamUnavailable},
		{name: "timeout", err: context.DeadlineExceeded, want: vend.ErrUpstreamUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newService(t, failingSTS(tt.err), nil)
			_, err := s.Vend(context.Background(), auth.Caller{TenantID: "acme"}, vend.Request{})
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCredentialsNeverPrintTheirSecrets(t *testing.T) {
	c := vend.Credentials{AccessKeyID: "ASIAEXAMPLE", SecretAccessKey: "very-secret-key", SessionToken: "very-secret-token", TenantID: "acme"}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("vended", "creds", c)
	for _, out := range []string{buf.String(), fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c)} {
		if strings.Contains(out, "very-secret") {
			t.Fatalf("secret printed: %s", out)
		}
		if !strings.Contains(out, "ASIAEXAMPLE") {
			t.Fatalf("access key id missing: %s", out)
		}
	}
}

func TestThrottledRefreshServesStaleCredentialsAndCountsThem(t *testing.T) {
	clk := clock.NewFake(time.Now())
	reg := prometheus.NewRegistry()
	fake := &testsupport.FakeSTS{}
	s := newService(t, fake, func(c *vend.Config) { c.Now = clk.Now; c.Registerer = reg })
	caller := auth.Caller{TenantID: "acme"}
	first, err := s.Vend(context.Background(), caller, vend.Request{})
	if err != nil {
		t.Fatal(err)
	}
	fake.Fail(&smithy.GenericAPIError{Code: "Throttling"})
	clk.Add(50 * time.Minute)
	stale, err := s.Vend(context.Background(), caller, vend.Request{})
	if err != nil || stale.AccessKeyID != first.AccessKeyID {
		t.Fatalf("throttled refresh: %v %v, want the cached credentials", stale, err)
	}
	if got := metrictest.Counter(t, reg, "tokenvendor_cache_requests_total", "result", "stale"); got != 1 {
		t.Errorf("cache_requests_total{result=stale} = %v, want 1", got)
	}
	if got := metrictest.Counter(t, reg, "tokenvendor_sts_requests_total", "outcome", "throttled"); got != 1 {
		t.Errorf("sts_requests_total{outcome=throttled} = %v, want 1", got)
	}
}

func TestAccessDeniedOnRefreshEvictsTheCredentials(t *testing.T) {
	clk := clock.NewFake(time.Now())
	fake := &testsupport.FakeSTS{}
	s := newService(t, fake, func(c *vend.Config) { c.Now = clk.Now })
	caller := auth.Caller{TenantID: "acme"}
	if _, err := s.Vend(context.Background(), caller, vend.Request{}); err != nil {
		t.Fatal(err)
	}
	fake.Fail(&smithy.GenericAPIError{Code: "AccessDenied"})
	clk.Add(50 * time.Minute)
	if _, err := s.Vend(context.Background(), caller, vend.Request{}); !errors.Is(err, vend.ErrUpstream) {
		t.Fatalf("err = %v, want ErrUpstream", err)
	}
	calls := fake.Calls()
	if _, err := s.Vend(context.Background(), caller, vend.Request{}); !errors.Is(err, vend.ErrUpstream) {
		t.Fatalf("second call: err = %v", err)
	}
	if fake.Calls() != calls {
		t.Error("a negative-cached refusal reached STS again at once")
	}
}

func TestRoleChainingClampsTheDuration(t *testing.T) {
	fake := &testsupport.FakeSTS{}
	s := newService(t, fake, func(c *vend.Config) {
		c.Profiles[0].Duration = 4 * time.Hour
		c.MaxDuration = time.Hour
	})
	if _, err := s.Vend(context.Background(), auth.Caller{TenantID: "acme"}, vend.Request{}); err != nil {
		t.Fatal(err)
	}
	if got := aws.ToInt32(fake.Inputs()[0].DurationSeconds); got != 3600 {
		t.Fatalf("DurationSeconds = %d, want 3600 under role chaining", got)
	}
}

func TestUpdateReplacesTheRulesAndKeepsThemWhenInvalid(t *testing.T) {
	fake := &testsupport.FakeSTS{}
	s := newService(t, fake, nil)
	caller := auth.Caller{TenantID: "acme"}
	before, err := s.Vend(context.Background(), caller, vend.Request{})
	if err != nil {
		t.Fatal(err)
	}
	tenants, _ := policy.NewTenantRule("")
	wider, err := policy.Compile(policy.Spec{Profile: "objects", Policy: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::data/{{ .TenantID }}/*"}]}`}, tenants)
	if err != nil {
		t.Fatal(err)
	}
	p := vend.Profile{Name: "objects", Role: testsupport.Role(t, tenants, "", ""), Duration: time.Hour, Template: wider}
	if err := s.Update([]vend.Profile{p, p}, tenants, ""); err == nil {
		t.Fatal("a duplicate profile was accepted")
	}
	if again, _ := s.Vend(context.Background(), caller, vend.Request{}); again.AccessKeyID != before.AccessKeyID {
		t.Fatal("a refused update changed the rules")
	}
	if err := s.Update([]vend.Profile{p}, tenants, ""); err != nil {
		t.Fatal(err)
	}
	after, err := s.Vend(context.Background(), caller, vend.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if after.AccessKeyID == before.AccessKeyID {
		t.Fatal("credentials of the old policy served after the policy changed")
	}
	if !strings.Contains(aws.ToString(lastInput(fake).Policy), "s3:PutObject") {
		t.Error("the new policy was not sent")
	}
}

// directory is a tenant directory in memory: tenants it does not list
// are unknown.
type directory map[string]tenants.Standing

func (d directory) Standing(id string) tenants.Standing {
	if st, ok := d[id]; ok {
		return st
	}
	return tenants.Unknown
}

func (d directory) Attributes(string) map[string]string { return nil }

// silos is a directory of active tenants with attributes.
type silos map[string]map[string]string

func (silos) Standing(string) tenants.Standing         { return tenants.Active }
func (s silos) Attributes(id string) map[string]string { return s[id] }

func TestSiloTenantsAssumeTheirOwnRoleAndATenantNotSetUpIsRefusedBeforeSTS(t *testing.T) {
	fake := &testsupport.FakeSTS{}
	s := newService(t, fake, func(c *vend.Config) {
		c.Directory = silos{"acme": {"account_id": "222233334444"}, "globex": {"account_id": "555566667777"}, "initech": {"tier": "premium"}, "short": {"account_id": "2222"}}
		c.Profiles[0].Role = testsupport.Role(t, c.Tenants, `arn:aws:iam::{{ .Attr "account_id" }}:role/TenantAccess`, "")
	})
	for tenant, account := range map[string]string{"acme": "222233334444", "globex": "555566667777"} {
		if _, err := s.Vend(context.Background(), auth.Caller{Subject: "svc", TenantID: tenant}, vend.Request{}); err != nil {
			t.Fatalf("%s: %v", tenant, err)
		}
		in := lastInput(fake)
		if got, want := aws.ToString(in.RoleArn), "arn:aws:iam::"+account+":role/TenantAccess"; got != want {
			t.Errorf("%s assumed %s, want %s", tenant, got, want)
		}
	}
	for tenant, want := range map[string]string{"initech": `lacks the attribute "account_id"`, "short": "12 digits"} {
		_, err := s.Vend(context.Background(), auth.Caller{Subject: "svc", TenantID: tenant}, vend.Request{})
		if !errors.Is(err, vend.ErrForbidden) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want ErrForbidden saying %q", tenant, err, want)
		}
	}
	if len(fake.Inputs()) != 2 {
		t.Errorf("%d AssumeRole calls, want 2: a tenant not set up must never reach STS", len(fake.Inputs()))
	}
}

func TestTenantsTheDirectoryDoesNotAdmitAreRefusedWithTheirReasonAndNeverReachSTS(t *testing.T) {
	reg := prometheus.NewRegistry()
	dir := directory{"acme": tenants.Active, "globex": tenants.Suspended, "initech": tenants.Unsettled}
	fake := &testsupport.FakeSTS{}
	s := newService(t, fake, func(c *vend.Config) { c.Directory = dir; c.Registerer = reg })
	worker := auth.Caller{Subject: "worker", Scopes: []string{"tokenvendor:any-tenant"}}
	for _, tc := range []struct {
		name    string
		caller  auth.Caller
		tenant  string
		want    error
		refusal string
		message string
	}{
		{name: "known and active", caller: auth.Caller{TenantID: "acme"}},
		{name: "unknown", caller: auth.Caller{TenantID: "umbrella"}, want: vend.ErrForbidden, refusal: vend.RefusedUnknown, message: "not in the registry"},
		{name: "a worker asking for an unknown tenant", caller: worker, tenant: "umbrella", want: vend.ErrForbidden, refusal: vend.RefusedUnknown},
		{name: "suspended", caller: auth.Caller{TenantID: "globex"}, want: vend.ErrForbidden, refusal: vend.RefusedSuspended, message: "tenant suspended"},
		{name: "changed, the store cannot say how yet", caller: auth.Caller{TenantID: "initech"}, want: vend.ErrUpstreamUnavailable},
		{name: "another tenant without the override", caller: auth.Caller{TenantID: "acme"}, tenant: "globex", want: vend.ErrForbidden, refusal: vend.RefusedOtherTenant},
		{name: "outside the pattern", caller: worker, tenant: "acme/*", want: vend.ErrInvalidTenant, refusal: vend.RefusedInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := s.Vend(context.Background(), tc.caller, vend.Request{TenantID: tc.tenant})
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("err = %v, want %v (%q)", err, tc.want, tc.message)
			}
			if g.Refusal != tc.refusal || vend.Refusal(err) != tc.refusal {
				t.Fatalf("refusal = %q (grant %q), want %q", vend.Refusal(err), g.Refusal, tc.refusal)
			}
		})
	}
	if fake.Calls() != 1 {
		t.Fatalf("STS calls = %d, want 1: a refused tenant reached STS", fake.Calls())
	}
	for reason, want := range map[string]float64{vend.RefusedUnknown: 2, vend.RefusedSuspended: 1, vend.RefusedOtherTenant: 1, vend.RefusedInvalid: 1} {
		if got := metrictest.Counter(t, reg, "tokenvendor_tenant_refusals_total", "reason", reason); got != want {
			t.Errorf("tokenvendor_tenant_refusals_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}

func TestForgetDropsATenantsCredentialsInEveryProfile(t *testing.T) {
	fake := &testsupport.FakeSTS{}
	s := newService(t, fake, func(c *vend.Config) { c.Profiles = []vend.Profile{{Name: "objects"}, {Name: "reports"}} })
	for range 2 {
		for _, profile := range []string{"objects", "reports"} {
			for _, tenant := range []string{"acme", "globex"} {
				if _, err := s.Vend(context.Background(), auth.Caller{TenantID: tenant}, vend.Request{Profile: profile}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if fake.Calls() != 4 {
			t.Fatalf("STS calls = %d, want 4", fake.Calls())
		}
	}
	s.Forget("acme")
	for _, profile := range []string{"objects", "reports"} {
		for _, tenant := range []string{"acme", "globex"} {
			s.Vend(context.Background(), auth.Caller{TenantID: tenant}, vend.Request{Profile: profile})
		}
	}
	if fake.Calls() != 6 {
		t.Fatalf("STS calls = %d after forgetting acme, want 6: acme fetched anew in both profiles, globex not", fake.Calls())
	}
}

func TestADurationTheCacheCannotServeIsRefusedAfterTheClamp(t *testing.T) {
	tenants, _ := policy.NewTenantRule("")
	tmpl, err := policy.Compile(policy.Spec{Profile: "objects", Policy: testsupport.Policy}, tenants)
	if err != nil {
		t.Fatal(err)
	}
	_, err = vend.New(vend.Config{
		Profiles:    []vend.Profile{{Name: "objects", Role: testsupport.Role(t, tenants, "", ""), Duration: 12 * time.Hour, Template: tmpl}},
		Tenants:     tenants,
		STS:         &testsupport.FakeSTS{},
		MaxDuration: time.Hour, // role chaining
		Cache:       cache.Config{MinRemaining: 2 * time.Hour},
	})
	if err == nil || !strings.Contains(err.Error(), "profile objects") {
		t.Fatalf("err = %v: 1h credentials with a 2h minimum remaining life were accepted", err)
	}
}

// keyLimiter records the keys it is asked about and allows one request a key.
type keyLimiter struct {
	mu   sync.Mutex
	keys map[string]int
}

func (l *keyLimiter) Allow(_ context.Context, key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keys[key]++
	return l.keys[key] == 1, time.Second
}

func TestCallerBudgetIsPerIssuerSubjectAndClient(t *testing.T) {
	limiter := &keyLimiter{keys: map[string]int{}}
	s := newService(t, &testsupport.FakeSTS{}, func(c *vend.Config) { c.CallerLimit = limiter })
	callers := []auth.Caller{
		{Issuer: "https://idp-a/", Subject: "svc", TenantID: "acme"},
		{Issuer: "https://idp-b/", Subject: "svc", TenantID: "acme"},
		{Issuer: "https://idp-b/", Subject: "svc", ClientID: "orders", TenantID: "acme"},
		{Issuer: auth.IssuerAWSIAM, Subject: "svc", TenantID: "acme"},
	}
	for _, c := range callers {
		if _, err := s.Vend(context.Background(), c, vend.Request{}); err != nil {
			t.Errorf("%+v: first request: %v", c, err)
		}
	}
	if _, err := s.Vend(context.Background(), callers[1], vend.Request{}); !errors.Is(err, vend.ErrRateLimited) {
		t.Errorf("second request of one caller: err = %v, want ErrRateLimited", err)
	}
	if len(limiter.keys) != len(callers) {
		t.Errorf("%d callers used %d budgets: %v", len(callers), len(limiter.keys), limiter.keys)
	}
}

func TestSTSBudgetPutsRefreshesOffAndMakesCallersTakeTurns(t *testing.T) {
	clk := clock.NewFake(time.Now())
	reg := prometheus.NewRegistry()
	pace, err := limit.NewPace(10, 2, clk.Now) // a turn every 100 ms, bursts of 2, refreshes leave 1
	if err != nil {
		t.Fatal(err)
	}
	fake := &testsupport.FakeSTS{}
	s := newService(t, fake, func(c *vend.Config) { c.Now = clk.Now; c.Registerer = reg; c.Budget = pace })
	vendFor := func(tenant string) (vend.Grant, error) {
		return s.Vend(context.Background(), auth.Caller{Subject: "svc", TenantID: tenant}, vend.Request{})
	}
	for _, tenant := range []string{"acme", "globex"} {
		if _, err := vendFor(tenant); err != nil {
			t.Fatal(err)
		}
	}
	// The burst is spent: a third tenant's caller waits its turn (100 ms
	// on the budget's clock, slept for real) and gets its credentials.
	if _, err := vendFor("initech"); err != nil {
		t.Fatalf("a caller waiting its turn: %v", err)
	}
	if got := metrictest.Counter(t, reg, "tokenvendor_sts_budget_waits_total", "kind", "miss"); got != 1 {
		t.Fatalf("miss waits = %v, want 1", got)
	}
	// Half an hour on, acme is due for a refresh ahead; with callers' turns
	// taken up to now it is put off, and acme is served what it holds.
	clk.Add(31 * time.Minute)
	for range 3 {
		pace.Take(context.Background(), false, time.Hour)
	}
	g, err := vendFor("acme")
	s.Wait()
	if err != nil || g.Cache != cache.Hit {
		t.Fatalf("acme while its refresh waits for a spare turn: %s, %v; want a hit", g.Cache, err)
	}
	if fake.Calls() != 3 {
		t.Fatalf("AssumeRole calls = %d, want 3: the refresh went ahead without a spare turn", fake.Calls())
	}
	if got := metrictest.Counter(t, reg, "tokenvendor_sts_budget_waits_total", "kind", "refresh"); got != 1 {
		t.Fatalf("refresh waits = %v, want 1", got)
	}
	// With the budget rested, the next hit's refresh goes ahead.
	clk.Add(2 * time.Second)
	if _, err := vendFor("acme"); err != nil {
		t.Fatal(err)
	}
	s.Wait()
	if fake.Calls() != 4 {
		t.Fatalf("AssumeRole calls = %d, want 4: the refresh put off never ran", fake.Calls())
	}
}
