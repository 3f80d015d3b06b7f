package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tokenvendor/tokenvendor/internal/testsupport"
	"github.com/tokenvendor/tokenvendor/internal/tlsconfig/tlstest"
)

// ---------------------------------------------------------------- Redis

// redisPeer is a redis-server started for one test, so that it can be
// killed and started again on the same port.
type redisPeer struct {
	name string
	port int
	args []string
	proc *process
}

// startRedis runs redis-server on a free loopback port, without
// persistence, with args added to its command line.
func startRedis(t *testing.T, args ...string) *redisPeer {
	t.Helper()
	return startRedisOn(t, freePort(), args...)
}

func startRedisOn(t *testing.T, port int, args ...string) *redisPeer {
	t.Helper()
	r := &redisPeer{name: fmt.Sprintf("redis-%d", port), port: port, args: args}
	r.run(t)
	t.Cleanup(func() { r.proc.stop() })
	return r
}

// run starts (or starts again) the server and waits until it is ready.
func (r *redisPeer) run(t *testing.T) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not on PATH (make tools installs it): %v", err)
	}
	args := append([]string{"--port", fmt.Sprint(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}, r.args...)
	if slices.Contains(r.args, "--tls-port") {
		args[1] = "0" // TLS only
	}
	p, err := start(r.name, bin, args, nil, "Ready to accept connections")
	if err != nil {
		t.Fatal(err)
	}
	r.proc = p
}

func (r *redisPeer) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

// client is a plain client for looking into the server.
func (r *redisPeer) client(t *testing.T) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: r.addr(), DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// writeKeys writes a key file of the given keys, the first sealing.
func writeKeys(t *testing.T, path string, keys ...[]byte) {
	t.Helper()
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// replicaConfig writes a config for MinIO with top prepended (a redis
// section, limits), and a key file of one fresh key beside it, named in
// top as KEYFILE.
func replicaConfig(t *testing.T, top string) (config, keyFile string) {
	t.Helper()
	config = writeConfig(t, configOptions{stsEndpoint: peers.minio, roleChaining: "off"})
	keyFile = filepath.Join(filepath.Dir(config), "redis.key")
	writeKeys(t, keyFile, newKey(t))
	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	top = strings.ReplaceAll(top, "KEYFILE", keyFile)
	if err := os.WriteFile(config, append([]byte(top+"\n"), b...), 0o600); err != nil {
		t.Fatal(err)
	}
	return config, keyFile
}

// redisSection is a redis section for url. Tests that count AssumeRole
// calls exactly use the default timeout: a round trip that stalls under
// the machine's load is this replica's load, not an outage, and the
// breaker tells the two apart.
func redisSection(url string, timeout time.Duration) string {
	return fmt.Sprintf("redis:\n  url: %s\n  key_file: KEYFILE\n  timeout: %s\n", url, timeout)
}

// noRedisErrors fails the test when a replica saw a Redis failure: what it
// then did alone would make the counts that follow meaningless.
func (f fleet) noRedisErrors(t *testing.T) {
	t.Helper()
	for i, v := range f {
		if errs := v.sumMetric(t, "tokenvendor_redis_errors_total{"); errs != 0 {
			t.Fatalf("replica %d: %v Redis errors:\n%s", i, errs, v.out.String())
		}
	}
}

// ---------------------------------------------------------------- replicas

// fleet is several tokenvendor processes with one config.
type fleet []*vendor

func startFleet(t *testing.T, n int, config string) fleet {
	t.Helper()
	var f fleet
	for range n {
		f = append(f, startVendor(t, config, minioUser, minioPassword))
	}
	return f
}

// stsCalls is the sum over the fleet of tokenvendor_sts_requests_total:
// every AssumeRole any replica made.
func (f fleet) stsCalls(t *testing.T) float64 {
	t.Helper()
	var sum float64
	for _, v := range f {
		sum += v.sumMetric(t, "tokenvendor_sts_requests_total{")
	}
	return sum
}

// sumMetric sums every sample whose line starts with prefix.
func (v *vendor) sumMetric(t *testing.T, prefix string) float64 {
	t.Helper()
	var sum float64
	for _, line := range strings.Split(v.metricsText(t), "\n") {
		if strings.HasPrefix(line, prefix) {
			var f float64
			fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &f)
			sum += f
		}
	}
	return sum
}

