package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/api"
	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/awsiam"
	"github.com/tokenvendor/tokenvendor/internal/vend"
	"github.com/tokenvendor/tokenvendor/wire"
)

// fakeAuthenticator accepts "token-<tenant>" and remembers every token it saw.
type fakeAuthenticator struct {
	mu   sync.Mutex
	seen []string
}

func (a *fakeAuthenticator) Authenticate(_ context.Context, c auth.Credential) (auth.Caller, error) {
	token := c.Value
	a.mu.Lock()
	a.seen = append(a.seen, token)
	a.mu.Unlock()
	if c.Scheme == auth.SchemeAWSIAM {
		// A well-formed request for the test's server id, signed by the
		// test's access key, is acme's; STS's part is the e2e test's.
		r, err := awsiam.Parse(token)
		if err != nil || r.Header.Get(wire.ServerIDHeader) != "tokenvendor.test" || r.AccessKeyID != "ASIAPROCESSROLE01" {
			return auth.Caller{}, fmt.Errorf("%w: not the test's signed request (%v)", auth.ErrUnauthenticated, err)
		}
		return auth.Caller{Issuer: auth.IssuerAWSIAM, Subject: "arn:aws:sts::1:assumed-role/r/s", TenantID: "acme"}, nil
	}
	tenant, ok := strings.CutPrefix(token, "token-")
	if !ok {
		return auth.Caller{}, fmt.Errorf("%w: signature does not verify", auth.ErrUnauthenticated)
	}
	return auth.Caller{Subject: "svc-" + tenant, TenantID: tenant}, nil
}

// fakeVendor vends credentials named after the tenant and remembers requests.
type fakeVendor struct {
	mu   sync.Mutex
	reqs []vend.Request
}

var fakeExpiration = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func (v *fakeVendor) Vend(_ context.Context, caller auth.Caller, req vend.Request) (vend.Grant, error) {
	v.mu.Lock()
	v.reqs = append(v.reqs, req)
	v.mu.Unlock()
	if req.Profile != "objects" {
		return vend.Grant{}, fmt.Errorf("%w: %q", vend.ErrUnknownProfile, req.Profile)
	}
	tenant := caller.TenantID
	if req.TenantID != "" && req.TenantID != tenant {
		return vend.Grant{}, fmt.Errorf("%w: the token's tenant is not %s", vend.ErrForbidden, req.TenantID)
	}
	return vend.Grant{Credentials: vend.Credentials{
		AccessKeyID: "ASIA" + strings.ToUpper(tenant), SecretAccessKey: "secret-" + tenant, SessionToken: "session-" + tenant,
		Expiration: fakeExpiration, TenantID: tenant, Profile: req.Profile,
	}}, nil
}

// serviceEnv is the real HTTP handler in front of fakes.
type serviceEnv struct {
	url    string
	auth   *fakeAuthenticator
	vendor *fakeVendor
}

