package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// storm sends requests requests for each tenant to every replica of f at
// once, tenant after tenant, at most inFlight at a time, and returns each tenant's answers and
// every answer that was not a 200.
func (f fleet) storm(t *testing.T, worker string, tenants []string, requests, inFlight int) (map[string][]credentials, []string) {
	t.Helper()
	tr := loadClient(true).Transport.(*http.Transport)
	tr.MaxIdleConnsPerHost = inFlight
	client := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	var mu sync.Mutex
	got := map[string][]credentials{}
	var bad []string
	slots := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	for _, tenant := range tenants {
		for j := range requests {
			for r, v := range f {
				wg.Add(1)
				slots <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-slots }()
					o := call(client, http.MethodPost, v.url+"/credentials", worker, fmt.Sprintf(`{"tenant_id":%q}`, tenant))
					mu.Lock()
					defer mu.Unlock()
					if o.err != nil || o.status != http.StatusOK {
						bad = append(bad, fmt.Sprintf("tenant %s, replica %d, request %d: %d %s %v", tenant, r, j, o.status, o.body, o.err))
						return
					}
					var c credentials
					if err := json.Unmarshal(o.body, &c); err != nil {
						bad = append(bad, err.Error())
						return
					}
					got[tenant] = append(got[tenant], c)
				}()
			}
		}
	}
	wg.Wait()
	return got, bad
}

// The storm's network to Redis: the latency added to each exchange, and
// how often an answer is held back past redis.timeout.
const (
	networkHop = 2 * time.Millisecond
	stallEvery = 500
)

// TestStormOverThreeReplicasMakesOneAssumeRolePerTenant is a deploy at
// scale: three replicas on the default redis.timeout, every tenant new,
// hundreds of requests in flight, round after round. Every round costs
// exactly one AssumeRole a tenant, every replica hands a tenant the same
// credentials, and every answer is a 200.
func TestStormOverThreeReplicasMakesOneAssumeRolePerTenant(t *testing.T) {
	const replicas, rounds, tenants, requests, inFlight = 3, 3, 600, 2, 900
	redis := startRedis(t)
	// Redis a network hop away, as in a real deployment: every exchange
	// takes a couple of milliseconds more, and now and then an answer comes
	// later than redis.timeout (a retransmit, a pause of Redis).
	hop := startProxy(t, redis.addr())
	hop.setDelay(networkHop)
	hop.setStall(stallEvery, defaultRedisTimeout+50*time.Millisecond)
	config, _ := replicaConfig(t, redisSection("redis://"+hop.addr, defaultRedisTimeout))
	f := startFleet(t, replicas, config)
	worker := token(t, "worker")
	for round := range rounds {
		ids := tenantIDs(fmt.Sprintf("storm%d-", round), tenants)
		before := f.stsCalls(t)
		start := time.Now()
		got, bad := f.storm(t, worker, ids, requests, inFlight)
		took := time.Since(start)
		calls := f.stsCalls(t) - before
		t.Logf("round %d: %d requests for %d new tenants over %d replicas, %d in flight, in %s: %v AssumeRole calls, %d not 200",
			round, tenants*requests*replicas, tenants, replicas, inFlight, took.Round(time.Millisecond), calls, len(bad))
		if len(bad) > 0 {
			t.Errorf("round %d: %d answers not 200, the first: %s", round, len(bad), bad[0])
		}
		sameCredentials(t, got)
		if calls != tenants {
			t.Errorf("round %d made %v AssumeRole calls for %d tenants, want %d", round, calls, tenants, tenants)
			for i, v := range f {
				for _, line := range strings.Split(v.metricsText(t), "\n") {
					if strings.HasPrefix(line, "tokenvendor_redis_errors_total{") || strings.HasPrefix(line, "tokenvendor_shared_cache_requests_total{") {
						t.Logf("replica %d: %s", i, line)
					}
				}
			}
		}
	}
	for i, v := range f {
		if strings.Contains(v.out.String(), "redis unavailable") {
			t.Errorf("replica %d took the storm for an outage:\n%s", i, v.out.String())
		}
	}
}

// TestSTSBudgetIsOneAcrossReplicas gives three replicas one STS budget
// through Redis and a cold burst bigger than it: every caller waits its
// turn and gets its credentials, one AssumeRole a tenant, and the burst
// takes as long as the budget's pace over all three replicas together
// (three budgets of their own would go three times as fast).
func TestSTSBudgetIsOneAcrossReplicas(t *testing.T) {
	const tenants, rps, burst = 150, 100, 10
	redis := startRedis(t)
	config, _ := replicaConfig(t, redisSection("redis://"+redis.addr(), defaultRedisTimeout))
	addBudget(t, config, rps, burst)
	f := startFleet(t, 3, config)
	worker := token(t, "worker")
	start := time.Now()
	got, bad := f.storm(t, worker, tenantIDs("budget", tenants), 1, tenants*3)
	took := time.Since(start)
	if len(bad) > 0 {
		t.Fatalf("%d answers not 200, the first: %s", len(bad), bad[0])
	}
	sameCredentials(t, got)
	if calls := f.stsCalls(t); calls != tenants {
		t.Fatalf("%v AssumeRole calls for %d tenants, want %d", calls, tenants, tenants)
	}
	var waits float64
	for _, v := range f {
		waits += v.metric(t, `tokenvendor_sts_budget_waits_total{kind="miss"}`)
	}
	pace := time.Duration(float64(tenants-burst) / rps * float64(time.Second))
	t.Logf("%d tenants over 3 replicas at sts.max_rps %d, burst %d: %s (the pace alone: %s), %v callers waited a turn", tenants, rps, burst, took.Round(time.Millisecond), pace, waits)
	if took < pace*9/10 {
		t.Fatalf("the burst took %s, under the %s the shared pace allows: the replicas do not share one budget", took, pace)
	}
	if waits < tenants-burst-rps/10 {
		t.Fatalf("%v callers waited a turn, want about %d", waits, tenants-burst)
	}
}

// addBudget puts sts.max_rps and sts.max_burst in the config's sts section.
func addBudget(t *testing.T, config string, rps, burst int) {
	t.Helper()
	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	out := strings.Replace(string(b), "sts:\n", fmt.Sprintf("sts:\n  max_rps: %d\n  max_burst: %d\n", rps, burst), 1)
	if err := os.WriteFile(config, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
}
