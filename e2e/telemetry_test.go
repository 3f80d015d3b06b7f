package e2e

import (
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/tokenvendor/tokenvendor/internal/testsupport"
)

// otlpReceiver is a tiny OTLP/HTTP trace receiver: it keeps every span
// POSTed to /v1/traces (protobuf, as the exporter sends it).
type otlpReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans []*tracepb.Span
}

func startOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/v1/traces" {
			http.NotFound(w, req)
			return
		}
		b, _ := io.ReadAll(req.Body)
		var in coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range in.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				r.spans = append(r.spans, ss.Spans...)
			}
		}
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(r.Close)
	return r
}

// wait returns the spans of trace once names are all among them.
func (r *otlpReceiver) wait(t *testing.T, trace string, names ...string) map[string]*tracepb.Span {
	t.Helper()
	var got map[string]*tracepb.Span
	testsupport.Eventually(t, 15*time.Second, func() error {
		r.mu.Lock()
		got = map[string]*tracepb.Span{}
		for _, s := range r.spans {
			if hex.EncodeToString(s.TraceId) == trace {
				got[s.Name] = s
			}
		}
		r.mu.Unlock()
		for _, n := range names {
			if got[n] == nil {
				return fmt.Errorf("spans of trace %s: %v, want %v", trace, keys(got), names)
			}
		}
		return nil
	})
	return got
}

func keys(m map[string]*tracepb.Span) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestTraceOfACacheMissReachesAnOTLPReceiver(t *testing.T) {
	recv := startOTLPReceiver(t)
	v := startVendorAs(t, writeConfig(t, configOptions{stsEndpoint: peers.minio, roleChaining: "off"}),
		aws.Credentials{AccessKeyID: minioUser, SecretAccessKey: minioPassword},
		"OTEL_EXPORTER_OTLP_ENDPOINT="+recv.URL, "OTEL_BSP_SCHEDULE_DELAY=100")
	tok := token(t, "worker")
	const trace = "0af7651916cd43dd8448eb211c80319c"
	// A tenant no one asked for yet: a cache miss, so STS is called.
	req, _ := http.NewRequest(http.MethodPost, v.url+"/credentials", strings.NewReader(`{"tenant_id":"traced"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("traceparent", "00-"+trace+"-b7ad6b7169203331-01")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	spans := recv.wait(t, trace, "POST /credentials", "verify", "vend", "cache", "sts.AssumeRole")
	for child, parent := range map[string]string{"verify": "POST /credentials", "vend": "POST /credentials", "cache": "vend", "sts.AssumeRole": "cache"} {
		if string(spans[child].ParentSpanId) != string(spans[parent].SpanId) {
			t.Errorf("%s is not a child of %s", child, parent)
		}
	}
	for name, s := range spans {
		d := time.Duration(s.EndTimeUnixNano - s.StartTimeUnixNano)
		t.Logf("%-18s %v", name, d)
		if d <= 0 {
			t.Errorf("%s has no duration", name)
		}
		text := prototext.Format(s)
		for _, secret := range append(secretsOf(body), tok, `"Statement"`) {
			if secret != "" && strings.Contains(text, secret) {
				t.Errorf("span %s holds a secret", name)
			}
		}
	}
}

// secretsOf returns the secret parts of a credentials answer.
func secretsOf(body []byte) []string {
	re := regexp.MustCompile(`"(SecretAccessKey|SessionToken)":"([^"]+)"`)
	var out []string
	for _, m := range re.FindAllStringSubmatch(string(body), -1) {
		out = append(out, m[2])
	}
	return out
}

var adminRE = regexp.MustCompile(`"msg":"listening","addr":"([^"]+)","admin":true`)

func TestMetricsOnlyOnTheAdminListenerWhenThereIsOne(t *testing.T) {
	path := writeConfig(t, configOptions{stsEndpoint: peers.minio, roleChaining: "off"})
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append([]byte("admin_listen: 127.0.0.1:0\n"), b...), 0o600); err != nil {
		t.Fatal(err)
	}
	v := startVendor(t, path, minioUser, minioPassword)
	v.waitLog(t, `"admin":true`, 1) // logged just after the API's listener
	m := adminRE.FindStringSubmatch(v.out.String())
	if m == nil {
		t.Fatalf("no admin listener in:\n%s", v.out.String())
	}
	for _, tc := range []struct {
		url  string
		want int
	}{
		{v.url + "/metrics", http.StatusNotFound},
		{"http://" + m[1] + "/metrics", http.StatusOK},
		{v.url + "/readyz", http.StatusOK},
	} {
		res, err := http.Get(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Errorf("GET %s: %d, want %d", tc.url, res.StatusCode, tc.want)
		}
	}
}
