// Package e2e runs tokenvendor as a process against real peers: MinIO (STS
// and enforcement of session policies), moto_server (AWS-shaped STS) and
// oidc-provider (a certified OpenID provider issuing the callers' tokens).
// `make tools` installs them into .tools/; a missing peer fails the tests.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awscreds "github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/tokenvendor/tokenvendor/internal/testsupport"
	"github.com/tokenvendor/tokenvendor/wire"
)

const (
	minioUser     = "tvroot"
	minioPassword = "tvroot-password-123"
	bucket        = "tenant-data"
	audience      = "tokenvendor"
	anyTenant     = "tokenvendor:any-tenant"
)

// oidcClients are the identity provider's clients: each is a calling service.
var oidcClients = []map[string]any{
	{"client_id": "svc-acme", "client_secret": "secret-acme-1", "tenant_id": "acme"},
	{"client_id": "svc-acme-2", "client_secret": "secret-acme-2", "tenant_id": "acme"},
	{"client_id": "svc-globex", "client_secret": "secret-globex", "tenant_id": "globex"},
	{"client_id": "svc-initech", "client_secret": "secret-initech", "tenant_id": "initech"},
	{"client_id": "svc-star", "client_secret": "secret-star-1", "tenant_id": "*"},
	{"client_id": "svc-number", "client_secret": "secret-number", "tenant_id": 42},
	{"client_id": "worker", "client_secret": "secret-worker", "scope": anyTenant},
}

// peers started once for the whole package.
var peers struct {
	root      string // repository root
	tools     string
	bin       string // the tokenvendor binary
	minio     string // MinIO base URL
	oidc      string // identity provider issuer URL
	oidcProc  *process
	moto      string
	startErrs []error
}

func TestMain(m *testing.M) {
	os.Exit(func() int {
		tmp, err := os.MkdirTemp("", "tokenvendor-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(tmp)
		if err := startPeers(tmp); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: cannot start the peers:", err)
			return 1
		}
		defer stopAll()
		return m.Run()
	}())
}

func startPeers(tmp string) error {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	peers.root = filepath.Dir(wd)
	peers.tools = os.Getenv("TOKENVENDOR_TOOLS")
	if peers.tools == "" {
		peers.tools = filepath.Join(peers.root, ".tools")
	}

	peers.bin = filepath.Join(tmp, "tokenvendor")
	build := exec.Command("go", "build", "-o", peers.bin, "./cmd/tokenvendor")
	build.Dir = peers.root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build tokenvendor: %v\n%s", err, out)
	}

	minioBin := filepath.Join(peers.tools, "bin", "minio")
	if _, err := os.Stat(minioBin); err != nil {
		return fmt.Errorf("MinIO not installed at %s (run `make tools`): %w", minioBin, err)
	}
	port, console := freePort(), freePort()
	peers.minio = fmt.Sprintf("http://127.0.0.1:%d", port)
	_, err = start("minio", minioBin, []string{"server", filepath.Join(tmp, "minio"),
		"--address", fmt.Sprintf("127.0.0.1:%d", port), "--console-address", fmt.Sprintf("127.0.0.1:%d", console)},
		[]string{"MINIO_ROOT_USER=" + minioUser, "MINIO_ROOT_PASSWORD=" + minioPassword, "MINIO_BROWSER=off"}, "")
	if err != nil {
		return err
	}
	if err := waitMinIO(peers.minio); err != nil {
		return err
	}
	if err := createBucket(); err != nil {
		return err
	}

	oidcDir := filepath.Join(peers.tools, "oidc")
	if _, err := os.Stat(filepath.Join(oidcDir, "node_modules", "oidc-provider")); err != nil {
		return fmt.Errorf("oidc-provider not installed in %s (run `make tools`): %w", oidcDir, err)
	}
	src, err := os.ReadFile(filepath.Join(peers.root, "e2e", "oidc", "server.mjs"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(oidcDir, "server.mjs"), src, 0o644); err != nil {
		return err
	}
	oport := freePort()
	peers.oidc = fmt.Sprintf("http://127.0.0.1:%d", oport)
	clients, _ := json.Marshal(oidcClients)
	peers.oidcProc, err = start("oidc", "node", []string{filepath.Join(oidcDir, "server.mjs")},
		[]string{fmt.Sprintf("PORT=%d", oport), "ISSUER=" + peers.oidc, "AUDIENCE=" + audience, "CLIENTS=" + string(clients)}, "ready")
	if err != nil {
		return err
	}

	motoBin, err := exec.LookPath("moto_server")
	if err != nil {
		return fmt.Errorf("moto_server not on PATH: %w", err)
	}
	mport := freePort()
	peers.moto = fmt.Sprintf("http://127.0.0.1:%d", mport)
	if _, err := start("moto", motoBin, []string{"-H", "127.0.0.1", "-p", fmt.Sprint(mport)}, nil, ""); err != nil {
		return err
	}
	return waitHTTP(peers.moto+"/moto-api/data.json", 60*time.Second)
}