// burst sends requests requests for each tenant at once, request j of
// tenant i to replica (i+j) mod len(f), and returns each tenant's answers.
func (f fleet) burst(t *testing.T, worker string, tenants []string, requests int) map[string][]credentials {
	t.Helper()
	client := loadClient(true)
	var mu sync.Mutex
	got := map[string][]credentials{}
	var wg sync.WaitGroup
	for i, tenant := range tenants {
		for j := range requests {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v := f[(i+j)%len(f)]
				o := call(client, http.MethodPost, v.url+"/credentials", worker, fmt.Sprintf(`{"tenant_id":%q}`, tenant))
				if o.err != nil || o.status != http.StatusOK {
					t.Errorf("tenant %s on replica %d: %d %s %v", tenant, (i+j)%len(f), o.status, o.body, o.err)
					return
				}
				var c credentials
				if err := json.Unmarshal(o.body, &c); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				got[tenant] = append(got[tenant], c)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	return got
}

// sameCredentials checks every answer for a tenant is its tenant's and one
// set of credentials, and returns them per tenant.
func sameCredentials(t *testing.T, got map[string][]credentials) map[string]credentials {
	t.Helper()
	one := map[string]credentials{}
	for tenant, cs := range got {
		for _, c := range cs {
			if c.TenantID != tenant {
				t.Errorf("tenant %s got credentials for %s", tenant, c.TenantID)
			}
			if first, ok := one[tenant]; ok && first.AccessKeyID != c.AccessKeyID {
				t.Errorf("tenant %s got two sets of credentials: %s and %s", tenant, first.AccessKeyID, c.AccessKeyID)
			}
			one[tenant] = c
		}
	}
	return one
}

func tenantIDs(prefix string, n int) []string {
	var ids []string
	for i := range n {
		ids = append(ids, fmt.Sprintf("%s%02d", prefix, i))
	}
	return ids
}

// entryKeys lists the shared cache's entries (not leases or limits).
func entryKeys(t *testing.T, c goredis.UniversalClient) []string {
	t.Helper()
	var keys []string
	err := forEachKey(c, func(k string) {
		if strings.HasPrefix(k, "tokenvendor:{") && !strings.HasSuffix(k, ":lease") {
			keys = append(keys, k)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	return keys
}

func forEachKey(c goredis.UniversalClient, fn func(string)) error {
	iter := c.Scan(context.Background(), 0, "*", 100).Iterator()
	for iter.Next(context.Background()) {
		fn(iter.Val())
	}
	return iter.Err()
}

// ---------------------------------------------------------------- tests

func TestReplicasShareCredentials(t *testing.T) {
	const replicas, tenants, requests = 3, 40, 9
	redis := startRedis(t)
	config, _ := replicaConfig(t, redisSection("redis://"+redis.addr()+"/0", defaultRedisTimeout))
	f := startFleet(t, replicas, config)
	worker := token(t, "worker")
	ids := tenantIDs("share", tenants)

	creds := sameCredentials(t, f.burst(t, worker, ids, requests))
	f.noRedisErrors(t)
	if calls := f.stsCalls(t); calls != tenants {
		t.Fatalf("cold burst of %d requests for %d tenants over %d replicas made %v AssumeRole calls, want %d",
			tenants*requests, tenants, replicas, calls, tenants)
	}
	t.Logf("cold burst: %d requests, %d tenants, %d replicas: %d AssumeRole calls", tenants*requests, tenants, replicas, tenants)

	t.Run("a replica started later serves warm tenants without STS", func(t *testing.T) {
		late := startVendor(t, config, minioUser, minioPassword)
		for _, tenant := range ids {
			c := late.vend(t, worker, fmt.Sprintf(`{"tenant_id":%q}`, tenant))
			if c.AccessKeyID != creds[tenant].AccessKeyID {
				t.Errorf("tenant %s: the late replica serves %s, the others %s", tenant, c.AccessKeyID, creds[tenant].AccessKeyID)
			}
		}
		if calls := (fleet{late}).stsCalls(t); calls != 0 {
			t.Fatalf("the late replica made %v AssumeRole calls for %d warm tenants, want 0", calls, tenants)
		}
		if hits := late.metric(t, `tokenvendor_shared_cache_requests_total{result="hit"}`); hits != tenants {
			t.Errorf("shared hits = %v, want %d", hits, tenants)
		}
	})

	t.Run("no credential can be read in Redis", func(t *testing.T) {
		c := redis.client(t)
		var values, keys []string
		if err := forEachKey(c, func(k string) {
			keys = append(keys, k)
			if v, err := c.Get(context.Background(), k).Result(); err == nil {
				values = append(values, v)
			}
		}); err != nil {
			t.Fatal(err)
		}
		if len(values) < tenants {
			t.Fatalf("%d values in Redis, want at least one a tenant (%d)", len(values), tenants)
		}
		for _, cr := range creds {
			for _, secret := range []string{cr.AccessKeyID, cr.SecretAccessKey, cr.SessionToken} {
				for _, form := range testsupport.Encodings(secret) {
					for i, v := range append(values, keys...) {
						if strings.Contains(v, form) {
							t.Fatalf("Redis value %d holds a credential of tenant %s (as %q)", i, cr.TenantID, form)
						}
					}
				}
			}
		}
	})

	t.Run("an entry moved under another tenant's key is never served", func(t *testing.T) {
		c := redis.client(t)
		// Find the entries of two new tenants, vended on replica 0 only.
		before := entryKeys(t, c)
		victim := f[0].vend(t, worker, `{"tenant_id":"moved-victim"}`)
		victimKeys := entryKeys(t, c)
		target := f[0].vend(t, worker, `{"tenant_id":"moved-target"}`)
		after := entryKeys(t, c)
		victimKey := newKeys(before, victimKeys)
		targetKey := newKeys(victimKeys, after)
		sealed, err := c.Get(context.Background(), victimKey).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Set(context.Background(), targetKey, sealed, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		// Replica 1 has never served the target tenant: it looks in Redis.
		calls := (fleet{f[1]}).stsCalls(t)
		got := f[1].vend(t, worker, `{"tenant_id":"moved-target"}`)
		if got.AccessKeyID == victim.AccessKeyID || got.TenantID != "moved-target" {
			t.Fatalf("replica 1 served %s (tenant %s), the moved entry of moved-victim", got.AccessKeyID, got.TenantID)
		}
		if got.AccessKeyID == target.AccessKeyID {
			t.Fatalf("replica 1 served the target's own credentials: the moved entry was not there to refuse")
		}
		// Looked at twice: before and after taking the lease.
		if rejected := f[1].metric(t, `tokenvendor_shared_cache_requests_total{result="rejected"}`); rejected < 1 {
			t.Fatalf("rejected = %v, want the moved entry counted", rejected)
		}
		if made := (fleet{f[1]}).stsCalls(t) - calls; made != 1 {
			t.Fatalf("replica 1 made %v AssumeRole calls, want 1 for the tenant whose entry it refused", made)
		}
	})
}

// newKeys returns the one key in after that is not in before.
func newKeys(before, after []string) string {
	for _, k := range after {
		if !slices.Contains(before, k) {
			return k
		}
	}
	return ""
}

func TestReplicasShareACallersRateLimit(t *testing.T) {
	redis := startRedis(t)
	config, _ := replicaConfig(t, redisSection("redis://"+redis.addr(), defaultRedisTimeout)+"limits:\n  per_caller_rps: 2\n  per_caller_burst: 4\n")
	f := startFleet(t, 3, config)
	acme := token(t, "svc-acme")
	client := loadClient(true)
	statuses := map[int]int{}
	start := time.Now()
	for i := range 30 {
		o := call(client, http.MethodPost, f[i%3].url+"/credentials", acme, "")
		if o.err != nil {
			t.Fatal(o.err)
		}
		statuses[o.status]++
	}
	took := time.Since(start)
	f.noRedisErrors(t)
	t.Logf("30 requests round-robin over 3 replicas in %s: %v", took.Round(time.Millisecond), statuses)
	// The burst of 4, plus one a 500 ms emission interval while they ran.
	allowed := 4 + int(took/(500*time.Millisecond))
	if statuses[http.StatusOK] < 4 || statuses[http.StatusOK] > allowed || statuses[http.StatusOK]+statuses[http.StatusTooManyRequests] != 30 {
		t.Fatalf("answers %v, want 4 to %d 200s and 429s for the rest", statuses, allowed)
	}
}

func TestReplicasActAloneWhileRedisIsDownAndShareAgainAfter(t *testing.T) {
	redis := startRedis(t)
	config, _ := replicaConfig(t, redisSection("redis://"+redis.addr(), defaultRedisTimeout))
	f := startFleet(t, 3, config)
	worker := token(t, "worker")
	client := loadClient(true)

	load := startLoad(6, func(w, i int) outcome {
		v := f[(w+i)%len(f)]
		if i%10 == 9 {
			o := call(client, http.MethodGet, v.url+"/readyz", "", "")
			o.readyz = true
			return o
		}
		// Known tenants and, every few requests, one never seen.
		tenant := fmt.Sprintf("load%02d", (w*7+i)%20)
		if i%4 == 3 {
			tenant = fmt.Sprintf("cold-%d-%d", w, i)
		}
		return call(client, http.MethodPost, v.url+"/credentials", worker, fmt.Sprintf(`{"tenant_id":%q}`, tenant))
	})
	load.waitFor(t, 60)
	redis.proc.kill()
	down := time.Now()
	load.waitFor(t, 120)
	// Long enough for the breaker's probes to fail and back off.
	time.Sleep(3*time.Second - time.Since(down))
	redis.run(t)
	up := time.Now()
	load.waitFor(t, 30)
	results := load.finish()
	var during int
	for _, o := range results {
		if o.err != nil || o.status != http.StatusOK {
			t.Errorf("at %s (readyz %v): %d %s %v", o.sent.Format(time.StampMilli), o.readyz, o.status, o.body, o.err)
		}
		if o.sent.After(down) && o.sent.Before(up) {
			during++
		}
	}
	t.Logf("%d requests, %d while Redis was down for %s; all 200", len(results), during, up.Sub(down).Round(time.Millisecond))
	if during == 0 {
		t.Fatal("no request was made while Redis was down")
	}

	// Sharing again: a new tenant asked of every replica in turn makes one
	// AssumeRole, within 10 s of Redis returning.
	for k := 0; ; k++ {
		before := f.stsCalls(t)
		tenant := fmt.Sprintf("after-%d", k)
		for _, v := range f {
			v.vend(t, worker, fmt.Sprintf(`{"tenant_id":%q}`, tenant))
		}
		if f.stsCalls(t)-before == 1 {
			t.Logf("replicas share again %s after Redis returned", time.Since(up).Round(time.Millisecond))
			break
		}
		if time.Since(up) > 10*time.Second {
			t.Fatalf("replicas do not share 10 s after Redis returned")
		}
		time.Sleep(250 * time.Millisecond)
	}
	for i, v := range f {
		if errs := v.serverErrors(t); len(errs) > 0 {
			t.Errorf("replica %d answered 5xx: %v", i, errs)
		}
		if n := strings.Count(v.out.String(), "redis unavailable"); n != 1 {
			t.Errorf("replica %d logged the outage %d times, want once", i, n)
		}
	}
}

func TestSlowRedisCostsAtMostItsTimeout(t *testing.T) {
	const redisTimeout = 250 * time.Millisecond
	redis := startRedis(t)
	proxy := startProxy(t, redis.addr())
	alone, _ := replicaConfig(t, "")
	shared, _ := replicaConfig(t, redisSection("redis://"+proxy.addr, redisTimeout))
	base := startVendor(t, alone, minioUser, minioPassword)
	slow := startVendor(t, shared, minioUser, minioPassword)
	worker := token(t, "worker")
	proxy.setDelay(time.Second)

	p99 := func(v *vendor, prefix string) time.Duration {
		client := loadClient(true)
		var mu sync.Mutex
		var took []time.Duration
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 25 {
					// Every request a tenant never seen: each one misses
					// locally and asks the shared tier.
					o := call(client, http.MethodPost, v.url+"/credentials", worker, fmt.Sprintf(`{"tenant_id":"%s-%d-%d"}`, prefix, w, i))
					if o.err != nil || o.status != http.StatusOK {
						t.Errorf("%d %s %v", o.status, o.body, o.err)
					}
					mu.Lock()
					took = append(took, o.took)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		slices.Sort(took)
		return took[len(took)*99/100]
	}
	baseP99 := p99(base, "base")
	slowP99 := p99(slow, "slow")
	t.Logf("p99 of 100 cold requests: %s alone, %s with Redis 1 s slow (timeout %s)", baseP99.Round(time.Millisecond), slowP99.Round(time.Millisecond), redisTimeout)
	// Each request meets at most one timeout: its first Redis operation's,
	// after which it acts alone.
	errs := slow.sumMetric(t, "tokenvendor_redis_errors_total{")
	if errs == 0 || errs > 100+1 { // and the check of the suspect breaker
		t.Fatalf("%v Redis timeouts for 100 requests, want 1 to 101", errs)
	}
	if n := strings.Count(slow.out.String(), "redis unavailable"); n != 1 {
		t.Fatalf("the slow Redis was logged %d times, want once", n)
	}
	// Once open, the breaker keeps the slow Redis out: one probe at most
	// every 500 ms.
	start := time.Now()
	p99(slow, "open")
	elapsed := time.Since(start)
	if more := slow.sumMetric(t, "tokenvendor_redis_errors_total{") - errs; more > float64(elapsed/(500*time.Millisecond))+1 {
		t.Fatalf("%v Redis timeouts in %s of requests with the breaker open, want one a probe at most every 500 ms", more, elapsed.Round(time.Millisecond))
	}
}

func TestFullOrRefusingRedisIsAnOutageNotAnError(t *testing.T) {
	const tenants = 10
	for _, tc := range []struct {
		name string
		url  func(t *testing.T) string
	}{
		{name: "maxmemory reached with noeviction: reads answer, writes are refused", url: func(t *testing.T) string {
			r := startRedis(t, "--maxmemory", "1", "--maxmemory-policy", "noeviction")
			return "redis://" + r.addr()
		}},
		{name: "wrong password", url: func(t *testing.T) string {
			r := startRedis(t, "--requirepass", "the-right-password")
			return "redis://:a-wrong-password@" + r.addr()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			config, _ := replicaConfig(t, redisSection(tc.url(t), defaultRedisTimeout))
			f := startFleet(t, 2, config)
			got := f.burst(t, token(t, "worker"), tenantIDs("refused", tenants), 4)
			sameCredentialsPerReplica(t, got)
			for i, v := range f {
				if errs := v.serverErrors(t); len(errs) > 0 {
					t.Errorf("replica %d answered 5xx: %v", i, errs)
				}
				if n := strings.Count(v.out.String(), "redis unavailable"); n != 1 {
					t.Errorf("replica %d logged %d outages, want 1:\n%s", i, n, v.out.String())
				}
				if v.sumMetric(t, "tokenvendor_redis_errors_total{") == 0 {
					t.Errorf("replica %d saw no Redis error", i)
				}
			}
		})
	}
}

// defaultRedisTimeout is redis.timeout when it is not set.
const defaultRedisTimeout = 250 * time.Millisecond

// sameCredentialsPerReplica checks that every answer for a tenant is its
// tenant's: replicas acting alone each have their own.
func sameCredentialsPerReplica(t *testing.T, got map[string][]credentials) {
	t.Helper()
	for tenant, cs := range got {
		for _, c := range cs {
			if c.TenantID != tenant {
				t.Errorf("tenant %s got credentials for %s", tenant, c.TenantID)
			}
		}
	}
}

func TestKeyRotationKeepsEveryEntry(t *testing.T) {
	const tenants = 10
	redis := startRedis(t)
	config, keyFile := replicaConfig(t, redisSection("redis://"+redis.addr(), defaultRedisTimeout))
	old, _ := os.ReadFile(keyFile)
	f := startFleet(t, 3, config)
	worker := token(t, "worker")
	ids := tenantIDs("rotate", tenants)
	creds := sameCredentials(t, f.burst(t, worker, ids, 3))

	// A new first key; the old one stays to open what it sealed.
	fresh := base64.StdEncoding.EncodeToString(newKey(t))
	if err := os.WriteFile(keyFile, append([]byte(fresh+"\n"), old...), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range f {
		f[i].stop()
		f[i] = startVendor(t, config, minioUser, minioPassword)
		for _, tenant := range ids {
			if c := f[i].vend(t, worker, fmt.Sprintf(`{"tenant_id":%q}`, tenant)); c.AccessKeyID != creds[tenant].AccessKeyID {
				t.Errorf("restarted replica %d: tenant %s gets %s, want the entry sealed before rotation (%s)", i, tenant, c.AccessKeyID, creds[tenant].AccessKeyID)
			}
		}
		if calls := (fleet{f[i]}).stsCalls(t); calls != 0 {
			t.Fatalf("replica %d restarted with the new first key made %v AssumeRole calls for %d warm tenants, want 0", i, calls, tenants)
		}
	}
	// Entries sealed with the new key are shared too.
	f[0].vend(t, worker, `{"tenant_id":"after-rotation"}`)
	f[1].vend(t, worker, `{"tenant_id":"after-rotation"}`)
	f.noRedisErrors(t)
	if calls := f.stsCalls(t); calls != 1 {
		t.Fatalf("a new tenant after rotation on two replicas made %v AssumeRole calls, want 1", calls)
	}
}

// freeClusterPort returns a free port whose cluster bus port (+10000) is
// free too.
func freeClusterPort(t *testing.T) int {
	t.Helper()
	for range 50 {
		p := freePort()
		if p+10000 > 65535 {
			continue
		}
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+10000)); err == nil {
			l.Close()
			return p
		}
	}
	t.Fatal("no port pair free for a cluster node")
	return 0
}

func TestReplicasShareThroughRedisCluster(t *testing.T) {
	const tenants = 40
	dir := t.TempDir()
	var nodes []*redisPeer
	var addrs []string
	for range 3 {
		port := freeClusterPort(t)
		n := startRedisOn(t, port, "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", port)), "--dir", dir)
		nodes = append(nodes, n)
		addrs = append(addrs, n.addr())
	}
	create := exec.Command("redis-cli", append(append([]string{"--cluster", "create"}, addrs...), "--cluster-yes")...)
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	cluster := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs, DisableIdentity: true})
	t.Cleanup(func() { cluster.Close() })
	testsupport.Eventually(t, 20*time.Second, func() error {
		info, err := nodes[0].client(t).ClusterInfo(context.Background()).Result()
		if err == nil && !strings.Contains(info, "cluster_state:ok") {
			err = fmt.Errorf("cluster not ok: %s", info)
		}
		return err
	})

	url := fmt.Sprintf("redis://%s?addr=%s&addr=%s", addrs[0], addrs[1], addrs[2])
	config, _ := replicaConfig(t, redisSection(url, defaultRedisTimeout)+"  cluster: true\n")
	f := startFleet(t, 3, config)
	worker := token(t, "worker")
	sameCredentials(t, f.burst(t, worker, tenantIDs("cluster", tenants), 9))
	f.noRedisErrors(t)
	if calls := f.stsCalls(t); calls != tenants {
		t.Fatalf("cold burst over a Redis Cluster made %v AssumeRole calls, want %d", calls, tenants)
	}
	var perNode []int64
	holding := 0
	for _, n := range nodes {
		size, err := n.client(t).DBSize(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		perNode = append(perNode, size)
		if size > 0 {
			holding++
		}
	}
	t.Logf("keys per cluster node: %v", perNode)
	if holding < 2 {
		t.Fatalf("keys on %d node(s) of 3 (%v): tenants do not spread over the cluster", holding, perNode)
	}
}

func TestReplicasShareOverTLSWithAUTH(t *testing.T) {
	const tenants = 10
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "redis-ca")
	certPEM, keyPEM, _ := ca.Issue(2, "redis")
	cert, key := tlstest.WriteFiles(t, dir, certPEM, keyPEM, time.Now())
	caFile := filepath.Join(dir, "ca.pem")
	writeFile(t, caFile, string(ca.PEM))
	port := freePort()
	const password = "redis-password-e2e-0123456789"
	startRedisOn(t, port, "--tls-port", fmt.Sprint(port), "--tls-cert-file", cert, "--tls-key-file", key,
		"--tls-ca-cert-file", caFile, "--tls-auth-clients", "no",
		// Only the user tokenvendor, and only the keys docs/replicas.md says it needs.
		"--user", "default", "off",
		"--user", "tokenvendor", "on", ">"+password, "~tokenvendor:*", "~rate:tokenvendor:*", "&tokenvendor:*", "+@all")
	passwordFile := filepath.Join(dir, "password")
	writeFile(t, passwordFile, password+"\n")

	// One replica with the password in the URL, one with password_file.
	inURL, _ := replicaConfig(t, redisSection(fmt.Sprintf("rediss://tokenvendor:%s@127.0.0.1:%d", password, port), defaultRedisTimeout)+
		"  ca_file: "+caFile+"\nlimits:\n  per_caller_rps: 100\n")
	inFile, keyFile := replicaConfig(t, redisSection(fmt.Sprintf("rediss://tokenvendor@127.0.0.1:%d", port), defaultRedisTimeout)+
		"  ca_file: "+caFile+"\n  password_file: "+passwordFile+"\nlimits:\n  per_caller_rps: 100\n")
	// Both replicas must seal with the same keys.
	keys, _ := os.ReadFile(filepath.Join(filepath.Dir(inURL), "redis.key"))
	writeFile(t, keyFile, string(keys))
	f := fleet{startVendor(t, inURL, minioUser, minioPassword), startVendor(t, inFile, minioUser, minioPassword)}
	sameCredentials(t, f.burst(t, token(t, "worker"), tenantIDs("tls", tenants), 4))
	if calls := f.stsCalls(t); calls != tenants {
		t.Fatalf("over TLS with AUTH: %v AssumeRole calls, want %d", calls, tenants)
	}
	for i, v := range f {
		if errs := v.sumMetric(t, "tokenvendor_redis_errors_total{"); errs != 0 {
			t.Errorf("replica %d: %v Redis errors (TLS, AUTH or ACL refused):\n%s", i, errs, v.out.String())
		}
		if strings.Contains(v.out.String(), password) {
			t.Errorf("replica %d logged the Redis password", i)
		}
	}
}

// redisCluster is a Redis Cluster of primaries, each with a replica,
// started for one test.
type redisCluster struct {
	nodes []*redisPeer
	addrs []string
}

// startRedisCluster runs 2*primaries nodes and joins them with
// --cluster-replicas 1. The nodes sync without disk (with --save "" a
// replica can wait on a full sync forever and is then never promoted) and
// take a primary for failed after a second.
func startRedisCluster(t *testing.T, primaries int) *redisCluster {
	t.Helper()
	dir := t.TempDir()
	c := &redisCluster{}
	for range 2 * primaries {
		port := freeClusterPort(t)
		n := startRedisOn(t, port, "--cluster-enabled", "yes", "--cluster-node-timeout", "1000",
			"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
			"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", port)), "--dir", dir)
		c.nodes = append(c.nodes, n)
		c.addrs = append(c.addrs, n.addr())
	}
	create := exec.Command("redis-cli", append(append([]string{"--cluster", "create"}, c.addrs...), "--cluster-replicas", "1", "--cluster-yes")...)
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.waitHealthy(t, nil, 30*time.Second)
	return c
}

