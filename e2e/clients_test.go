package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tokenvendor/tokenvendor/internal/testsupport"
	"github.com/tokenvendor/tokenvendor/wire"
)

// Series the client tests read from the vendor's /metrics.
const (
	containerOK     = `tokenvendor_requests_total{code="200",route="/v1/container-credentials/{profile}"}`
	container401    = `tokenvendor_requests_total{code="401",route="/v1/container-credentials/{profile}"}`
	credentialsOK   = `tokenvendor_requests_total{code="200",route="/credentials"}`
	credentials401  = `tokenvendor_requests_total{code="401",route="/credentials"}`
	expiredFailures = `tokenvendor_auth_failures_total{reason="expired"}`
)

// ---------------------------------------------------------------- the AWS CLI

// awsCLI is the unmodified AWS CLI run with an environment built from
// nothing: no AWS variable, config file or home directory of the test
// process reaches it, so the credentials it uses can only come from what a
// test sets.
type awsCLI struct {
	env []string
}

func newAWSCLI(t *testing.T, env ...string) *awsCLI {
	t.Helper()
	if _, err := exec.LookPath("aws"); err != nil {
		t.Fatalf("the AWS CLI is not on PATH: %v", err)
	}
	return &awsCLI{env: cleanEnv(t, env...)}
}

// cleanEnv is an environment built from nothing for an AWS client process,
// plus env: no AWS variable, config file or home directory of the test
// process reaches it, and no instance metadata is asked for.
func cleanEnv(t *testing.T, env ...string) []string {
	t.Helper()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	base := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home, "LANG=C.UTF-8",
		"AWS_CONFIG_FILE=" + empty, "AWS_SHARED_CREDENTIALS_FILE=" + empty,
		"AWS_EC2_METADATA_DISABLED=true", "AWS_DEFAULT_REGION=us-east-1",
	}
	// The CLI and python3 here may be pyenv shims, which need to find
	// their root.
	if root := os.Getenv("PYENV_ROOT"); root != "" {
		base = append(base, "PYENV_ROOT="+root)
	}
	return append(base, env...)
}

// cliError is a failed CLI command with what it printed.
type cliError struct {
	err    error
	stderr string
}

func (e *cliError) Error() string {
	return fmt.Sprintf("aws: %v: %s", e.err, strings.TrimSpace(e.stderr))
}

func (c *awsCLI) run(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "aws", append([]string{"--endpoint-url", peers.minio}, args...)...)
	cmd.Env = c.env
	cmd.Dir = t.TempDir()
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &cliError{err: err, stderr: stderr.String()}
	}
	return stdout.String(), nil
}

// put copies a local file with body into the bucket at key, as a user would.
func (c *awsCLI) put(t *testing.T, key, body string) error {
	t.Helper()
	src := filepath.Join(t.TempDir(), "upload.txt")
	if err := os.WriteFile(src, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := c.run(t, "", "s3", "cp", src, "s3://"+bucket+"/"+key)
	return err
}

// read copies key from the bucket to stdout.
func (c *awsCLI) read(t *testing.T, key string) (string, error) {
	t.Helper()
	return c.run(t, "", "s3", "cp", "s3://"+bucket+"/"+key, "-")
}

func cliAccessDenied(err error) bool {
	var e *cliError
	return errors.As(err, &e) && strings.Contains(e.stderr, "AccessDenied")
}

// checkCLIIsolation has the CLI write and read back under tenant/ and be
// refused under other/. It logs how many credential requests the vendor
// answered (series) for one CLI command.
func checkCLIIsolation(t *testing.T, v *vendor, cli *awsCLI, series, tenant, other string) {
	t.Helper()
	before := v.metric(t, series)
	body := "written by the AWS CLI for " + tenant
	if err := cli.put(t, tenant+"/cli.txt", body); err != nil {
		t.Fatalf("CLI writing under %s/: %v", tenant, err)
	}
	t.Logf("one CLI command made %v credential request(s) answered 200", v.metric(t, series)-before)
	if got, err := cli.read(t, tenant+"/cli.txt"); err != nil || got != body {
		t.Errorf("CLI reading back %s/cli.txt: %q, %v", tenant, got, err)
	}
	if err := cli.put(t, other+"/cli.txt", "stolen"); !cliAccessDenied(err) {
		t.Errorf("CLI writing under %s/ with %s's credentials: err = %v, want AccessDenied", other, tenant, err)
	}
}

// absent reports whether key does not exist, asked with MinIO's root keys.
func absent(t *testing.T, key string) bool {
	t.Helper()
	root := s3Client(aws.Credentials{AccessKeyID: minioUser, SecretAccessKey: minioPassword})
	_, err := root.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	var nf interface{ ErrorCode() string }
	return errors.As(err, &nf) && (nf.ErrorCode() == "NotFound" || nf.ErrorCode() == "NoSuchKey")
}

// containerCredentials fetches what the container route serves for token:
// the same cached credentials the clients got.
func containerCredentials(t *testing.T, v *vendor, token string) credentials {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, v.url+"/v1/container-credentials/objects", nil)
	req.Header.Set("Authorization", token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET container credentials: %d %s", res.StatusCode, b)
	}
	var c wire.ContainerCredentials
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return credentials{wire.Credentials{ProcessCredentials: wire.ProcessCredentials{
		AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.Token, Expiration: c.Expiration}}}
}