// waitMinIO waits until MinIO at base answers health checks and STS: its
// STS answers "Server not initialized" for a while after it is healthy.
func waitMinIO(base string) error {
	if err := waitHTTP(base+"/minio/health/ready", 30*time.Second); err != nil {
		return fmt.Errorf("MinIO: %w", err)
	}
	c := sts.New(sts.Options{Region: "us-east-1", BaseEndpoint: aws.String(base),
		Credentials: awscreds.NewStaticCredentialsProvider(minioUser, minioPassword, "")})
	if err := testsupport.Poll(30*time.Second, func() error {
		_, err := c.AssumeRole(context.Background(), &sts.AssumeRoleInput{
			RoleArn: aws.String("arn:aws:iam::123456789012:role/TenantData"), RoleSessionName: aws.String("e2e-ready"),
		})
		return err
	}); err != nil {
		return fmt.Errorf("MinIO STS not ready: %w", err)
	}
	return nil
}

func createBucket() error {
	c := s3Client(aws.Credentials{AccessKeyID: minioUser, SecretAccessKey: minioPassword})
	_, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	if err != nil {
		return fmt.Errorf("create bucket: %w", err)
	}
	return nil
}

// s3Client talks to MinIO with the given credentials, path-style.
func s3Client(c aws.Credentials) *s3.Client {
	return tenantS3(awscreds.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken))
}

// ---------------------------------------------------------------- processes

// process is a peer or a tokenvendor run, with its output kept for checks.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *testsupport.Buffer
	done chan struct{}
}

var (
	procsMu sync.Mutex
	procs   []*process
)

// start runs bin and, when readyLine is set, waits until a line of its output
// contains it.
func start(name, bin string, args, env []string, readyLine string) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	return startCmd(name, cmd, readyLine)
}

// startCmd runs cmd as start does, with the environment cmd says.
func startCmd(name string, cmd *exec.Cmd, readyLine string) (*process, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &process{name: name, cmd: cmd, out: &testsupport.Buffer{}, done: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	procsMu.Lock()
	procs = append(procs, p)
	procsMu.Unlock()
	ready := make(chan struct{})
	var once sync.Once
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.out.Write(append(sc.Bytes(), '\n'))
			if readyLine != "" && strings.Contains(sc.Text(), readyLine) {
				once.Do(func() { close(ready) })
			}
		}
	}()
	go func() {
		_ = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	if readyLine == "" {
		return p, nil
	}
	select {
	case <-ready:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before it was ready:\n%s", name, p.out.String())
	case <-time.After(60 * time.Second):
		p.stop()
		return nil, fmt.Errorf("%s not ready after 60 s:\n%s", name, p.out.String())
	}
}

