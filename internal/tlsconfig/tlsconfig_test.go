package tlsconfig_test

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/clock"
	"github.com/tokenvendor/tokenvendor/internal/tlsconfig"
	"github.com/tokenvendor/tokenvendor/internal/tlsconfig/tlstest"
)

// serve answers 200 over TLS with cfg as the service does: a plain
// listener wrapped by tls.NewListener (httptest's StartTLS would add a
// certificate of its own).
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() { _ = srv.Serve(tls.NewListener(ln, cfg)) }()
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String()
}

// servedSerial connects with a fresh client and returns the serial number
// of the certificate the server presented.
func servedSerial(t *testing.T, url string, ca *tlstest.CA, client *tls.Certificate) (int64, error) {
	t.Helper()
	tc := &tls.Config{RootCAs: ca.Pool()}
	if client != nil {
		tc.Certificates = []tls.Certificate{*client}
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
	res, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	return res.TLS.PeerCertificates[0].SerialNumber.Int64(), nil
}

func TestRenewedCertificateIsServedWithoutRestart(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	dir := t.TempDir()
	start := time.Now().Add(-time.Minute)
	certPEM, keyPEM, _ := ca.Issue(100, "tokenvendor")
	certFile, keyFile := tlstest.WriteFiles(t, dir, certPEM, keyPEM, start)
	clk := clock.NewFake(time.Now())
	cfg, err := tlsconfig.New(tlsconfig.Config{CertFile: certFile, KeyFile: keyFile, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x, want TLS 1.2", cfg.MinVersion)
	}
	url := serve(t, cfg)
	if serial, err := servedSerial(t, url, ca, nil); err != nil || serial != 100 {
		t.Fatalf("first certificate: serial %d, %v", serial, err)
	}
	certPEM, keyPEM, _ = ca.Issue(101, "tokenvendor")
	tlstest.WriteFiles(t, dir, certPEM, keyPEM, start.Add(30*time.Second))
	clk.Add(2 * time.Second)
	if serial, err := servedSerial(t, url, ca, nil); err != nil || serial != 101 {
		t.Fatalf("after renewal: serial %d, %v; want 101", serial, err)
	}
	// A half-written renewal (a key that does not match) keeps the last good pair.
	_, otherKey, _ := ca.Issue(102, "tokenvendor")
	if err := os.WriteFile(keyFile, otherKey, 0o600); err != nil {
		t.Fatal(err)
	}
	later := start.Add(time.Minute)
	_ = os.Chtimes(keyFile, later, later)
	clk.Add(2 * time.Second)
	if serial, err := servedSerial(t, url, ca, nil); err != nil || serial != 101 {
		t.Fatalf("after a broken renewal: serial %d, %v; want the previous 101", serial, err)
	}
}

func TestClientCertificateRequiredWhenAClientCAIsSet(t *testing.T) {
	serverCA, clientCA, strangerCA := tlstest.NewCA(t, "server CA"), tlstest.NewCA(t, "client CA"), tlstest.NewCA(t, "stranger CA")
	dir := t.TempDir()
	certPEM, keyPEM, _ := serverCA.Issue(1, "tokenvendor")
	certFile, keyFile := tlstest.WriteFiles(t, dir, certPEM, keyPEM, time.Now())
	caFile := filepath.Join(dir, "clients.pem")
	if err := os.WriteFile(caFile, clientCA.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := tlsconfig.New(tlsconfig.Config{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, cfg)
	_, _, known := clientCA.Issue(7, "svc-orders")
	_, _, stranger := strangerCA.Issue(8, "svc-evil")
	if _, err := servedSerial(t, url, serverCA, &known); err != nil {
		t.Fatalf("known client refused: %v", err)
	}
	if _, err := servedSerial(t, url, serverCA, nil); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	if _, err := servedSerial(t, url, serverCA, &stranger); err == nil {
		t.Fatal("a client with a certificate from another CA was served")
	}
}

func TestOldTLSVersionsAreRefused(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	certPEM, keyPEM, _ := ca.Issue(1, "tokenvendor")
	certFile, keyFile := tlstest.WriteFiles(t, t.TempDir(), certPEM, keyPEM, time.Now())
	cfg, err := tlsconfig.New(tlsconfig.Config{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, cfg)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MaxVersion: tls.VersionTLS11}}}
	if res, err := c.Get(url); err == nil {
		res.Body.Close()
		t.Fatal("a TLS 1.1 client was served")
	}
}
