package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tokenvendor/tokenvendor/client"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
	"github.com/tokenvendor/tokenvendor/wire"
)

// fakeVendor answers POST /credentials like tokenvendor: each request gets
// credentials naming the tenant and the request number, unless status says
// otherwise.
type fakeVendor struct {
	calls  atomic.Int64
	status atomic.Int64 // 0: 200
	mu     sync.Mutex
	seen   []seen
	life   time.Duration
}

type seen struct {
	auth              string
	profile, tenant   string
	contentTypeIsJSON bool
	tenantToken       string
	hasTenantToken    bool
}

func (f *fakeVendor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := f.calls.Add(1)
	var body wire.CredentialsRequest
	_ = json.NewDecoder(r.Body).Decode(&body)
	f.mu.Lock()
	_, hasTenantToken := r.Header[http.CanonicalHeaderKey(wire.TenantTokenHeader)]
	f.seen = append(f.seen, seen{r.Header.Get("Authorization"), body.Profile, body.TenantID, r.Header.Get("Content-Type") == "application/json",
		r.Header.Get(wire.TenantTokenHeader), hasTenantToken})
	f.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != wire.CredentialsPath {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if s := int(f.status.Load()); s != 0 {
		w.WriteHeader(s)
		code := map[int]string{401: wire.CodeUnauthenticated, 403: wire.CodeForbidden, 503: wire.CodeUpstreamUnavailable}[s]
		_ = json.NewEncoder(w).Encode(wire.ErrorBody{Code: code, Message: "refused by the fake"})
		return
	}
	life := f.life
	if life == 0 {
		life = time.Hour
	}
	tenant := body.TenantID
	if tenant == "" {
		tenant = "own"
	}
	_ = json.NewEncoder(w).Encode(answer(fmt.Sprintf("ASIA-%s-%d", tenant, n), tenant, time.Now().Add(life)))
}

// answer is a 200 body of tokenvendor's.
func answer(accessKeyID, tenant string, expiration time.Time) wire.Credentials {
	return wire.Credentials{
		ProcessCredentials: wire.ProcessCredentials{Version: wire.CredentialsVersion, AccessKeyID: accessKeyID,
			SecretAccessKey: "secret", SessionToken: "token", Expiration: wire.Time{Time: expiration}},
		TenantID: tenant, Profile: "objects",
	}
}

func newClient(t *testing.T, f *fakeVendor, token func(context.Context) (string, error)) *client.Client {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c, err := client.New(client.Config{URL: srv.URL, Profile: "objects", Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newClientInProcess is a client that reaches h without a socket, for
// tests in a testing/synctest bubble: the bubble's clock, which the fake
// tokenvendor, the client and the SDK's credentials cache all read, moves
// only when every goroutine waits, so a test sleeps through credentials'
// lives at once and to the nanosecond.
func newClientInProcess(t *testing.T, h http.Handler, cfg client.Config) *client.Client {
	t.Helper()
	cfg.URL, cfg.HTTPClient = "https://tokenvendor.test", testsupport.HandlerClient(h)
	if cfg.Token == nil {
		cfg.Token = client.StaticToken("t")
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestProviderSendsTheTokenProfileAndTenantAndSetsExpiry(t *testing.T) {
	f := &fakeVendor{}
	c := newClient(t, f, client.StaticToken("the-token"))
	creds, err := c.Provider("acme").Retrieve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if creds.AccessKeyID != "ASIA-acme-1" || !creds.CanExpire || time.Until(creds.Expires) < 50*time.Minute {
		t.Fatalf("credentials %+v: want acme's, CanExpire and Expires an hour away", creds)
	}
	if s := f.seen[0]; s.auth != "Bearer the-token" || s.profile != "objects" || s.tenant != "acme" || !s.contentTypeIsJSON {
		t.Fatalf("request %+v", s)
	}
	if _, err := c.Provider("").Retrieve(context.Background()); err != nil || f.seen[1].tenant != "" {
		t.Fatalf("the token's own tenant: %v, request %+v; want no tenant_id sent", err, f.seen[1])
	}
}

func TestTheTenantTokenTravelsBesideTheCallersOwnWhenThereIsOne(t *testing.T) {
	f := &fakeVendor{}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	var tenantToken atomic.Value
	tenantToken.Store("upstream-jwt")
	c, err := client.New(client.Config{URL: srv.URL, Token: client.StaticToken("AWS-IAM signed"),
		TenantToken: func(context.Context) (string, error) { return tenantToken.Load().(string), nil }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Provider("acme").Retrieve(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := f.seen[0]; s.auth != "AWS-IAM signed" || s.tenantToken != "upstream-jwt" || s.tenant != "acme" {
		t.Fatalf("request %+v: want the signature, the tenant token beside it and the tenant", s)
	}
	tenantToken.Store("")
	if _, err := c.Provider("globex").Retrieve(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := f.seen[1]; s.hasTenantToken {
		t.Fatalf("an empty tenant token was sent as %q", s.tenantToken)
	}

	failing, _ := client.New(client.Config{URL: srv.URL, Token: client.StaticToken("t"),
		TenantToken: func(context.Context) (string, error) { return "", errors.New("no event") }})
	if _, err := failing.Provider("acme").Retrieve(context.Background()); err == nil || f.calls.Load() != 2 {
		t.Fatalf("a failing tenant token source: err = %v, %d requests; want an error and no request", err, f.calls.Load())
	}

	// Without a TenantToken source, the header is never sent.
	plain := newClient(t, f, client.StaticToken("t"))
	if _, err := plain.Provider("acme").Retrieve(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := f.seen[len(f.seen)-1]; s.hasTenantToken {
		t.Fatalf("a client without TenantToken sent %q", s.tenantToken)
	}
}

func TestOneProviderPerTenantSharedByEveryGoroutine(t *testing.T) {
	f := &fakeVendor{}
	c := newClient(t, f, client.StaticToken("t"))
	if c.Provider("acme") != c.Provider("acme") || c.Provider("acme") == c.Provider("globex") {
		t.Fatal("Provider must return one provider per tenant")
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tenant := []string{"acme", "globex"}[i%2]
			creds, err := c.Provider(tenant).Retrieve(context.Background())
			if err != nil || !strings.HasPrefix(creds.AccessKeyID, "ASIA-"+tenant+"-") {
				t.Errorf("%s got %s, %v", tenant, creds.AccessKeyID, err)
			}
		}()
	}
	wg.Wait()
	if f.calls.Load() != 2 {
		t.Fatalf("%d requests for 50 retrievals of two tenants, want 2", f.calls.Load())
	}
}

func TestRefreshesAheadOfExpiryButNeverOnEveryCall(t *testing.T) {
	// Credentials with 4 minutes left, under the 5-minute window: they are
	// still served until half their life is gone, not fetched on every call.
	f := &fakeVendor{life: 4 * time.Minute}
	c := newClient(t, f, client.StaticToken("t"))
	for range 20 {
		if _, err := c.Provider("acme").Retrieve(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if f.calls.Load() != 1 {
		t.Fatalf("%d requests for 20 retrievals of credentials 4 minutes from expiry, want 1", f.calls.Load())
	}

	// Two-second credentials are served until half their life is gone,
	// then refreshed while the first are still valid.
	synctest.Test(t, func(t *testing.T) {
		f := &fakeVendor{life: 2 * time.Second}
		p := newClientInProcess(t, f, client.Config{}).Provider("acme")
		expires := time.Now().Add(f.life)
		first, err := p.Retrieve(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second - time.Nanosecond)
		if again, err := p.Retrieve(context.Background()); err != nil || again.AccessKeyID != first.AccessKeyID {
			t.Fatalf("within half their life: %s, %v; want the first credentials", again.AccessKeyID, err)
		}
		time.Sleep(time.Nanosecond)
		second, err := p.Retrieve(context.Background())
		if err != nil || second.AccessKeyID == first.AccessKeyID || f.calls.Load() != 2 {
			t.Fatalf("half their life gone: %s, %v after %d requests; want fresh credentials", second.AccessKeyID, err, f.calls.Load())
		}
		if !time.Now().Before(expires) {
			t.Fatal("the refresh came after the first credentials expired")
		}
	})
}

func TestAFailedRefreshKeepsValidCredentialsAndBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeVendor{life: 2 * time.Minute}
		p := newClientInProcess(t, f, client.Config{}).Provider("acme")
		first, err := p.Retrieve(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute) // due for a refresh
		f.status.Store(503)
		for range 10 {
			got, err := p.Retrieve(context.Background())
			if err != nil || got.AccessKeyID != first.AccessKeyID {
				t.Fatalf("during a tokenvendor outage: %s, %v; want the still valid %s", got.AccessKeyID, err, first.AccessKeyID)
			}
		}
		if f.calls.Load() != 2 {
			t.Fatalf("%d requests: want the first and one failed refresh, then a back-off", f.calls.Load())
		}
		// The back-off is half the life left, at most 30 s: then it asks
		// again, and takes the answer once tokenvendor is back.
		time.Sleep(30*time.Second - time.Nanosecond)
		if _, err := p.Retrieve(context.Background()); err != nil || f.calls.Load() != 2 {
			t.Fatalf("within the back-off: %v after %d requests, want no request", err, f.calls.Load())
		}
		f.status.Store(0)
		time.Sleep(time.Nanosecond)
		got, err := p.Retrieve(context.Background())
		if err != nil || got.AccessKeyID == first.AccessKeyID || f.calls.Load() != 3 {
			t.Fatalf("after the back-off: %s, %v after %d requests; want fresh credentials", got.AccessKeyID, err, f.calls.Load())
		}
	})
}

func TestAnAnswerForAnotherTenantIsRefused(t *testing.T) {
	// A Token that is not one caller's: the first answer pins the token's
	// own tenant, a later one for another tenant is an error.
	synctest.Test(t, func(t *testing.T) {
		var answers atomic.Int64
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			answers.Add(1)
			tenant := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			_ = json.NewEncoder(w).Encode(answer("ASIA-"+tenant, tenant, time.Now().Add(2*time.Minute)))
		})
		var caller atomic.Value
		caller.Store("acme")
		c := newClientInProcess(t, h, client.Config{Token: func(context.Context) (string, error) { return caller.Load().(string), nil }})
		if _, err := c.Provider("").Retrieve(context.Background()); err != nil {
			t.Fatal(err)
		}
		caller.Store("globex")
		time.Sleep(time.Minute) // due for a refresh, which answers for globex
		creds, err := c.Provider("").Retrieve(context.Background())
		if answers.Load() != 2 || err != nil || creds.AccessKeyID != "ASIA-acme" {
			t.Fatalf("after %d answers: %s, %v; want the still valid acme credentials, not globex's", answers.Load(), creds.AccessKeyID, err)
		}
		if _, err := c.Provider("initech").Retrieve(context.Background()); !isCode(err, "tenant_mismatch") {
			t.Fatalf("asked for initech, answered for globex: err = %v, want tenant_mismatch", err)
		}
	})
}

func isCode(err error, code string) bool {
	var e *client.Error
	return errors.As(err, &e) && e.Code == code
}

func TestRetryAfterAndTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
		_ = json.NewEncoder(w).Encode(wire.ErrorBody{Code: wire.CodeRateLimited, Message: "slow down"})
	}))
	t.Cleanup(srv.Close)
	c, _ := client.New(client.Config{URL: srv.URL, Token: client.StaticToken("t")})
	_, err := c.Provider("acme").Retrieve(context.Background())
	var e *client.Error
	if !errors.As(err, &e) || e.Code != wire.CodeRateLimited || e.RetryAfter != 7*time.Second {
		t.Fatalf("err = %v (%+v), want rate_limited with a 7 s Retry-After", err, e)
	}

	hang := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-hang }))
	t.Cleanup(func() { close(hang); stuck.Close() })
	c, _ = client.New(client.Config{URL: stuck.URL, Token: client.StaticToken("t"), Timeout: 200 * time.Millisecond,
		HTTPClient: &http.Client{}}) // no timeout of its own
	done := make(chan error, 1)
	go func() { _, err := c.Provider("acme").Retrieve(context.Background()); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a hung tokenvendor answered")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Retrieve still waits on a hung tokenvendor after 5 s")
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	var leaked atomic.Bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			leaked.Store(true)
		}
	}))
	t.Cleanup(elsewhere.Close)
	srv := httptest.NewServer(http.RedirectHandler(elsewhere.URL+"/credentials", http.StatusTemporaryRedirect))
	t.Cleanup(srv.Close)
	c, _ := client.New(client.Config{URL: srv.URL, Token: client.StaticToken("secret-token")})
	if _, err := c.Provider("acme").Retrieve(context.Background()); err == nil {
		t.Fatal("a redirect was taken for credentials")
	}
	if leaked.Load() {
		t.Fatal("the token followed a redirect")
	}
}

