package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tokenvendor/tokenvendor/internal/api"
	"github.com/tokenvendor/tokenvendor/internal/vend"
	"github.com/tokenvendor/tokenvendor/wire"
)

// traced is an env whose spans go to an in-memory exporter.
func traced(t *testing.T, tenantAttribute bool) (*env, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	e := newEnvWith(t, func(v *vend.Config, a *api.Config) {
		a.TracerProvider = tp
		v.TenantAttribute = tenantAttribute
	})
	return e, exp
}

func TestTraceOfACacheMissShowsVerifyVendCacheAndSTS(t *testing.T) {
	e, exp := traced(t, false)
	tok := e.token("acme")
	req := post(tok, "")
	const traceID, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req.Header.Set("traceparent", "00-"+traceID+"-"+parent+"-01")
	res := e.do(t, req)
	if res.status != http.StatusOK {
		t.Fatalf("%d %s", res.status, res.body)
	}
	spans := exp.GetSpans()
	byName := map[string]tracetest.SpanStub{}
	for _, s := range spans {
		byName[s.Name] = s
		if got := s.SpanContext.TraceID().String(); got != traceID {
			t.Errorf("span %s in trace %s, want the caller's %s", s.Name, got, traceID)
		}
		if !s.EndTime.After(s.StartTime) {
			t.Errorf("span %s has no duration", s.Name)
		}
	}
	for child, parentName := range map[string]string{
		"verify": "POST /credentials", "vend": "POST /credentials", "cache": "vend", "sts.AssumeRole": "cache",
	} {
		c, ok := byName[child]
		p, ok2 := byName[parentName]
		if !ok || !ok2 {
			t.Fatalf("spans %v: want %s and %s", names(spans), child, parentName)
		}
		if c.Parent.SpanID() != p.SpanContext.SpanID() {
			t.Errorf("%s's parent is not %s", child, parentName)
		}
	}
	if root := byName["POST /credentials"]; root.Parent.SpanID().String() != parent || !root.Parent.IsRemote() {
		t.Errorf("the request span's parent is %s, want the caller's %s", root.Parent.SpanID(), parent)
	}
	if got := attr(byName["cache"], "tokenvendor.cache.result"); got != "miss" {
		t.Errorf("cache result %q, want miss", got)
	}
	if got := attr(byName["sts.AssumeRole"], "tokenvendor.sts.outcome"); got != "success" {
		t.Errorf("STS outcome %q, want success", got)
	}
	noSecretInSpans(t, spans, tok, res)
	if attr(byName["vend"], "tokenvendor.tenant") != "" {
		t.Error("the tenant is on a span though tenant_attribute is off")
	}

	// The hit that follows: no STS span.
	exp.Reset()
	e.do(t, post(tok, ""))
	for _, s := range exp.GetSpans() {
		if s.Name == "sts.AssumeRole" {
			t.Error("a cache hit called STS")
		}
		if s.Name == "cache" && attr(s, "tokenvendor.cache.result") != "hit" {
			t.Errorf("second request's cache result %q, want hit", attr(s, "tokenvendor.cache.result"))
		}
	}
}

func TestTenantIsASpanAttributeOnlyWhenTurnedOn(t *testing.T) {
	e, exp := traced(t, true)
	e.do(t, post(e.token("acme"), ""))
	vendSpans := 0
	for _, s := range exp.GetSpans() {
		if s.Name == "vend" {
			vendSpans++
			if attr(s, "tokenvendor.tenant") != "acme" {
				t.Errorf("vend span tenant %q, want acme", attr(s, "tokenvendor.tenant"))
			}
		}
	}
	if vendSpans != 1 {
		t.Fatalf("%d vend spans, want 1", vendSpans)
	}
}

func TestRefusedTokenSpanSaysWhyNotWhat(t *testing.T) {
	e, exp := traced(t, false)
	tok := e.token("acme", func(c map[string]any) { c["aud"] = "someone-else" })
	res := e.do(t, post(tok, ""))
	if res.status != http.StatusUnauthorized {
		t.Fatalf("%d", res.status)
	}
	spans := exp.GetSpans()
	var verify tracetest.SpanStub
	for _, s := range spans {
		if s.Name == "verify" {
			verify = s
		}
	}
	if attr(verify, "tokenvendor.auth.result") != "audience" {
		t.Errorf("verify result %q, want audience", attr(verify, "tokenvendor.auth.result"))
	}
	noSecretInSpans(t, spans, tok, res)
}

func names(spans tracetest.SpanStubs) []string {
	var n []string
	for _, s := range spans {
		n = append(n, s.Name)
	}
	return n
}

func attr(s tracetest.SpanStub, key string) string {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.Emit()
		}
	}
	return ""
}

// noSecretInSpans fails when any span's name or attribute holds the token,
// a credential or the session policy.
func noSecretInSpans(t *testing.T, spans tracetest.SpanStubs, token string, res response) {
	t.Helper()
	var creds wire.Credentials
	_ = json.Unmarshal(res.body, &creds)
	secrets := []string{token, token[strings.LastIndexByte(token, '.')+1:], `"Statement"`, "arn:aws:s3:::data/"}
	for _, s := range []string{creds.SecretAccessKey, creds.SessionToken} {
		if s != "" {
			secrets = append(secrets, s)
		}
	}
	for _, s := range spans {
		kv := append([]attribute.KeyValue{attribute.String("name", s.Name), attribute.String("status", s.Status.Description)}, s.Attributes...)
		for _, l := range s.Links {
			kv = append(kv, l.Attributes...)
		}
		for _, ev := range s.Events {
			kv = append(kv, ev.Attributes...)
		}
		for _, a := range kv {
			for _, secret := range secrets {
				if strings.Contains(a.Value.Emit(), secret) {
					t.Errorf("span %s attribute %s holds a secret", s.Name, a.Key)
				}
			}
		}
	}
}

func TestAMethodHTTPDoesNotDefineIsNotASpanName(t *testing.T) {
	e, exp := traced(t, false)
	req, _ := http.NewRequest("X-"+strings.Repeat("A", 200), "/credentials", nil)
	e.handler.ServeHTTP(httptest.NewRecorder(), req)
	for _, s := range exp.GetSpans() {
		if strings.Contains(s.Name, "AAAA") || attr(s, "http.request.method") != "_OTHER" {
			t.Errorf("span %q, method %q: a caller's method string reached the span", s.Name, attr(s, "http.request.method"))
		}
	}
}
