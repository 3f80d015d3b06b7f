package testsupport

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Issuer and Audience are the values an IdP's tokens carry unless told
// otherwise.
const (
	Issuer   = "https://idp.test/"
	Audience = "tokenvendor"
)

// IdP is a small identity provider for tests: it serves its keys' JWKS
// over TLS from httptest, can be made slow or down, and mints tokens,
// including the forged and confused ones a verifier must refuse.
type IdP struct {
	t       testing.TB
	Server  *httptest.Server
	mu      sync.Mutex
	keys    []*Key // published
	fetches atomic.Int64
	down    bool          // answer 503
	gate    chan struct{} // when set, hold every key set request until it is closed
}

// NewIdP starts an IdP publishing one RSA key (RS256, "rsa-1") and one EC
// key (ES256, "ec-1").
func NewIdP(t testing.TB) *IdP {
	t.Helper()
	idp := &IdP{t: t}
	idp.Publish(idp.NewKey("rsa-1", jwa.RS256))
	idp.Publish(idp.NewKey("ec-1", jwa.ES256))
	idp.Server = httptest.NewTLSServer(http.HandlerFunc(idp.serveJWKS))
	t.Cleanup(idp.Server.Close)
	return idp
}

func (idp *IdP) serveJWKS(w http.ResponseWriter, r *http.Request) {
	idp.fetches.Add(1)
	idp.mu.Lock()
	gate, down := idp.gate, idp.down
	idp.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	idp.mu.Lock()
	keys := append([]*Key(nil), idp.keys...)
	idp.mu.Unlock()
	JWKS(keys...).ServeHTTP(w, r)
}

// SetDown makes the key set endpoint answer 503 (true) or serve again.
func (idp *IdP) SetDown(down bool) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	idp.down = down
}

// Hold makes key set requests wait until the returned release is called: a
// slow identity provider.
func (idp *IdP) Hold() (release func()) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	gate := make(chan struct{})
	idp.gate = gate
	var once sync.Once
	return func() {
		once.Do(func() {
			idp.mu.Lock()
			idp.gate = nil
			idp.mu.Unlock()
			close(gate)
		})
	}
}

// JWKSURL is where the key set is served.
func (idp *IdP) JWKSURL() string { return idp.Server.URL + "/jwks" }

// Client trusts the IdP's TLS certificate.
func (idp *IdP) Client() *http.Client { return idp.Server.Client() }

// Fetches counts key set requests served.
func (idp *IdP) Fetches() int64 { return idp.fetches.Load() }

// NewKey makes a key for alg without publishing it.
func (idp *IdP) NewKey(kid string, alg jwa.SignatureAlgorithm) *Key {
	idp.t.Helper()
	k, err := NewKey(kid, alg)
	if err != nil {
		idp.t.Fatal(err)
	}
	return k
}

// Publish adds k to the served key set.
func (idp *IdP) Publish(k *Key) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	idp.keys = append(idp.keys, k)
}

// Retire removes the key kid from the served key set.
func (idp *IdP) Retire(kid string) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	for i, k := range idp.keys {
		if k.KID == kid {
			idp.keys = append(idp.keys[:i], idp.keys[i+1:]...)
			return
		}
	}
}

// Key returns a published key by kid.
func (idp *IdP) Key(kid string) *Key {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	for _, k := range idp.keys {
		if k.KID == kid {
			return k
		}
	}
	idp.t.Fatalf("no key %s", kid)
	return nil
}

// Claims returns valid claims for tenant, expiring in an hour from now.
func Claims(now time.Time, subject, tenant string) map[string]any {
	c := map[string]any{
		"iss": Issuer,
		"aud": Audience,
		"sub": subject,
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
	if tenant != "" {
		c["tenant_id"] = tenant
	}
	return c
}

// Mint signs claims with k under k's kid and algorithm.
func (idp *IdP) Mint(k *Key, claims map[string]any) string {
	idp.t.Helper()
	return idp.MintAs(k, k.KID, k.Alg, claims)
}

// MintPayload signs an arbitrary payload with k.
func (idp *IdP) MintPayload(k *Key, payload []byte) string {
	idp.t.Helper()
	signed, err := jws.Sign(payload, jws.WithKey(k.Alg, k.private))
	if err != nil {
		idp.t.Fatal(err)
	}
	return string(signed)
}

// MintAs signs claims with k but names kid and alg in the header as given.
func (idp *IdP) MintAs(k *Key, kid string, alg jwa.SignatureAlgorithm, claims map[string]any) string {
	idp.t.Helper()
	return idp.mint(k, kid, alg, "JWT", claims)
}

// MintTyped signs claims with k under a "typ" header of typ ("" for none).
func (idp *IdP) MintTyped(k *Key, typ string, claims map[string]any) string {
	idp.t.Helper()
	return idp.mint(k, k.KID, k.Alg, typ, claims)
}

func (idp *IdP) mint(k *Key, kid string, alg jwa.SignatureAlgorithm, typ string, claims map[string]any) string {
	idp.t.Helper()
	signed, err := k.signPayload(payload(idp.t, claims), kid, alg, typ)
	if err != nil {
		idp.t.Fatal(err)
	}
	return signed
}

// Unsigned returns a token with alg "none" naming kid.
func (idp *IdP) Unsigned(kid string, claims map[string]any) string {
	idp.t.Helper()
	h, _ := json.Marshal(map[string]string{"alg": "none", "kid": kid, "typ": "JWT"})
	return b64(h) + "." + b64(payload(idp.t, claims)) + "."
}

// HMACWithPublicKey signs claims with HS256 using the PEM of k's RSA public
// key as the secret: the classic algorithm-confusion forgery.
func (idp *IdP) HMACWithPublicKey(k *Key, claims map[string]any) string {
	idp.t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.rsaPublic)
	if err != nil {
		idp.t.Fatal(err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, k.KID)
	signed, err := jws.Sign(payload(idp.t, claims), jws.WithKey(jwa.HS256, secret, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		idp.t.Fatal(err)
	}
	return string(signed)
}

// Tamper flips a character early in tok's signature, where every bit counts
// (the last character of base64url holds padding bits that decode alike).
func Tamper(tok string) string {
	i := strings.LastIndexByte(tok, '.')
	sig := []byte(tok[i+1:])
	if sig[5] == 'A' {
		sig[5] = 'B'
	} else {
		sig[5] = 'A'
	}
	return tok[:i+1] + string(sig)
}

func payload(t testing.TB, claims map[string]any) []byte {
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
