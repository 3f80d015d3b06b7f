package server

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/tokenvendor/tokenvendor/internal/config"
)

// TestSTSClientHonoursOrRefusesTheSDKsEnvironment loads the AWS SDK's
// configuration from the environment as serve does: what it asks for is
// applied or refused at start-up, never dropped.
func TestSTSClientHonoursOrRefusesTheSDKsEnvironment(t *testing.T) {
	useast1 := config.STS{Region: "us-east-1", URL: "https://sts.us-east-1.amazonaws.com"}
	fips := config.STS{Region: "us-east-1", FIPS: true, URL: "https://sts-fips.us-east-1.amazonaws.com"}
	named := config.STS{Region: "us-east-1", Endpoint: "http://127.0.0.1:9000", URL: "http://127.0.0.1:9000"}
	for _, tc := range []struct {
		name     string
		env      map[string]string
		sts      config.STS
		endpoint string // "" when refused
		refusal  string
	}{
		{name: "nothing set", sts: useast1, endpoint: useast1.URL},
		{name: "sts.fips", sts: fips, endpoint: fips.URL},
		{name: "the SDK asks for FIPS, sts.fips too", env: map[string]string{"AWS_USE_FIPS_ENDPOINT": "true"}, sts: fips, endpoint: fips.URL},
		{name: "the SDK asks for FIPS alone", env: map[string]string{"AWS_USE_FIPS_ENDPOINT": "true"}, sts: useast1, refusal: "set sts.fips: true"},
		{name: "the SDK asks for dual stack", env: map[string]string{"AWS_USE_DUALSTACK_ENDPOINT": "true"}, sts: useast1, refusal: "dual-stack"},
		{name: "the SDK names an endpoint", env: map[string]string{"AWS_ENDPOINT_URL_STS": "http://127.0.0.1:4566"}, sts: useast1, endpoint: "http://127.0.0.1:4566"},
		{name: "sts.endpoint over the SDK's", env: map[string]string{"AWS_ENDPOINT_URL_STS": "http://127.0.0.1:4566"}, sts: named, endpoint: named.URL},
		{name: "the SDK's endpoint beside sts.fips", env: map[string]string{"AWS_ENDPOINT_URL_STS": "http://127.0.0.1:4566"}, sts: fips, refusal: "beside sts.fips"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"} {
				t.Setenv(k, tc.env[k])
			}
			t.Setenv("AWS_CONFIG_FILE", "/dev/null")
			awsCfg, err := awsconfig.LoadDefaultConfig(context.Background(), awsconfig.WithRegion("us-east-1"))
			if err != nil {
				t.Fatal(err)
			}
			client, err := newSTSClient(awsCfg, tc.sts)
			if tc.refusal != "" {
				if err == nil || !strings.Contains(err.Error(), tc.refusal) {
					t.Fatalf("newSTSClient = %v, want a refusal with %q", err, tc.refusal)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			o := client.Options()
			if got := aws.ToString(o.BaseEndpoint); got != tc.endpoint {
				t.Errorf("endpoint %q, want %q", got, tc.endpoint)
			}
			if o.EndpointOptions.UseFIPSEndpoint == aws.FIPSEndpointStateEnabled {
				t.Error("the SDK would still turn the endpoint into a FIPS one, and refuse every call beside a base endpoint")
			}
		})
	}
}