func (p *process) signal(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

func (p *process) stop() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func stopAll() {
	procsMu.Lock()
	defer procsMu.Unlock()
	for _, p := range procs {
		p.stop()
	}
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitHTTP(u string, limit time.Duration) error {
	return testsupport.Poll(limit, func() error {
		res, err := http.Get(u)
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("%s answered %d", u, res.StatusCode)
		}
		return nil
	})
}

// ---------------------------------------------------------------- tokenvendor

// vendor is a running tokenvendor.
type vendor struct {
	*process
	url    string
	config string
}

// configOptions shape the config a vendor runs with.
type configOptions struct {
	stsEndpoint string
	extra       string // appended to the profile list
	duration    string // the objects profile's duration, 1h when empty
	stsTimeout  string // sts.timeout, 5s when empty
	// roleChaining is sts.role_chaining; "off" spares the start-up
	// GetCallerIdentity, so that only AssumeRole reaches STS.
	roleChaining    string
	shutdownTimeout string // shutdown_timeout, the default when empty
	issuer          string // auth.issuer, the shared identity provider when empty
	jwksURL         string // auth.jwks_url, the shared identity provider's when empty
	authExtra       string // lines added to the auth section, each indented by two spaces
}

const objectsProfile = `
  - name: objects
    role_arn: arn:aws:iam::123456789012:role/TenantData
    duration: 1h
    vars: {bucket: %s}
    policy: |
      {"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":["s3:GetObject","s3:PutObject","s3:DeleteObject"],
         "Resource":["arn:aws:s3:::{{ .Vars.bucket }}/{{ .TenantID }}/*"]},
        {"Effect":"Allow","Action":["s3:ListBucket"],
         "Resource":["arn:aws:s3:::{{ .Vars.bucket }}"],
         "Condition":{"StringLike":{"s3:prefix":["{{ .TenantID }}/*"]}}}]}
    tags: {TenantID: "{{ .TenantID }}"}
`

func writeConfig(t *testing.T, o configOptions) string {
	t.Helper()
	profile := objectsProfile
	if o.duration != "" {
		profile = strings.Replace(profile, "duration: 1h", "duration: "+o.duration, 1)
	}
	if o.stsTimeout == "" {
		o.stsTimeout = "5s"
	}
	if o.issuer == "" {
		o.issuer = peers.oidc
	}
	if o.jwksURL == "" {
		o.jwksURL = peers.oidc + "/jwks"
	}
	var top, sts string
	if o.shutdownTimeout != "" {
		top = "shutdown_timeout: " + o.shutdownTimeout + "\n"
	}
	if o.roleChaining != "" {
		sts = fmt.Sprintf("  role_chaining: %q\n", o.roleChaining)
	}
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
`+top+`auth:
  issuer: %s
  jwks_url: %s
  audiences: [%s]
  algorithms: [RS256, ES256]
  tenant_claim: tenant_id
  override_scope: %s
`+o.authExtra+`sts:
  region: us-east-1
  endpoint: %s
  timeout: %s
`+sts+`profiles:`+profile+o.extra, o.issuer, o.jwksURL, audience, anyTenant, o.stsEndpoint, o.stsTimeout, bucket)
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var listeningRE = regexp.MustCompile(`"msg":"listening","addr":"([^"]+)","admin":false`)

// startVendor runs tokenvendor with the config at path. Its STS calls are
// signed with key/secret.
func startVendor(t *testing.T, path, key, secret string) *vendor {
	t.Helper()
	return startVendorAs(t, path, aws.Credentials{AccessKeyID: key, SecretAccessKey: secret})
}

// startVendorAs runs tokenvendor with the config at path, its own STS calls
// signed with creds, and env added to its environment.
func startVendorAs(t *testing.T, path string, creds aws.Credentials, env ...string) *vendor {
	t.Helper()
	p, err := start("tokenvendor", peers.bin, []string{"serve", "--config", path}, append([]string{
		"AWS_ACCESS_KEY_ID=" + creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + creds.SecretAccessKey,
		"AWS_SESSION_TOKEN=" + creds.SessionToken, "AWS_REGION=us-east-1",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true",
		"AWS_PROFILE=",
	}, env...), `"msg":"listening"`)
	if err != nil {
		t.Fatal(err)
	}
	m := listeningRE.FindStringSubmatch(p.out.String())
	if m == nil {
		t.Fatalf("no listening address in:\n%s", p.out.String())
	}
	v := &vendor{process: p, url: "http://" + m[1], config: path}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("tokenvendor output:\n%s", p.out.String())
		}
	})
	if err := waitHTTP(v.url+"/readyz", 20*time.Second); err != nil {
		t.Fatalf("tokenvendor not ready: %v\n%s", err, p.out.String())
	}
	return v
}

// credentials is the body of a 200 from POST /credentials.
type credentials struct{ wire.Credentials }

func (c credentials) aws() aws.Credentials {
	return aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}
}

// vended is what an SDK got for tenant, as an answer's credentials.
func vended(c aws.Credentials, tenant string) credentials {
	return credentials{wire.Credentials{ProcessCredentials: wire.ProcessCredentials{
		AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}, TenantID: tenant}}
}

// post calls POST /credentials and returns the status and body.
func (v *vendor) post(t *testing.T, token, body string) (int, []byte) {
	t.Helper()
	authorization := ""
	if token != "" {
		authorization = "Bearer " + token
	}
	return v.call(t, http.MethodPost, "/credentials", authorization, body)
}

