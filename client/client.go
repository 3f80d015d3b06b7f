// Package client gets tenant-scoped AWS credentials from tokenvendor for Go
// services that serve many tenants: one aws.CredentialsProvider per tenant,
// shared by every request of that tenant, refreshed ahead of expiry, backed
// by tokenvendor's cache instead of an AssumeRole per request.
//
//	c, _ := client.New(client.Config{URL: "https://tokenvendor.tokenvendor.svc", Profile: "orders",
//		Token: client.TokenFile("/var/run/secrets/tokenvendor/token")})
//	db := dynamodb.New(dynamodb.Options{Region: "us-east-1", Credentials: c.Provider(tenantID)})
//
// Each tenant's client reaches only that tenant's data: IAM enforces it
// with the session policy tokenvendor rendered for the tenant.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/tokenvendor/tokenvendor/wire"
)

// DefaultExpiryWindow is how long before Expires a provider's credentials
// are refreshed: the AWS SDKs' own margin for container credentials.
const DefaultExpiryWindow = 5 * time.Minute

// maxBody bounds what is read of an answer.
const maxBody = 64 << 10

// Config configures a Client.
type Config struct {
	// URL is tokenvendor's base URL: https, or http on a loopback address
	// (wire.CheckBaseURL).
	URL string
	// Profile names the profile; empty when tokenvendor has only one.
	Profile string
	// Token returns the token of the one caller this Client acts as, for
	// each request to tokenvendor; see TokenFile, StaticToken and
	// AWSIAMToken (a caller without an identity provider). It may
	// rotate (a projected token), but never be another caller's: a
	// provider's credentials serve every request for its tenant. A service
	// forwarding its users' tokens makes a Client per user.
	Token func(context.Context) (string, error)
	// TenantToken, when set, returns a JWT signed upstream that names the
	// tenant of a caller whose tenant must come from a token (an
	// auth.aws_iam principal with tenant_from: token: a Lambda function in
	// tenant isolation mode forwards its end user's), sent beside Token in
	// wire.TenantTokenHeader; "" sends none. See package lambdatenant, which
	// sets it.
	TenantToken func(context.Context) (string, error)
	// HTTPClient sends the requests; default a client that follows no
	// redirect.
	HTTPClient *http.Client
	// Timeout bounds one request to tokenvendor, whatever HTTPClient's;
	// default 10 s.
	Timeout time.Duration
	// ExpiryWindow is how long before they expire credentials are
	// refreshed, at most: never more than half their remaining life, so
	// that short-lived credentials are not asked for on every call.
	// Default DefaultExpiryWindow.
	ExpiryWindow time.Duration
}

// Client hands out one credentials provider per tenant. It is safe for
// concurrent use.
type Client struct {
	cfg      Config
	endpoint string

	mu        sync.Mutex
	providers map[string]*aws.CredentialsCache
}

