// Command soak runs the real tokenvendor binary for a while at a high steady
// rate over many tenants, with a mix of valid, expired and forged tokens,
// against a stub STS and a JWKS it serves itself, all on loopback. It
// reports requests, status counts, latency, and the service's RSS and
// goroutines at the start and the end, and exits non-zero on any answer the
// token did not call for (a 5xx above all) or when RSS or goroutines grow
// beyond a generous bound.
//
// `make soak` runs it for three minutes; TestSoakShort in e2e for twenty
// seconds.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"golang.org/x/time/rate"
)

// options of one soak run.
type options struct {
	duration    time.Duration
	rate        float64
	workers     int
	tenants     int
	bin         string
	stsLifetime time.Duration
	stsLatency  time.Duration
	report      time.Duration // how often progress is printed
	// Shares of expired, forged and unknown-kid tokens; the rest are valid.
	expired, forged, unknown float64
	// Bounds on growth from the start to the end of the measured run.
	rssGrowth      float64 // end RSS at most start RSS times this, plus rssSlack
	rssSlack       int64   // bytes
	goroutineSlack float64
	timeout        time.Duration // bound on one request
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 3*time.Minute, "length of the measured run, after warm-up")
	flag.Float64Var(&o.rate, "rate", 2000, "requests per second to send")
	flag.IntVar(&o.workers, "workers", 32, "concurrent connections")
	flag.IntVar(&o.tenants, "tenants", 1000, "tenants, two callers each")
	flag.StringVar(&o.bin, "bin", "", "tokenvendor binary; built from ./cmd/tokenvendor when empty")
	flag.DurationVar(&o.stsLifetime, "sts-lifetime", 2*time.Minute, "lifetime of the stub STS's credentials (refresh-ahead starts at about half)")
	flag.DurationVar(&o.stsLatency, "sts-latency", 20*time.Millisecond, "time the stub STS takes to answer")
	flag.DurationVar(&o.report, "report", 30*time.Second, "progress interval")
	flag.Float64Var(&o.expired, "expired", 0.04, "share of expired tokens")
	flag.Float64Var(&o.forged, "forged", 0.03, "share of tokens signed by another key under the published kid")
	flag.Float64Var(&o.unknown, "unknown-kid", 0.03, "share of tokens under a kid never published")
	flag.Float64Var(&o.rssGrowth, "rss-growth", 1.5, "fail when the end RSS exceeds the start RSS times this, plus -rss-slack")
	flag.Int64Var(&o.rssSlack, "rss-slack", 32<<20, "bytes of RSS growth always allowed")
	flag.Float64Var(&o.goroutineSlack, "goroutine-slack", 25, "fail when goroutines grow by more than this")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Second, "client timeout of one request")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, o); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// sample is the service's resource use at one moment.
type sample struct {
	RSS        int64   `json:"rss_bytes"`
	Goroutines float64 `json:"goroutines"`
}

// summary is the outcome of a run, printed as one JSON line at the end.
type summary struct {
	Requests   int                    `json:"requests"`
	Seconds    float64                `json:"seconds"`
	Statuses   map[string]map[int]int `json:"statuses"` // token kind -> status -> count
	Unexpected int                    `json:"unexpected"`
	ServerErrs int                    `json:"server_errors"`
	P50Millis  float64                `json:"p50_ms"`
	P99Millis  float64                `json:"p99_ms"`
	MaxMillis  float64                `json:"max_ms"`
	Start      sample                 `json:"start"`
	End        sample                 `json:"end"`
	STSCalls   int64                  `json:"sts_calls"`
	JWKS       int64                  `json:"jwks_fetches"`
}

// token is one caller's token and what it must get.
type token struct {
	kind  kind
	value string
}

func run(ctx context.Context, w io.Writer, o options) error {
	if o.duration <= 0 || o.rate <= 0 || o.workers <= 0 || o.tenants <= 0 {
		return errors.New("duration, rate, workers and tenants must be positive")
	}
	tmp, err := os.MkdirTemp("", "tokenvendor-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if o.bin == "" {
		o.bin = filepath.Join(tmp, "tokenvendor")
		if out, err := exec.Command("go", "build", "-o", o.bin, "./cmd/tokenvendor").CombinedOutput(); err != nil {
			return fmt.Errorf("build tokenvendor: %v\n%s", err, out)
		}
	}
	stsStub := newStubSTS(o.stsLifetime, o.stsLatency)
	defer stsStub.Close()
	idp, err := newIdP()
	if err != nil {
		return err
	}
	defer idp.Close()
	tokens, err := mintAll(idp, o)
	if err != nil {
		return err
	}
	svc, err := startService(o.bin, tmp, idp.URL, stsStub.URL)
	if err != nil {
		return err
	}
	defer svc.stop()
	fmt.Fprintf(w, "tokenvendor pid %d on %s; %d tenants, %d tokens; %.0f req/s from %d connections for %s\n",
		svc.cmd.Process.Pid, svc.url, o.tenants, len(tokens), o.rate, o.workers, o.duration)
	s, st, err := soak(ctx, w, o, svc, tokens)
	if err != nil {
		return err
	}
	s.STSCalls, s.JWKS = stsStub.calls.Load(), idp.fetches.Load()
	report(w, o, s, st)
	problems := judge(o, s, st, svc)
	b, _ := json.Marshal(s)
	fmt.Fprintf(w, "summary: %s\n", b)
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	fmt.Fprintln(w, "soak: ok")
	return nil
}

