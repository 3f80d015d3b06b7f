// Package lambdatenant gets tenant-scoped AWS credentials from tokenvendor
// for a Lambda function in tenant isolation mode (TenancyConfig
// TenantIsolationMode PER_TENANT), where every invoke carries a tenant id
// and an execution environment never serves two tenants, but every
// tenant's environment holds the same execution role.
//
// tokenvendor then takes two proofs in one request and trusts neither
// alone: the function's own, a GetCallerIdentity signed with its execution
// role (an auth.aws_iam principal with tenant_from: token), and the
// tenant's, the end user's JWT that the API Gateway authorizer verified,
// forwarded in the event and sent beside the signature in
// X-Tokenvendor-Tenant-Token. The invoke's tenant id is sent as tenant_id;
// the token's tenant must be that one, or tokenvendor refuses (403) without
// an STS call.
//
// Create one Vendor per process, outside the handler, and call Credentials
// in each invoke with the invoke's context and the forwarded token:
//
//	tv, err := lambdatenant.New(lambdatenant.Config{URL: os.Getenv("TOKENVENDOR_URL"), Profile: "orders",
//		AWSIAM: client.AWSIAMConfig{Credentials: cfg.Credentials, ServerID: "tokenvendor.prod", Region: "us-east-1"}})
//	...
//	creds, err := tv.Credentials(ctx, lambdatenant.BearerToken(event.Headers))
//	objects := s3.NewFromConfig(cfg, func(o *s3.Options) { o.Credentials = creds })
//
// The credentials are cached for the process, which is safe only because
// the environment serves one tenant. A tripwire holds it to that: the first
// invoke's tenant id is pinned; an invoke without one is refused
// (ErrNoTenant), and an invoke for another trips the process for good
// (ErrTripped): every later call, and every Retrieve of a provider already
// handed out, fails, whatever the tenant.
//
// The token is checked by tokenvendor when credentials are fetched (the
// first invoke, then each refresh, with the newest token an invoke
// brought), not on every invoke: invokes between two fetches are held to
// the fetched tenant by the tripwire alone.
package lambdatenant

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/tokenvendor/tokenvendor/client"
)

var (
	// ErrNoTenant refuses an invoke whose context carries no tenant id: the
	// function is not in tenant isolation mode, or the call is not an
	// invoke's.
	ErrNoTenant = errors.New("lambdatenant: the invoke carries no tenant id (is the function in tenant isolation mode?)")
	// ErrNoTenantToken refuses an invoke that forwards no token: the
	// credentials cached for the process are its tenant's, and an invoke
	// that cannot show a token of that tenant gets none of them.
	ErrNoTenantToken = errors.New("lambdatenant: the invoke forwards no tenant token")
	// ErrTripped refuses every call once a second tenant id appeared in the
	// process: its environment served two tenants, which the isolation
	// mode promises never happens, so nothing cached in it is trusted.
	ErrTripped = errors.New("lambdatenant: a second tenant in one execution environment")
)

// Config configures a Vendor.
type Config struct {
	// URL is tokenvendor's base URL: https, or http on a loopback address.
	URL string
	// Profile names the profile; empty when tokenvendor has only one.
	Profile string
	// AWSIAM says how the function proves its execution role: its
	// Credentials (the function's own, e.g. awsconfig.LoadDefaultConfig's),
	// tokenvendor's auth.aws_iam server_id, region and sts_endpoint.
	AWSIAM client.AWSIAMConfig
	// HTTPClient sends the requests; default a client that follows no
	// redirect.
	HTTPClient *http.Client
	// Timeout bounds one request to tokenvendor; default 10 s.
	Timeout time.Duration
	// ExpiryWindow is how long before they expire credentials are
	// refreshed, at most; default client.DefaultExpiryWindow.
	ExpiryWindow time.Duration
}

