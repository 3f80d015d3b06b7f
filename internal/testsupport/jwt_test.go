package testsupport

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// TestKeySignsWhatItsKeySetVerifies, for each algorithm, through the JWKS
// a verifier would fetch.
func TestKeySignsWhatItsKeySetVerifies(t *testing.T) {
	for _, alg := range []jwa.SignatureAlgorithm{jwa.RS256, jwa.ES256} {
		t.Run(alg.String(), func(t *testing.T) {
			k, err := NewKey("k-"+alg.String(), alg)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(JWKS(k))
			t.Cleanup(srv.Close)
			res, err := http.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var raw json.RawMessage
			if err := json.NewDecoder(res.Body).Decode(&raw); err != nil {
				t.Fatal(err)
			}
			set, err := jwk.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			if pub, _ := set.Key(0); set.Len() != 1 || pub.KeyID() != k.KID {
				t.Fatalf("key set %v, want k's public key alone", set)
			}
			tok, _ := jwt.NewBuilder().Subject("svc").Expiration(time.Now().Add(time.Hour)).Build()
			signed, err := k.Sign(tok)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := jwt.ParseString(signed, jwt.WithKeySet(set)); err != nil {
				t.Fatalf("the key set does not verify the key's token: %v", err)
			}
			forged, err := k.SignAs(tok, "someone-else")
			if err != nil {
				t.Fatal(err)
			}
			msg, err := jws.ParseString(forged)
			if err != nil || msg.Signatures()[0].ProtectedHeaders().KeyID() != "someone-else" {
				t.Fatalf("SignAs header kid: %v", err)
			}
			if _, err := jwt.ParseString(forged, jwt.WithKeySet(set)); err == nil {
				t.Fatal("a token under another kid verified")
			}
		})
	}
	if _, err := NewKey("x", jwa.HS256); err == nil {
		t.Fatal("NewKey made a key for HS256")
	}
}