// soak warms the service up, then drives it at the asked rate for the
// asked duration, sampling its resources at the start and the end.
func soak(ctx context.Context, w io.Writer, o options, svc *service, tokens []token) (*summary, stats, error) {
	client := &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: o.workers, MaxConnsPerHost: o.workers, IdleConnTimeout: time.Minute},
		Timeout:   o.timeout,
	}
	defer client.CloseIdleConnections()
	// Warm-up: every valid token once, so that every tenant's credentials
	// are cached and every connection is open when the start is sampled.
	var warm []token
	for _, t := range tokens {
		if t.kind == valid {
			warm = append(warm, t)
		}
	}
	if st := drive(ctx, client, svc.url, warm, o.workers, 0, 0, nil); st.unexpected > 0 {
		return nil, st, fmt.Errorf("warm-up: %d unexpected answers: %v", st.unexpected, st.examples)
	}
	start, err := svc.sample()
	if err != nil {
		return nil, stats{}, err
	}
	fmt.Fprintf(w, "start: RSS %s, %v goroutines\n", mib(start.RSS), start.Goroutines)
	began := time.Now()
	st := drive(ctx, client, svc.url, tokens, o.workers, o.rate, o.duration, &reporter{every: o.report, fn: svc.progress(w)})
	elapsed := time.Since(began)
	// Sampled with the same connections open as at the start.
	end, err := svc.sample()
	if err != nil {
		return nil, st, err
	}
	return summarize(st, elapsed, start, end), st, nil
}

// progress prints the requests done and the service's resources so far.
func (s *service) progress(w io.Writer) func(time.Duration, int) {
	return func(elapsed time.Duration, n int) {
		smp, err := s.sample()
		if err != nil {
			fmt.Fprintf(w, "%6s %9d requests  %v\n", elapsed.Round(time.Second), n, err)
			return
		}
		fmt.Fprintf(w, "%6s %9d requests  RSS %s  %v goroutines\n", elapsed.Round(time.Second), n, mib(smp.RSS), smp.Goroutines)
	}
}

// summarize is the summary of a measured run.
func summarize(st stats, elapsed time.Duration, start, end sample) *summary {
	s := &summary{
		Requests: st.requests, Seconds: elapsed.Seconds(), Statuses: map[string]map[int]int{},
		Unexpected: st.unexpected, ServerErrs: st.serverErrors, Start: start, End: end,
	}
	for k := range kinds {
		s.Statuses[k.String()] = st.statuses[k]
	}
	slices.Sort(st.latencies)
	if n := len(st.latencies); n > 0 {
		at := func(q float64) float64 { return float64(st.latencies[int(q*float64(n-1))]) / 1e6 }
		s.P50Millis, s.P99Millis, s.MaxMillis = at(0.50), at(0.99), at(1)
	}
	return s
}

// judge names what went wrong in a run: unexpected answers, growth beyond
// the bounds, an exit.
func judge(o options, s *summary, st stats, svc *service) []string {
	var problems []string
	if s.Unexpected > 0 {
		problems = append(problems, fmt.Sprintf("%d unexpected answers (%d of them 5xx), e.g. %v", s.Unexpected, s.ServerErrs, st.examples))
	}
	if limit := int64(float64(s.Start.RSS)*o.rssGrowth) + o.rssSlack; s.End.RSS > limit {
		problems = append(problems, fmt.Sprintf("RSS grew from %s to %s, over the bound %s", mib(s.Start.RSS), mib(s.End.RSS), mib(limit)))
	}
	if s.End.Goroutines > s.Start.Goroutines+o.goroutineSlack {
		problems = append(problems, fmt.Sprintf("goroutines grew from %v to %v", s.Start.Goroutines, s.End.Goroutines))
	}
	if svc.exited() {
		problems = append(problems, "tokenvendor exited during the run:\n"+svc.tail())
	}
	return problems
}

