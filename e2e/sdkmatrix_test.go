package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// The SDK matrix of docs/clients.md: each SDK, unmodified and in its own
// process, takes credentials from tokenvendor's container endpoint or from
// `tokenvendor credential-process`, as the environment tells it, and
// MinIO decides what the session policy lets it do. e2e/sdk holds the
// small programs that use each SDK as an application would.

// sdkResult is what every client of the matrix answers (e2e/sdk/*): the
// versions it runs, where its credentials came from by its own account,
// the error that kept it from credentials, and one entry per S3 call.
type sdkResult struct {
	Versions map[string]string `json:"versions"`
	Source   string            `json:"source"`
	Error    string            `json:"error"`
	// Trace is what the JavaScript SDK's providers logged when they passed
	// on to the next link: its default chain's own error says only that
	// none gave credentials.
	Trace []string `json:"trace"`
	Ops   []sdkOp  `json:"ops"`
}

// sdkOp is one S3 call and its error code ("" for success).
type sdkOp struct {
	Op      string `json:"op"`
	Key     string `json:"key"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// why is everything the client said about its failure.
func (r sdkResult) why() string {
	return strings.Join(append([]string{r.Error}, r.Trace...), "\n")
}

// sdkClient runs one SDK with an environment built from nothing plus env,
// in mode "credentials" (resolve them, nothing else) or "s3" (write own,
// read it back, read other, write other).
type sdkClient struct {
	name string
	run  func(t *testing.T, env []string, mode string, own, other string) sdkResult
}

// sdkClients are the SDKs of the matrix, by name.
func sdkClients(t *testing.T) map[string]sdkClient {
	t.Helper()
	dir := t.TempDir()
	gos3 := filepath.Join(dir, "gos3")
	build := exec.Command("go", "build", "-o", gos3, "./e2e/sdk/gos3")
	build.Dir = peers.root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build e2e/sdk/gos3: %v\n%s", err, out)
	}
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 not on PATH: %v", err)
	}
	for _, bin := range []string{"node", "aws"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not on PATH: %v", bin, err)
		}
	}
	jssdk := filepath.Join(peers.tools, "jssdk")
	if _, err := os.Stat(filepath.Join(jssdk, "node_modules", "@aws-sdk", "client-s3", "package.json")); err != nil {
		t.Fatalf("the JavaScript SDK is not installed in %s (run scripts/tools.sh): %v", jssdk, err)
	}
	script := func(name string, argv ...string) sdkClient {
		return sdkClient{name: name, run: func(t *testing.T, env []string, mode, own, other string) sdkResult {
			args := append(append([]string{}, argv[1:]...), mode)
			if mode == "s3" {
				args = append(args, peers.minio, bucket, own, other)
			}
			return runSDK(t, name, exec.Command(argv[0], args...), env)
		}}
	}
	clients := map[string]sdkClient{
		"go":                    script("go", gos3),
		"botocore":              script("botocore", python, filepath.Join(peers.root, "e2e", "sdk", "s3.py")),
		"js-default":            script("js-default", "node", filepath.Join(peers.root, "e2e", "sdk", "s3.mjs"), jssdk, "default"),
		"js-container-metadata": script("js-container-metadata", "node", filepath.Join(peers.root, "e2e", "sdk", "s3.mjs"), jssdk, "container-metadata"),
		"cli":                   {name: "cli", run: runCLIClient},
	}
	return clients
}

// runSDK runs cmd with env and decodes its answer.
func runSDK(t *testing.T, name string, cmd *exec.Cmd, env []string) sdkResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	cmd.Env = env
	cmd.Dir = t.TempDir()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", name, err, stdout.String(), stderr.String())
	}
	var r sdkResult
	if err := json.Unmarshal([]byte(stdout.String()), &r); err != nil {
		t.Fatalf("%s answered %q: %v\nstderr: %s", name, stdout.String(), err, stderr.String())
	}
	return r
}

var (
	cliVersionRE = regexp.MustCompile(`aws-cli/(\S+) .*botocore/(\S+)`)
	// `aws configure list` names where the access key came from.
	cliSourceRE = regexp.MustCompile(`(?m)^\s*access_key\s+\S+\s+(\S+)`)
	cliCodeRE   = regexp.MustCompile(`\(([A-Za-z]+)\) when calling`)
)

// runCLIClient is the AWS CLI doing what e2e/sdk's programs do, a command
// each: `aws configure list` (which resolves the credentials) and then
// s3api put-object, get-object, get-object and put-object.
func runCLIClient(t *testing.T, env []string, mode, own, other string) sdkResult {
	t.Helper()
	cli := &awsCLI{env: env}
	var r sdkResult
	version, err := exec.Command("aws", "--version").CombinedOutput()
	if m := cliVersionRE.FindStringSubmatch(string(version)); err == nil && m != nil {
		r.Versions = map[string]string{"aws-cli": m[1], "botocore": m[2]}
	}
	out, err := cli.run(t, "", "configure", "list")
	if err != nil {
		r.Error = err.Error()
		return r
	}
	if m := cliSourceRE.FindStringSubmatch(out); m != nil {
		r.Source = m[1]
	}
	if mode != "s3" {
		return r
	}
	dir := t.TempDir()
	const body = "written by the AWS CLI"
	src := filepath.Join(dir, "upload.txt")
	writeFile(t, src, body)
	call := func(op, key string, args ...string) {
		out, err := cli.run(t, "", args...)
		o := sdkOp{Op: op, Key: key}
		if err != nil {
			o.Code, o.Message = "Error", err.Error()
			if m := cliCodeRE.FindStringSubmatch(err.Error()); m != nil {
				o.Code = m[1]
			}
		} else if op == "get" && key == own {
			if b, _ := os.ReadFile(filepath.Join(dir, "got.txt")); string(b) != body {
				o.Code, o.Message = "Mismatch", fmt.Sprintf("read back %q (%s)", b, out)
			}
		}
		r.Ops = append(r.Ops, o)
	}
	call("put", own, "s3api", "put-object", "--bucket", bucket, "--key", own, "--body", src)
	call("get", own, "s3api", "get-object", "--bucket", bucket, "--key", own, filepath.Join(dir, "got.txt"))
	call("get", other, "s3api", "get-object", "--bucket", bucket, "--key", other, filepath.Join(dir, "other.txt"))
	call("put", other, "s3api", "put-object", "--bucket", bucket, "--key", other, "--body", src)
	return r
}

// credentialKind is how a matrix row hands the SDK its credentials: the
// container endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI) with
// AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE or AWS_CONTAINER_AUTHORIZATION_TOKEN,
// or a profile's credential_process running `tokenvendor
// credential-process`.
type credentialKind string

const (
	containerTokenFile credentialKind = "container-token-file"
	containerToken     credentialKind = "container-token"
	credentialProcess  credentialKind = "credential-process"
)

// TestSDKMatrix runs every SDK of docs/clients.md's matrix against one
// tokenvendor and one MinIO, all rows at once: each reads and writes its
// own tenant's prefix and is refused the other tenant's objects, which
// exist. Then each SDK's checks of the container endpoint's URL and token:
// a refusal must come before any connection (a listener of the test's
// own counts them); an accepted URL must be connected to.
func TestSDKMatrix(t *testing.T) {
	clients := sdkClients(t)
	v := startVendor(t, writeConfig(t, configOptions{stsEndpoint: peers.minio}), minioUser, minioPassword)
	uri := v.url + "/v1/container-credentials/objects"
	tokens := map[string]string{"acme": token(t, "svc-acme"), "globex": token(t, "svc-globex")}
	others := map[string]string{"acme": "globex", "globex": "acme"}
	root := s3Client(aws.Credentials{AccessKeyID: minioUser, SecretAccessKey: minioPassword})

	rows := []struct {
		client string
		kind   credentialKind
		// source is where the SDK says its credentials came from.
		source string
	}{
		{"go", containerTokenFile, endpointcreds.ProviderName},
		{"go", containerToken, endpointcreds.ProviderName},
		{"go", credentialProcess, processcreds.ProviderName},
		{"botocore", containerTokenFile, "container-role"},
		{"botocore", containerToken, "container-role"},
		{"botocore", credentialProcess, "custom-process"},
		{"cli", containerTokenFile, "container-role"},
		{"cli", containerToken, "container-role"},
		{"cli", credentialProcess, "custom-process"},
		{"js-default", containerTokenFile, "CREDENTIALS_HTTP"},
		{"js-default", containerToken, "CREDENTIALS_HTTP"},
		{"js-default", credentialProcess, "CREDENTIALS_PROCESS,CREDENTIALS_PROFILE_PROCESS"},
		// fromContainerMetadata marks its credentials with no source.
		{"js-container-metadata", containerToken, "container-metadata"},
	}
	var mu sync.Mutex
	versions := map[string]map[string]string{}
	served := map[string]bool{} // the tenants of the rows that ran
	t.Run("reads its own tenant alone", func(t *testing.T) {
		for i, row := range rows {
			tenant := []string{"acme", "globex"}[i%2]
			other := others[tenant]
			name := row.client + "/" + string(row.kind)
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				file := "sdk-matrix/" + row.client + "-" + string(row.kind) + ".txt"
				own, theirs := tenant+"/"+file, other+"/"+file
				const seeded = "the other tenant's object"
				if _, err := root.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(theirs), Body: strings.NewReader(seeded)}); err != nil {
					t.Fatal(err)
				}

				dir := t.TempDir()
				var env []string
				switch row.kind {
				case containerTokenFile:
					// No newline at the end, as the kubelet writes a
					// projected token (see the refusals below).
					tokenFile := filepath.Join(dir, "token")
					writeFile(t, tokenFile, tokens[tenant])
					env = []string{"AWS_CONTAINER_CREDENTIALS_FULL_URI=" + uri, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=" + tokenFile}
				case containerToken:
					env = []string{"AWS_CONTAINER_CREDENTIALS_FULL_URI=" + uri, "AWS_CONTAINER_AUTHORIZATION_TOKEN=" + tokens[tenant]}
				case credentialProcess:
					tokenFile, config := filepath.Join(dir, "token"), filepath.Join(dir, "config")
					writeFile(t, tokenFile, tokens[tenant]+"\n")
					writeFile(t, config, fmt.Sprintf("[profile tenant-app]\ncredential_process = %s credential-process --url %s --profile objects --token-file %s\nregion = us-east-1\n",
						peers.bin, v.url, tokenFile))
					env = []string{"AWS_CONFIG_FILE=" + config, "AWS_PROFILE=tenant-app"}
				}
				r := clients[row.client].run(t, cleanEnv(t, env...), "s3", own, theirs)
				mu.Lock()
				versions[row.client] = r.Versions
				served[tenant] = true
				mu.Unlock()
				if r.Error != "" {
					t.Fatalf("no credentials: %s", r.why())
				}
				if r.Source != row.source {
					t.Errorf("credentials from %q, want %q", r.Source, row.source)
				}
				want := []sdkOp{{Op: "put", Key: own}, {Op: "get", Key: own}, {Op: "get", Key: theirs, Code: "AccessDenied"}, {Op: "put", Key: theirs, Code: "AccessDenied"}}
				if len(r.Ops) != len(want) {
					t.Fatalf("S3 calls %+v, want %d", r.Ops, len(want))
				}
				for i, w := range want {
					if got := r.Ops[i]; got.Op != w.Op || got.Key != w.Key || got.Code != w.Code {
						t.Errorf("%s %s as %s: code %q (%s), want %q", w.Op, w.Key, tenant, got.Code, got.Message, w.Code)
					}
				}
				if got := objectBody(t, theirs); got != seeded {
					t.Errorf("%s holds %q after %s's refused write, want %q", theirs, got, tenant, seeded)
				}
				if got := objectBody(t, own); !strings.HasPrefix(got, "written by") {
					t.Errorf("%s holds %q, want what the SDK wrote", own, got)
				}
			})
		}
	})
	// Every SDK got the credentials tokenvendor shares per tenant.
	if n := v.metric(t, `tokenvendor_sts_requests_total{outcome="success"}`); n != float64(len(served)) {
		t.Errorf("AssumeRole calls = %v for the SDK runs of %d tenants, want one per tenant", n, len(served))
	}
	noSecretsIn(t, v, []credentials{containerCredentials(t, v, tokens["acme"]), containerCredentials(t, v, tokens["globex"])},
		[]string{tokens["acme"], tokens["globex"]})
	for client, vs := range versions {
		t.Logf("%s: %v", client, vs)
	}

	t.Run("checks the container endpoint's URL and token", func(t *testing.T) {
		for _, row := range containerChecks {
			t.Run(row.name, func(t *testing.T) {
				t.Parallel()
				p := startProbe(t, row.host)
				scheme := "http"
				if row.https {
					scheme = "https"
				}
				urlHost := row.urlHost
				if urlHost == "" {
					urlHost = row.host
				}
				env := []string{fmt.Sprintf("AWS_CONTAINER_CREDENTIALS_FULL_URI=%s://%s:%d/v1/container-credentials/objects", scheme, urlHost, p.port)}
				const token = "header.payload.signature"
				switch row.token {
				case "env":
					env = append(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN="+token)
				case "file", "file with newline":
					tokenFile := filepath.Join(t.TempDir(), "token")
					content := token
					if row.token == "file with newline" {
						content += "\n"
					}
					writeFile(t, tokenFile, content)
					env = append(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="+tokenFile)
				}
				r := clients[row.client].run(t, cleanEnv(t, env...), "credentials", "", "")
				if r.Error == "" {
					t.Fatalf("%s got credentials from a listener that serves none", row.client)
				}
				if !row.want.MatchString(r.why()) {
					t.Errorf("error %q, want one matching %s", r.why(), row.want)
				}
				conns, authorized := p.counts()
				switch {
				case !row.connects && conns != 0:
					t.Errorf("%d connection(s), want none: the SDK must refuse before connecting", conns)
				case row.connects && conns == 0:
					t.Error("no connection: the SDK refused what it should accept")
				case row.connects && row.sendsToken && authorized != conns:
					t.Errorf("%d of %d connections carried an Authorization header, want all", authorized, conns)
				case row.connects && !row.sendsToken && authorized != 0:
					t.Errorf("%d of %d connections carried an Authorization header, want none", authorized, conns)
				}
				t.Logf("%s: %d connection(s): %s", row.client, conns, strings.ReplaceAll(r.why(), "\n", " | "))
			})
		}
	})
	checkMatrixVersions(t, versions)
}

// containerChecks are what each SDK does with a container endpoint URL
// or token it may refuse. host is where the test's listener runs (and,
// unless urlHost says otherwise, what the URL names). A refusal makes no
// connection; an SDK that connects sends the token (sendsToken) or no
// Authorization header at all. want matches what the SDK said.
var containerChecks = []struct {
	name       string
	client     string
	host       string
	urlHost    string
	https      bool
	token      string // "env", "file" or "file with newline"
	want       *regexp.Regexp
	connects   bool
	sendsToken bool
}{
	// 0.0.0.0 is no loopback address, nor an ECS or EKS one; a client that
	// did not refuse it would still connect only to this machine.
	{name: "go refuses http on a host that is not loopback", client: "go", host: "127.0.0.1", urlHost: "0.0.0.0", token: "env",
		want: regexp.MustCompile(`invalid endpoint host, "0\.0\.0\.0", only loopback/ecs/eks hosts are allowed`)},
	{name: "botocore refuses http on a host that is not loopback", client: "botocore", host: "127.0.0.1", urlHost: "0.0.0.0", token: "env",
		want: regexp.MustCompile(`Unsupported host '0\.0\.0\.0'`)},
	{name: "cli refuses http on a host that is not loopback", client: "cli", host: "127.0.0.1", urlHost: "0.0.0.0", token: "env",
		want: regexp.MustCompile(`Unsupported host '0\.0\.0\.0'`)},
	{name: "js-default refuses http on a host that is not loopback", client: "js-default", host: "127.0.0.1", urlHost: "0.0.0.0", token: "env",
		want: regexp.MustCompile(`URL not accepted\. It must either be HTTPS or match`)},
	{name: "js-container-metadata refuses http on a host that is not loopback", client: "js-container-metadata", host: "127.0.0.1", urlHost: "0.0.0.0", token: "env",
		want: regexp.MustCompile(`0\.0\.0\.0 is not a valid container metadata service hostname`)},
	// The whole loopback range, beyond 127.0.0.1.
	{name: "go accepts another loopback address", client: "go", host: "127.0.0.2", token: "env",
		want: regexp.MustCompile(`EOF|connection reset`), connects: true, sendsToken: true},
	{name: "botocore accepts another loopback address", client: "botocore", host: "127.0.0.2", token: "env",
		want: regexp.MustCompile(`container-role`), connects: true, sendsToken: true},
	{name: "js-default accepts another loopback address", client: "js-default", host: "127.0.0.2", token: "env",
		want: regexp.MustCompile(`(?s)socket hang up.*127\.0\.0\.2 is not a valid container metadata service hostname`), connects: true, sendsToken: true},
	{name: "js-container-metadata refuses another loopback address", client: "js-container-metadata", host: "127.0.0.2", token: "env",
		want: regexp.MustCompile(`127\.0\.0\.2 is not a valid container metadata service hostname`)},
	// fromContainerMetadata passes its URL to node:http, which speaks no TLS.
	{name: "js-container-metadata cannot use https", client: "js-container-metadata", host: "127.0.0.1", https: true, token: "env",
		want: regexp.MustCompile(`Protocol "https:" not supported`)},
	// A token file written with echo ends in a newline; the kubelet's does not.
	{name: "go refuses a token file ending in a newline", client: "go", host: "127.0.0.1", token: "file with newline",
		want: regexp.MustCompile(`authorization token contains invalid newline sequence`)},
	{name: "botocore refuses a token file ending in a newline", client: "botocore", host: "127.0.0.1", token: "file with newline",
		want: regexp.MustCompile(`Auth token value is not a legal header value`)},
	// fromHttp refuses it (Node will not send the header); the default
	// chain then tries fromContainerMetadata, which reads no token file and
	// calls the endpoint without a token.
	{name: "js-default refuses a token file ending in a newline, then calls without a token", client: "js-default", host: "127.0.0.1", token: "file with newline",
		want: regexp.MustCompile(`ERR_INVALID_CHAR`), connects: true},
	{name: "js-container-metadata reads no token file", client: "js-container-metadata", host: "127.0.0.1", token: "file",
		want: regexp.MustCompile(`instance metadata service`), connects: true},
}

// probe is a listener that counts the connections made to it, and those
// whose request carried an Authorization header, then closes each without
// an answer.
type probe struct {
	port       int
	mu         sync.Mutex
	conns      int
	authorized int
}

func startProbe(t *testing.T, host string) *probe {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("listen on %s: %v", host, err)
	}
	p := &probe{port: ln.Addr().(*net.TCPAddr).Port}
	done := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			req, err := http.ReadRequest(bufio.NewReader(conn))
			p.mu.Lock()
			p.conns++
			if err == nil && req.Header.Get("Authorization") != "" {
				p.authorized++
			}
			p.mu.Unlock()
			if err == nil {
				_, _ = io.Copy(io.Discard, req.Body)
			}
			conn.Close()
		}
	}()
	return p
}

func (p *probe) counts() (conns, authorized int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns, p.authorized
}

// objectBody reads key with MinIO's root keys.
func objectBody(t *testing.T, key string) string {
	t.Helper()
	root := s3Client(aws.Credentials{AccessKeyID: minioUser, SecretAccessKey: minioPassword})
	out, err := root.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("read %s as root: %v", key, err)
	}
	defer out.Body.Close()
	b, _ := io.ReadAll(out.Body)
	return string(b)
}

// checkMatrixVersions holds docs/clients.md's matrix to the versions the
// SDKs said they run: the table says what was tested.
func checkMatrixVersions(t *testing.T, versions map[string]map[string]string) {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(peers.root, "docs", "clients.md"))
	if err != nil {
		t.Fatal(err)
	}
	for client, vs := range versions {
		for name, version := range vs {
			if want := "`" + name + "` " + strings.TrimPrefix(version, "v"); !strings.Contains(string(doc), want) {
				t.Errorf("docs/clients.md does not name %s, which %s ran", want, client)
			}
		}
	}
}
