package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

// loadResult is what one hey run measured.
type loadResult struct {
	rps, p50, p99 float64
}

// loopback runs the real binary and a bare handler under hey, alternately,
// and reports the better of two runs of each.
func loopback(w io.Writer, hey string, duration time.Duration) ([]row, error) {
	if _, err := os.Stat(hey); err != nil {
		return nil, fail("hey not found at %s (make tools installs it): %v", hey, err)
	}
	lb := &loopbackRun{}
	defer lb.close()
	if err := lb.startPeers(); err != nil {
		return nil, err
	}
	targets, err := lb.startTargets()
	if err != nil {
		return nil, err
	}
	best, err := measure(w, hey, targets, lb.token, duration)
	if err != nil {
		return nil, err
	}
	b, t, sh, tr := best[0], best[1], best[2], best[3]
	return []row{
		{"loopback, 32 conns", "cache-hit req/s / bare handler req/s", ratio(t.rps, b.rps), ">= 0.6"},
		{"loopback, 32 conns", "cache-hit req/s with redis configured / bare handler req/s", ratio(sh.rps, b.rps), ">= 0.6"},
		{"loopback, 32 conns", "cache-hit req/s with tracing on (OTLP/HTTP) / bare handler req/s", ratio(tr.rps, b.rps), ""},
		{"loopback, 32 conns", "tokenvendor req/s (context)", fmt.Sprintf("%.0f", t.rps), ""},
		{"loopback, 32 conns", "p50 latency / bare handler p50", ratio(t.p50, b.p50), ""},
		{"loopback, 32 conns", "p99 latency / bare handler p99", ratio(t.p99, b.p99), ""},
	}, nil
}

// loopbackRun is what a loopback run starts: the stub identity provider
// and STS, Redis, the binary built once, and what to stop at the end.
type loopbackRun struct {
	tmp   string
	bin   string
	jwks  string
	sts   string
	redis *redisServer
	keys  string
	token string // a signed JWT for tenant acme
	stops []func()
}

// close stops everything started, the last first.
func (lb *loopbackRun) close() {
	for i := len(lb.stops) - 1; i >= 0; i-- {
		lb.stops[i]()
	}
}

// startPeers starts the identity provider, STS and Redis, signs the token
// and builds the binary.
func (lb *loopbackRun) startPeers() error {
	tmp, err := os.MkdirTemp("", "tokenvendor-bench-")
	if err != nil {
		return err
	}
	lb.tmp = tmp
	lb.stops = append(lb.stops, func() { os.RemoveAll(tmp) })
	signer, err := testsupport.NewKey("bench-1", jwa.RS256)
	if err != nil {
		return err
	}
	jwks := httptest.NewServer(testsupport.JWKS(signer))
	stsStub := httptest.NewServer(testsupport.STS("ASIABENCHEXAMPLE0001", sessionTokenLength, time.Hour))
	lb.jwks, lb.sts = jwks.URL, stsStub.URL
	lb.stops = append(lb.stops, jwks.Close, stsStub.Close)
	if lb.token, err = benchToken(signer); err != nil {
		return err
	}
	lb.bin = filepath.Join(tmp, "tokenvendor")
	if out, err := exec.Command("go", "build", "-o", lb.bin, "./cmd/tokenvendor").CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v\n%s", err, out)
	}
	if lb.redis, err = startRedis(); err != nil {
		return err
	}
	lb.stops = append(lb.stops, lb.redis.stop)
	lb.keys, err = keyFile(tmp)
	return err
}

// benchToken is a JWT of the stub identity provider for tenant acme.
func benchToken(signer *testsupport.Key) (string, error) {
	tok, err := jwt.NewBuilder().Issuer("https://idp.bench/").Audience([]string{"tokenvendor"}).Subject("svc-bench").
		IssuedAt(time.Now()).Expiration(time.Now().Add(2*time.Hour)).Claim("tenant_id", "acme").Build()
	if err != nil {
		return "", err
	}
	return signer.Sign(tok)
}

// startTargets starts what hey measures, warmed: the bare handler, the
// binary alone, with Redis, and with tracing to a sink that drops every
// span. Their base URLs, in that order.
func (lb *loopbackRun) startTargets() ([]string, error) {
	alone, err := lb.serve("alone", "")
	if err != nil {
		return nil, err
	}
	shared, err := lb.serve("shared", fmt.Sprintf("redis:\n  url: redis://%s\n  key_file: %s\n", lb.redis.addr, lb.keys))
	if err != nil {
		return nil, err
	}
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	lb.stops = append(lb.stops, sink.Close)
	traced, err := lb.serve("traced", "", "OTEL_EXPORTER_OTLP_ENDPOINT="+sink.URL)
	if err != nil {
		return nil, err
	}
	size, err := warm(alone+"/credentials", lb.token)
	if err != nil {
		return nil, err
	}
	for _, u := range []string{shared, traced} {
		if _, err := warm(u+"/credentials", lb.token); err != nil {
			return nil, err
		}
	}
	bare, err := lb.serveBare(size)
	if err != nil {
		return nil, err
	}
	return []string{bare, alone, shared, traced}, nil
}

