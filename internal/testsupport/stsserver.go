package testsupport

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"
)

// STSServer is an httptest STS speaking the query protocol, for what a
// real STS client sends: it keeps each request's form and answers with
// credentials living an hour, or with the error Refuse gave it.
type STSServer struct {
	*httptest.Server
	mu     sync.Mutex
	forms  []url.Values
	status int
	code   string
	packed int
}

// NewSTSServer starts an STSServer, closed when the test ends.
func NewSTSServer(t testing.TB) *STSServer {
	s := &STSServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Error(err)
		}
		s.mu.Lock()
		s.forms = append(s.forms, r.PostForm)
		status, code, packed := s.status, s.code, max(s.packed, 7)
		s.mu.Unlock()
		w.Header().Set("Content-Type", "text/xml")
		if code != "" {
			w.WriteHeader(status)
			fmt.Fprintf(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>%s</Code><Message>upstream says no</Message></Error><RequestId>r1</RequestId></ErrorResponse>`, code)
			return
		}
		fmt.Fprintf(w, `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>
<Credentials><AccessKeyId>ASIAWIRE</AccessKeyId><SecretAccessKey>wire-secret</SecretAccessKey><SessionToken>wire-token</SessionToken><Expiration>%s</Expiration></Credentials>
<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/TenantData/acme@objects</Arn><AssumedRoleId>AROA:acme@objects</AssumedRoleId></AssumedRoleUser>
<PackedPolicySize>%d</PackedPolicySize></AssumeRoleResult><ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></AssumeRoleResponse>`,
			time.Now().Add(time.Hour).UTC().Format(time.RFC3339), packed)
	}))
	t.Cleanup(s.Close)
	return s
}

// Forms are the forms received so far, in order.
func (s *STSServer) Forms() []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]url.Values(nil), s.forms...)
}

// Refuse makes every later answer the error code with status; "" answers
// credentials again.
func (s *STSServer) Refuse(status int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.code = status, code
}

// PackedPolicySize sets the PackedPolicySize answered (at least 7).
func (s *STSServer) PackedPolicySize(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.packed = n
}
