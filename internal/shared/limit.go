package shared

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/go-redis/redis_rate/v10"

	"github.com/tokenvendor/tokenvendor/internal/limit"
)

// Limiter counts a budget per key (a caller, a tenant) in Redis, across
// replicas, with GCRA (go-redis/redis_rate): the same sustained rate and
// burst as its local limiter, which counts instead whenever Redis does not
// answer. Keys in Redis hold a SHA-256 of the caller's subject or the
// tenant, not the name itself (a guessable name can still be confirmed by
// hashing it).
type Limiter struct {
	t     *Tier
	name  string
	limit redis_rate.Limit
	local *limit.Limiter
}

// NewLimiter returns a limiter named name (it keeps its keys apart from
// other limiters') with local's rate and burst.
func NewLimiter(t *Tier, name string, local *limit.Limiter) (*Limiter, error) {
	rps, burst := local.Rate()
	if rps <= 0 {
		return nil, errors.New("redis: a shared limiter needs a local one with a positive rate")
	}
	return &Limiter{
		t:    t,
		name: name,
		// One request every 1/rps, which keeps fractional rates exact.
		limit: redis_rate.Limit{Rate: 1, Period: time.Duration(float64(time.Second) / rps), Burst: burst},
		local: local,
	}, nil
}

// Allow takes one request from key's budget. When there is none it returns
// false and how long until there is.
func (l *Limiter) Allow(ctx context.Context, key string) (bool, time.Duration) {
	var res *redis_rate.Result
	err := l.t.do(ctx, "limit", false, func(ctx context.Context) error {
		var err error
		res, err = l.t.rate.Allow(ctx, l.redisKey(key), l.limit)
		return err
	})
	if err != nil {
		return l.local.Allow(ctx, key)
	}
	if res.Allowed > 0 {
		return true, 0
	}
	return false, res.RetryAfter
}

// redisKey is the prefix, the limiter's name and a hash of key; redis_rate
// puts "rate:" in front.
func (l *Limiter) redisKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return l.t.cfg.Prefix + "limit:" + l.name + ":" + hex.EncodeToString(h[:16])
}