// serve runs the binary with the bench config plus extra, until close, and
// returns its base URL once ready.
func (lb *loopbackRun) serve(name, extra string, env ...string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
auth:
  issuer: https://idp.bench/
  jwks_url: %s/jwks
  audiences: [tokenvendor]
sts:
  endpoint: %s
  role_chaining: "off"
profiles:
  - name: objects
    role_arn: arn:aws:iam::123456789012:role/TenantData
    policy: '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::data/{{ .TenantID }}/*"}]}'
    tags: {TenantID: "{{ .TenantID }}"}
`, port, lb.jwks, lb.sts) + extra
	cfgPath := filepath.Join(lb.tmp, name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return "", err
	}
	tv := exec.Command(lb.bin, "serve", "--config", cfgPath)
	tv.Env = append(append(os.Environ(), "AWS_ACCESS_KEY_ID=AKIDBENCH", "AWS_SECRET_ACCESS_KEY=bench", "AWS_REGION=us-east-1",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true"), env...)
	tv.Stderr = io.Discard
	if err := tv.Start(); err != nil {
		return "", err
	}
	lb.stops = append(lb.stops, func() { _ = tv.Process.Kill(); _ = tv.Wait() })
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	return u, waitReady(u + "/readyz")
}

// serveBare serves the bare handler, answering size bytes, until close.
func (lb *loopbackRun) serveBare(size int) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	bare := &http.Server{Handler: testsupport.BareHandler(size), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = bare.Serve(ln) }()
	lb.stops = append(lb.stops, func() { bare.Close() })
	return "http://" + ln.Addr().String(), nil
}

// measure runs hey against each target, alternately, twice, and keeps
// each one's better run.
func measure(w io.Writer, hey string, targets []string, token string, duration time.Duration) ([4]loadResult, error) {
	names := []string{"bare", "tokenvendor", "tv+redis", "tv+tracing"}
	var best [4]loadResult
	for round := range 2 {
		for i, target := range targets {
			r, err := runHey(w, hey, target+"/credentials", token, duration)
			if err != nil {
				return best, err
			}
			fmt.Fprintf(w, "round %d %-11s %8.0f req/s  p50 %.2f ms  p99 %.2f ms\n", round+1, names[i], r.rps, r.p50*1000, r.p99*1000)
			if r.rps > best[i].rps {
				best[i] = r
			}
		}
	}
	return best, nil
}

var (
	heyRPS    = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	heyStatus = regexp.MustCompile(`\[(\d+)\]\s+(\d+) responses`)
)

func runHey(w io.Writer, hey, url, token string, d time.Duration) (loadResult, error) {
	out, err := exec.Command(hey, "-z", d.String(), "-c", "32", "-m", "POST",
		"-H", "Authorization: Bearer "+token, "-T", "application/json", url).CombinedOutput()
	if err != nil {
		return loadResult{}, fmt.Errorf("hey: %v\n%s", err, out)
	}
	text := string(out)
	for _, m := range heyStatus.FindAllStringSubmatch(text, -1) {
		if m[1] != "200" {
			return loadResult{}, fail("hey saw %s responses with status %s", m[2], m[1])
		}
	}
	var r loadResult
	if m := heyRPS.FindStringSubmatch(text); m != nil {
		r.rps, _ = strconv.ParseFloat(m[1], 64)
	}
	for _, m := range regexp.MustCompile(`(\d+)%+ in ([\d.]+) secs`).FindAllStringSubmatch(text, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		switch m[1] {
		case "50":
			r.p50 = v
		case "99":
			r.p99 = v
		}
	}
	if r.rps == 0 || r.p50 == 0 || r.p99 == 0 {
		fmt.Fprintln(w, text)
		return r, fail("could not read hey's output")
	}
	return r, nil
}

func warm(url, token string) (int, error) {
	req, _ := http.NewRequest(http.MethodPost, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return 0, fail("warm-up: %d %s", res.StatusCode, b)
	}
	return len(b), nil
}

func waitReady(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if res, err := http.Get(url); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fail("%s not ready", url)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// sessionTokenLength is typical of AWS session tokens with a session policy and tags.
const sessionTokenLength = 1000
