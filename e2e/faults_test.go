package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/testsupport"
	"github.com/tokenvendor/tokenvendor/wire"
)

// ---------------------------------------------------------------- load

// outcome is one request of a load loop.
type outcome struct {
	status int
	header http.Header
	body   []byte
	err    error
	sent   time.Time
	took   time.Duration
	readyz bool // a GET /readyz rather than a request for credentials
}

// code is the error code of a JSON error body, or "".
func (o outcome) code() string {
	var e wire.ErrorBody
	_ = json.Unmarshal(o.body, &e)
	return e.Code
}

// accessKey is the AccessKeyId of a 200 body from POST /credentials.
func (o outcome) accessKey() string {
	var c credentials
	_ = json.Unmarshal(o.body, &c)
	return c.AccessKeyID
}

// call sends one request and never fails the test, so goroutines may use it.
func call(client *http.Client, method, u, token, body string) outcome {
	o := outcome{sent: time.Now()}
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		o.err = err
		return o
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := client.Do(req)
	if err != nil {
		o.err, o.took = err, time.Since(o.sent)
		return o
	}
	defer res.Body.Close()
	o.body, o.err = io.ReadAll(res.Body)
	o.status, o.header, o.took = res.StatusCode, res.Header, time.Since(o.sent)
	return o
}

// loadClient is an HTTP client for load loops: bounded, so that a hang
// shows as an error instead of stalling the test.
func loadClient(keepAlive bool) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tr.DisableKeepAlives = !keepAlive
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// loadLoop runs workers that each call one function in a loop until stopped.
type loadLoop struct {
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	out  []outcome
}

// startLoad starts workers calling fn(worker, iteration) back to back.
func startLoad(workers int, fn func(worker, i int) outcome) *loadLoop {
	l := &loadLoop{stop: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				o := fn(w, i)
				l.mu.Lock()
				l.out = append(l.out, o)
				l.mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	return l
}

// count is the number of requests done so far.
func (l *loadLoop) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.out)
}

// waitFor waits until at least n more requests than now are done.
func (l *loadLoop) waitFor(t *testing.T, n int) {
	t.Helper()
	want := l.count() + n
	testsupport.Eventually(t, 30*time.Second, func() error {
		if n := l.count(); n < want {
			return fmt.Errorf("load loop made %d requests, want %d", n, want)
		}
		return nil
	})
}

// finish stops the workers and returns every outcome.
func (l *loadLoop) finish() []outcome {
	close(l.stop)
	l.wg.Wait()
	return l.out
}

// ---------------------------------------------------------------- MinIO

// minioPeer is a MinIO started for one test, so that it can be killed and
// started again on the same port and data directory.
type minioPeer struct {
	proc          *process
	url, dir      string
	port, console int
}

func startMinIO(t *testing.T) *minioPeer {
	t.Helper()
	m := &minioPeer{dir: filepath.Join(t.TempDir(), "minio"), port: freePort(), console: freePort()}
	m.url = fmt.Sprintf("http://127.0.0.1:%d", m.port)
	m.run(t)
	t.Cleanup(func() { m.proc.stop() })
	return m
}

// run starts (or starts again) the MinIO process and waits until it is ready.
func (m *minioPeer) run(t *testing.T) {
	t.Helper()
	p, err := start("minio-"+t.Name(), filepath.Join(peers.tools, "bin", "minio"), []string{"server", m.dir,
		"--address", fmt.Sprintf("127.0.0.1:%d", m.port), "--console-address", fmt.Sprintf("127.0.0.1:%d", m.console)},
		[]string{"MINIO_ROOT_USER=" + minioUser, "MINIO_ROOT_PASSWORD=" + minioPassword, "MINIO_BROWSER=off"}, "")
	if err != nil {
		t.Fatal(err)
	}
	m.proc = p
	if err := waitMinIO(m.url); err != nil {
		t.Fatalf("%v\n%s", err, p.out.String())
	}
}

// ---------------------------------------------------------------- checks

// wantUnavailable checks that o is a 503 upstream_unavailable with a
// Retry-After in whole seconds, answered within limit.
func wantUnavailable(t *testing.T, what string, o outcome, limit time.Duration) {
	t.Helper()
	if o.err != nil {
		t.Errorf("%s: %v after %s", what, o.err, o.took)
		return
	}
	if o.status != http.StatusServiceUnavailable || o.code() != "upstream_unavailable" {
		t.Errorf("%s: %d %s, want 503 upstream_unavailable", what, o.status, o.body)
	}
	if s, err := strconv.Atoi(o.header.Get("Retry-After")); err != nil || s <= 0 {
		t.Errorf("%s: Retry-After = %q, want a positive number of seconds", what, o.header.Get("Retry-After"))
	}
	if o.took > limit {
		t.Errorf("%s: answered after %s, want within %s", what, o.took.Round(time.Millisecond), limit)
	}
}

