package config_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/config"
	"github.com/tokenvendor/tokenvendor/internal/tlsconfig/tlstest"
)

// redisFiles are the files a redis section names, made for one test.
type redisFiles struct {
	dir, keys, shortKey, url, password, emptyPassword, ca string
}

func newRedisFiles(t *testing.T) redisFiles {
	t.Helper()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	ca := tlstest.NewCA(t, "redis-ca")
	return redisFiles{
		dir:           dir,
		keys:          write("redis.key", "# first seals\n"+key+"\n"),
		shortKey:      write("short.key", base64.StdEncoding.EncodeToString(make([]byte, 16))+"\n"),
		url:           write("url", "rediss://tokenvendor:s3cr3t-in-file@redis.internal:6380/0\n"),
		password:      write("password", "s3cr3t-password\n"),
		emptyPassword: write("empty", "\n"),
		ca:            write("ca.pem", string(ca.PEM)),
	}
}

func TestParseRedis(t *testing.T) {
	f := newRedisFiles(t)
	tests := []struct {
		name    string
		section string
		wantErr string
		check   func(*testing.T, *config.Config)
	}{
		{
			name: "no section: each replica alone",
			check: func(t *testing.T, c *config.Config) {
				if c.Shared != nil {
					t.Fatal("Shared set without a redis section")
				}
			},
		},
		{
			name:    "url and key file, defaults filled",
			section: "  url: redis://127.0.0.1:6379/0\n  key_file: " + f.keys + "\n",
			check: func(t *testing.T, c *config.Config) {
				if c.Shared == nil || c.Shared.Keys.Len() != 1 || c.Shared.URL != "redis://127.0.0.1:6379/0" {
					t.Fatalf("Shared = %+v", c.Shared)
				}
				if c.Redis.Prefix != "tokenvendor:" || c.Redis.Timeout != 250*time.Millisecond {
					t.Fatalf("defaults: prefix %q timeout %s", c.Redis.Prefix, c.Redis.Timeout)
				}
			},
		},
		{
			name:    "url from a file, CA for TLS",
			section: "  url_file: " + f.url + "\n  key_file: " + f.keys + "\n  ca_file: " + f.ca + "\n",
			check: func(t *testing.T, c *config.Config) {
				if c.Shared.URL != "rediss://tokenvendor:s3cr3t-in-file@redis.internal:6380/0" || c.Shared.RootCAs == nil {
					t.Fatalf("url_file or ca_file not read")
				}
			},
		},
		{
			name:    "cluster with more nodes",
			section: "  url: redis://127.0.0.1:7000?addr=127.0.0.1:7001&addr=127.0.0.1:7002\n  cluster: true\n  key_file: " + f.keys + "\n",
		},
		{
			name:    "password from a file",
			section: "  url: redis://127.0.0.1:6379\n  password_file: " + f.password + "\n  key_file: " + f.keys + "\n",
			check: func(t *testing.T, c *config.Config) {
				if c.Shared.Password != "s3cr3t-password" {
					t.Fatal("password_file not read, or its newline kept")
				}
			},
		},
		{name: "key file without url", section: "  key_file: " + f.keys + "\n", wantErr: "redis: url or url_file required"},
		{name: "url without key file", section: "  url: redis://127.0.0.1:6379\n", wantErr: "redis.key_file: required"},
		{name: "url and url_file", section: "  url: redis://127.0.0.1:6379\n  url_file: " + f.url + "\n  key_file: " + f.keys + "\n", wantErr: "url and url_file: set one"},
		{name: "unreadable url_file", section: "  url_file: /nonexistent/url\n  key_file: " + f.keys + "\n", wantErr: "redis.url_file"},
		{name: "http scheme", section: "  url: http://user:hunter2hunter2@redis:6379\n  key_file: " + f.keys + "\n", wantErr: "redis.url: not a redis:// or rediss:// URL"},
		{name: "unknown query parameter", section: "  url: redis://:hunter2hunter2@redis:6379?colour=blue\n  key_file: " + f.keys + "\n", wantErr: "redis.url: not a redis://"},
		{name: "short key", section: "  url: redis://127.0.0.1:6379\n  key_file: " + f.shortKey + "\n", wantErr: "redis.key_file: line 1: a key is 32 bytes, this one 16"},
		{name: "missing key file", section: "  url: redis://127.0.0.1:6379\n  key_file: /nonexistent/key\n", wantErr: "redis.key_file: read key file"},
		{name: "empty password file", section: "  url: redis://127.0.0.1:6379\n  password_file: " + f.emptyPassword + "\n  key_file: " + f.keys + "\n", wantErr: "redis.password_file: empty"},
		{name: "password twice", section: "  url: redis://:hunter2hunter2@127.0.0.1:6379\n  password_file: " + f.password + "\n  key_file: " + f.keys + "\n", wantErr: "the URL carries a password too"},
		{name: "ca_file without TLS", section: "  url: redis://127.0.0.1:6379\n  ca_file: " + f.ca + "\n  key_file: " + f.keys + "\n", wantErr: "redis.ca_file: only for rediss://"},
		{name: "ca_file not PEM", section: "  url: rediss://127.0.0.1:6379\n  ca_file: " + f.keys + "\n  key_file: " + f.keys + "\n", wantErr: "redis.ca_file: no PEM certificate"},
		{name: "brace in prefix", section: "  url: redis://127.0.0.1:6379\n  prefix: 'tv{x}:'\n  key_file: " + f.keys + "\n", wantErr: "redis.prefix"},
		{name: "timeout not below sts.timeout", section: "  url: redis://127.0.0.1:6379\n  timeout: 10s\n  key_file: " + f.keys + "\n", wantErr: "redis.timeout"},
		{name: "negative timeout", section: "  url: redis://127.0.0.1:6379\n  timeout: -1s\n  key_file: " + f.keys + "\n", wantErr: "redis.timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := baseline
			if tt.section != "" {
				y = "redis:\n" + tt.section + baseline
			}
			c, err := config.Parse([]byte(y))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse() error = %v, want %q", err, tt.wantErr)
				}
				for _, secret := range []string{"hunter2", "s3cr3t"} {
					if strings.Contains(err.Error(), secret) {
						t.Fatalf("the error shows a password: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse() = %v", err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestSharedTierPrintsRedacted(t *testing.T) {
	f := newRedisFiles(t)
	c, err := config.Parse([]byte("redis:\n  url_file: " + f.url + "\n  key_file: " + f.keys + "\n" + baseline))
	if err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		s := fmt.Sprintf(verb, c.Shared)
		if strings.Contains(s, "s3cr3t") {
			t.Fatalf("the shared tier's settings print their password: %s", s)
		}
	}
}