// mintAll makes two valid tokens per tenant and, in the shares asked, tokens
// that must be refused, so that the mix is drawn by picking uniformly.
func mintAll(p *idp, o options) ([]token, error) {
	nValid := 2 * o.tenants
	share := 1 - o.expired - o.forged - o.unknown
	if share <= 0 {
		return nil, errors.New("the shares of bad tokens leave no valid ones")
	}
	total := float64(nValid) / share
	counts := map[kind]int{
		valid:   nValid,
		expired: int(total * o.expired),
		forged:  int(total * o.forged),
		unknown: int(total * o.unknown),
	}
	var out []token
	for k := range kinds {
		for i := range counts[k] {
			tenant := fmt.Sprintf("tenant-%04d", i%o.tenants)
			v, err := p.mint(k, tenant, fmt.Sprintf("svc-%d", i/o.tenants), i)
			if err != nil {
				return nil, err
			}
			out = append(out, token{kind: k, value: v})
		}
	}
	return out, nil
}

// stats are what a drive measured.
type stats struct {
	requests     int
	statuses     map[kind]map[int]int
	unexpected   int
	serverErrors int
	errors       int
	examples     []string
	latencies    []time.Duration
}

func newStats() stats {
	s := stats{statuses: map[kind]map[int]int{}}
	for k := range kinds {
		s.statuses[k] = map[int]int{}
	}
	return s
}

// record counts one answer, or the transport error instead of one.
func (s *stats) record(t token, status int, took time.Duration, err error) {
	s.requests++
	s.latencies = append(s.latencies, took)
	if err != nil {
		s.errors++
		s.unexpected++
		s.example(t.kind.String() + ": " + err.Error())
		return
	}
	s.statuses[t.kind][status]++
	if status != t.kind.want() {
		s.unexpected++
		if status >= 500 {
			s.serverErrors++
		}
		s.example(fmt.Sprintf("%s: %d", t.kind, status))
	}
}

// example keeps the first few unexpected answers.
func (s *stats) example(e string) {
	if len(s.examples) < 5 {
		s.examples = append(s.examples, e)
	}
}

// merge adds o to s.
func (s *stats) merge(o stats) {
	s.requests += o.requests
	s.unexpected += o.unexpected
	s.serverErrors += o.serverErrors
	s.errors += o.errors
	s.latencies = append(s.latencies, o.latencies...)
	if len(s.examples) < 5 {
		s.examples = append(s.examples, o.examples...)
	}
	for k, m := range o.statuses {
		for status, n := range m {
			s.statuses[k][status] += n
		}
	}
}

// reporter calls fn every interval with the time elapsed and requests done.
type reporter struct {
	every time.Duration
	fn    func(time.Duration, int)
}

// drive sends requests from workers connections. With a rate, it runs for
// d, picking tokens at random; without, it sends each token once.
func drive(ctx context.Context, client *http.Client, base string, tokens []token, workers int, perSecond float64, d time.Duration, rep *reporter) stats {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan token, workers)
	if perSecond > 0 {
		go feedPaced(ctx, next, tokens, perSecond, d)
	} else {
		go feedOnce(next, tokens)
	}
	var done atomic.Int64 // requests answered, in hundreds per worker
	if rep != nil {
		// Stopped and waited for before drive returns: no progress line
		// after the run's.
		var reported sync.WaitGroup
		reported.Add(1)
		defer reported.Wait()
		defer cancel()
		go func() {
			defer reported.Done()
			rep.run(ctx, &done)
		}()
	}
	var (
		mu  sync.Mutex
		all = newStats()
		wg  sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := work(client, base, next, &done)
			mu.Lock()
			defer mu.Unlock()
			all.merge(local)
		}()
	}
	wg.Wait()
	return all
}

// feedPaced sends tokens picked at random at perSecond until d has passed
// (forever when d is 0) or ctx ends, then closes next.
func feedPaced(ctx context.Context, next chan<- token, tokens []token, perSecond float64, d time.Duration) {
	defer close(next)
	limiter := rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond/100)))
	var timer <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	for {
		if err := limiter.Wait(ctx); err != nil {
			return
		}
		select {
		case next <- tokens[rand.IntN(len(tokens))]:
		case <-timer:
			return
		case <-ctx.Done():
			return
		}
	}
}

// feedOnce sends each token once, then closes next.
func feedOnce(next chan<- token, tokens []token) {
	defer close(next)
	for _, t := range tokens {
		next <- t
	}
}

// run reports progress every interval until ctx ends.
func (rep *reporter) run(ctx context.Context, done *atomic.Int64) {
	began := time.Now()
	tick := time.NewTicker(rep.every)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			rep.fn(time.Since(began), int(done.Load()))
		case <-ctx.Done():
			return
		}
	}
}

// work sends a request for each token of next, on one connection, and
// counts every hundred answers in done.
func work(client *http.Client, base string, next <-chan token, done *atomic.Int64) stats {
	local := newStats()
	for t := range next {
		status, took, err := post(client, base, t.value)
		local.record(t, status, took, err)
		if local.requests%100 == 0 {
			done.Add(100)
		}
	}
	return local
}

