package auth

import (
	"errors"
	"strconv"
	"strings"
)

// Errors of authentication. Every failure wraps ErrUnauthenticated, except
// ErrJWKSUnavailable: a valid token cannot be told from a forged one while
// no key set has ever been fetched.
var (
	ErrUnauthenticated = errors.New("unauthenticated")
	ErrJWKSUnavailable = errors.New("identity provider key set unavailable")
	// ErrUnknownPrincipal: an AWS identity proven, and not one the
	// configuration maps to a tenant.
	ErrUnknownPrincipal = errors.New("AWS principal not allowed")
	// ErrIdentityUnavailable: STS cannot say who signed a request now.
	ErrIdentityUnavailable = errors.New("STS cannot confirm the caller's identity")
)

// Caller is who a verified token, or a signed AWS request, says is calling.
type Caller struct {
	// Issuer is the token's iss, or IssuerAWSIAM for a caller that signed
	// an AWS request.
	Issuer  string
	Subject string
	// ClientID is the OAuth client the token was issued to (client_id or
	// azp), when the token says.
	ClientID string
	// TenantID is the tenant claim when it is a non-empty string, else "".
	TenantID string
	Scopes   []string
	// AnyTenant lets the caller name any tenant, as the override scope
	// does; set for AWS IAM principals configured so.
	AnyTenant bool
	// TenantFromToken says the caller's tenant must come from a token
	// signed upstream (Credential.TenantToken), not from the caller's own
	// identity; set for AWS IAM principals configured so.
	TenantFromToken bool
}

// IssuerAWSIAM is the Issuer of callers known by their AWS IAM identity.
const IssuerAWSIAM = "aws-iam"

// LimitKey names the caller's rate-limit budget: issuer and subject, and
// the OAuth client when the token names one, so that two issuers' subjects
// never share a budget. An AWS IAM caller's budget is its role's (the
// client): every session of the role shares it, however it is named. Each
// part is length-prefixed, so no choice of values makes two keys meet.
func (c Caller) LimitKey() string {
	parts := [3]string{c.Issuer, c.Subject, c.ClientID}
	if c.Issuer == IssuerAWSIAM {
		parts[1] = ""
	}
	var num [20]byte
	var b strings.Builder
	b.Grow(len(parts[0]) + len(parts[1]) + len(parts[2]) + 3*8)
	for _, p := range parts {
		b.Write(strconv.AppendInt(num[:0], int64(len(p)), 10))
		b.WriteByte(':')
		b.WriteString(p)
	}
	return b.String()
}

// HasScope reports whether the caller's token grants scope.
func (c Caller) HasScope(scope string) bool {
	for _, s := range c.Scopes {
		if s == scope {
			return true
		}
	}
	return false
}
