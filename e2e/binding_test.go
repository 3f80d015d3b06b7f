package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/jwks"
	"github.com/tokenvendor/tokenvendor/internal/tlsconfig/tlstest"
)

// TestCertificateBoundTokensOverMTLS: a token stolen from a service that
// calls over mTLS is useless without that service's certificate (RFC 8705).
// The identity provider (oidc-provider, its mTLS listener) binds the token
// to the certificate the service presented when it asked for it.
func TestCertificateBoundTokensOverMTLS(t *testing.T) {
	dir := t.TempDir()
	serverCA, clientCA := tlstest.NewCA(t, "server CA"), tlstest.NewCA(t, "client CA")
	writePEM := func(name string, pem []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	clientCAFile := writePEM("clients.pem", clientCA.PEM)
	_, _, orders := clientCA.Issue(11, "svc-orders")
	_, _, billing := clientCA.Issue(12, "svc-billing") // as valid: another service's
	ordersCert, _ := x509.ParseCertificate(orders.Certificate[0])

	// The identity provider: its mTLS listener serves the same provider.
	idpCertPEM, idpKeyPEM, _ := serverCA.Issue(700, "127.0.0.1")
	mtlsPort := freePort()
	clients := append([]map[string]any{{"client_id": "svc-bound", "client_secret": "secret-bound", "tenant_id": "acme", "bound": true}}, oidcClients...)
	idp := startOIDCWith(t, clients, fmt.Sprintf("MTLS_PORT=%d", mtlsPort),
		"MTLS_CERT="+writePEM("idp.pem", idpCertPEM), "MTLS_KEY="+writePEM("idp.key", idpKeyPEM), "MTLS_CLIENT_CA="+clientCAFile)
	bound := tokenOverMTLS(t, fmt.Sprintf("https://127.0.0.1:%d/token", mtlsPort), mtlsClient(serverCA, &orders), "svc-bound", "secret-bound")
	if cnf := claimsOf(t, bound)["cnf"]; fmt.Sprint(cnf) != fmt.Sprint(map[string]any{"x5t#S256": jwks.Thumbprint(ordersCert)}) {
		t.Fatalf("the provider's token carries cnf %v, want the thumbprint of the certificate it was asked with", cnf)
	}
	unbound := tokenFrom(t, idp.url, "svc-acme")

	// tokenvendor over mTLS, refusing unbound tokens.
	certPEM, keyPEM, _ := serverCA.Issue(600, "tokenvendor")
	certFile, keyFile := tlstest.WriteFiles(t, dir, certPEM, keyPEM, time.Now())
	path := writeConfig(t, configOptions{stsEndpoint: peers.minio, roleChaining: "off", issuer: idp.url, jwksURL: idp.url + "/jwks",
		authExtra: "  require_bound_tokens: true\n"})
	b, _ := os.ReadFile(path)
	cfg := fmt.Sprintf("tls: {cert_file: %s, key_file: %s, client_ca_file: %s}\n", certFile, keyFile, clientCAFile) + string(b)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	base := startTLSVendor(t, path)
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

// tokenOverMTLS gets an access token with the client_credentials grant
// from a token endpoint that sees client's certificate.
func tokenOverMTLS(t *testing.T, endpoint string, client *http.Client, id, secret string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "resource": {audience}}
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	raw, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(raw, &body); err != nil || body.AccessToken == "" {
		t.Fatalf("token for %s over mTLS: %d %s", id, res.StatusCode, raw)
	}
	return body.AccessToken
}

// claimsOf decodes a JWT's claims without verifying them.
func claimsOf(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}
