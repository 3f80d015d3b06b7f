package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
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
		fmt.Fprintf(w, `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>
<Credentials><AccessKeyId>ASIASOAK%012d</AccessKeyId><SecretAccessKey>%s</SecretAccessKey><SessionToken>%s</SessionToken><Expiration>%s</Expiration></Credentials>
<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/TenantData/soak</Arn><AssumedRoleId>AROA:soak</AssumedRoleId></AssumedRoleUser>
</AssumeRoleResult><ResponseMetadata><RequestId>soak-%d</RequestId></ResponseMetadata></AssumeRoleResponse>`,
			n, strings.Repeat("s", 40), strings.Repeat("t", 1000), time.Now().Add(lifetime).UTC().Format(time.RFC3339), n)
	}))
	return s
}

// idp publishes one RS256 key as a JWKS and mints tokens: valid ones,
// expired ones, ones signed by another key under the published kid (forged)
// and ones under kids it never published.
type idp struct {
	*httptest.Server
	fetches atomic.Int64
	key     jwk.Key // the published key's private half
	forger  jwk.Key // another key, claiming the published kid
}

func newIdP() (*idp, error) {
	raw, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	key, err := jwk.FromRaw(raw)
	if err != nil {
		return nil, err
	}
	_ = key.Set(jwk.KeyIDKey, kid)
	_ = key.Set(jwk.AlgorithmKey, jwa.RS256)
	pub, err := key.PublicKey()
	if err != nil {
		return nil, err
	}
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	otherRaw, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	forger, err := jwk.FromRaw(otherRaw)
	if err != nil {
		return nil, err
	}
	_ = forger.Set(jwk.KeyIDKey, kid)
	p := &idp{key: key, forger: forger}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		p.fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
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
	key, alg := p.key, jwa.RS256
	switch k {
	case forged:
		key = p.forger
	case unknown:
		raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return "", err
		}
		if key, err = jwk.FromRaw(raw); err != nil {
			return "", err
		}
		_ = key.Set(jwk.KeyIDKey, fmt.Sprintf("unknown-%d", serial))
		alg = jwa.ES256
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(alg, key))
	return string(signed), err
}
