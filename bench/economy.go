package main

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/cache"
	"github.com/tokenvendor/tokenvendor/internal/clock"
	"github.com/tokenvendor/tokenvendor/internal/partition"
	"github.com/tokenvendor/tokenvendor/internal/policy"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
	"github.com/tokenvendor/tokenvendor/internal/vend"
)

// countingSTS is the tests' fake STS, with credentials as long as AWS's,
// that also counts the calls a caller waited on (not a refresh ahead).
type countingSTS struct {
	testsupport.FakeSTS
	waited atomic.Int64
}

func newCountingSTS(latency time.Duration, now func() time.Time) *countingSTS {
	return &countingSTS{FakeSTS: testsupport.FakeSTS{Now: now, Latency: latency, SessionTokenLength: sessionTokenLength, Forget: true}}
}

// AssumeRole counts a call a caller waits on and answers as FakeSTS does.
func (s *countingSTS) AssumeRole(ctx context.Context, in *sts.AssumeRoleInput, opts ...func(*sts.Options)) (*sts.AssumeRoleOutput, error) {
	if !cache.Refreshing(ctx) {
		s.waited.Add(1)
	}
	return s.FakeSTS.AssumeRole(ctx, in, opts...)
}

// newService is a vendor of one S3 profile of credentials for an hour;
// shared, when set, is the tier it shares with other replicas.
func newService(stsClient vend.STS, now func() time.Time, maxEntries int, reg prometheus.Registerer, shared cache.Shared[vend.Credentials]) (*vend.Service, error) {
	return newServiceFor(stsClient, now, maxEntries, reg, shared, time.Hour)
}

// newServiceFor is newService for credentials of the given duration.
func newServiceFor(stsClient vend.STS, now func() time.Time, maxEntries int, reg prometheus.Registerer, shared cache.Shared[vend.Credentials], duration time.Duration) (*vend.Service, error) {
	tenants, err := policy.NewTenantRule("")
	if err != nil {
		return nil, err
	}
	tmpl, err := policy.Compile(policy.Spec{
		Profile: "objects",
		Policy:  `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::data/{{ .TenantID }}/*"}]}`,
		Tags:    map[string]string{"TenantID": "{{ .TenantID }}"},
	}, tenants)
	if err != nil {
		return nil, err
	}
	role, err := policy.CompileRole(policy.RoleSpec{RoleARN: "arn:aws:iam::123456789012:role/TenantData", Partition: partition.AWS, Region: "us-east-1"}, tenants)
	if err != nil {
		return nil, err
	}
	return vend.New(vend.Config{
		Profiles:   []vend.Profile{{Name: "objects", Role: role, Duration: duration, Template: tmpl}},
		Tenants:    tenants,
		STS:        stsClient,
		Now:        now,
		Cache:      cache.Config{MaxEntries: maxEntries},
		Shared:     shared,
		Registerer: reg,
	})
}

func tenantID(i int) string { return fmt.Sprintf("tenant%06d", i) }

// economy sends a cold burst of 10 concurrent requests for each tenant at once.
func economy(tenants int) ([]row, error) {
	fake := newCountingSTS(30*time.Millisecond, time.Now)
	s, err := newService(fake, time.Now, 2*tenants, prometheus.NewRegistry(), nil)
	if err != nil {
		return nil, err
	}
	if err := coldBurst([]*vend.Service{s}, tenants, 10); err != nil {
		return nil, err
	}
	return []row{{"STS economy", fmt.Sprintf("AssumeRole calls, cold burst of 10 x %d tenants (30 ms STS)", tenants),
		fmt.Sprint(fake.Calls()), fmt.Sprintf("= %d (distinct keys)", tenants)}}, nil
}