func newServiceEnv(t *testing.T) *serviceEnv {
	t.Helper()
	e := &serviceEnv{auth: &fakeAuthenticator{}, vendor: &fakeVendor{}}
	h, err := api.NewHandler(api.Config{Vendor: e.vendor, Authenticator: e.auth})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

func writeToken(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// runWith runs the command line with the given environment and returns
// stdout, stderr and the error main would print.
func runWith(env map[string]string, args ...string) (string, string, error) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

func TestCredentialProcessPrintsTheCredentialProcessShape(t *testing.T) {
	e := newServiceEnv(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeToken(t, tokenFile, "  token-acme\n\n")

	out, stderr, err := runWith(nil, "credential-process", "--url", e.url+"/", "--profile", "objects", "--token-file", tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if stderr != "" {
		t.Errorf("stderr = %q on success", stderr)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("stdout is not JSON: %v: %q", err, out)
	}
	want := map[string]any{
		"Version": float64(1), "AccessKeyId": "ASIAACME", "SecretAccessKey": "secret-acme",
		"SessionToken": "session-acme", "Expiration": "2030-01-02T03:04:05Z",
	}
	if len(got) != len(want) {
		t.Errorf("stdout has fields %v, want exactly %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if len(e.auth.seen) != 1 || e.auth.seen[0] != "token-acme" {
		t.Errorf("service saw tokens %q, want the file's token trimmed", e.auth.seen)
	}
	if len(e.vendor.reqs) != 1 || e.vendor.reqs[0] != (vend.Request{Profile: "objects"}) {
		t.Errorf("service saw requests %+v, want profile objects and no tenant", e.vendor.reqs)
	}
}

func TestCredentialProcessRereadsTheTokenFileOnEveryCall(t *testing.T) {
	e := newServiceEnv(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	var keys []string
	for _, tenant := range []string{"acme", "globex"} {
		writeToken(t, tokenFile, "token-"+tenant)
		out, _, err := runWith(nil, "credential-process", "--url", e.url, "--profile", "objects", "--token-file", tokenFile)
		if err != nil {
			t.Fatal(err)
		}
		var c wire.ProcessCredentials
		if err := json.Unmarshal([]byte(out), &c); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, c.AccessKeyID)
	}
	if keys[0] != "ASIAACME" || keys[1] != "ASIAGLOBEX" {
		t.Errorf("access keys %q: the second call did not use the rotated token", keys)
	}
}

func TestCredentialProcessTakesTheTokenFromTheEnvironmentAndNamesTheTenant(t *testing.T) {
	e := newServiceEnv(t)
	env := map[string]string{"APP_TOKEN": "token-globex\n"}
	out, _, err := runWith(env, "credential-process", "--url", e.url, "--profile", "objects", "--token-env", "APP_TOKEN", "--tenant", "globex")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"AccessKeyId":"ASIAGLOBEX"`) {
		t.Errorf("stdout = %s", out)
	}
	if e.auth.seen[0] != "token-globex" || e.vendor.reqs[0] != (vend.Request{Profile: "objects", TenantID: "globex"}) {
		t.Errorf("service saw token %q and request %+v", e.auth.seen[0], e.vendor.reqs[0])
	}
}

func TestCredentialProcessFailsWithOneClearLine(t *testing.T) {
	e := newServiceEnv(t)
	const secretToken = "token-acme"
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	writeToken(t, good, secretToken)
	bad := filepath.Join(dir, "bad")
	writeToken(t, bad, "garbage-"+secretToken)
	empty := filepath.Join(dir, "empty")
	writeToken(t, empty, " \n")
	huge := filepath.Join(dir, "huge")
	writeToken(t, huge, strings.Repeat("x", maxTokenBytes+1))

	serve := func(h http.HandlerFunc) string {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	html500 := serve(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, "<html>proxy error</html>")
	})
	echo := serve(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(wire.ErrorBody{Code: wire.CodeUpstreamUnavailable, Message: "you sent\n" + r.Header.Get("Authorization")})
	})
	incomplete := serve(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"Version":1,"AccessKeyId":"ASIA","SecretAccessKey":"s","Expiration":"2030-01-02T03:04:05Z"}`)
	})
	redirect := serve(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, e.url+wire.CredentialsPath, http.StatusTemporaryRedirect)
	})
	hang := serve(func(_ http.ResponseWriter, r *http.Request) {
		// Once the body is read, the server notices the client hanging up.
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	})
	down := httptest.NewServer(nil)
	refused := down.URL
	down.Close()

	tests := []struct {
		name string
		url  string
		args []string
		env  map[string]string
		want string
	}{
		{name: "token refused", url: e.url, args: []string{"--token-file", bad}, want: "tokenvendor answered 401 unauthenticated: unauthenticated: signature does not verify"},
		{name: "unknown profile", url: e.url, args: []string{"--token-file", good, "--profile", "nope"}, want: "tokenvendor answered 404 unknown_profile"},
		{name: "another tenant", url: e.url, args: []string{"--token-file", good, "--tenant", "globex"}, want: "tokenvendor answered 403 forbidden"},
		{name: "not the service", url: html500, args: []string{"--token-file", good}, want: "tokenvendor answered 500 (Internal Server Error, not a tokenvendor error body)"},
		{name: "message echoing the token", url: echo, args: []string{"--token-file", good}, want: "503 upstream_unavailable: you sent Bearer [token]; retry after 5 s"},
		{name: "incomplete credentials", url: incomplete, args: []string{"--token-file", good}, want: "without complete version 1 credentials"},
		{name: "redirect", url: redirect, args: []string{"--token-file", good}, want: "tokenvendor answered 307"},
		{name: "timeout", url: hang, args: []string{"--token-file", good, "--timeout", "50ms"}, want: "deadline exceeded"},
		{name: "nothing listening", url: refused, args: []string{"--token-file", good}, want: "connection refused"},
		{name: "missing token file", url: e.url, args: []string{"--token-file", filepath.Join(dir, "absent")}, want: "read token: open"},
		{name: "empty token file", url: e.url, args: []string{"--token-file", empty}, want: "is empty"},
		{name: "oversized token file", url: e.url, args: []string{"--token-file", huge}, want: "over 65536 bytes"},
		{name: "unset token variable", url: e.url, args: []string{"--token-env", "APP_TOKEN"}, want: "APP_TOKEN is empty or unset"},
		{name: "blank token variable", url: e.url, args: []string{"--token-env", "APP_TOKEN"}, env: map[string]string{"APP_TOKEN": "  "}, want: "APP_TOKEN is empty or unset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"credential-process", "--url", tt.url, "--profile", "objects"}, tt.args...)
			out, _, err := runWith(tt.env, args...)
			if err == nil {
				t.Fatalf("no error; stdout %q", out)
			}
			if out != "" {
				t.Errorf("stdout = %q on failure, want nothing", out)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not contain %q", msg, tt.want)
			}
			if !strings.HasPrefix(msg, "credential-process: ") || strings.ContainsAny(msg, "\r\n") {
				t.Errorf("error %q is not one line naming the command", msg)
			}
			if strings.Contains(msg, secretToken) {
				t.Errorf("error %q contains the token", msg)
			}
			if errors.Is(err, errUsage) {
				t.Errorf("a runtime failure is reported as a usage error: %v", err)
			}
		})
	}
}