// waitHealthy waits until the cluster is ok as seen from every live node
// and every primary has a replica in sync, leaving out the dead node.
func (c *redisCluster) waitHealthy(t *testing.T, dead *redisPeer, limit time.Duration) {
	t.Helper()
	testsupport.Eventually(t, limit, func() error {
		for _, n := range c.nodes {
			if n == dead {
				continue
			}
			info, err := n.client(t).ClusterInfo(context.Background()).Result()
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				return fmt.Errorf("cluster not ok at %s: %v", n.addr(), err)
			}
			repl, err := n.client(t).Info(context.Background(), "replication").Result()
			if err != nil || (strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up")) {
				return fmt.Errorf("replica %s not in sync: %v", n.addr(), err)
			}
		}
		return nil
	})
}

// primary returns a node that is a primary holding slots.
func (c *redisCluster) primary(t *testing.T) *redisPeer {
	t.Helper()
	for _, n := range c.nodes {
		repl, err := n.client(t).Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(repl, "role:master") && strings.Contains(repl, "connected_slaves:1") {
			return n
		}
	}
	t.Fatal("no primary with a replica")
	return nil
}

// TestRedisClusterFailoverUnderLoad kills a primary of a three-primary
// cluster while three replicas serve known and new tenants: no request
// fails, and once the cluster has promoted the replica, the replicas share
// again (a new tenant asked of every replica costs one AssumeRole) within
// 10 s.
func TestRedisClusterFailoverUnderLoad(t *testing.T) {
	c := startRedisCluster(t, 3)
	url := fmt.Sprintf("redis://%s?addr=%s&addr=%s", c.addrs[0], c.addrs[1], c.addrs[2])
	config, _ := replicaConfig(t, redisSection(url, defaultRedisTimeout)+"  cluster: true\n")
	f := startFleet(t, 3, config)
	worker := token(t, "worker")
	client := loadClient(true)
	load := startLoad(6, func(w, i int) outcome {
		tenant := fmt.Sprintf("known%02d", (w*5+i)%31)
		if i%3 == 2 {
			tenant = fmt.Sprintf("new-%d-%d", w, i)
		}
		return call(client, http.MethodPost, f[(w+i)%len(f)].url+"/credentials", worker, fmt.Sprintf(`{"tenant_id":%q}`, tenant))
	})
	load.waitFor(t, 100)
	victim := c.primary(t)
	victim.proc.kill()
	killed := time.Now()
	c.waitHealthy(t, victim, 30*time.Second)
	promoted := time.Now()
	t.Logf("a primary killed; the cluster promoted its replica %s later", promoted.Sub(killed).Round(time.Millisecond))

	load.waitFor(t, 50)
	results := load.finish()

	// Sharing again: a new tenant asked of every replica in turn makes one
	// AssumeRole.
	var shared time.Time
	for k := 0; shared.IsZero(); k++ {
		before := f.stsCalls(t)
		tenant := fmt.Sprintf("after-failover-%d", k)
		for _, v := range f {
			v.vend(t, worker, fmt.Sprintf(`{"tenant_id":%q}`, tenant))
		}
		switch {
		case f.stsCalls(t)-before == 1:
			shared = time.Now()
		case time.Since(promoted) > 10*time.Second:
			t.Fatalf("replicas do not share 10 s after the cluster promoted the replica")
		default:
			time.Sleep(200 * time.Millisecond)
		}
	}
	var during int
	for _, o := range results {
		if o.err != nil || o.status != http.StatusOK {
			t.Errorf("at %s: %d %s %v", o.sent.Format(time.StampMilli), o.status, o.body, o.err)
		}
		if o.sent.After(killed) && o.sent.Before(promoted) {
			during++
		}
	}
	t.Logf("%d requests, %d while the primary was down and not yet replaced; all 200; replicas share again %s after the promotion",
		len(results), during, shared.Sub(promoted).Round(time.Millisecond))
	if during == 0 {
		t.Fatal("no request was made during the failover")
	}
}