func TestCLIWithContainerCredentialsTouchesOnlyItsTenantsPrefix(t *testing.T) {
	v := startVendor(t, writeConfig(t, configOptions{stsEndpoint: peers.minio}), minioUser, minioPassword)
	uri := v.url + "/v1/container-credentials/objects"
	acmeTok, globexTok := token(t, "svc-acme"), token(t, "svc-globex")

	acme := newAWSCLI(t, "AWS_CONTAINER_CREDENTIALS_FULL_URI="+uri, "AWS_CONTAINER_AUTHORIZATION_TOKEN="+acmeTok)
	checkCLIIsolation(t, v, acme, containerOK, "acme", "globex")
	globex := newAWSCLI(t, "AWS_CONTAINER_CREDENTIALS_FULL_URI="+uri, "AWS_CONTAINER_AUTHORIZATION_TOKEN="+globexTok)
	checkCLIIsolation(t, v, globex, containerOK, "globex", "acme")

	if n := v.metric(t, `tokenvendor_sts_requests_total{outcome="success"}`); n != 2 {
		t.Errorf("AssumeRole calls = %v for every CLI command of two tenants, want 2 (one per tenant, then cached)", n)
	}
	noSecretsIn(t, v, []credentials{containerCredentials(t, v, acmeTok), containerCredentials(t, v, globexTok)},
		[]string{acmeTok, globexTok})
}

func TestCLIWithContainerCredentialsGetsNothingForAGarbageToken(t *testing.T) {
	v := startVendor(t, writeConfig(t, configOptions{stsEndpoint: peers.minio}), minioUser, minioPassword)
	uri := v.url + "/v1/container-credentials/objects"
	for name, tok := range map[string]string{
		"garbage":            "not-a-jwt",
		"tampered signature": testsupport.Tamper(token(t, "svc-acme")),
	} {
		t.Run(name, func(t *testing.T) {
			before := v.metric(t, container401)
			cli := newAWSCLI(t, "AWS_CONTAINER_CREDENTIALS_FULL_URI="+uri, "AWS_CONTAINER_AUTHORIZATION_TOKEN="+tok)
			key := "acme/" + strings.ReplaceAll(name, " ", "-") + ".txt"
			err := cli.put(t, key, "must not be written")
			if err == nil {
				t.Fatal("the CLI wrote with a bad token")
			}
			t.Logf("CLI: %v", err)
			n := v.metric(t, container401) - before
			t.Logf("one CLI command made %v credential request(s) answered 401", n)
			if n < 1 {
				t.Errorf("tokenvendor answered 401 %v times, want at least once", n)
			}
			if !absent(t, key) {
				t.Errorf("%s exists after the refused command", key)
			}
		})
	}
	if n := v.metric(t, `tokenvendor_sts_requests_total{outcome="success"}`); n != 0 {
		t.Errorf("AssumeRole calls = %v for bad tokens, want 0", n)
	}
}

