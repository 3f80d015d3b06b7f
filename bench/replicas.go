package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/cache"
	"github.com/tokenvendor/tokenvendor/internal/seal"
	"github.com/tokenvendor/tokenvendor/internal/shared"
	"github.com/tokenvendor/tokenvendor/internal/testsupport"
	"github.com/tokenvendor/tokenvendor/internal/vend"
)

// redisServer is a redis-server the bench starts for itself, with a
// client to look into it.
type redisServer struct {
	addr string
	c    *goredis.Client
	stop func()
}

func startRedis() (*redisServer, error) {
	addr, stop, err := testsupport.StartRedis()
	if err != nil {
		return nil, err
	}
	c := goredis.NewClient(&goredis.Options{Addr: addr, DisableIdentity: true})
	return &redisServer{addr: addr, c: c, stop: func() { c.Close(); stop() }}, nil
}

// usedMemory is Redis's used_memory.
func (r *redisServer) usedMemory() (float64, error) {
	info, err := r.c.InfoMap(context.Background(), "memory").Result()
	if err != nil {
		return 0, err
	}
	return strconv.ParseFloat(info["Memory"]["used_memory"], 64)
}

// commandCalls is the number of commands the replicas sent Redis: the
// scripts and the pings and subscriptions, not the commands a script runs
// inside, which Redis counts too.
func (r *redisServer) commandCalls() (int64, error) {
	info, err := r.c.InfoMap(context.Background(), "commandstats").Result()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, name := range []string{"evalsha", "eval", "ping", "subscribe"} {
		calls, _, _ := strings.Cut(strings.TrimPrefix(info["Commandstats"]["cmdstat_"+name], "calls="), ",")
		c, _ := strconv.ParseInt(calls, 10, 64)
		n += c
	}
	return n, nil
}

// newKeys is a keyring of one fresh key.
func newKeys() (*seal.Keyring, []byte, error) {
	k := make([]byte, seal.KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, nil, err
	}
	ring, err := seal.New(k)
	return ring, k, err
}

// keyFile writes a key file of one fresh key into dir.
func keyFile(dir string) (string, error) {
	_, k, err := newKeys()
	if err != nil {
		return "", err
	}
	path := dir + "/redis.key"
	return path, os.WriteFile(path, []byte(encodeKey(k)+"\n"), 0o600)
}

func encodeKey(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

// replicaServices are n vendors over one fake STS, each with its own
// connection to Redis under prefix, as n processes would have.
func replicaServices(n int, fake *countingSTS, addr, prefix string, keys *seal.Keyring, maxEntries int) ([]*vend.Service, func(), error) {
	var services []*vend.Service
	var tiers []*shared.Tier
	closeAll := func() {
		for _, t := range tiers {
			t.Close()
		}
	}
	for range n {
		reg := prometheus.NewRegistry()
		t, err := shared.New(shared.Config{URL: "redis://" + addr, Keys: keys, Prefix: prefix, Registerer: reg})
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		tiers = append(tiers, t)
		var sh cache.Shared[vend.Credentials] = shared.NewCache[vend.Credentials](t)
		s, err := newService(fake, time.Now, maxEntries, reg, sh)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		services = append(services, s)
	}
	return services, closeAll, nil
}

// burstRuns is how many times each cold burst runs: a figure is quoted
// with its spread, never from one lucky run.
const burstRuns = 5

// coldBursts runs the cold burst burstRuns times over n replicas, each run
// under a prefix of its own, and returns the AssumeRole calls of each,
// sorted.
func coldBursts(addr string, keys *seal.Keyring, n, tenants int) ([]int64, error) {
	var calls []int64
	for run := range burstRuns {
		fake := newCountingSTS(30*time.Millisecond, time.Now)
		services, closeAll, err := replicaServices(n, fake, addr, fmt.Sprintf("burst%d-%d:", n, run), keys, 2*tenants)
		if err != nil {
			return nil, err
		}
		err = coldBurst(services, tenants, 10)
		closeAll()
		if err != nil {
			return nil, err
		}
		calls = append(calls, int64(fake.Calls()))
	}
	slices.Sort(calls)
	return calls, nil
}

// replicas measures the shared tier in process against a real redis-server:
// AssumeRole calls of a cold burst over 1 and 3 replicas, and what a local
// miss served from Redis costs against a local hit.
func replicas(tenants int) ([]row, error) {
	r, err := startRedis()
	if err != nil {
		return nil, err
	}
	defer r.stop()
	keys, _, err := newKeys()
	if err != nil {
		return nil, err
	}

	var rows []row
	memBefore, err := r.usedMemory()
	if err != nil {
		return nil, err
	}
	for _, n := range []int{1, 3} {
		calls, err := coldBursts(r.addr, keys, n, tenants)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row{"replicas (Redis)", fmt.Sprintf("AssumeRole calls, cold burst of 10 x %d tenants over %d replica(s), min / median / max of %d runs", tenants, n, burstRuns),
			fmt.Sprintf("%d / %d / %d", calls[0], calls[len(calls)/2], calls[len(calls)-1]), fmt.Sprintf("= %d every run", tenants)})
		if n == 1 {
			memAfter, err := r.usedMemory()
			if err != nil {
				return nil, err
			}
			rows = append(rows, row{"replicas (Redis)", fmt.Sprintf("Redis used_memory per entry (%d-byte session tokens)", sessionTokenLength),
				fmt.Sprintf("%.0f", (memAfter-memBefore)/float64(burstRuns*tenants)), ""}) // every run left its entries
		}
	}

	// One replica fills Redis; a second, started after, serves each tenant
	// once from Redis (a local miss), then once from its own cache.
	fake := newCountingSTS(0, time.Now)
	services, closeAll, err := replicaServices(2, fake, r.addr, "cost:", keys, 2*tenants)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	if err := coldBurst(services[:1], tenants, 1); err != nil {
		return nil, err
	}
	calls := int64(fake.Calls())
	timeEach := func(s *vend.Service) ([]time.Duration, error) {
		var took []time.Duration
		for i := range tenants {
			start := time.Now()
			if _, err := s.Vend(context.Background(), auth.Caller{TenantID: tenantID(i)}, vend.Request{}); err != nil {
				return nil, err
			}
			took = append(took, time.Since(start))
		}
		slices.Sort(took)
		return took, nil
	}
	fromRedis, err := timeEach(services[1])
	if err != nil {
		return nil, err
	}
	hits, err := timeEach(services[1])
	if err != nil {
		return nil, err
	}
	if int64(fake.Calls()) != calls {
		return nil, fail("the second replica called STS %d times for warm tenants", int64(fake.Calls())-calls)
	}
	q := func(d []time.Duration, p int) time.Duration { return d[len(d)*p/100] }
	us := func(d time.Duration) string { return fmt.Sprintf("%.1f us", float64(d)/1e3) }
	rows = append(rows,
		row{"replicas (Redis)", "local miss served from Redis, p50 / p99", us(q(fromRedis, 50)) + " / " + us(q(fromRedis, 99)), ""},
		row{"replicas (Redis)", "local hit, p50 / p99", us(q(hits, 50)) + " / " + us(q(hits, 99)), ""},
		row{"replicas (Redis)", "local miss from Redis / local hit, p50", ratio(float64(q(fromRedis, 50)), float64(q(hits, 50))), ""},
	)
	return rows, nil
}
