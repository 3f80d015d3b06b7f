package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

// Issuer and audience of the soak's tokens.
const (
	issuer   = "https://idp.soak/"
	audience = "tokenvendor"
	kid      = "soak-1"
)

// stubSTS answers every AssumeRole with fresh credentials, shaped like
// AWS's, that expire after lifetime, taking latency to do so.
type stubSTS struct {
	*httptest.Server
	calls atomic.Int64
}

func newStubSTS(lifetime, latency time.Duration) *stubSTS {
	s := &stubSTS{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.calls.Add(1)
		time.Sleep(latency)
		w.Header().Set("Content-Type", "text/xml")
		fmt.Fprint(w, testsupport.AssumeRoleXML(fmt.Sprintf("ASIASOAK%012d", n), 1000, time.Now().Add(lifetime)))
	}))
	return s
}

// idp publishes one RS256 key as a JWKS and mints tokens: valid ones,
// expired ones, ones signed by another key under the published kid (forged)
// and ones under kids it never published.
type idp struct {
	*httptest.Server
	fetches atomic.Int64
	key     *testsupport.Key // the published key
	forger  *testsupport.Key // another key, claiming the published kid
}

func newIdP() (*idp, error) {
	key, err := testsupport.NewKey(kid, jwa.RS256)
	if err != nil {
		return nil, err
	}
	forger, err := testsupport.NewKey(kid, jwa.RS256)
	if err != nil {
		return nil, err
	}
	p := &idp{key: key, forger: forger}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		testsupport.JWKS(key).ServeHTTP(w, r)
	}))
	return p, nil
}

// kind is what a token is, and so what tokenvendor must answer.
type kind int

const (
	valid   kind = iota // 200
	expired             // 401
	forged              // 401: signed by another key under the published kid
	unknown             // 401: a kid never published
	kinds
)

func (k kind) String() string {
	return [...]string{"valid", "expired", "forged", "unknown_kid"}[k]
}

// want is the status tokenvendor must answer a token of kind k with.
func (k kind) want() int {
	if k == valid {
		return http.StatusOK
	}
	return http.StatusUnauthorized
}

// mint signs a token of kind k for tenant, by caller.
func (p *idp) mint(k kind, tenant, caller string, serial int) (string, error) {
	exp := time.Now().Add(24 * time.Hour)
	if k == expired {
		exp = time.Now().Add(-10 * time.Minute) // beyond any leeway
	}
	tok, err := jwt.NewBuilder().Issuer(issuer).Audience([]string{audience}).Subject(caller).
		IssuedAt(time.Now().Add(-time.Hour)).Expiration(exp).Claim("tenant_id", tenant).Build()
	if err != nil {
		return "", err
	}
	signer := p.key
	switch k {
	case forged:
		signer = p.forger
	case unknown:
		if signer, err = testsupport.NewKey(fmt.Sprintf("unknown-%d", serial), jwa.ES256); err != nil {
			return "", err
		}
	}
	return signer.Sign(tok)
}
