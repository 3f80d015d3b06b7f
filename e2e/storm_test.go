package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
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
		}
	}
	for i, v := range f {
		if strings.Contains(v.out.String(), "redis unavailable") {
			t.Errorf("replica %d took the storm for an outage:\n%s", i, v.out.String())
		}
	}
}
