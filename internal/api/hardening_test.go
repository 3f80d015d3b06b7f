package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/smithy-go"

	"github.com/tokenvendor/tokenvendor/internal/api"
	"github.com/tokenvendor/tokenvendor/internal/audit"
	"github.com/tokenvendor/tokenvendor/internal/limit"
	"github.com/tokenvendor/tokenvendor/internal/vend"
)

func TestOneCallerOverItsBudgetGets429WhileAnotherIsServed(t *testing.T) {
	e := newEnvWith(t, func(v *vend.Config, _ *api.Config) {
		v.CallerLimit, _ = limit.New(limit.Config{RPS: 0.5, Burst: 2})
	})
	greedy := e.token("acme", func(c map[string]any) { c["sub"] = "svc-greedy" })
	for i := range 2 {
		if res := e.do(t, post(greedy, "")); res.status != http.StatusOK {
			t.Fatalf("request %d within the burst: %d", i+1, res.status)
		}
	}
	res := e.do(t, post(greedy, ""))
	wantError(t, res, http.StatusTooManyRequests, "rate_limited")
	if s, err := strconv.Atoi(res.header.Get("Retry-After")); err != nil || s < 1 || s > 2 {
		t.Errorf("Retry-After = %q, want 1-2 seconds", res.header.Get("Retry-After"))
	}
	polite := e.token("acme", func(c map[string]any) { c["sub"] = "svc-polite" })
	if res := e.do(t, post(polite, "")); res.status != http.StatusOK {
		t.Fatalf("another caller in the same second: %d %s", res.status, res.body)
	}
}

func TestOneTenantOverItsBudgetGets429(t *testing.T) {
	e := newEnvWith(t, func(v *vend.Config, _ *api.Config) {
		v.TenantLimit, _ = limit.New(limit.Config{RPS: 0.1, Burst: 1})
	})
	if res := e.do(t, post(e.token("acme"), "")); res.status != http.StatusOK {
		t.Fatalf("first request: %d", res.status)
	}
	other := e.token("acme", func(c map[string]any) { c["sub"] = "svc-other" })
	wantError(t, e.do(t, post(other, "")), http.StatusTooManyRequests, "rate_limited")
	if res := e.do(t, post(e.token("globex"), "")); res.status != http.StatusOK {
		t.Fatalf("another tenant: %d", res.status)
	}
}

func TestRequestsBeyondMaxInFlightGet429(t *testing.T) {
	e := newEnvWith(t, func(_ *vend.Config, a *api.Config) { a.MaxInFlight = 1 })
	e.sts.Latency = 300 * time.Millisecond
	var wg sync.WaitGroup
	codes := make(chan int, 2)
	for _, tenant := range []string{"acme", "globex"} {
		tok := e.token(tenant)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := httptest.NewRecorder()
			e.handler.ServeHTTP(rec, post(tok, ""))
			codes <- rec.Code
		}()
		time.Sleep(50 * time.Millisecond) // the first is in STS when the second arrives
	}
	wg.Wait()
	close(codes)
	got := map[int]int{}
	for c := range codes {
		got[c]++
	}
	if got[http.StatusOK] != 1 || got[http.StatusTooManyRequests] != 1 {
		t.Fatalf("statuses = %v, want one 200 and one 429", got)
	}
}

func TestAuditRecordsEveryDecision(t *testing.T) {
	e := newEnv(t)
	granted := e.do(t, post(e.token("acme", func(c map[string]any) { c["client_id"] = "orders-app" }), ""))
	e.do(t, post("", ""))
	e.do(t, post(e.token("acme"), `{"tenant_id":"globex"}`))
	e.sts.Fail(&smithy.GenericAPIError{Code: "AccessDenied"})
	e.do(t, post(e.token("initech"), ""))

	events := e.auditEvents(t)
	if len(events) != 4 {
		t.Fatalf("%d audit lines, want 4", len(events))
	}
	g := events[0]
	if g.Outcome != audit.Granted || g.Status != 200 || g.TenantID != "acme" || g.Profile != "objects" ||
		g.Subject != "svc-acme" || g.ClientID != "orders-app" || g.Cache != "miss" || g.RoleSessionName != "acme@objects" ||
		g.AccessKeyID != granted.json(t)["AccessKeyId"] || g.Expiration == nil || g.RequestID != granted.header.Get("X-Request-Id") {
		t.Errorf("granted event = %+v", g)
	}
	for i, want := range []struct {
		outcome, code string
		status        int
		tenant        string
	}{
		{outcome: audit.Refused, code: "unauthenticated", status: 401},
		{outcome: audit.Refused, code: "forbidden", status: 403, tenant: "globex"}, // the tenant reached for
		{outcome: audit.Failed, code: "upstream_error", status: 502, tenant: "initech"},
	} {
		ev := events[i+1]
		if ev.Outcome != want.outcome || ev.Code != want.code || ev.Status != want.status || ev.TenantID != want.tenant || ev.AccessKeyID != "" {
			t.Errorf("event %d = %+v, want %+v", i+1, ev, want)
		}
	}
}

func TestACallerHangingUpIsNotAServerError(t *testing.T) {
	e := newEnv(t)
	e.sts.Latency = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	req := post(e.token("acme"), "").WithContext(ctx)
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)
	if rec.Code != 499 {
		t.Fatalf("status %d, want 499", rec.Code)
	}
	if strings.Contains(e.logs.String(), `"level":"ERROR"`) {
		t.Errorf("a caller hanging up was logged as an error:\n%s", e.logs.String())
	}
}
