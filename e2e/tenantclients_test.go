package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tokenvendor/tokenvendor/client"
)

// tenantS3 is an S3 client for MinIO whose credentials come from p.
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

func TestGoClientRefreshesBeforeExpiryWithoutAFailedCall(t *testing.T) {
	// 15-minute credentials that tokenvendor refreshes about 4 s after it
	// fetched them, and a client that asks again 3 s after it got them.
	path := writeConfig(t, configOptions{stsEndpoint: peers.minio, roleChaining: "off", duration: "15m"})
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	top := "cache:\n  refresh_ahead: 0.995\n  refresh_jitter: 0.004\n"
	if err := os.WriteFile(path, append([]byte(top), b...), 0o600); err != nil {
		t.Fatal(err)
	}
	v := startVendor(t, path, minioUser, minioPassword)
	c, err := client.New(client.Config{URL: v.url, Profile: "objects", Token: client.StaticToken(token(t, "svc-acme")),
		ExpiryWindow: 15*time.Minute - 3*time.Second})
	if err != nil {
		t.Fatal(err)
	}
	p := c.Provider("")
	s3c := tenantS3(p)
	keys := map[string]bool{}
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; len(keys) < 2; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no new credentials in 20 s (saw %d sets)", len(keys))
		}
		if err := sdkPutGet(s3c, fmt.Sprintf("acme/refresh-%d", i), "x"); err != nil {
			t.Fatalf("S3 call %d failed while credentials were refreshed: %v", i, err)
		}
		creds, err := p.Retrieve(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		keys[creds.AccessKeyID] = true
		time.Sleep(200 * time.Millisecond)
	}
	// The first set was good for 15 minutes; the second came within seconds,
	// long before it expired.
	t.Logf("credentials refreshed by tokenvendor and picked up by the client, every S3 call succeeding: %d sets", len(keys))
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
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 not on PATH: %v", err)
	}
	v := startVendor(t, writeConfig(t, configOptions{stsEndpoint: peers.minio, roleChaining: "off"}), minioUser, minioPassword)
	dir := filepath.Join(peers.root, "clients", "python")
	cmd := exec.Command(python, "-m", "unittest", "-v", "e2e_scenarios")
	cmd.Dir = filepath.Join(dir, "tests")
	cmd.Env = append(os.Environ(),
		"PYTHONPATH="+dir+string(os.PathListSeparator)+cmd.Dir,
		"TV_URL="+v.url,
		"TV_TOKEN_WORKER="+token(t, "worker"),
		"TV_TOKEN_ACME="+token(t, "svc-acme"),
		"MINIO_URL="+peers.minio,
		"BUCKET="+bucket,
		// The scenarios must use tokenvendor's credentials, never these.
		"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_EC2_METADATA_DISABLED=true",
	)
	out, err := cmd.CombinedOutput()
	t.Logf("python3 -m unittest e2e_scenarios:\n%s", out)
	if err != nil {
		t.Fatalf("the Python client's scenarios failed: %v", err)
	}
}
