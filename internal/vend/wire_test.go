package vend_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/policy"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
	"github.com/tokenvendor/tokenvendor/internal/vend"
)

func wireService(t *testing.T, srv *testsupport.STSServer, tags map[string]string, mutate ...func(*vend.Config)) *vend.Service {
	t.Helper()
	client := sts.New(sts.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(srv.URL),
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "service-secret", ""),
		RetryMaxAttempts: 1,
	})
	tenants, _ := policy.NewTenantRule("")
	tmpl, err := policy.Compile(policy.Spec{Profile: "objects", Policy: testsupport.Policy, Tags: tags}, tenants)
	if err != nil {
		t.Fatal(err)
	}
	cfg := vend.Config{
		Profiles: []vend.Profile{{Name: "objects", Role: testsupport.Role(t, tenants, "", ""), Duration: time.Hour, Template: tmpl}},
		Tenants:  tenants,
		STS:      client,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	s, err := vend.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSessionTagsReachSTSOnTheWire(t *testing.T) {
	srv := testsupport.NewSTSServer(t)
	s := wireService(t, srv, map[string]string{"TenantID": "{{ .TenantID }}", "Profile": "{{ .Profile }}", "Tier": "pool"})
	creds, err := s.Vend(context.Background(), auth.Caller{TenantID: "acme"}, vend.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if creds.AccessKeyID != "ASIAWIRE" || creds.SessionToken != "wire-token" {
		t.Fatalf("creds = %v", creds)
	}
	form := srv.Forms()[0]
	want := map[string]string{
		"Action":              "AssumeRole",
		"RoleArn":             "arn:aws:iam::123456789012:role/TenantData",
		"RoleSessionName":     "acme@objects",
		"DurationSeconds":     "3600",
		"Tags.member.1.Key":   "Profile",
		"Tags.member.1.Value": "objects",
		"Tags.member.2.Key":   "TenantID",
		"Tags.member.2.Value": "acme",
		"Tags.member.3.Key":   "Tier",
		"Tags.member.3.Value": "pool",
	}
	for k, v := range want {
		if got := form.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	for k := range form {
		if strings.HasPrefix(k, "TransitiveTagKeys") {
			t.Errorf("tags sent as transitive: %s", k)
		}
	}
	if form.Get("Policy") == "" {
		t.Error("no Policy sent")
	}
}

func TestSTSErrorsOnTheWireAreClassified(t *testing.T) {
	tests := []struct {
		status int
		code   string
		want   error
	}{
		{status: 400, code: "Throttling", want: vend.ErrUpstreamUnavailable},
		{status: 403, code: "AccessDenied", want: vend.ErrUpstream},
		{status: 400, code: "MalformedPolicyDocument", want: vend.ErrUpstream},
		{status: 400, code: "PackedPolicyTooLarge", want: vend.ErrUpstream},
		{status: 403, code: "RegionDisabledException", want: vend.ErrUpstream},
		{status: 500, code: "InternalFailure", want: vend.ErrUpstreamUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			srv := testsupport.NewSTSServer(t)
			srv.Refuse(tt.status, tt.code)
			_, err := wireService(t, srv, nil).Vend(context.Background(), auth.Caller{TenantID: "acme"}, vend.Request{})
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSessionNameTemplateAndSourceIdentityOnTheWire(t *testing.T) {
	srv := testsupport.NewSTSServer(t)
	namer, err := policy.NewSessionNamer("{{ .TenantID }}.{{ .Subject }}", true)
	if err != nil {
		t.Fatal(err)
	}
	s := wireService(t, srv, nil, func(c *vend.Config) { c.Sessions = namer })
	for _, subject := range []string{"system:serviceaccount:orders:api", "svc-billing"} {
		g, err := s.Vend(context.Background(), auth.Caller{Subject: subject, TenantID: "acme"}, vend.Request{})
		if err != nil {
			t.Fatal(err)
		}
		form := srv.Forms()[len(srv.Forms())-1]
		if got := form.Get("RoleSessionName"); got != g.SessionName || !strings.HasPrefix(got, "acme.") {
			t.Errorf("RoleSessionName = %q (grant says %q)", got, g.SessionName)
		}
		if got := form.Get("SourceIdentity"); got == "" || strings.Contains(got, ":") {
			t.Errorf("SourceIdentity = %q", got)
		}
	}
	if len(srv.Forms()) != 2 {
		t.Fatalf("%d AssumeRole calls, want one per caller: the session name makes credentials per caller", len(srv.Forms()))
	}
	if got := srv.Forms()[0].Get("SourceIdentity"); !strings.HasPrefix(got, "system-serviceaccount-orders-api-") {
		t.Errorf("SourceIdentity = %q", got)
	}
}

func TestPackedPolicySizeNearTheLimitIsLogged(t *testing.T) {
	srv := testsupport.NewSTSServer(t)
	srv.PackedPolicySize(95)
	var logs strings.Builder
	s := wireService(t, srv, nil, func(c *vend.Config) { c.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	if _, err := s.Vend(context.Background(), auth.Caller{TenantID: "acme"}, vend.Request{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"packed_policy_percent":95`) {
		t.Fatalf("no warning for a 95 %% packed policy:\n%s", logs.String())
	}
}
