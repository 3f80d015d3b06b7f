package canary_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/canary"
	"github.com/tokenvendor/tokenvendor/internal/metrictest"
	"github.com/tokenvendor/tokenvendor/internal/policy"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
	"github.com/tokenvendor/tokenvendor/internal/vend"
)

// vendor hands each tenant credentials whose access key names it.
type vendor struct{ err error }

func (v vendor) Vend(_ context.Context, c auth.Caller, req vend.Request) (vend.Grant, error) {
	if v.err != nil {
		return vend.Grant{}, v.err
	}
	if c.Subject != canary.Subject || req.TenantID != c.TenantID {
		return vend.Grant{}, fmt.Errorf("vended as %q for %q", c.Subject, req.TenantID)
	}
	return vend.Grant{Credentials: vend.Credentials{AccessKeyID: "AKID-" + c.TenantID, SecretAccessKey: "secret-of-" + c.TenantID,
		SessionToken: "token-of-" + c.TenantID, Expiration: time.Now().Add(time.Hour), TenantID: c.TenantID, Profile: req.Profile}}, nil
}

func key(t *testing.T, text string) *policy.Key {
	t.Helper()
	k, err := policy.CompileKey(text)
	if err != nil && !errors.Is(err, policy.ErrKeyWithoutTenant) {
		t.Fatal(err)
	}
	return k
}

// service is a fake S3 (path-style) and DynamoDB in one handler: the
// credentials of one tenant reading the object or item of another (or its
// own) get the answers the test sets for each service.
type service struct {
	mu      sync.Mutex
	answers map[[2]string][2]func(w http.ResponseWriter) // (reader, owner) -> (S3, DynamoDB)
}

func newService() *service {
	return &service{answers: map[[2]string][2]func(http.ResponseWriter){}}
}

func (s *service) set(reader, owner string, s3, ddb func(w http.ResponseWriter)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers[[2]string{reader, owner}] = [2]func(http.ResponseWriter){s3, ddb}
}

// both sets the answers to own reads and to foreign reads, both ways.
func (s *service) both(own, foreign [2]func(http.ResponseWriter)) {
	for _, r := range [][2]string{{"canary-a", "canary-b"}, {"canary-b", "canary-a"}} {
		s.set(r[0], r[0], own[0], own[1])
		s.set(r[0], r[1], foreign[0], foreign[1])
	}
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reader := strings.TrimPrefix(between(r.Header.Get("Authorization"), "Credential=", "/"), "AKID-")
	i, owner := 0, ""
	if strings.Contains(r.Header.Get("X-Amz-Target"), "DynamoDB") {
		b, _ := io.ReadAll(r.Body)
		i, owner = 1, between(string(b), `"S":"TENANT#`, `"`)
	} else {
		owner = strings.Split(strings.TrimPrefix(r.URL.Path, "/bucket/"), "/")[0]
	}
	s.mu.Lock()
	answer := s.answers[[2]string{reader, owner}][i]
	s.mu.Unlock()
	if answer == nil {
		http.Error(w, "no answer set for "+reader+" reading "+owner, http.StatusTeapot)
		return
	}
	answer(w)
}

func between(s, start, end string) string {
	_, rest, _ := strings.Cut(s, start)
	v, _, _ := strings.Cut(rest, end)
	return v
}