// post asks for credentials with token and reads the whole answer.
func post(client *http.Client, base, token string) (int, time.Duration, error) {
	began := time.Now()
	req, err := http.NewRequest(http.MethodPost, base+"/credentials", nil)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := client.Do(req)
	if err != nil {
		return 0, time.Since(began), err
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, time.Since(began), err
}

func report(w io.Writer, o options, s *summary, st stats) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "\nmeasure\tvalue")
	fmt.Fprintln(tw, "-------\t-----")
	fmt.Fprintf(tw, "duration\t%.0f s\n", s.Seconds)
	fmt.Fprintf(tw, "requests\t%d (%.0f/s, asked %.0f/s)\n", s.Requests, float64(s.Requests)/s.Seconds, o.rate)
	for k := range kinds {
		var parts []string
		for _, code := range slices.Sorted(maps.Keys(st.statuses[k])) {
			parts = append(parts, fmt.Sprintf("%d: %d", code, st.statuses[k][code]))
		}
		fmt.Fprintf(tw, "%s tokens (want %d)\t%s\n", k, k.want(), strings.Join(parts, ", "))
	}
	fmt.Fprintf(tw, "transport errors\t%d\n", st.errors)
	fmt.Fprintf(tw, "unexpected answers (5xx)\t%d (%d)\n", s.Unexpected, s.ServerErrs)
	fmt.Fprintf(tw, "latency p50 / p99 / max\t%.2f / %.2f / %.2f ms\n", s.P50Millis, s.P99Millis, s.MaxMillis)
	fmt.Fprintf(tw, "RSS start / end\t%s / %s\n", mib(s.Start.RSS), mib(s.End.RSS))
	fmt.Fprintf(tw, "goroutines start / end\t%v / %v\n", s.Start.Goroutines, s.End.Goroutines)
	fmt.Fprintf(tw, "stub STS AssumeRole calls\t%d (credentials live %s)\n", s.STSCalls, o.stsLifetime)
	fmt.Fprintf(tw, "JWKS fetches\t%d\n", s.JWKS)
	tw.Flush()
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// ---------------------------------------------------------------- the service

// service is the running tokenvendor.
type service struct {
	cmd  *exec.Cmd
	url  string
	done chan struct{}
	mu   sync.Mutex
	out  []string // the last lines of its log
}

var listeningRE = regexp.MustCompile(`"msg":"listening","addr":"([^"]+)"`)

func startService(bin, dir, idpURL, stsURL string) (*service, error) {
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
auth:
  issuer: %s
  jwks_url: %s/jwks
  audiences: [%s]
sts:
  endpoint: %s
  role_chaining: "off"
  timeout: 5s
profiles:
  - name: objects
    role_arn: arn:aws:iam::123456789012:role/TenantData
    policy: '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::data/{{ .TenantID }}/*"}]}'
    tags: {TenantID: "{{ .TenantID }}"}
`, issuer, idpURL, audience, stsURL)
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "--config", path)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=AKIDSOAK", "AWS_SECRET_ACCESS_KEY=soak", "AWS_SESSION_TOKEN=", "AWS_REGION=us-east-1",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true", "AWS_PROFILE=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &service{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if m := listeningRE.FindStringSubmatch(line); m != nil && strings.Contains(line, `"admin":false`) {
				select {
				case addr <- m[1]:
				default:
				}
			}
			s.mu.Lock()
			s.out = append(s.out, line)
			if len(s.out) > 50 {
				s.out = s.out[len(s.out)-50:]
			}
			s.mu.Unlock()
		}
	}()
	go func() { _ = cmd.Wait(); close(s.done) }()
	select {
	case a := <-addr:
		s.url = "http://" + a
	case <-s.done:
		return nil, fmt.Errorf("tokenvendor exited at start:\n%s", s.tail())
	case <-time.After(30 * time.Second):
		s.stop()
		return nil, fmt.Errorf("tokenvendor not listening after 30 s:\n%s", s.tail())
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := http.Get(s.url + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("tokenvendor not ready after 20 s:\n%s", s.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *service) stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

func (s *service) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *service) tail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.out, "\n")
}

// sample reads the service's RSS from /proc and its goroutines from /metrics.
func (s *service) sample() (sample, error) {
	var out sample
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return out, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return out, fmt.Errorf("VmRSS: %w", err)
			}
			out.RSS = kb << 10
		}
	}
	res, err := http.Get(s.url + "/metrics")
	if err != nil {
		return out, err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			out.Goroutines, err = strconv.ParseFloat(rest, 64)
			return out, err
		}
	}
	return out, errors.New("no go_goroutines in /metrics")
}