// Vendor hands out the credentials of the one tenant its process serves.
// It is safe for concurrent use.
type Vendor struct {
	client *client.Client

	mu       sync.Mutex
	tenant   string // pinned by the first invoke
	tripped  bool
	token    string // the newest tenant token an invoke brought
	provider *guard
}

// New returns a Vendor. Call it once per process, outside the handler.
func New(cfg Config) (*Vendor, error) {
	sign, err := client.AWSIAMToken(cfg.AWSIAM)
	if err != nil {
		return nil, fmt.Errorf("lambdatenant: %w", err)
	}
	v := &Vendor{}
	c, err := client.New(client.Config{URL: cfg.URL, Profile: cfg.Profile, Token: sign, TenantToken: v.tenantToken,
		HTTPClient: cfg.HTTPClient, Timeout: cfg.Timeout, ExpiryWindow: cfg.ExpiryWindow})
	if err != nil {
		return nil, fmt.Errorf("lambdatenant: %w", err)
	}
	v.client = c
	return v, nil
}

// Credentials returns the credentials provider of the invoke's tenant,
// lambdacontext.FromContext(ctx).TenantID, given the token the invoker
// forwarded (the JWT itself, without "Bearer "; see BearerToken). Every
// invoke of the process gets the same provider, cached and refreshed
// ahead of expiry with the newest token seen, so N invokes cost one
// request to tokenvendor.
//
// It fails with ErrNoTenant when the context carries no tenant id, with
// ErrTripped when the tenant id is not the first invoke's (then on every
// later call), and with ErrNoTenantToken when the invoke forwards no
// token: what the process holds is for invokes that show one. Refusals of tokenvendor surface from the provider's
// Retrieve (in an AWS client's error) as *client.Error.
func (v *Vendor) Credentials(ctx context.Context, tenantToken string) (aws.CredentialsProvider, error) {
	lc, ok := lambdacontext.FromContext(ctx)
	if !ok || lc.TenantID == "" {
		return nil, ErrNoTenant
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case v.tripped:
		return nil, ErrTripped
	case v.tenant == "":
		v.tenant = lc.TenantID
		v.provider = &guard{v: v, tenant: v.client.Provider(lc.TenantID)}
	case lc.TenantID != v.tenant:
		v.tripped = true
		return nil, fmt.Errorf("%w: the process serves tenant %q, this invoke is for %q", ErrTripped, v.tenant, lc.TenantID)
	}
	if tenantToken == "" {
		return nil, ErrNoTenantToken
	}
	v.token = tenantToken
	return v.provider, nil
}

// tenantToken is the client's TenantToken: the newest token seen.
func (v *Vendor) tenantToken(context.Context) (string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.tripped {
		return "", ErrTripped
	}
	return v.token, nil
}

// guard is the provider handed out: the tenant's provider of the Go client
// (an aws.CredentialsCache, refreshed ahead, refusing an answer for another
// tenant), unless the process tripped. It is no cache itself, so that a
// trip stops every AWS client at its next call: the SDK's clients ask
// their provider on every request (wrapping it in a cache of one's own
// would keep serving until expiry).
type guard struct {
	v      *Vendor
	tenant aws.CredentialsProvider
}

func (g *guard) Retrieve(ctx context.Context) (aws.Credentials, error) {
	g.v.mu.Lock()
	tripped := g.v.tripped
	g.v.mu.Unlock()
	if tripped {
		return aws.Credentials{}, ErrTripped
	}
	return g.tenant.Retrieve(ctx)
}

// BearerToken is the token of an event's Authorization header, "Bearer
// <token>" (API Gateway forwards it as the client sent it; its HTTP APIs
// lower-case header names), or "" when there is none.
func BearerToken(headers map[string]string) string {
	for name, value := range headers {
		if !strings.EqualFold(name, "Authorization") {
			continue
		}
		scheme, token, ok := strings.Cut(strings.TrimSpace(value), " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(token)
		}
	}
	return ""
}
