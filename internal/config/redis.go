package config

import (
	"crypto/x509"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/seal"
	"github.com/tokenvendor/tokenvendor/internal/shared"
)

// Redis configures the tier the replicas share. Without url or url_file,
// each replica is alone.
type Redis struct {
	// URL is redis:// or rediss://, with user:password@ if Redis wants
	// them; URLFile a file holding it (a mounted Secret). One of the two.
	URL     string `yaml:"url"`
	URLFile string `yaml:"url_file"`
	// Cluster says Redis is a Redis Cluster; URL names one node, more as
	// ?addr=host:port.
	Cluster bool `yaml:"cluster"`
	// PasswordFile holds the AUTH password, when the URL does not.
	PasswordFile string `yaml:"password_file"`
	// KeyFile holds the AES-256-GCM keys, base64 of 32 bytes, one a line:
	// the first seals, each opens.
	KeyFile string `yaml:"key_file"`
	// CAFile holds the authorities a rediss:// server's certificate must
	// chain to; default the system's.
	CAFile  string        `yaml:"ca_file"`
	Prefix  string        `yaml:"prefix"`
	Timeout time.Duration `yaml:"timeout"`
}

// SharedTier is what the redis section's files hold. It carries secrets:
// it prints as REDACTED.
type SharedTier struct {
	URL      string
	Password string
	Keys     *seal.Keyring
	RootCAs  *x509.CertPool
}

// Same reports whether s and o read the same URL, password and keys, so
// that a reload can tell that files it does not re-apply have changed.
func (s *SharedTier) Same(o *SharedTier) bool {
	if s == nil || o == nil {
		return s == o
	}
	return s.URL == o.URL && s.Password == o.Password && s.Keys.Equal(o.Keys)
}

// String keeps the URL and password out of formatted output.
func (SharedTier) String() string { return "REDACTED" }

// GoString is String, so %#v redacts too.
func (s SharedTier) GoString() string { return s.String() }

// LogValue keeps the URL and password out of every log.
func (SharedTier) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// validate fills the redis section's defaults, reads its files and reports
// each problem through bad. No message shows the URL or a file's content:
// they hold secrets.
func (r *Redis) validate(stsTimeout time.Duration, bad reporter) *SharedTier {
	if r.URL == "" && r.URLFile == "" {
		if *r != (Redis{}) {
			bad("redis", "url or url_file required when the section is used")
		}
		return nil
	}
	s := &SharedTier{URL: r.URL}
	u := r.readURL(s, bad)
	r.readPassword(s, u, bad)
	if r.KeyFile == "" {
		bad("redis.key_file", "required: the keys that seal what is stored in Redis")
	} else if keys, err := seal.LoadKeyFile(r.KeyFile); err != nil {
		bad("redis.key_file", "%v", err)
	} else {
		s.Keys = keys
	}
	r.readCA(s, u, bad)
	if r.Prefix == "" {
		r.Prefix = DefaultRedisPrefix
	}
	if strings.ContainsAny(r.Prefix, "{} \t\r\n") {
		bad("redis.prefix", "no braces (they would break the hash tags) or spaces")
	}
	if r.Timeout == 0 {
		r.Timeout = DefaultRedisTimeout
	}
	if r.Timeout < 0 || r.Timeout >= stsTimeout {
		bad("redis.timeout", "must be positive and below sts.timeout (%s): Redis is there to save STS calls, not to wait longer than one", stsTimeout)
	}
	return s
}

// readURL puts the URL of url or url_file in s, and returns it parsed;
// nil when it cannot be read or is not a Redis URL.
func (r *Redis) readURL(s *SharedTier, bad reporter) *url.URL {
	if r.URL != "" && r.URLFile != "" {
		bad("redis", "url and url_file: set one")
	}
	at := "redis.url"
	if r.URLFile != "" {
		at = "redis.url_file"
		b, err := os.ReadFile(r.URLFile)
		if err != nil {
			bad(at, "%v", err)
			return nil
		}
		s.URL = strings.TrimSpace(string(b))
	}
	if err := shared.CheckURL(s.URL, r.Cluster); err != nil {
		bad(at, "%v", err)
		return nil
	}
	u, _ := url.Parse(s.URL)
	return u
}

// readPassword puts the password of password_file in s; the URL u, when
// read, must not carry one too.
func (r *Redis) readPassword(s *SharedTier, u *url.URL, bad reporter) {
	if r.PasswordFile == "" {
		return
	}
	b, err := os.ReadFile(r.PasswordFile)
	switch pw := strings.TrimRight(string(b), "\r\n"); {
	case err != nil:
		bad("redis.password_file", "%v", err)
	case pw == "":
		bad("redis.password_file", "empty")
	default:
		s.Password = pw
	}
	if u != nil {
		if _, inURL := u.User.Password(); inURL {
			bad("redis.password_file", "the URL carries a password too; keep one")
		}
	}
}

// readCA puts the authorities of ca_file in s; only a rediss:// URL u
// takes them.
func (r *Redis) readCA(s *SharedTier, u *url.URL, bad reporter) {
	if r.CAFile == "" {
		return
	}
	pem, err := os.ReadFile(r.CAFile)
	pool := x509.NewCertPool()
	switch {
	case err != nil:
		bad("redis.ca_file", "%v", err)
	case !pool.AppendCertsFromPEM(pem):
		bad("redis.ca_file", "no PEM certificate")
	default:
		s.RootCAs = pool
	}
	if u != nil && u.Scheme != "rediss" {
		bad("redis.ca_file", "only for rediss:// URLs")
	}
}
