package main

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/cache"
	"github.com/tokenvendor/tokenvendor/internal/clock"
	"github.com/tokenvendor/tokenvendor/internal/shared"
	"github.com/tokenvendor/tokenvendor/internal/vend"
)

// The shared day: many tenants over many replicas sharing one real
// redis-server, for a simulated day on a fake clock. Credentials live the
// longest STS allows, and each tenant asks every quarter of an hour on
// average, through any replica: what it costs STS and Redis is then the
// refresh-ahead of every replica's entries, not the first fetch.
const (
	dayReplicas   = 10
	dayDuration   = 12 * time.Hour
	dayMean       = 15 * time.Minute
	dayWarmUp     = 6 * time.Hour
	dayLength     = 24 * time.Hour
	dayPartitions = 16
)

// sharedDay simulates the day in dayPartitions parts run at once, each a
// slice of the tenants over dayReplicas services on a clock of its own (the
// tenants of different parts share nothing but Redis), and reports
// AssumeRole calls per tenant-hour, Redis operations per request, Redis
// memory per tenant and requests that waited on STS after the warm-up.
func sharedDay(tenants int) ([]row, error) {
	r, err := startRedis()
	if err != nil {
		return nil, err
	}
	defer r.stop()
	keys, _, err := newKeys()
	if err != nil {
		return nil, err
	}
	memBefore, err := r.usedMemory()
	if err != nil {
		return nil, err
	}
	// One tier a replica, as one process has: its connections and its
	// subscription serve every part. The tier keeps Redis's time (real);
	// each part's clock starts now and runs ahead, so that what the tier
	// reckons from the two (a TTL, the life a value must have left) is off
	// by the same amount on both sides.
	var tiers []*shared.Tier
	for range dayReplicas {
		t, err := shared.New(shared.Config{URL: "redis://" + r.addr, Keys: keys, Prefix: "day:"})
		if err != nil {
			return nil, err
		}
		defer t.Close()
		tiers = append(tiers, t)
	}
	var total dayCounts
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, dayPartitions)
	start := time.Now()
	for p := range dayPartitions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dayPart(tiers, p, tenants/dayPartitions)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			total.add(c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	memAfter, err := r.usedMemory()
	if err != nil {
		return nil, err
	}
	ops, err := r.commandCalls()
	if err != nil {
		return nil, err
	}
	hours := (dayLength - dayWarmUp).Hours()
	name := fmt.Sprintf("%d tenants, %d replicas, %s credentials, a request every %s a tenant, %s", tenants, dayReplicas, dayDuration, dayMean, dayLength)
	return []row{
		{"shared day", name, fmt.Sprintf("%d requests in %s", total.requests, time.Since(start).Round(time.Second)), ""},
		{"shared day", "AssumeRole calls per tenant-hour after warm-up", fmt.Sprintf("%.3f", float64(total.calls)/float64(tenants)/hours),
			fmt.Sprintf("~ %.3f (one refresh a tenant, however many replicas)", 1/(dayDuration.Hours()*0.5))},
		{"shared day", "Redis operations per request (all day)", fmt.Sprintf("%.3f", float64(ops)/float64(total.requests)), ""},
		{"shared day", "Redis used_memory per tenant", fmt.Sprintf("%.0f", (memAfter-memBefore)/float64(tenants)), ""},
		{"shared day", "requests that waited on STS after warm-up", fmt.Sprint(total.waited), "0"},
	}, nil
}

// dayCounts are what a part counts after the warm-up (requests: all day).
type dayCounts struct{ requests, calls, waited int64 }

func (d *dayCounts) add(o dayCounts) {
	d.requests += o.requests
	d.calls += o.calls
	d.waited += o.waited
}

// dayPart simulates tenants tenants of part p, one service a replica over
// the replica's tier.
func dayPart(tiers []*shared.Tier, p, tenants int) (dayCounts, error) {
	clk := clock.NewFake(time.Now())
	fake := newCountingSTS(0, clk.Now)
	var services []*vend.Service
	for _, t := range tiers {
		var sh cache.Shared[vend.Credentials] = shared.NewCache[vend.Credentials](t)
		s, err := newServiceFor(fake, clk.Now, 2*tenants, prometheus.NewRegistry(), sh, dayDuration)
		if err != nil {
			return dayCounts{}, err
		}
		services = append(services, s)
	}
	rng := rand.New(rand.NewPCG(uint64(p), 7))
	next := func(from time.Time) time.Time { return from.Add(time.Duration(rng.ExpFloat64() * float64(dayMean))) }
	begin := clk.Now()
	warmEnd, end := begin.Add(dayWarmUp), begin.Add(dayLength)
	q := &arrivals{}
	for i := range tenants {
		heap.Push(q, arrival{at: next(begin), tenant: p*tenants + i})
	}
	var c dayCounts
	var warmCalls, warmWaited int64
	warmed := false
	for q.Len() > 0 {
		a := heap.Pop(q).(arrival)
		if a.at.After(end) {
			continue
		}
		if !warmed && a.at.After(warmEnd) {
			warmed = true
			warmCalls, warmWaited = int64(fake.Calls()), fake.waited.Load()
		}
		clk.Set(a.at)
		s := services[rng.IntN(dayReplicas)]
		if _, err := s.Vend(context.Background(), auth.Caller{TenantID: tenantID(a.tenant)}, vend.Request{}); err != nil {
			return c, err
		}
		s.Wait() // let a refresh-ahead finish before the clock moves on
		c.requests++
		heap.Push(q, arrival{at: next(a.at), tenant: a.tenant})
	}
	c.calls = int64(fake.Calls()) - warmCalls
	c.waited = fake.waited.Load() - warmWaited
	return c, nil
}