// goroutines is the vendor's go_goroutines.
func (v *vendor) goroutines(t *testing.T) float64 {
	t.Helper()
	return v.metric(t, "go_goroutines")
}

// ---------------------------------------------------------------- tests

func TestSTSOutageServesCachedCredentialsAnswersOthers503AndRecovers(t *testing.T) {
	const stsTimeout = 2 * time.Second
	minio := startMinIO(t)
	v := startVendor(t, writeConfig(t, configOptions{stsEndpoint: minio.url, stsTimeout: stsTimeout.String(), roleChaining: "off"}),
		minioUser, minioPassword)
	cachedTokens := []string{token(t, "svc-acme"), token(t, "svc-globex")}
	cached := map[string]string{} // token -> access key id
	for _, tok := range cachedTokens {
		cached[tok] = v.vend(t, tok, "").AccessKeyID
	}
	worker := token(t, "worker")

	client := loadClient(true)
	load := startLoad(4, func(w, i int) outcome {
		tok := cachedTokens[(w+i)%len(cachedTokens)]
		o := call(client, http.MethodPost, v.url+"/credentials", tok, "")
		if o.err == nil && o.status == http.StatusOK && o.accessKey() != cached[tok] {
			o.err = fmt.Errorf("credentials changed: %s, want %s", o.accessKey(), cached[tok])
		}
		return o
	})
	load.waitFor(t, 20)

	minio.proc.kill()
	outageStart := time.Now()
	var unavailable int
	for i := range 3 {
		// An uncached tenant: nothing to fall back on.
		o := call(client, http.MethodPost, v.url+"/credentials", worker, fmt.Sprintf(`{"tenant_id":"outage-%d"}`, i))
		wantUnavailable(t, fmt.Sprintf("uncached tenant outage-%d during the outage", i), o, 2*stsTimeout)
		if o.status == http.StatusServiceUnavailable {
			unavailable++
		}
		t.Logf("uncached tenant during the outage: %d in %s", o.status, o.took.Round(time.Millisecond))
	}
	load.waitFor(t, 20) // cached tenants keep being served while STS is down
	duringOutage := load.count()

	minio.run(t)
	outageEnd := time.Now()
	t.Logf("STS down for %s", outageEnd.Sub(outageStart).Round(time.Millisecond))

	// A tenant never asked for gets credentials at once; one that failed
	// during the outage gets them once its backoff (at most 30 s) ends.
	fresh := call(client, http.MethodPost, v.url+"/credentials", worker, `{"tenant_id":"after-outage"}`)
	if fresh.status != http.StatusOK {
		t.Errorf("new tenant after STS returned: %d %s %v", fresh.status, fresh.body, fresh.err)
	}
	testsupport.Eventually(t, 45*time.Second, func() error {
		o := call(client, http.MethodPost, v.url+"/credentials", worker, `{"tenant_id":"outage-0"}`)
		switch o.status {
		case http.StatusOK:
			return nil
		case http.StatusServiceUnavailable:
			unavailable++
			return fmt.Errorf("tenant outage-0 after STS returned: %d %s %v", o.status, o.body, o.err)
		}
		return testsupport.Final(fmt.Errorf("tenant outage-0 after STS returned: %d %s %v", o.status, o.body, o.err))
	})
	t.Logf("tenant that failed during the outage recovered %s after STS returned", time.Since(outageEnd).Round(time.Millisecond))
	load.waitFor(t, 20)

	results := load.finish()
	var inOutage int
	for _, o := range results {
		if o.err != nil || o.status != http.StatusOK {
			t.Errorf("cached tenant at %s: %d %s %v", o.sent.Format(time.StampMilli), o.status, o.body, o.err)
			continue
		}
		if o.sent.After(outageStart) && o.sent.Before(outageEnd) {
			inOutage++
		}
	}
	if inOutage == 0 || duringOutage == 0 {
		t.Errorf("no request of a cached tenant was served while STS was down")
	}
	t.Logf("%d requests of cached tenants, %d of them while STS was down; all 200 with the cached credentials", len(results), inOutage)
	errs := v.serverErrors(t)
	if errs["503"] != float64(unavailable) || len(errs) > 1 {
		t.Errorf("5xx answered = %v, want only the %d 503s seen by uncached tenants", errs, unavailable)
	}
}

