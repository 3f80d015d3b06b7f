package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
	"github.com/tokenvendor/tokenvendor/internal/tlsconfig/tlstest"
)

// TestCertificateBoundTokensOverMTLS: a token stolen from a service that
// calls over mTLS is useless without that service's certificate (RFC 8705).
func TestCertificateBoundTokensOverMTLS(t *testing.T) {
	const issuer = "https://issuer.e2e/"
	signer, err := testsupport.NewSigner("bind-1", jwa.ES256)
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(signer.JWKS())
	t.Cleanup(jwks.Close)

	dir := t.TempDir()
	serverCA, clientCA := tlstest.NewCA(t, "server CA"), tlstest.NewCA(t, "client CA")
	certPEM, keyPEM, _ := serverCA.Issue(600, "tokenvendor")
	certFile, keyFile := tlstest.WriteFiles(t, dir, certPEM, keyPEM, time.Now())
	caFile := filepath.Join(dir, "clients.pem")
	if err := os.WriteFile(caFile, clientCA.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	path := writeConfig(t, configOptions{stsEndpoint: peers.minio, roleChaining: "off", issuer: issuer, jwksURL: jwks.URL,
		authExtra: "  require_bound_tokens: true\n"})
	b, _ := os.ReadFile(path)
	cfg := fmt.Sprintf("tls: {cert_file: %s, key_file: %s, client_ca_file: %s}\n", certFile, keyFile, caFile) + string(b)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	base := startTLSVendor(t, path)

	_, _, orders := clientCA.Issue(11, "svc-orders")
	_, _, billing := clientCA.Issue(12, "svc-billing") // as valid, another service's
	ordersCert, _ := x509.ParseCertificate(orders.Certificate[0])
	mint := func(cnf map[string]any) string {
		b := jwt.NewBuilder().Issuer(issuer).Audience([]string{audience}).Subject("svc-orders").
			IssuedAt(time.Now()).Expiration(time.Now().Add(time.Hour)).Claim("tenant_id", "acme")
		if cnf != nil {
			b = b.Claim("cnf", cnf)
		}
		tok, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		s, err := signer.Sign(tok)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	bound := mint(map[string]any{"x5t#S256": auth.Thumbprint(ordersCert)})
	unbound := mint(nil)
	call := func(cert *tls.Certificate, token string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, base+"/credentials", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := mtlsClient(serverCA, cert).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}

	if status, body := call(&orders, bound); status != http.StatusOK || !strings.Contains(body, `"TenantId":"acme"`) {
		t.Fatalf("bound token over its own certificate: %d %s", status, body)
	}
	// The same token again, now remembered as verified, over another
	// valid client certificate: refused.
	if status, body := call(&billing, bound); status != http.StatusUnauthorized || !strings.Contains(body, "another client certificate") {
		t.Errorf("bound token over another service's certificate: %d %s, want 401", status, body)
	}
	if status, body := call(&orders, unbound); status != http.StatusUnauthorized || !strings.Contains(body, "not bound") {
		t.Errorf("unbound token with require_bound_tokens: %d %s, want 401", status, body)
	}
	if status, _ := call(&orders, bound); status != http.StatusOK {
		t.Errorf("bound token over its own certificate, once more: %d", status)
	}
}