// call sends method path with an Authorization header (none when empty)
// and returns the status and body.
func (v *vendor) call(t *testing.T, method, path, authorization, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, v.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// vend calls POST /credentials and requires a 200.
func (v *vendor) vend(t *testing.T, token, body string) credentials {
	t.Helper()
	status, b := v.post(t, token, body)
	if status != http.StatusOK {
		t.Fatalf("POST /credentials: %d %s", status, b)
	}
	var c credentials
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// metric returns the value of the sample whose line starts with series.
func (v *vendor) metric(t *testing.T, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(v.metricsText(t), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			fmt.Sscan(rest, &f)
			return f
		}
	}
	return 0
}

// ---------------------------------------------------------------- tokens

// token gets an access token for client from the shared identity provider
// with the client_credentials grant.
func token(t *testing.T, client string) string {
	t.Helper()
	return tokenFrom(t, peers.oidc, client)
}

var errAccessDenied = errors.New("AccessDenied")

// ---------------------------------------------------------------- dedicated peers and probes

// oidcProvider is an identity provider started for one test, so that its
// keys can be rotated and the process stopped without touching the shared one.
type oidcProvider struct {
	*process
	url string
}

// startOIDC runs a dedicated identity provider with the shared one's clients.
func startOIDC(t *testing.T) *oidcProvider {
	t.Helper()
	return startOIDCWith(t, oidcClients)
}

// startOIDCWith runs a dedicated identity provider with clients, and env
// added to its environment.
func startOIDCWith(t *testing.T, clients []map[string]any, env ...string) *oidcProvider {
	t.Helper()
	port := freePort()
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	list, _ := json.Marshal(clients)
	p, err := start("oidc-"+t.Name(), "node", []string{filepath.Join(peers.tools, "oidc", "server.mjs")},
		append([]string{fmt.Sprintf("PORT=%d", port), "ISSUER=" + u, "AUDIENCE=" + audience, "CLIENTS=" + string(list)}, env...), "ready")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	return &oidcProvider{process: p, url: u}
}

var signingKIDRE = regexp.MustCompile(`signing kid=(\S+)`)

// rotate sends sig (SIGUSR1 adds a signing key, SIGUSR2 retires all but the
// current one), waits for the provider's line saying it acted, and returns
// the kid it now signs with.
func (o *oidcProvider) rotate(t *testing.T, sig syscall.Signal) string {
	t.Helper()
	prefix := map[syscall.Signal]string{syscall.SIGUSR1: "rotated:", syscall.SIGUSR2: "retired:"}[sig]
	before := strings.Count(o.out.String(), prefix)
	o.signal(sig)
	var out string
	testsupport.Eventually(t, 10*time.Second, func() error {
		if out = o.out.String(); strings.Count(out, prefix) <= before {
			return fmt.Errorf("identity provider did not log %q after %v:\n%s", prefix, sig, out)
		}
		return nil
	})
	lines := strings.Split(strings.TrimSpace(out[strings.LastIndex(out, prefix):]), "\n")
	m := signingKIDRE.FindStringSubmatch(lines[0])
	if m == nil {
		t.Fatalf("no signing kid in %q", lines[0])
	}
	return m[1]
}

// tokenFrom gets an access token for client from the identity provider at
// base with the client_credentials grant.
func tokenFrom(t *testing.T, base, client string) string {
	t.Helper()
	var secret, scope string
	for _, c := range oidcClients {
		if c["client_id"] == client {
			secret, _ = c["client_secret"].(string)
			scope, _ = c["scope"].(string)
		}
	}
	form := url.Values{"grant_type": {"client_credentials"}, "resource": {audience}}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, secret)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || body.AccessToken == "" {
		t.Fatalf("token for %s from %s: status %d, %v", client, base, res.StatusCode, err)
	}
	return body.AccessToken
}

// kill ends the process with SIGKILL, as a crash would, and waits for it.
func (p *process) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// metricsText is the vendor's /metrics page.
func (v *vendor) metricsText(t *testing.T) string {
	t.Helper()
	res, err := http.Get(v.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// serverErrors sums tokenvendor_requests_total by 5xx status code.
func (v *vendor) serverErrors(t *testing.T) map[string]float64 {
	t.Helper()
	re := regexp.MustCompile(`^tokenvendor_requests_total\{.*code="(5\d\d)".*\} (\S+)$`)
	out := map[string]float64{}
	for _, line := range strings.Split(v.metricsText(t), "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			var f float64
			fmt.Sscan(m[2], &f)
			if f > 0 { // the series exist from the start, at 0
				out[m[1]] += f
			}
		}
	}
	return out
}