// signingEnv gives the process AWS credentials of its own in the
// environment and nothing else the SDK could find.
func signingEnv(t *testing.T) {
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "ASIAPROCESSROLE01", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "session",
		"AWS_PROFILE": "", "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_REGION": "", "AWS_DEFAULT_REGION": "", "AWS_DEFAULT_PROFILE": "",
	} {
		t.Setenv(k, v)
	}
}

func TestCredentialProcessSignsWithTheProcesssOwnAWSCredentials(t *testing.T) {
	e := newServiceEnv(t)
	signingEnv(t)
	out, _, err := runWith(nil, "credential-process", "--url", e.url, "--profile", "objects",
		"--aws-iam-server-id", "tokenvendor.test", "--aws-iam-region", "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"AccessKeyId":"ASIAACME"`) {
		t.Fatalf("stdout = %q", out)
	}
	r, err := awsiam.Parse(e.auth.seen[0])
	if err != nil {
		t.Fatal(err)
	}
	if r.Region != "us-east-1" || r.Header.Get("X-Amz-Security-Token") != "session" || r.Header.Get("Host") != "sts.us-east-1.amazonaws.com" {
		t.Errorf("signed request: region %s, token %q, host %q", r.Region, r.Header.Get("X-Amz-Security-Token"), r.Header.Get("Host"))
	}
	want := signingKey(awsIAMFlags{serverID: "tokenvendor.test", region: "us-east-1"})
	if os.Getenv(signingGuard) != want {
		t.Errorf("%s = %q for what the SDK may start, want this invocation's key %q", signingGuard, os.Getenv(signingGuard), want)
	}

	// Without a region, nothing is signed.
	if _, _, err := runWith(nil, "credential-process", "--url", e.url, "--profile", "objects", "--aws-iam-server-id", "tokenvendor.test"); err == nil ||
		!strings.Contains(err.Error(), "no region") {
		t.Errorf("no region: err = %v", err)
	}
}

func TestCredentialProcessDoesNotStartItselfToFindItsSigningCredentials(t *testing.T) {
	e := newServiceEnv(t)
	signingEnv(t)
	args := []string{"credential-process", "--url", e.url, "--profile", "objects", "--aws-iam-server-id", "tokenvendor.test", "--aws-iam-region", "us-east-1"}
	self := signingKey(awsIAMFlags{serverID: "tokenvendor.test", region: "us-east-1"})
	for name, under := range map[string]string{
		"under itself":          self,
		"under itself, deeper":  "aaaa," + self,
		"four invocations deep": "a,b,c,d",
	} {
		if _, _, err := runWith(map[string]string{signingGuard: under}, args...); err == nil || !strings.Contains(err.Error(), "this command again") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if len(e.auth.seen) != 0 {
		t.Error("the service was called")
	}
	// Under another invocation (a signing profile that is itself a
	// tokenvendor for another server), it runs.
	if _, _, err := runWith(map[string]string{signingGuard: "another"}, args...); err != nil {
		t.Errorf("under another invocation: %v", err)
	}
}

func TestCredentialProcessUsageErrors(t *testing.T) {
	base := []string{"--url", "http://127.0.0.1:8080", "--profile", "objects", "--token-file", "/tmp/t"}
	tests := []struct {
		name   string
		mutate func([]string) []string
	}{
		{name: "no url", mutate: func(a []string) []string { return a[2:] }},
		{name: "url without scheme", mutate: func(a []string) []string { a[1] = "127.0.0.1:8080"; return a }},
		{name: "ftp url", mutate: func(a []string) []string { a[1] = "ftp://127.0.0.1/"; return a }},
		{name: "plain http beyond loopback", mutate: func(a []string) []string { a[1] = "http://tokenvendor.internal:8080"; return a }},
		{name: "no profile", mutate: func(a []string) []string { return append(a[:2], a[4:]...) }},
		{name: "no token", mutate: func(a []string) []string { return a[:4] }},
		{name: "two token sources", mutate: func(a []string) []string { return append(a, "--token-env", "T") }},
		{name: "a token and AWS IAM", mutate: func(a []string) []string { return append(a, "--aws-iam-server-id", "tv") }},
		{name: "an AWS IAM setting without AWS IAM", mutate: func(a []string) []string { return append(a, "--aws-iam-region", "us-east-1") }},
		{name: "zero timeout", mutate: func(a []string) []string { return append(a, "--timeout", "0s") }},
		{name: "stray argument", mutate: func(a []string) []string { return append(a, "extra") }},
		{name: "unknown flag", mutate: func(a []string) []string { return append(a, "--region", "x") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.mutate(append([]string(nil), base...))
			_, _, err := runWith(nil, append([]string{"credential-process"}, args...)...)
			if !errors.Is(err, errUsage) {
				t.Errorf("%v: err = %v, want a usage error", args, err)
			}
		})
	}
}
