package testsupport

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// STSServerMessage is the message of every error an STSServer answers, for
// tests that check it never reaches a caller.
const STSServerMessage = "upstream says no: the secret is wrong"

// STSServer is an httptest STS speaking the query protocol, for what a
// real STS client sends: it keeps each request, answers AssumeRole with
// credentials living an hour (AccessKeyId ASIAWIRE, SessionToken
// wire-token), GetCallerIdentity with the ARN Know mapped the signing
// access key to (403 InvalidClientTokenId for a key it does not know), or
// anything with the error Refuse gave it.
type STSServer struct {
	*httptest.Server
	mu         sync.Mutex
	received   []Received
	status     int
	code       string
	packed     int
	identities map[string]string
}

// Received is one request as an STSServer got it.
type Received struct {
	Method, Host, Path, RawQuery string
	Header                       http.Header
	Body                         string
	Form                         url.Values
}

// NewSTSServer starts an STSServer, closed when the test ends.
func NewSTSServer(t testing.TB) *STSServer {
	s := &STSServer{identities: map[string]string{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *STSServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(body))
	s.mu.Lock()
	s.received = append(s.received, Received{Method: r.Method, Host: r.Host, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
		Header: r.Header.Clone(), Body: string(body), Form: form})
	status, code, packed := s.status, s.code, max(s.packed, 7)
	akid := strings.Split(strings.TrimPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential="), "/")[0]
	arn, known := s.identities[akid]
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/xml")
	switch {
	case status != 0:
		w.WriteHeader(status)
		fmt.Fprintf(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>r1</RequestId></ErrorResponse>`, code, STSServerMessage)
	case form.Get("Action") == "GetCallerIdentity" && !known:
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code></Error></ErrorResponse>`)
	case form.Get("Action") == "GetCallerIdentity":
		fmt.Fprint(w, CallerIdentityXML(arn, strings.Split(arn, ":")[4]))
	default:
		fmt.Fprint(w, assumeRoleXML("ASIAWIRE", "wire-secret", "wire-token", time.Now().Add(time.Hour), packed))
	}
}

// Know makes GetCallerIdentity signed with accessKeyID answer arn.
func (s *STSServer) Know(accessKeyID, arn string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.identities[accessKeyID] = arn
}

// Received are the requests received so far, in order.
func (s *STSServer) Received() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.received...)
}

// Forms are the forms of the requests received so far, in order.
func (s *STSServer) Forms() []url.Values {
	var forms []url.Values
	for _, r := range s.Received() {
		forms = append(forms, r.Form)
	}
	return forms
}

// Refuse makes every later answer the error code with status; a status of
// 0 answers as usual again.
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
