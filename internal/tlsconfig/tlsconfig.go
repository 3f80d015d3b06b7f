// Package tlsconfig serves HTTPS from a certificate and key on disk, picking
// up renewed files without a restart, and optionally requires client
// certificates signed by a given CA, so that only known services can call.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Config configures the TLS of a listener.
type Config struct {
	CertFile, KeyFile string
	// ClientCAFile, when set, makes a client certificate signed by one of
	// its CAs required.
	ClientCAFile string
	// CheckEvery is how often the files are checked for renewal; default 1 s.
	CheckEvery time.Duration
	Now        func() time.Time
	Logger     *slog.Logger
}

// New returns a TLS configuration with TLS 1.2 as the minimum.
func New(cfg Config) (*tls.Config, error) {
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("tls: cert_file and key_file are required")
	}
	if cfg.CheckEvery == 0 {
		cfg.CheckEvery = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &certificate{cfg: cfg}
	if err := c.load(); err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.get}
	if cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("tls: client CA: no certificate in the file")
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// certificate is the served key pair, reloaded when its files change.
type certificate struct {
	cfg       Config
	mu        sync.Mutex
	current   *tls.Certificate
	checked   time.Time
	certMod   time.Time
	keyMod    time.Time
	lastError string
}

func (c *certificate) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Now()
	if now.Sub(c.checked) >= c.cfg.CheckEvery {
		c.checked = now
		if err := c.reloadIfChanged(); err != nil && err.Error() != c.lastError {
			c.lastError = err.Error()
			c.cfg.Logger.Error("renewed TLS certificate not loaded; serving the previous one", "err", err)
		}
	}
	return c.current, nil
}

func (c *certificate) reloadIfChanged() error {
	cm, km, err := c.modTimes()
	if err != nil {
		return err
	}
	if cm.Equal(c.certMod) && km.Equal(c.keyMod) {
		return nil
	}
	return c.loadLocked()
}

func (c *certificate) load() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.loadLocked()
}

func (c *certificate) loadLocked() error {
	cm, km, err := c.modTimes()
	if err != nil {
		return err
	}
	pair, err := tls.LoadX509KeyPair(c.cfg.CertFile, c.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	c.current, c.certMod, c.keyMod, c.lastError = &pair, cm, km, ""
	c.cfg.Logger.Info("TLS certificate loaded", "cert_file", c.cfg.CertFile)
	return nil
}

func (c *certificate) modTimes() (time.Time, time.Time, error) {
	cf, err := os.Stat(c.cfg.CertFile)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("tls: %w", err)
	}
	kf, err := os.Stat(c.cfg.KeyFile)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("tls: %w", err)
	}
	return cf.ModTime(), kf.ModTime(), nil
}