func TestSlowSTSFailsWaitersTogetherInBoundedTimeWithoutLeakingGoroutines(t *testing.T) {
	const (
		stsTimeout = time.Second
		assumeRole = "Action=AssumeRole&"
	)
	proxy := startProxy(t, strings.TrimPrefix(peers.minio, "http://"), assumeRole)
	v := startVendor(t, writeConfig(t, configOptions{stsEndpoint: proxy.url(), stsTimeout: stsTimeout.String(), roleChaining: "off"}),
		minioUser, minioPassword)
	worker := token(t, "worker")

	// Control: a latency below the timeout still yields credentials.
	proxy.setDelay(200 * time.Millisecond)
	if c := v.vend(t, worker, `{"tenant_id":"slow-control"}`); c.TenantID != "slow-control" {
		t.Fatalf("control: tenant %s", c.TenantID)
	}
	if n := proxy.count(assumeRole); n != 1 {
		t.Fatalf("control: %d AssumeRole requests reached STS, want 1", n)
	}
	base := v.goroutines(t)

	// Every byte now takes twenty times the STS timeout: three tenants,
	// ten concurrent callers each.
	proxy.setDelay(20 * stsTimeout)
	const tenants, waiters = 3, 10
	client := loadClient(false)
	results := make([]outcome, tenants*waiters)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = call(client, http.MethodPost, v.url+"/credentials", worker, fmt.Sprintf(`{"tenant_id":"slow-%d"}`, i%tenants))
		}()
	}
	wg.Wait()
	var slowest time.Duration
	for i, o := range results {
		wantUnavailable(t, fmt.Sprintf("caller %d of tenant slow-%d", i, i%tenants), o, 2*stsTimeout)
		slowest = max(slowest, o.took)
	}
	t.Logf("%d callers answered 503 within %s (sts.timeout %s)", len(results), slowest.Round(time.Millisecond), stsTimeout)
	if n := proxy.count(assumeRole) - 1; n != tenants {
		t.Errorf("%d AssumeRole requests reached STS for %d callers of %d tenants, want one per tenant", n, len(results), tenants)
	}
	if n := v.metric(t, `tokenvendor_sts_requests_total{outcome="unavailable"}`); n != tenants {
		t.Errorf("tokenvendor_sts_requests_total{outcome=\"unavailable\"} = %v, want %d", n, tenants)
	}

	// The timed-out calls left nothing behind in the service.
	const slack = 5
	testsupport.Eventually(t, 10*time.Second, func() error {
		if now := v.goroutines(t); now > base+slack {
			return fmt.Errorf("goroutines: %v before the slow calls, still %v after they were answered", base, now)
		}
		return nil
	})
	if errs := v.serverErrors(t); errs["503"] != float64(len(results)) || len(errs) > 1 {
		t.Errorf("5xx answered = %v, want only the %d 503s", errs, len(results))
	}
}

// TestSoakShort is the CI version of `make soak`: twenty seconds of steady
// load over 1,000 tenants with valid, expired, forged and unknown-kid
// tokens against the real binary, credentials short-lived enough to be
// refreshed ahead during the run.
func TestSoakShort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "./soak", "-bin", peers.bin,
		"-duration", "20s", "-rate", "1000", "-workers", "16", "-sts-lifetime", "30s", "-report", "10s")
	cmd.Dir = peers.root
	out, err := cmd.CombinedOutput()
	t.Logf("go run ./soak:\n%s", out)
	if err != nil {
		t.Fatalf("soak failed: %v", err)
	}
	var s struct {
		Requests     int                       `json:"requests"`
		Statuses     map[string]map[string]int `json:"statuses"`
		Unexpected   int                       `json:"unexpected"`
		ServerErrors int                       `json:"server_errors"`
		STSCalls     int                       `json:"sts_calls"`
	}
	i := bytes.LastIndex(out, []byte("summary: "))
	if i < 0 {
		t.Fatal("no summary line")
	}
	if err := json.Unmarshal(bytes.TrimSpace(bytes.SplitN(out[i+len("summary: "):], []byte("\n"), 2)[0]), &s); err != nil {
		t.Fatal(err)
	}
	if s.Unexpected != 0 || s.ServerErrors != 0 {
		t.Errorf("%d unexpected answers, %d of them 5xx", s.Unexpected, s.ServerErrors)
	}
	want := map[string]string{"valid": "200", "expired": "401", "forged": "401", "unknown_kid": "401"}
	for kind, status := range want {
		got := s.Statuses[kind]
		if got[status] == 0 || len(got) != 1 {
			t.Errorf("%s tokens were answered %v, want only %s", kind, got, status)
		}
	}
	if s.STSCalls <= 1000 {
		t.Errorf("%d AssumeRole calls for 1,000 tenants with 30 s credentials over 20 s: none was refreshed", s.STSCalls)
	}
}
