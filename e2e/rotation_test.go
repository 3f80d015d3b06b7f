package e2e

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

// kidOf is the kid in a token's header.
func kidOf(t *testing.T, token string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.SplitN(token, ".", 2)[0])
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ Kid string }
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

// forger signs tokens that look like the provider's (issuer, audience,
// tenant) with a key of its own, under any kid.
type forger struct {
	key    *testsupport.Key
	issuer string
}

func newForger(t *testing.T, issuer string) *forger {
	t.Helper()
	key, err := testsupport.NewKey("forger", jwa.ES256)
	if err != nil {
		t.Fatal(err)
	}
	return &forger{key: key, issuer: issuer}
}

// token is a forged token for tenant acme under kid. It never fails the
// test, so goroutines may use it.
func (f *forger) token(kid string) (string, error) {
	tok, err := jwt.NewBuilder().Issuer(f.issuer).Audience([]string{audience}).Subject("svc-acme").
		IssuedAt(time.Now()).Expiration(time.Now().Add(time.Hour)).Claim("tenant_id", "acme").Build()
	if err != nil {
		return "", err
	}
	return f.key.SignAs(tok, kid)
}

func TestKnownKeysKeepWorkingWhileTheIdentityProviderIsDown(t *testing.T) {
	idp := startOIDC(t)
	v := startVendor(t, writeConfig(t, configOptions{stsEndpoint: peers.minio, issuer: idp.url, jwksURL: idp.url + "/jwks"}),
		minioUser, minioPassword)
	seen := tokenFrom(t, idp.url, "svc-acme")
	v.vend(t, seen, "")
	// Signed by the same key, never presented: it needs a full signature
	// check against the key set fetched before the outage.
	unseen := tokenFrom(t, idp.url, "svc-globex")

	idp.kill()
	if res, err := http.Get(idp.url + "/jwks"); err == nil {
		res.Body.Close()
		t.Fatalf("the identity provider still answers: %d", res.StatusCode)
	}

	// An unknown kid makes the service try the provider, and fail.
	forged, err := newForger(t, idp.url).token("unknown-kid")
	if err != nil {
		t.Fatal(err)
	}
	client := loadClient(false)
	o := call(client, http.MethodPost, v.url+"/credentials", forged, "")
	if o.err != nil || o.status != http.StatusUnauthorized || o.code() != "unauthenticated" {
		t.Errorf("token with an unknown kid while the provider is down: %d %s %v", o.status, o.body, o.err)
	}
	if o.took > 10*time.Second {
		t.Errorf("token with an unknown kid answered after %s", o.took)
	}
	if n := v.metric(t, `tokenvendor_jwks_refreshes_total{outcome="error"}`); n < 1 {
		t.Errorf("tokenvendor_jwks_refreshes_total{outcome=\"error\"} = %v: the service never tried the dead provider", n)
	}

	if c := v.vend(t, seen, ""); c.TenantID != "acme" {
		t.Errorf("token presented before the outage: tenant %s", c.TenantID)
	}
	if c := v.vend(t, unseen, ""); c.TenantID != "globex" {
		t.Errorf("token first presented during the outage: tenant %s", c.TenantID)
	}
	if status, body := v.post(t, testsupport.Tamper(unseen), ""); status != http.StatusUnauthorized {
		t.Errorf("tampered token during the outage: %d %s", status, body)
	}
	if res, err := http.Get(v.url + "/readyz"); err != nil || res.StatusCode != http.StatusOK {
		t.Errorf("/readyz during the identity provider outage: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	if errs := v.serverErrors(t); len(errs) > 0 {
		t.Errorf("5xx answered during the identity provider outage: %v", errs)
	}
}

func TestRotatedKeysAreAcceptedRetiredRefusedAndUnknownKIDsRateLimited(t *testing.T) {
	const jwksGet = "GET /jwks "
	idp := startOIDC(t)
	proxy := startProxy(t, strings.TrimPrefix(idp.url, "http://"), jwksGet)
	v := startVendor(t, writeConfig(t, configOptions{stsEndpoint: peers.minio, issuer: idp.url, jwksURL: proxy.url() + "/jwks"}),
		minioUser, minioPassword)
	fetches := func() int { return proxy.count(jwksGet) }
	if n := fetches(); n != 1 {
		t.Fatalf("key set fetched %d times at start-up, want 1", n)
	}
	first := tokenFrom(t, idp.url, "svc-acme")
	v.vend(t, first, "")

	// Rotation: a new signing key, the old one still published.
	second := idp.rotate(t, syscall.SIGUSR1)
	rotated := tokenFrom(t, idp.url, "svc-globex")
	if kidOf(t, rotated) != second || kidOf(t, first) == second {
		t.Fatalf("test bug: tokens signed by %s and %s, want the second by the new key %s", kidOf(t, first), kidOf(t, rotated), second)
	}
	if c := v.vend(t, rotated, ""); c.TenantID != "globex" {
		t.Fatalf("token signed by the new key: tenant %s", c.TenantID)
	}
	if n := fetches(); n != 2 {
		t.Errorf("key set fetched %d times after the new kid, want 2", n)
	}
	v.vend(t, first, "") // the old key is still published

	// Retirement of the first key, and a third one: the service learns of
	// both at its next re-fetch, which a flood of unknown kids may trigger
	// at most once per 10 s.
	idp.rotate(t, syscall.SIGUSR2)
	third := idp.rotate(t, syscall.SIGUSR1)
	newest := tokenFrom(t, idp.url, "svc-initech")
	if kidOf(t, newest) != third {
		t.Fatalf("test bug: token signed by %s, want %s", kidOf(t, newest), third)
	}

	// Until the service re-fetches, it still holds the retired key.
	v.vend(t, first, "")

	f := newForger(t, idp.url)
	client := loadClient(true)
	before, floodStart := fetches(), time.Now()
	flood := startLoad(4, func(w, i int) outcome {
		tok, err := f.token(fmt.Sprintf("bogus-%d-%d", w, i))
		if err != nil {
			return outcome{err: err}
		}
		return call(client, http.MethodPost, v.url+"/credentials", tok, "")
	})
	if err := testsupport.Poll(20*time.Second, func() error {
		if fetches() == before {
			return errors.New("a flood of unknown kids never made the service re-fetch the key set")
		}
		return nil
	}); err != nil {
		flood.finish()
		t.Fatal(err)
	}
	flood.waitFor(t, 100)
	results := flood.finish()
	floodTime := time.Since(floodStart)
	refetches := fetches() - before
	t.Logf("%d tokens with unknown kids in %s made %d key set fetches", len(results), floodTime.Round(time.Millisecond), refetches)
	if limit := 1 + int(floodTime/(10*time.Second)); refetches > limit {
		t.Errorf("%d key set fetches for a flood of %s, want at most %d", refetches, floodTime.Round(time.Millisecond), limit)
	}
	for _, o := range results {
		if o.err != nil || o.status != http.StatusUnauthorized {
			t.Fatalf("token with an unknown kid: %d %s %v", o.status, o.body, o.err)
		}
	}

	// The refreshed key set lacks the first key: its token is refused, even
	// though it was verified and remembered before.
	if status, body := v.post(t, first, ""); status != http.StatusUnauthorized {
		t.Errorf("token signed by the retired key: %d %s, want 401", status, body)
	}
	if c := v.vend(t, newest, ""); c.TenantID != "initech" {
		t.Errorf("token signed by the third key: tenant %s", c.TenantID)
	}
	v.vend(t, rotated, "") // the second key is still published
	if n := v.metric(t, `tokenvendor_jwks_refreshes_total{outcome="success"}`); int(n) != fetches() {
		t.Errorf("tokenvendor_jwks_refreshes_total{outcome=\"success\"} = %v, the provider served %d", n, fetches())
	}
	if errs := v.serverErrors(t); len(errs) > 0 {
		t.Errorf("5xx answered: %v", errs)
	}
}

// TestAKeyRemovedFromTheKeySetIsRefusedFromTheNextJWKSRefresh: once a
// scheduled refresh has fetched the key set without the key, its tokens
// are refused, even one verified and remembered before, though no token
// with an unknown kid made the service look.
func TestAKeyRemovedFromTheKeySetIsRefusedFromTheNextJWKSRefresh(t *testing.T) {
	const refresh = 2 * time.Second
	idp := startOIDC(t)
	v := startVendor(t, writeConfig(t, configOptions{stsEndpoint: peers.minio, issuer: idp.url, jwksURL: idp.url + "/jwks",
		authExtra: "  jwks_refresh: " + refresh.String() + "\n"}), minioUser, minioPassword)
	first := tokenFrom(t, idp.url, "svc-acme")
	v.vend(t, first, "") // verified, and remembered

	idp.rotate(t, syscall.SIGUSR1)
	idp.rotate(t, syscall.SIGUSR2) // the first key leaves the key set
	// A refresh under way now may still bring the old key set; the one
	// after it began after the key left.
	refreshes := func() float64 { return v.metric(t, `tokenvendor_jwks_refreshes_total{outcome="success"}`) }
	want := refreshes() + 2
	testsupport.Eventually(t, 30*time.Second, func() error {
		if n := refreshes(); n < want {
			return fmt.Errorf("%v key set refreshes, want %v", n, want)
		}
		return nil
	})
	if status, body := v.post(t, first, ""); status != http.StatusUnauthorized {
		t.Fatalf("token of the removed key after a refresh without it: %d %s, want 401", status, body)
	}
	if n := v.metric(t, `tokenvendor_auth_failures_total{reason="unknown_kid"}`); n != 1 {
		t.Errorf(`tokenvendor_auth_failures_total{reason="unknown_kid"} = %v, want 1 (the removed key's token)`, n)
	}
}
