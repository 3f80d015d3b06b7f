package testsupport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// Key is an identity provider's signing key: the private half signs, the
// public half goes in a key set. It is the one key maker of the tests,
// the benchmarks and the soak run; IdP publishes and mints with Keys.
type Key struct {
	KID       string
	Alg       jwa.SignatureAlgorithm
	private   jwk.Key
	public    jwk.Key
	rsaPublic *rsa.PublicKey // for the algorithm-confusion forgery
}

// NewKey makes a key for alg (RS256: RSA 2048; ES256: P-256) under kid.
func NewKey(kid string, alg jwa.SignatureAlgorithm) (*Key, error) {
	var raw any
	var rsaPublic *rsa.PublicKey
	switch alg {
	case jwa.RS256:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		raw, rsaPublic = k, &k.PublicKey
	case jwa.ES256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		raw = k
	default:
		return nil, fmt.Errorf("testsupport: no key for %s", alg)
	}
	private, err := jwk.FromRaw(raw)
	if err != nil {
		return nil, err
	}
	_ = private.Set(jwk.KeyIDKey, kid)
	_ = private.Set(jwk.AlgorithmKey, alg)
	public, err := private.PublicKey()
	if err != nil {
		return nil, err
	}
	return &Key{KID: kid, Alg: alg, private: private, public: public, rsaPublic: rsaPublic}, nil
}

// Public is the public key, to put in a key set.
func (k *Key) Public() jwk.Key { return k.public }

// Sign signs tok under k's kid and algorithm.
func (k *Key) Sign(tok jwt.Token) (string, error) {
	b, err := jwt.Sign(tok, jwt.WithKey(k.Alg, k.private))
	return string(b), err
}

// SignAs signs tok with k but names kid in the header: a forger's token,
// or one of a key the verifier has not seen yet.
func (k *Key) SignAs(tok jwt.Token, kid string) (string, error) {
	payload, err := json.Marshal(tok)
	if err != nil {
		return "", err
	}
	return k.signPayload(payload, kid, k.Alg, "JWT")
}

// signPayload signs payload with k under a header naming kid, alg and typ
// as given ("" leaves a header out).
func (k *Key) signPayload(payload []byte, kid string, alg jwa.SignatureAlgorithm, typ string) (string, error) {
	// jws.Sign copies the key's own kid into the header, so sign with a
	// clone without one.
	key, err := k.private.Clone()
	if err != nil {
		return "", err
	}
	_ = key.Remove(jwk.KeyIDKey)
	_ = key.Remove(jwk.AlgorithmKey)
	hdr := jws.NewHeaders()
	if typ != "" {
		_ = hdr.Set(jws.TypeKey, typ)
	}
	if kid != "" {
		_ = hdr.Set(jws.KeyIDKey, kid)
	}
	signed, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	return string(signed), err
}

// KeySet is the public key set of keys.
func KeySet(keys ...*Key) jwk.Set {
	set := jwk.NewSet()
	for _, k := range keys {
		_ = set.AddKey(k.public)
	}
	return set
}

// JWKS serves the key set of keys.
func JWKS(keys ...*Key) http.Handler {
	set := KeySet(keys...)
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	})
}
