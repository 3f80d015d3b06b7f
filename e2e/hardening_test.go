package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/audit"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
	"github.com/tokenvendor/tokenvendor/internal/tlsconfig/tlstest"
)

// withTop writes a config like writeConfig's with extra top-level settings.
func withTop(t *testing.T, top string) string {
	t.Helper()
	path := writeConfig(t, configOptions{stsEndpoint: peers.minio})
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append([]byte(top+"\n"), b...), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTenantRegistryFileAdmitsANewTenantWithoutRestart(t *testing.T) {
	registry := filepath.Join(t.TempDir(), "tenants.txt")
	if err := os.WriteFile(registry, []byte("# tenants served\nacme\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v := startVendor(t, withTop(t, "tenants: {file: "+registry+"}"), minioUser, minioPassword)
	v.vend(t, token(t, "svc-acme"), "")
	globex := token(t, "svc-globex")
	if status, body := v.post(t, globex, ""); status != http.StatusForbidden || !strings.Contains(string(body), "registry") {
		t.Fatalf("unknown tenant: %d %s", status, body)
	}
	if n := v.metric(t, `tokenvendor_sts_requests_total{outcome="success"}`); n != 1 {
		t.Fatalf("sts requests = %v: the unknown tenant reached STS", n)
	}
	if err := os.WriteFile(registry, []byte("# tenants served\nacme\nglobex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, 15*time.Second, func() error {
		if status, body := v.post(t, globex, ""); status != http.StatusOK {
			return fmt.Errorf("globex still refused after it was added: %d %s", status, body)
		}
		return nil
	})
}

func TestAuditFileHasOneParseableLinePerDecision(t *testing.T) {
	auditFile := filepath.Join(t.TempDir(), "audit.jsonl")
	v := startVendor(t, withTop(t, "audit: {file: "+auditFile+"}"), minioUser, minioPassword)
	acmeTok := token(t, "svc-acme")
	granted := v.vend(t, acmeTok, "")
	v.post(t, "", "")
	v.post(t, acmeTok, `{"tenant_id":"globex"}`)
	v.post(t, token(t, "svc-star"), "")

	f, err := os.Open(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var events []audit.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		for _, secret := range []string{granted.SecretAccessKey, granted.SessionToken, acmeTok} {
			if strings.Contains(line, secret) {
				t.Fatalf("audit line holds a secret: %s", line)
			}
		}
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		var ev audit.Event
		if err := dec.Decode(&ev); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		events = append(events, ev)
	}
	want := []struct {
		outcome, code, tenant string
		status                int
		refusal               string
	}{
		{audit.Granted, "", "acme", 200, ""},
		{audit.Refused, "unauthenticated", "", 401, ""},
		{audit.Refused, "forbidden", "globex", 403, "other_tenant"}, // the tenant reached for
		{audit.Refused, "invalid_tenant", "", 400, "invalid"},
	}
	if len(events) != len(want) {
		t.Fatalf("%d audit lines, want %d", len(events), len(want))
	}
	for i, w := range want {
		ev := events[i]
		if ev.Outcome != w.outcome || ev.Code != w.code || ev.TenantID != w.tenant || ev.Status != w.status || ev.Refusal != w.refusal || ev.RequestID == "" {
			t.Errorf("line %d = %+v, want %+v", i+1, ev, w)
		}
	}
	if g := events[0]; g.AccessKeyID != granted.AccessKeyID || g.Subject != "svc-acme" || g.ClientID != "svc-acme" ||
		g.RoleSessionName != "acme@objects" || g.Expiration == nil || g.Cache != "miss" {
		t.Errorf("granted line = %+v", g)
	}
}

var listeningTLS = regexp.MustCompile(`"msg":"listening","addr":"([^"]+)","admin":false,"tls":true`)

func TestHTTPSWithClientCertificatesAndRenewalWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	serverCA, clientCA, strangerCA := tlstest.NewCA(t, "server CA"), tlstest.NewCA(t, "client CA"), tlstest.NewCA(t, "stranger CA")
	certPEM, keyPEM, _ := serverCA.Issue(500, "tokenvendor")
	certFile, keyFile := tlstest.WriteFiles(t, dir, certPEM, keyPEM, time.Now().Add(-time.Minute))
	caFile := filepath.Join(dir, "clients.pem")
	if err := os.WriteFile(caFile, clientCA.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	url := startTLSVendor(t, withTop(t, fmt.Sprintf("tls: {cert_file: %s, key_file: %s, client_ca_file: %s}", certFile, keyFile, caFile))) + "/credentials"
	_, _, known := clientCA.Issue(7, "svc-orders")
	_, _, stranger := strangerCA.Issue(8, "svc-evil")
	client := func(cert *tls.Certificate) *http.Client { return mtlsClient(serverCA, cert) }
	tok := token(t, "svc-acme")
	call := func(c *http.Client) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodPost, url, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		return c.Do(req)
	}

	res, err := call(client(&known))
	if err != nil {
		t.Fatalf("known client over HTTPS: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.TLS.PeerCertificates[0].SerialNumber.Int64() != 500 {
		t.Fatalf("known client: %d %s", res.StatusCode, body)
	}
	for name, c := range map[string]*http.Client{"no certificate": client(nil), "another CA's certificate": client(&stranger)} {
		if res, err := call(c); err == nil {
			res.Body.Close()
			t.Errorf("client with %s was served: %d", name, res.StatusCode)
		}
	}

	certPEM, keyPEM, _ = serverCA.Issue(501, "tokenvendor")
	tlstest.WriteFiles(t, dir, certPEM, keyPEM, time.Now())
	testsupport.Eventually(t, 10*time.Second, func() error {
		res, err := call(client(&known))
		if err != nil {
			return err
		}
		res.Body.Close()
		if serial := res.TLS.PeerCertificates[0].SerialNumber.Int64(); serial != 501 {
			return fmt.Errorf("certificate %d served after the files changed, want the renewed 501", serial)
		}
		return nil
	})
}

// startTLSVendor runs tokenvendor with cfg, whose listener serves HTTPS,
// and returns its https:// base URL.
func startTLSVendor(t *testing.T, cfg string) string {
	t.Helper()
	p, err := start("tokenvendor-tls", peers.bin, []string{"serve", "--config", cfg}, []string{
		"AWS_ACCESS_KEY_ID=" + minioUser, "AWS_SECRET_ACCESS_KEY=" + minioPassword, "AWS_REGION=us-east-1",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true",
	}, `"msg":"listening"`)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("tokenvendor output:\n%s", p.out.String())
		}
	})
	m := listeningTLS.FindStringSubmatch(p.out.String())
	if m == nil {
		t.Fatalf("no TLS listener in:\n%s", p.out.String())
	}
	return "https://" + m[1]
}

// mtlsClient trusts serverCA and presents cert (none when nil), on a new
// connection each request.
func mtlsClient(serverCA *tlstest.CA, cert *tls.Certificate) *http.Client {
	tc := &tls.Config{RootCAs: serverCA.Pool()}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
}