func TestCLIWithContainerCredentialsGetsNothingForAnExpiredToken(t *testing.T) {
	idp := startShortLivedOIDC(t)
	v := startVendor(t, withLeeway(t, writeConfig(t, configOptions{
		stsEndpoint: peers.minio, issuer: idp.url, jwksURL: idp.url + "/jwks",
	}), "1s"), minioUser, minioPassword)
	tok := tokenFrom(t, idp.url, "svc-acme")
	waitExpired(t, tok, time.Second)

	cli := newAWSCLI(t, "AWS_CONTAINER_CREDENTIALS_FULL_URI="+v.url+"/v1/container-credentials/objects",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN="+tok)
	err := cli.put(t, "acme/expired.txt", "must not be written")
	if err == nil {
		t.Fatal("the CLI wrote with an expired token")
	}
	t.Logf("CLI: %v", err)
	if n := v.metric(t, container401); n < 1 {
		t.Errorf("tokenvendor answered 401 %v times, want at least once", n)
	}
	if n := v.metric(t, expiredFailures); n < 1 {
		t.Errorf("%s = %v: the token was refused for another reason than its expiry", expiredFailures, n)
	}
	if !absent(t, "acme/expired.txt") {
		t.Error("acme/expired.txt exists after the refused command")
	}
	noSecretsIn(t, v, nil, []string{tok})
}

// startShortLivedOIDC runs an identity provider whose tokens live one second.
func startShortLivedOIDC(t *testing.T) *oidcProvider {
	t.Helper()
	port := freePort()
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	clients, _ := json.Marshal(oidcClients)
	p, err := start("oidc-short-lived", "node", []string{filepath.Join(peers.tools, "oidc", "server.mjs")},
		[]string{fmt.Sprintf("PORT=%d", port), "ISSUER=" + u, "AUDIENCE=" + audience, "CLIENTS=" + string(clients), "TOKEN_TTL=1"}, "ready")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	return &oidcProvider{process: p, url: u}
}

// withLeeway sets auth.leeway in the config at path.
func withLeeway(t *testing.T, path, leeway string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "\nauth:\n", "\nauth:\n  leeway: "+leeway+"\n", 1)
	if cfg == string(b) {
		t.Fatal("no auth section in the config")
	}
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitExpired waits until token's exp plus leeway has passed.
func waitExpired(t *testing.T, token string, leeway time.Duration) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatal("not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct{ Exp int64 }
	if err := json.Unmarshal(b, &claims); err != nil || claims.Exp == 0 {
		t.Fatalf("no exp in the token: %v", err)
	}
	// exp is whole seconds; one more second is past any rounding.
	time.Sleep(time.Until(time.Unix(claims.Exp, 0).Add(leeway + time.Second)))
}

// ---------------------------------------------------------------- credential_process

func TestCLIWithCredentialProcessTouchesOnlyItsTenantsPrefix(t *testing.T) {
	v := startVendor(t, writeConfig(t, configOptions{stsEndpoint: peers.minio}), minioUser, minioPassword)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	acmeTok, globexTok := token(t, "svc-acme"), token(t, "svc-globex")
	writeFile(t, tokenFile, acmeTok+"\n")
	awsConfig := filepath.Join(dir, "config")
	writeFile(t, awsConfig, fmt.Sprintf(`[profile tenant-app]
credential_process = %s credential-process --url %s --profile objects --token-file %s
region = us-east-1
`, peers.bin, v.url, tokenFile))
	cli := newAWSCLI(t, "AWS_CONFIG_FILE="+awsConfig, "AWS_PROFILE=tenant-app")

	checkCLIIsolation(t, v, cli, credentialsOK, "acme", "globex")

	// The process reads the token file on every call: a rotated token for
	// another tenant takes effect on the next command.
	writeFile(t, tokenFile, globexTok)
	checkCLIIsolation(t, v, cli, credentialsOK, "globex", "acme")

	// A refused token: the CLI fails with the service's code and message,
	// and neither the CLI nor tokenvendor prints the token.
	writeFile(t, tokenFile, testsupport.Tamper(acmeTok))
	before := v.metric(t, credentials401)
	err := cli.put(t, "acme/refused.txt", "must not be written")
	var ce *cliError
	if !errors.As(err, &ce) {
		t.Fatalf("the CLI wrote with a tampered token: %v", err)
	}
	t.Logf("CLI: %v", err)
	if !strings.Contains(ce.stderr, "tokenvendor answered 401 unauthenticated") {
		t.Errorf("CLI output lacks the service's code: %s", ce.stderr)
	}
	if strings.Contains(ce.stderr, acmeTok[strings.LastIndexByte(acmeTok, '.')+1:]) {
		t.Error("CLI output contains the token")
	}
	if n := v.metric(t, credentials401) - before; n < 1 {
		t.Errorf("tokenvendor answered 401 %v times, want at least once", n)
	}
	if !absent(t, "acme/refused.txt") {
		t.Error("acme/refused.txt exists after the refused command")
	}
	noSecretsIn(t, v, []credentials{v.vend(t, acmeTok, ""), v.vend(t, globexTok, "")}, []string{acmeTok, globexTok})
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// Write and rename, as the kubelet swaps a projected token: a reader
	// never sees half a token.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// ---------------------------------------------------------------- aws-sdk-go-v2

// isolateSDK clears every way the Go SDK's default chain could find
// credentials other than the container endpoint the test sets.
func isolateSDK(t *testing.T) {
	t.Helper()
	empty := filepath.Join(t.TempDir(), "empty")
	writeFile(t, empty, "")
	for k, val := range map[string]string{
		"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
		"AWS_PROFILE": "", "AWS_DEFAULT_PROFILE": "", "AWS_WEB_IDENTITY_TOKEN_FILE": "", "AWS_ROLE_ARN": "",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "", "AWS_CONTAINER_AUTHORIZATION_TOKEN": "",
		"AWS_CONFIG_FILE": empty, "AWS_SHARED_CREDENTIALS_FILE": empty,
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_REGION": "us-east-1",
	} {
		t.Setenv(k, val)
	}
}

// sdkPutGet writes and reads back key with client.
func sdkPutGet(client *s3.Client, key, body string) error {
	ctx := context.Background()
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(body)}); err != nil {
		return err
	}
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return err
	}
	defer out.Body.Close()
	got, _ := io.ReadAll(out.Body)
	if string(got) != body {
		return errors.New("read back other content")
	}
	return nil
}

