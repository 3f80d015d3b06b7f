package auth

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
)

// Schemes of a presented credential: a JWT, or a signed AWS
// sts:GetCallerIdentity request.
const (
	SchemeBearer = "Bearer"
	SchemeAWSIAM = "AWS-IAM"
)

// Credential is what a request presents to say who is calling.
type Credential struct {
	// Scheme is SchemeBearer (a bare token is one) or SchemeAWSIAM.
	Scheme string
	Value  string
	// ClientCert is the connection's verified TLS client certificate, nil
	// when there is none.
	ClientCert *x509.Certificate
}

// LogValue keeps the token or signed request out of every log.
func (Credential) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// SignedRequestVerifier verifies a caller's signed AWS request and maps its
// identity to a Caller; *awsiam.Verifier is one.
type SignedRequestVerifier interface {
	Verify(ctx context.Context, signed string) (Caller, error)
}

// Methods authenticates a request by the scheme of what it presents. A nil
// method refuses its scheme.
type Methods struct {
	JWT    *Verifier
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
		return m.AWSIAM.Verify(ctx, c.Value)
	}
	if m.JWT == nil {
		return Caller{}, fmt.Errorf("%w: no identity provider is configured; sign an AWS request instead (%s)", ErrUnauthenticated, SchemeAWSIAM)
	}
	return m.JWT.VerifyFrom(ctx, c.Value, c.ClientCert)
}
