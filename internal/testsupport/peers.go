package testsupport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// Signer is an identity provider's signing key and its public key set, for
// stub identity providers in tests and benchmarks.
type Signer struct {
	key jwk.Key
	alg jwa.SignatureAlgorithm
	set jwk.Set
}

// NewSigner makes a key for alg (RS256: RSA 2048; ES256: P-256) under kid.
func NewSigner(kid string, alg jwa.SignatureAlgorithm) (*Signer, error) {
	var raw any
	var err error
	switch alg {
	case jwa.RS256:
		raw, err = rsa.GenerateKey(rand.Reader, 2048)
	case jwa.ES256:
		raw, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return nil, fmt.Errorf("testsupport: no key for %s", alg)
	}
	if err != nil {
		return nil, err
	}
	key, err := jwk.FromRaw(raw)
	if err != nil {
		return nil, err
	}
	_ = key.Set(jwk.KeyIDKey, kid)
	_ = key.Set(jwk.AlgorithmKey, alg)
	pub, err := key.PublicKey()
	if err != nil {
		return nil, err
	}
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	return &Signer{key: key, alg: alg, set: set}, nil
}

// JWKS serves the public key set.
func (s *Signer) JWKS() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.set)
	})
}

// Public is the public key, to put in a key set of one's own.
func (s *Signer) Public() jwk.Key {
	k, _ := s.set.Key(0)
	return k
}

// Sign signs tok.
func (s *Signer) Sign(tok jwt.Token) (string, error) {
	b, err := jwt.Sign(tok, jwt.WithKey(s.alg, s.key))
	return string(b), err
}

// AssumeRoleXML is an STS AssumeRole answer for keyID, with a session token
// of tokenLength characters (AWS's run to about 1,000 with a session
// policy and tags).
func AssumeRoleXML(keyID string, tokenLength int, expires time.Time) string {
	return fmt.Sprintf(`<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>
<Credentials><AccessKeyId>%s</AccessKeyId><SecretAccessKey>%s</SecretAccessKey><SessionToken>%s</SessionToken><Expiration>%s</Expiration></Credentials>
<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/TenantData/stub</Arn><AssumedRoleId>AROA:stub</AssumedRoleId></AssumedRoleUser>
</AssumeRoleResult><ResponseMetadata><RequestId>stub</RequestId></ResponseMetadata></AssumeRoleResponse>`,
		keyID, strings.Repeat("s", 40), strings.Repeat("t", tokenLength), expires.UTC().Format(time.RFC3339))
}

// STS is a stub STS: every AssumeRole gets keyID's credentials, living life.
func STS(keyID string, tokenLength int, life time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		fmt.Fprint(w, AssumeRoleXML(keyID, tokenLength, time.Now().Add(life)))
	})
}