func TestSDKContainerProviderFollowsTheTokenFile(t *testing.T) {
	v := startVendor(t, writeConfig(t, configOptions{stsEndpoint: peers.minio}), minioUser, minioPassword)
	acmeTok, globexTok := token(t, "svc-acme"), token(t, "svc-globex")
	tokenFile := filepath.Join(t.TempDir(), "token")
	// No trailing newline, as the kubelet writes it: the Go SDK refuses a
	// token file ending in one ("invalid newline sequence") instead of
	// trimming it.
	writeFile(t, tokenFile, acmeTok)

	// The SDK reads the token file's path from the environment only.
	isolateSDK(t)
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", v.url+"/v1/container-credentials/objects")
	t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", tokenFile)
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(peers.minio)
		o.UsePathStyle = true
	})

	first, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if first.Source != endpointcreds.ProviderName {
		t.Fatalf("credentials from %q, want the container endpoint", first.Source)
	}
	if err := sdkPutGet(client, "acme/sdk.txt", "acme via the SDK"); err != nil {
		t.Errorf("acme on acme/: %v", err)
	}
	if err := sdkPutGet(client, "globex/sdk.txt", "stolen"); !accessDenied(err) {
		t.Errorf("acme on globex/: err = %v, want AccessDenied", err)
	}

	// The token file now holds another tenant's token. The SDK keeps its
	// cached credentials until 5 minutes before they expire...
	writeFile(t, tokenFile, globexTok)
	cached, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cached.AccessKeyID != first.AccessKeyID {
		t.Fatalf("the SDK fetched again before expiry: %s then %s", first.AccessKeyID, cached.AccessKeyID)
	}
	// ...then refreshes, as expiry would make it, reading the file again.
	cache, ok := cfg.Credentials.(*aws.CredentialsCache)
	if !ok {
		t.Fatalf("credentials provider %T is not the SDK's cache", cfg.Credentials)
	}
	cache.Invalidate()
	second, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if second.AccessKeyID == first.AccessKeyID {
		t.Fatal("same credentials after the token file changed tenant")
	}
	if err := sdkPutGet(client, "globex/sdk.txt", "globex via the SDK"); err != nil {
		t.Errorf("globex on globex/: %v", err)
	}
	if err := sdkPutGet(client, "acme/sdk.txt", "overwritten"); !accessDenied(err) {
		t.Errorf("globex on acme/: err = %v, want AccessDenied", err)
	}
	if n := v.metric(t, containerOK); n != 2 {
		t.Errorf("container route answered 200 %v times, want 2 (one per tenant; the SDK caches)", n)
	}

	// A new configuration, as a restarted app would load, gets globex too.
	fresh, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := fresh.Credentials.Retrieve(ctx); err != nil || c.AccessKeyID != second.AccessKeyID {
		t.Errorf("a new config: %v, %v; want globex's shared credentials %s", c.AccessKeyID, err, second.AccessKeyID)
	}

	noSecretsIn(t, v, []credentials{
		vended(first, "acme"), vended(second, "globex"),
	}, []string{acmeTok, globexTok})
}