// S3 and DynamoDB answers.
var (
	s3Object = func(w http.ResponseWriter) { fmt.Fprint(w, "canary") }
	s3Error  = func(status int, code string) func(http.ResponseWriter) {
		return func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(status)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>m</Message></Error>`, code)
		}
	}
	ddbItem  = func(w http.ResponseWriter) { ddbJSON(w, 200, `{"Item":{"pk":{"S":"x"}}}`) }
	ddbEmpty = func(w http.ResponseWriter) { ddbJSON(w, 200, `{}`) }
	ddbError = func(status int, typ string) func(http.ResponseWriter) {
		return func(w http.ResponseWriter) {
			ddbJSON(w, status, `{"__type":"com.amazonaws.dynamodb.v20120810#`+typ+`","message":"m"}`)
		}
	}
)

func ddbJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.WriteHeader(status)
	fmt.Fprint(w, body)
}

func newCanary(t *testing.T, svc *service, v canary.Vendor) (*canary.Canary, *prometheus.Registry, *testsupport.Buffer) {
	t.Helper()
	srv := httptest.NewServer(svc)
	t.Cleanup(srv.Close)
	reg, logs := prometheus.NewRegistry(), &testsupport.Buffer{}
	c, err := canary.New(canary.Config{
		Tenants: [2]string{"canary-a", "canary-b"},
		Probes: []canary.Probe{
			{Profile: "objects", Bucket: "bucket", Key: key(t, "{{ .TenantID }}/canary")},
			{Profile: "orders", Table: "Orders", Item: map[string]*policy.Key{"pk": key(t, "TENANT#{{ .TenantID }}"), "sk": key(t, "CANARY")}},
		},
		Vendor:     v,
		Reader:     canary.NewAWSReader("us-east-1", srv.URL, srv.URL),
		Timeout:    2 * time.Second,
		Registerer: reg,
		Logger:     testsupport.JSONLogger(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, reg, logs
}

func TestEachAnswerToAForeignReadGetsItsVerdict(t *testing.T) {
	for _, tc := range []struct {
		name            string
		s3, ddb         func(http.ResponseWriter)
		want            canary.Verdict
		why             string
		isolatedMetrics float64
	}{
		{name: "AccessDenied", s3: s3Error(403, "AccessDenied"), ddb: ddbError(400, "AccessDeniedException"), want: canary.Isolated, why: "AccessDenied", isolatedMetrics: 1},
		{name: "success", s3: s3Object, ddb: ddbItem, want: canary.Breach, why: "read succeeded"},
		{name: "not found", s3: s3Error(404, "NoSuchKey"), ddb: ddbEmpty, want: canary.Breach, why: "found nothing"},
		{name: "throttled", s3: s3Error(503, "SlowDown"), ddb: ddbError(400, "ProvisionedThroughputExceededException"), want: canary.Error, why: "no verdict"},
		{name: "server error or no such table", s3: s3Error(500, "InternalError"), ddb: ddbError(400, "ResourceNotFoundException"), want: canary.Error, why: "no verdict"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := newService()
			c, reg, logs := newCanary(t, svc, vendor{})
			svc.both([2]func(http.ResponseWriter){s3Object, ddbItem}, [2]func(http.ResponseWriter){tc.s3, tc.ddb})
			results := c.Run(context.Background())
			if len(results) != 4 {
				t.Fatalf("%d results, want 2 probes x 2 directions", len(results))
			}
			for _, r := range results {
				if r.Verdict != tc.want || !strings.Contains(r.Why, tc.why) {
					t.Errorf("%s %s->%s: %s (%s), want %s (%s)", r.Profile, r.From, r.To, r.Verdict, r.Why, tc.want, tc.why)
				}
			}
			for _, profile := range []string{"objects", "orders"} {
				if got := metrictest.Value(t, reg, "tokenvendor_isolation_canary", map[string]string{"profile": profile}); got != tc.isolatedMetrics {
					t.Errorf("tokenvendor_isolation_canary{profile=%q} = %v, want %v", profile, got, tc.isolatedMetrics)
				}
				if got := metrictest.Value(t, reg, "tokenvendor_isolation_canary_runs_total", map[string]string{"profile": profile, "result": string(tc.want)}); got != 1 {
					t.Errorf("runs{profile=%q,result=%q} = %v, want 1", profile, tc.want, got)
				}
			}
			for _, secret := range []string{"secret-of-canary", "token-of-canary"} {
				if strings.Contains(logs.String(), secret) {
					t.Fatalf("the log holds a credential:\n%s", logs.String())
				}
			}
			if tc.want == canary.Breach {
				for _, want := range []string{`"profile":"objects"`, `"from":"canary-a"`, `"to":"canary-b"`, "s3:GetObject bucket/canary-b/canary", "dynamodb:GetItem Orders"} {
					if !strings.Contains(logs.String(), want) {
						t.Errorf("the breach log does not name %s:\n%s", want, logs.String())
					}
				}
			}
		})
	}
}

func TestOwnReadDeniedOrFailingIsNoVerdict(t *testing.T) {
	for _, tc := range []struct {
		name string
		own  [2]func(http.ResponseWriter)
		why  string
	}{
		{name: "own read denied", own: [2]func(http.ResponseWriter){s3Error(403, "AccessDenied"), ddbError(400, "AccessDeniedException")}, why: "denied its own"},
		{name: "own read failing", own: [2]func(http.ResponseWriter){s3Error(500, "InternalError"), ddbError(500, "InternalServerError")}, why: "reading its own"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := newService()
			c, _, _ := newCanary(t, svc, vendor{})
			denied := [2]func(http.ResponseWriter){s3Error(403, "AccessDenied"), ddbError(400, "AccessDeniedException")}
			svc.both(tc.own, denied)
			for _, r := range c.Run(context.Background()) {
				if r.Verdict != canary.Error || !strings.Contains(r.Why, tc.why) {
					t.Errorf("%s %s->%s: %s (%s), want error (%s)", r.Profile, r.From, r.To, r.Verdict, r.Why, tc.why)
				}
			}
		})
	}
}

func TestTimeoutAndVendFailureAreNoVerdict(t *testing.T) {
	svc := newService()
	c, _, _ := newCanary(t, svc, vendor{err: vend.ErrUpstreamUnavailable})
	for _, r := range c.Run(context.Background()) {
		if r.Verdict != canary.Error || !strings.Contains(r.Why, "vend") {
			t.Errorf("vend failing: %s (%s), want error", r.Verdict, r.Why)
		}
	}

	hang := make(chan struct{})
	defer close(hang)
	c, _, _ = newCanary(t, svc, vendor{})
	stuck := func(http.ResponseWriter) { <-hang }
	svc.both([2]func(http.ResponseWriter){s3Object, ddbItem}, [2]func(http.ResponseWriter){stuck, stuck})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	for _, r := range c.Run(ctx) {
		if r.Verdict != canary.Error {
			t.Errorf("foreign read timing out: %s (%s), want error", r.Verdict, r.Why)
		}
	}
}

func TestJudge(t *testing.T) {
	for _, tc := range []struct {
		answer canary.Answer
		want   canary.Verdict
	}{
		{canary.Denied, canary.Isolated},
		{canary.Found, canary.Breach},
		{canary.NotFound, canary.Breach},
		{canary.Failed, canary.Error},
	} {
		if got, _ := canary.Judge(tc.answer, errors.New("x")); got != tc.want {
			t.Errorf("Judge(%v) = %s, want %s", tc.answer, got, tc.want)
		}
	}
}

func TestAProfilesVerdictIsItsWorstProbes(t *testing.T) {
	svc := newService()
	srv := httptest.NewServer(svc)
	t.Cleanup(srv.Close)
	reg := prometheus.NewRegistry()
	// Two probes of one profile: its S3 objects leak, its items do not.
	c, err := canary.New(canary.Config{
		Tenants: [2]string{"canary-a", "canary-b"},
		Probes: []canary.Probe{
			{Profile: "data", Bucket: "bucket", Key: key(t, "{{ .TenantID }}/canary")},
			{Profile: "data", Table: "Orders", Item: map[string]*policy.Key{"pk": key(t, "TENANT#{{ .TenantID }}")}},
		},
		Vendor: vendor{}, Reader: canary.NewAWSReader("us-east-1", srv.URL, srv.URL), Timeout: 2 * time.Second, Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	svc.both([2]func(http.ResponseWriter){s3Object, ddbItem}, [2]func(http.ResponseWriter){s3Object, ddbError(400, "AccessDeniedException")})
	c.Run(context.Background())
	if got := metrictest.Value(t, reg, "tokenvendor_isolation_canary", map[string]string{"profile": "data"}); got != 0 {
		t.Fatalf("tokenvendor_isolation_canary{profile=data} = %v after a breach in one of its probes, want 0", got)
	}
	if got := metrictest.Value(t, reg, "tokenvendor_isolation_canary_runs_total", map[string]string{"profile": "data", "result": "breach"}); got != 1 {
		t.Fatalf("runs{data,breach} = %v, want 1 (one run, judged by its worst probe)", got)
	}
}

func TestForeignObjectMissingIsNoVerdict(t *testing.T) {
	svc := newService()
	c, _, _ := newCanary(t, svc, vendor{})
	// canary-b's object is gone: a denied read of it proves nothing.
	svc.set("canary-a", "canary-a", s3Object, ddbItem)
	svc.set("canary-b", "canary-b", s3Error(404, "NoSuchKey"), ddbEmpty)
	svc.set("canary-a", "canary-b", s3Error(403, "AccessDenied"), ddbError(400, "AccessDeniedException"))
	svc.set("canary-b", "canary-a", s3Error(403, "AccessDenied"), ddbError(400, "AccessDeniedException"))
	for _, r := range c.Run(context.Background()) {
		if r.Verdict != canary.Error || !strings.Contains(r.Why, "canary-b's own") || !strings.Contains(r.Why, "missing") {
			t.Errorf("%s %s->%s: %s (%s), want error: canary-b's object is missing", r.Profile, r.From, r.To, r.Verdict, r.Why)
		}
	}
}

// silentReader answers nothing: its zero Answer must be no verdict.
type silentReader struct{}

func (silentReader) Read(context.Context, aws.Credentials, canary.Target) (canary.Answer, error) {
	return 0, nil
}

func TestAReaderThatSaysNothingIsNoVerdict(t *testing.T) {
	c, err := canary.New(canary.Config{
		Tenants: [2]string{"canary-a", "canary-b"},
		Probes:  []canary.Probe{{Profile: "objects", Bucket: "bucket", Key: key(t, "{{ .TenantID }}/canary")}},
		Vendor:  vendor{}, Reader: silentReader{},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range c.Run(context.Background()) {
		if r.Verdict != canary.Error {
			t.Errorf("%s->%s: %s, want error", r.From, r.To, r.Verdict)
		}
	}
}

func TestARunCutShortRecordsNothing(t *testing.T) {
	svc := newService()
	c, reg, _ := newCanary(t, svc, vendor{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.Run(ctx)
	if got := metrictest.Value(t, reg, "tokenvendor_isolation_canary_runs_total", map[string]string{"profile": "objects", "result": "error"}); got != 0 {
		t.Fatalf("a run cut short by shutdown counted %v errors", got)
	}
}