func TestRefusalIsAnErrorWithTheCodeAndNeverTheToken(t *testing.T) {
	for _, status := range []int{401, 403, 503} {
		f := &fakeVendor{}
		f.status.Store(int64(status))
		var tokens atomic.Int64
		c := newClient(t, f, func(context.Context) (string, error) { tokens.Add(1); return "secret-token-value", nil })
		for range 2 {
			_, err := c.Provider("acme").Retrieve(context.Background())
			var e *client.Error
			if !errors.As(err, &e) || e.Status != status || e.Code == "" || e.Message != "refused by the fake" {
				t.Fatalf("%d: err = %v (%#v), want a *client.Error with the code", status, err, e)
			}
			if strings.Contains(err.Error(), "secret-token-value") {
				t.Fatalf("the error shows the token: %v", err)
			}
		}
		if tokens.Load() != 2 {
			t.Fatalf("%d: token asked %d times for two retrievals, want 2: a refusal is not cached", status, tokens.Load())
		}
	}
}

func TestRefusalSurfacesThroughAnAWSClient(t *testing.T) {
	f := &fakeVendor{}
	f.status.Store(403)
	c := newClient(t, f, client.StaticToken("t"))
	s3c := s3.New(s3.Options{Region: "us-east-1", Credentials: c.Provider("globex"), BaseEndpoint: aws.String("http://127.0.0.1:1"), UsePathStyle: true})
	_, err := s3c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
	var e *client.Error
	if !errors.As(err, &e) || e.Code != wire.CodeForbidden {
		t.Fatalf("err = %v, want a *client.Error forbidden inside the S3 client's error", err)
	}
}