// New returns a Client.
func New(cfg Config) (*Client, error) {
	if _, err := wire.CheckBaseURL(cfg.URL); err != nil {
		return nil, fmt.Errorf("client: URL %w", err)
	}
	if cfg.Token == nil {
		return nil, errors.New("client: no Token")
	}
	if cfg.HTTPClient == nil {
		// tokenvendor never redirects; following one could send the token
		// elsewhere.
		cfg.HTTPClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.ExpiryWindow == 0 {
		cfg.ExpiryWindow = DefaultExpiryWindow
	}
	return &Client{cfg: cfg, endpoint: strings.TrimSuffix(cfg.URL, "/") + wire.CredentialsPath, providers: map[string]*aws.CredentialsCache{}}, nil
}

// Provider returns the credentials provider of tenantID ("" for the
// token's own tenant). Every call for one tenant returns the same provider,
// which caches its credentials and refreshes them ExpiryWindow before they
// expire, so all of a tenant's clients share one set.
func (c *Client) Provider(tenantID string) aws.CredentialsProvider {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.providers[tenantID]
	if !ok {
		p = aws.NewCredentialsCache(&provider{c: c, tenant: tenantID}, func(o *aws.CredentialsCacheOptions) {
			o.ExpiryWindow = c.cfg.ExpiryWindow
		})
		c.providers[tenantID] = p
	}
	return p
}

// Error is tokenvendor's refusal: its status, and the stable code and
// message of its JSON error body, or a code of the client's own
// (unexpected_answer, tenant_mismatch). It never holds the token.
type Error struct {
	Status  int
	Code    string
	Message string
	// RetryAfter is the Retry-After of a 429 or 503, 0 when there is none.
	RetryAfter time.Duration
}

// Error says the status, code and message.
func (e *Error) Error() string {
	return fmt.Sprintf("tokenvendor: %d %s: %s", e.Status, e.Code, e.Message)
}

// fallbackRetry is how soon a provider asks again after tokenvendor
// failed, while it keeps serving the credentials it has.
const fallbackRetry = 30 * time.Second

// provider fetches one tenant's credentials. Beside Retrieve it tells the
// SDK's credentials cache how early to refresh (AdjustExpiresBy) and to
// keep valid credentials when a refresh fails (HandleFailToRefresh).
type provider struct {
	c      *Client
	tenant string

	mu       sync.Mutex
	last     aws.Credentials // the latest credentials, their Expires unadjusted
	tenantOf string          // the tenant tokenvendor answered for
	fallback bool            // the cache holds last after a failed refresh
}

// AdjustExpiresBy brings Expires forward by the cache's window, but by no
// more than half the remaining life; after a failed refresh, to a retry
// in fallbackRetry at most.
func (p *provider) AdjustExpiresBy(creds aws.Credentials, dur time.Duration) (aws.Credentials, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	remaining := time.Until(creds.Expires)
	if p.fallback {
		creds.Expires = time.Now().Add(min(fallbackRetry, remaining/2))
		return creds, nil
	}
	creds.Expires = creds.Expires.Add(-min(-dur, remaining/2))
	return creds, nil
}

// HandleFailToRefresh keeps the latest credentials while they are valid:
// a short tokenvendor outage must not fail AWS calls.
func (p *provider) HandleFailToRefresh(_ context.Context, _ aws.Credentials, err error) (aws.Credentials, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last.HasKeys() && time.Until(p.last.Expires) > 0 {
		p.fallback = true
		return p.last, nil
	}
	return aws.Credentials{}, err
}

// Retrieve asks tokenvendor for the tenant's credentials.
func (p *provider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	creds, tenant, err := p.fetch(ctx)
	if err != nil {
		return aws.Credentials{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// The cache key is the tenant alone: an answer for another tenant (a
	// Token that is not one caller's) must never be served under it.
	want := p.tenant
	if want == "" {
		want = p.tenantOf
	}
	if want != "" && tenant != want {
		return aws.Credentials{}, &Error{Status: http.StatusOK, Code: "tenant_mismatch",
			Message: fmt.Sprintf("asked for tenant %q, tokenvendor answered for %q: is Token one caller's?", want, tenant)}
	}
	p.tenantOf, p.last, p.fallback = tenant, creds, false
	return creds, nil
}

// fetch is one POST /credentials.
func (p *provider) fetch(ctx context.Context) (aws.Credentials, string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.c.cfg.Timeout)
	defer cancel()
	return p.post(ctx)
}

func (p *provider) post(ctx context.Context) (aws.Credentials, string, error) {
	token, err := p.c.cfg.Token(ctx)
	if err != nil {
		return aws.Credentials{}, "", fmt.Errorf("tokenvendor: token: %w", err)
	}
	body, _ := json.Marshal(wire.CredentialsRequest{Profile: p.c.cfg.Profile, TenantID: p.tenant})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.c.endpoint, bytes.NewReader(body))
	if err != nil {
		return aws.Credentials{}, "", fmt.Errorf("tokenvendor: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", wire.Authorization(token))
	if p.c.cfg.TenantToken != nil {
		tenantToken, err := p.c.cfg.TenantToken(ctx)
		if err != nil {
			return aws.Credentials{}, "", fmt.Errorf("tokenvendor: tenant token: %w", err)
		}
		if tenantToken != "" {
			req.Header.Set(wire.TenantTokenHeader, tenantToken)
		}
	}
	res, err := p.c.cfg.HTTPClient.Do(req)
	if err != nil {
		return aws.Credentials{}, "", fmt.Errorf("tokenvendor: %w", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxBody))
	if err != nil {
		return aws.Credentials{}, "", fmt.Errorf("tokenvendor: read answer: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		var body wire.ErrorBody
		e := &Error{Status: res.StatusCode, Code: "unexpected_answer", Message: http.StatusText(res.StatusCode)}
		if json.Unmarshal(b, &body) == nil && body.Code != "" {
			e.Code, e.Message = body.Code, body.Message
		}
		if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && s > 0 {
			e.RetryAfter = time.Duration(s) * time.Second
		}
		return aws.Credentials{}, "", e
	}
	var out wire.Credentials
	if err := json.Unmarshal(b, &out); err != nil {
		return aws.Credentials{}, "", &Error{Status: res.StatusCode, Code: "unexpected_answer", Message: "the answer is not credentials"}
	}
	if err := out.Validate(); err != nil {
		return aws.Credentials{}, "", &Error{Status: res.StatusCode, Code: "unexpected_answer", Message: err.Error()}
	}
	return aws.Credentials{
		AccessKeyID:     out.AccessKeyID,
		SecretAccessKey: out.SecretAccessKey,
		SessionToken:    out.SessionToken,
		Source:          "tokenvendor",
		CanExpire:       true,
		Expires:         out.Expiration.Time,
	}, out.TenantID, nil
}

// TokenFile returns a token source that reads path on every call, so that
// a rotated token (a projected service-account token) is used at once.
// Surrounding white space is trimmed.
func TokenFile(path string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("token file %s is empty", path)
		}
		return t, nil
	}
}

// StaticToken returns a token source that always returns token.
func StaticToken(token string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) { return token, nil }
}