// coldBurst sends requests concurrent requests for each tenant at once,
// request j of tenant i to service (i+j) mod len(services).
func coldBurst(services []*vend.Service, tenants, requests int) error {
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range tenants {
		for j := range requests {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := services[(i+j)%len(services)]
				if _, err := s.Vend(context.Background(), auth.Caller{TenantID: tenantID(i)}, vend.Request{}); err != nil {
					failed.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	if failed.Load() > 0 {
		return fail("%d requests of the cold burst failed", failed.Load())
	}
	return nil
}

// arrival is a request due at a time for a tenant.
type arrival struct {
	at     time.Time
	tenant int
}

type arrivals []arrival

func (a arrivals) Len() int           { return len(a) }
func (a arrivals) Less(i, j int) bool { return a[i].at.Before(a[j].at) }
func (a arrivals) Swap(i, j int)      { a[i], a[j] = a[j], a[i] }
func (a *arrivals) Push(x any)        { *a = append(*a, x.(arrival)) }
func (a *arrivals) Pop() any {
	old := *a
	x := old[len(old)-1]
	*a = old[:len(old)-1]
	return x
}

// simulatedDay runs 24 simulated hours of Poisson arrivals, one request a
// minute on average per tenant, on a fake clock, and counts AssumeRole calls
// and requests that waited on STS after the first hour.
func simulatedDay(tenants int) ([]row, error) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	fake := newCountingSTS(0, clk.Now)
	reg := prometheus.NewRegistry()
	s, err := newService(fake, clk.Now, 2*tenants, reg, nil)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const mean = time.Minute
	next := func(from time.Time) time.Time { return from.Add(time.Duration(rng.ExpFloat64() * float64(mean))) }
	start := clk.Now()
	warmEnd, end := start.Add(time.Hour), start.Add(24*time.Hour)
	q := &arrivals{}
	for i := range tenants {
		heap.Push(q, arrival{at: next(start), tenant: i})
	}
	var warmCalls int64
	var warmMisses float64
	warmed := false
	requests := 0
	for q.Len() > 0 {
		a := heap.Pop(q).(arrival)
		if a.at.After(end) {
			continue
		}
		if !warmed && a.at.After(warmEnd) {
			warmed = true
			warmCalls, warmMisses = int64(fake.Calls()), misses(reg)
		}
		clk.Set(a.at)
		if _, err := s.Vend(context.Background(), auth.Caller{TenantID: tenantID(a.tenant)}, vend.Request{}); err != nil {
			return nil, err
		}
		s.Wait() // let a refresh-ahead finish before the clock moves on
		requests++
		heap.Push(q, arrival{at: next(a.at), tenant: a.tenant})
	}
	perTenantHour := float64(int64(fake.Calls())-warmCalls) / float64(tenants*23)
	return []row{
		{"simulated day", fmt.Sprintf("requests (%d tenants, Poisson, 1/min each)", tenants), fmt.Sprint(requests), ""},
		{"simulated day", "AssumeRole calls per tenant-hour after warm-up", fmt.Sprintf("%.2f", perTenantHour), ""},
		{"simulated day", "requests that waited on STS after warm-up", fmt.Sprintf("%.0f", misses(reg)-warmMisses), "0"},
	}, nil
}

func misses(g prometheus.Gatherer) float64 {
	mfs, _ := g.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "tokenvendor_cache_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == "miss" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// memory fills the cache with n tenants' credentials and reports the heap
// growth per entry.
func memory(n int) ([]row, error) {
	fake := newCountingSTS(0, time.Now)
	s, err := newService(fake, time.Now, n, prometheus.NewRegistry(), nil)
	if err != nil {
		return nil, err
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		if _, err := s.Vend(context.Background(), auth.Caller{TenantID: tenantID(i)}, vend.Request{}); err != nil {
			return nil, err
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(s)
	per := float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
	return []row{{"memory", fmt.Sprintf("bytes per cached entry at %d entries (%d-byte session tokens)", n, sessionTokenLength),
		fmt.Sprintf("%.0f", per), "<= 2048"}}, nil
}