func TestTokenFileIsReadOnEveryRequest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	tok := client.TokenFile(path)
	for _, want := range []string{"first", "second"} {
		if err := os.WriteFile(path, []byte(want+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := tok(context.Background()); err != nil || got != want {
			t.Fatalf("TokenFile = %q, %v; want %q, trimmed", got, err, want)
		}
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tok(context.Background()); err == nil {
		t.Fatal("an empty token file was accepted")
	}
}

func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  client.Config
	}{
		{"no token", client.Config{URL: "https://tokenvendor.example"}},
		{"plain http beyond loopback", client.Config{URL: "http://tokenvendor.example", Token: client.StaticToken("t")}},
		{"not a URL", client.Config{URL: "tokenvendor", Token: client.StaticToken("t")}},
	} {
		if _, err := client.New(tc.cfg); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	// Loopback is wire.Loopback's: every loopback address, not a list.
	for _, url := range []string{"http://localhost:8080", "http://127.0.0.1:8080", "http://127.0.0.2:8080", "http://[::1]:8080"} {
		if _, err := client.New(client.Config{URL: url, Token: client.StaticToken("t")}); err != nil {
			t.Errorf("%s: %v", url, err)
		}
	}
}

// TestAnIncompleteAnswerIsRefused: the client reads an answer by the rule
// credential-process does (wire.ProcessCredentials.Validate), so neither
// hands an SDK credentials it cannot use.
func TestAnIncompleteAnswerIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*wire.Credentials)
	}{
		{"no session token", func(c *wire.Credentials) { c.SessionToken = "" }},
		{"no secret", func(c *wire.Credentials) { c.SecretAccessKey = "" }},
		{"no version", func(c *wire.Credentials) { c.Version = 0 }},
		{"no expiration", func(c *wire.Credentials) { c.Expiration = wire.Time{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c := answer("ASIA-acme", "acme", time.Now().Add(time.Hour))
				tc.mutate(&c)
				_ = json.NewEncoder(w).Encode(c)
			}))
			t.Cleanup(srv.Close)
			c, _ := client.New(client.Config{URL: srv.URL, Token: client.StaticToken("t")})
			creds, err := c.Provider("acme").Retrieve(context.Background())
			if !isCode(err, "unexpected_answer") || creds.HasKeys() {
				t.Fatalf("Retrieve = %+v, %v; want unexpected_answer", creds, err)
			}
		})
	}
}
