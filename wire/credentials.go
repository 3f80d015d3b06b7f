package wire

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// CredentialsVersion is the Version of ProcessCredentials: the AWS
// credential_process format's only one.
const CredentialsVersion = 1

// CredentialsRequest is the body of a POST to CredentialsPath. Both
// fields may be omitted: the profile when only one is configured, the
// tenant for the token's own.
type CredentialsRequest struct {
	Profile  string `json:"profile,omitempty"`
	TenantID string `json:"tenant_id,omitempty"`
}

// ProcessCredentials is what an AWS credential_process prints, which the
// AWS SDKs and CLI read.
type ProcessCredentials struct {
	Version         int    `json:"Version"`
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
	SessionToken    string `json:"SessionToken"`
	Expiration      Time   `json:"Expiration"`
}

// ErrIncomplete is Validate's refusal.
var ErrIncomplete = errors.New("not complete version 1 credentials")

// Validate says whether c can be used: Version 1, and every field set. An
// answer without a SessionToken is refused: tokenvendor's credentials are
// temporary, and an SDK given them without one fails later, further from
// the cause.
func (c ProcessCredentials) Validate() error {
	var missing []string
	if c.Version != CredentialsVersion {
		missing = append(missing, fmt.Sprintf("Version %d, want %d", c.Version, CredentialsVersion))
	}
	for _, f := range []struct{ name, value string }{
		{"AccessKeyId", c.AccessKeyID}, {"SecretAccessKey", c.SecretAccessKey}, {"SessionToken", c.SessionToken},
	} {
		if f.value == "" {
			missing = append(missing, "no "+f.name)
		}
	}
	if c.Expiration.IsZero() {
		missing = append(missing, "no Expiration")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrIncomplete, strings.Join(missing, ", "))
	}
	return nil
}

// String keeps the secret parts out of fmt's output.
func (c ProcessCredentials) String() string {
	return fmt.Sprintf("{Version:%d AccessKeyId:%s SecretAccessKey:REDACTED SessionToken:REDACTED Expiration:%s}",
		c.Version, c.AccessKeyID, c.Expiration)
}

// GoString is String, so %#v redacts too.
func (c ProcessCredentials) GoString() string { return c.String() }

// LogValue keeps the secret parts out of every log.
func (c ProcessCredentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("AccessKeyId", c.AccessKeyID), slog.String("Expiration", c.Expiration.String()))
}

// Credentials is the 200 body of a POST to CredentialsPath: the
// credential_process shape plus the tenant and the profile the credentials
// are for.
type Credentials struct {
	ProcessCredentials
	TenantID string `json:"TenantId"`
	Profile  string `json:"Profile"`
}

// String keeps the secret parts out of fmt's output.
func (c Credentials) String() string {
	return fmt.Sprintf("{%s TenantId:%s Profile:%s}", c.ProcessCredentials, c.TenantID, c.Profile)
}

// GoString is String, so %#v redacts too.
func (c Credentials) GoString() string { return c.String() }

// LogValue keeps the secret parts out of every log.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("AccessKeyId", c.AccessKeyID), slog.String("Expiration", c.Expiration.String()),
		slog.String("TenantId", c.TenantID), slog.String("Profile", c.Profile))
}

// ContainerCredentials is the 200 body of ContainerCredentialsPath: the
// shape AWS SDKs read from AWS_CONTAINER_CREDENTIALS_FULL_URI.
type ContainerCredentials struct {
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
	Token           string `json:"Token"`
	Expiration      Time   `json:"Expiration"`
}

// String keeps the secret parts out of fmt's output.
func (c ContainerCredentials) String() string {
	return fmt.Sprintf("{AccessKeyId:%s SecretAccessKey:REDACTED Token:REDACTED Expiration:%s}", c.AccessKeyID, c.Expiration)
}

// GoString is String, so %#v redacts too.
func (c ContainerCredentials) GoString() string { return c.String() }

// LogValue keeps the secret parts out of every log.
func (c ContainerCredentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("AccessKeyId", c.AccessKeyID), slog.String("Expiration", c.Expiration.String()))
}

// Time is an instant as the wire carries it: RFC 3339 in UTC, to the
// second ("2030-01-02T03:04:05Z"), the form the AWS SDKs and CLI read. It
// reads any RFC 3339 instant.
type Time struct{ time.Time }

// MarshalJSON writes t in UTC to the second.
func (t Time) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, len(time.RFC3339)+2)
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, time.RFC3339)
	return append(b, '"'), nil
}

// String is t as MarshalJSON writes it, unquoted.
func (t Time) String() string { return t.UTC().Format(time.RFC3339) }
