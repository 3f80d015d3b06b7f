package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"

	"github.com/tokenvendor/tokenvendor/wire"
)

// Schemes of a presented credential: a JWT, or a signed AWS
// sts:GetCallerIdentity request; their names on the wire.
const (
	SchemeBearer = wire.SchemeBearer
	SchemeAWSIAM = wire.SchemeAWSIAM
)

// Credential is what a request presents to say who is calling.
type Credential struct {
	// Scheme is SchemeBearer (a bare token is one) or SchemeAWSIAM.
	Scheme string
	Value  string
	// ClientCert is the connection's verified TLS client certificate, nil
	// when there is none.
	ClientCert *x509.Certificate
	// TenantToken is a JWT signed upstream that names the tenant of a
	// caller whose tenant must come from a token (a Lambda function in
	// tenant isolation mode forwards its end user's): the header
	// wire.TenantTokenHeader.
	TenantToken string
}

// ErrNoTenantToken refuses a caller whose tenant must come from a token
// that it did not present.
var ErrNoTenantToken = errors.New("forbidden: this caller's tenant must come from a token signed upstream, in " + wire.TenantTokenHeader)

// LogValue keeps the token or signed request out of every log.
func (Credential) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// SignedRequestVerifier verifies a caller's signed AWS request and maps its
// identity to a Caller; *awsiam.Verifier is one.
type SignedRequestVerifier interface {
	Verify(ctx context.Context, signed string) (Caller, error)
}

// TokenVerifier verifies a JWT, bound to the connection's client
// certificate when it says so, and maps its claims to a Caller;
// *jwks.Verifier is one.
type TokenVerifier interface {
	VerifyFrom(ctx context.Context, token string, cert *x509.Certificate) (Caller, error)
	// Missing counts a request that presented no token where one was
	// needed.
	Missing()
}

// Methods authenticates a request by the scheme of what it presents. A nil
// method refuses its scheme.
type Methods struct {
	JWT    TokenVerifier
	AWSIAM SignedRequestVerifier
}

// Schemes are the schemes m accepts, for a 401's challenge.
func (m Methods) Schemes() []string {
	var out []string
	if m.JWT != nil {
		out = append(out, SchemeBearer)
	}
	if m.AWSIAM != nil {
		out = append(out, SchemeAWSIAM)
	}
	return out
}

// Authenticate returns the caller c proves to be. Failures wrap
// ErrUnauthenticated, ErrJWKSUnavailable, ErrUnknownPrincipal or
// ErrIdentityUnavailable.
func (m Methods) Authenticate(ctx context.Context, c Credential) (Caller, error) {
	if c.Scheme == SchemeAWSIAM {
		if m.AWSIAM == nil {
			return Caller{}, fmt.Errorf("%w: AWS IAM callers are not configured (auth.aws_iam)", ErrUnauthenticated)
		}
		caller, err := m.AWSIAM.Verify(ctx, c.Value)
		if err != nil || !caller.TenantFromToken {
			return caller, err
		}
		return m.tenantFromToken(ctx, caller, c.TenantToken)
	}
	if m.JWT == nil {
		return Caller{}, fmt.Errorf("%w: no identity provider is configured; sign an AWS request instead (%s)", ErrUnauthenticated, SchemeAWSIAM)
	}
	return m.JWT.VerifyFrom(ctx, c.Value, c.ClientCert)
}

// tenantFromToken gives caller, proven by its own identity, the tenant of
// the token it forwards: verified as any bearer token is (issuer,
// audience, expiry, keys), and its tenant claim the caller's tenant. The
// caller stays itself (subject, client, limit); only the tenant comes from
// the token, and the caller may name no other.
func (m Methods) tenantFromToken(ctx context.Context, caller Caller, token string) (Caller, error) {
	switch {
	case m.JWT == nil:
		return Caller{}, fmt.Errorf("%w: a tenant token needs an identity provider to verify it (auth.issuer)", ErrUnauthenticated)
	case token == "":
		m.JWT.Missing()
		return Caller{}, ErrNoTenantToken
	}
	upstream, err := m.JWT.VerifyFrom(ctx, token, nil)
	if err != nil {
		return Caller{}, fmt.Errorf("%s: %w", wire.TenantTokenHeader, err)
	}
	caller.TenantID = upstream.TenantID
	caller.AnyTenant = false
	return caller, nil
}
