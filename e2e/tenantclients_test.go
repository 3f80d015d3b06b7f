package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tokenvendor/tokenvendor/client"
)

// tenantS3 is an S3 client for MinIO (path-style) whose credentials come
// from p.
func tenantS3(p aws.CredentialsProvider) *s3.Client {
	return s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(peers.minio), UsePathStyle: true, Credentials: p})
}

func newTenantClient(t *testing.T, v *vendor, token string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{URL: v.url, Profile: "objects", Token: client.StaticToken(token)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestGoClientProvidersReachOnlyTheirTenantsPrefix(t *testing.T) {
	v := startVendor(t, writeConfig(t, configOptions{stsEndpoint: peers.minio, roleChaining: "off"}), minioUser, minioPassword)
	c := newTenantClient(t, v, token(t, "worker"))
	tenants := []string{"acme", "globex"}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tenant, other := tenants[i%2], tenants[(i+1)%2]
			s3c := tenantS3(c.Provider(tenant))
			key := fmt.Sprintf("%s/go-client-%d", tenant, i)
			if err := sdkPutGet(s3c, key, tenant); err != nil {
				t.Errorf("%s on its own prefix: %v", tenant, err)
			}
			if err := sdkPutGet(s3c, fmt.Sprintf("%s/go-client-%d", other, i), tenant); !accessDenied(err) {
				t.Errorf("%s on %s/: err = %v, want AccessDenied", tenant, other, err)
			}
		}()
	}
	wg.Wait()
	if calls := v.sumMetric(t, "tokenvendor_sts_requests_total{"); calls != 2 {
		t.Fatalf("%v AssumeRole calls for 20 goroutines of two tenants, want 2", calls)
	}
}

func TestGoClientAsksOnceForManyS3Calls(t *testing.T) {
	// 15-minute credentials, the shortest STS gives: every call succeeds
	// on one answer from tokenvendor. (The client's unit tests show, on
	// credentials that live seconds or minutes, the refresh ahead of expiry,
	// no refresh per call inside the window, and valid credentials kept
	// through a failed refresh.)
	v := startVendor(t, writeConfig(t, configOptions{stsEndpoint: peers.minio, roleChaining: "off", duration: "15m"}), minioUser, minioPassword)
	c := newTenantClient(t, v, token(t, "svc-acme"))
	s3c := tenantS3(c.Provider(""))
	for i := range 40 {
		if err := sdkPutGet(s3c, fmt.Sprintf("acme/short-%d", i), "x"); err != nil {
			t.Fatalf("S3 call %d failed: %v", i, err)
		}
	}
	if asked := v.metric(t, `tokenvendor_requests_total{code="200",route="/credentials"}`); asked != 1 {
		t.Fatalf("the client asked tokenvendor %v times for 40 S3 calls, want 1", asked)
	}
}

func TestGoClientRefusalsAreClientErrors(t *testing.T) {
	v := startVendor(t, writeConfig(t, configOptions{stsEndpoint: peers.minio, roleChaining: "off"}), minioUser, minioPassword)
	for _, tc := range []struct {
		name, token, tenant string
		status              int
		code                string
	}{
		{name: "not a token", token: "not-a-token", status: 401, code: "unauthenticated"},
		{name: "another tenant", token: token(t, "svc-acme"), tenant: "globex", status: 403, code: "forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTenantClient(t, v, tc.token)
			err := sdkPutGet(tenantS3(c.Provider(tc.tenant)), "acme/never", "x")
			var e *client.Error
			if !errors.As(err, &e) || e.Status != tc.status || e.Code != tc.code {
				t.Fatalf("err = %v, want a *client.Error %d %s", err, tc.status, tc.code)
			}
			if strings.Contains(err.Error(), tc.token) {
				t.Fatal("the error shows the token")
			}
		})
	}
}

// TestPythonClient runs the Python client's scenarios
// (clients/python/tests/e2e_scenarios.py) against tokenvendor and MinIO.
func TestPythonClient(t *testing.T) {
	v := startVendor(t, writeConfig(t, configOptions{stsEndpoint: peers.minio, roleChaining: "off"}), minioUser, minioPassword)
	runPython(t, "e2e_scenarios", "TV_URL="+v.url, "TV_TOKEN_WORKER="+token(t, "worker"), "TV_TOKEN_ACME="+token(t, "svc-acme"),
		"MINIO_URL="+peers.minio, "BUCKET="+bucket)
}

// runPython runs a module of the Python client's tests/ with env, and
// fails the test when it fails.
func runPython(t *testing.T, module string, env ...string) {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 not on PATH: %v", err)
	}
	dir := filepath.Join(peers.root, "clients", "python")
	cmd := exec.Command(python, "-m", "unittest", "-v", module)
	cmd.Dir = filepath.Join(dir, "tests")
	cmd.Env = append(os.Environ(), "PYTHONPATH="+dir+string(os.PathListSeparator)+cmd.Dir,
		// The scenarios must use tokenvendor's credentials, never these.
		"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_EC2_METADATA_DISABLED=true",
		"HTTP_PROXY=", "HTTPS_PROXY=", "http_proxy=", "https_proxy=")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	t.Logf("python3 -m unittest %s:\n%s", module, out)
	if err != nil {
		t.Fatalf("the Python client's %s failed: %v", module, err)
	}
}
