package client_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/tokenvendor/tokenvendor/client"
	"github.com/tokenvendor/tokenvendor/wire"
)

// signedHost is the Host an AWSIAMToken signed its request for.
func signedHost(t *testing.T, cfg client.AWSIAMConfig) string {
	t.Helper()
	cfg.Credentials = credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")
	cfg.ServerID = "tokenvendor.test"
	source, err := client.AWSIAMToken(cfg)
	if err != nil {
		t.Fatal(err)
	}
	token, err := source(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	req, err := wire.DecodeAWSIAMRequest(strings.TrimPrefix(token, wire.SchemeAWSIAM+" "))
	if err != nil {
		t.Fatal(err)
	}
	return req.Headers["Host"]
}

func TestAWSIAMTokenSignsForTokenvendorsDefaultEndpoint(t *testing.T) {
	for _, tc := range []struct {
		region string
		fips   bool
		want   string
	}{
		{"us-east-2", false, "sts.us-east-2.amazonaws.com"},
		{"cn-north-1", false, "sts.cn-north-1.amazonaws.com.cn"},
		{"us-east-2", true, "sts-fips.us-east-2.amazonaws.com"},
		{"us-gov-west-1", true, "sts.us-gov-west-1.amazonaws.com"},
	} {
		if got := signedHost(t, client.AWSIAMConfig{Region: tc.region, FIPS: tc.fips, Now: time.Now}); got != tc.want {
			t.Errorf("%s (FIPS %v): signed for %s, want %s", tc.region, tc.fips, got, tc.want)
		}
	}
	_, err := client.AWSIAMToken(client.AWSIAMConfig{Region: "eu-west-1", FIPS: true, ServerID: "tv",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")})
	if err == nil || !strings.Contains(err.Error(), "no FIPS endpoint") {
		t.Errorf("FIPS in eu-west-1: %v, want a refusal", err)
	}
	_, err = client.AWSIAMToken(client.AWSIAMConfig{Region: "us-east-1", FIPS: true, STSEndpoint: "https://sts.example.com", ServerID: "tv",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")})
	if err == nil || !strings.Contains(err.Error(), "STSEndpoint and FIPS") {
		t.Errorf("FIPS beside an endpoint: %v, want a refusal", err)
	}
}

func TestTheNamesBeforeWireStillMeanWhatTheyDid(t *testing.T) {
	if client.TenantTokenHeader != "X-Tokenvendor-Tenant-Token" || client.ServerIDHeader != "X-Tokenvendor-Server-Id" || client.AWSIAMScheme != "AWS-IAM " {
		t.Errorf("TenantTokenHeader %q, ServerIDHeader %q, AWSIAMScheme %q", client.TenantTokenHeader, client.ServerIDHeader, client.AWSIAMScheme)
	}
	if got := client.AuthorizationHeader("t0k"); got != "Bearer t0k" {
		t.Errorf("AuthorizationHeader(t0k) = %q", got)
	}
	if got := client.AuthorizationHeader("AWS-IAM e30"); got != "AWS-IAM e30" {
		t.Errorf("AuthorizationHeader(AWS-IAM e30) = %q", got)
	}
}
