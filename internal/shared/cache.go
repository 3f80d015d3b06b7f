package shared

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tokenvendor/tokenvendor/internal/cache"
	"github.com/tokenvendor/tokenvendor/internal/seal"
)

// releaseLease deletes a lease only while it is still the caller's: a lease
// that expired and was taken by another replica stays theirs.
var releaseLease = goredis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0`)

// Cache keeps values of type V in Redis, sealed: it is the cache.Shared of
// the credential cache. Each value is one Redis key, the prefix and the
// cache key inside a hash tag, and its lease is the same key with ":lease"
// after it, so both land in one cluster slot while different keys spread
// over the cluster. The value is the sealed JSON of the cache.Stored, bound
// to its Redis key.
type Cache[V any] struct {
	t *Tier
}

// NewCache returns the tier's store of values of type V.
func NewCache[V any](t *Tier) *Cache[V] { return &Cache[V]{t: t} }

var _ cache.Shared[int] = (*Cache[int])(nil)

func (c *Cache[V]) entryKey(key string) string { return c.t.cfg.Prefix + "{" + key + "}" }

func (c *Cache[V]) leaseKey(key string) string { return c.entryKey(key) + ":lease" }

// Load returns the value under key when there is one that opens and has
// not expired. A value that does not open (moved under another key, altered,
// or sealed with a key no longer in the ring) is counted as rejected and
// treated as a miss.
func (c *Cache[V]) Load(ctx context.Context, key string) (cache.Stored[V], bool) {
	var none cache.Stored[V]
	rkey := c.entryKey(key)
	var sealed []byte
	err := c.t.do(ctx, "get", func(ctx context.Context) error {
		var err error
		sealed, err = c.t.rdb.Get(ctx, rkey).Bytes()
		return err
	})
	switch {
	case errors.Is(err, goredis.Nil):
		c.t.lookups.WithLabelValues("miss").Inc()
		return none, false
	case err != nil:
		c.t.lookups.WithLabelValues("error").Inc()
		return none, false
	}
	plain, err := c.t.cfg.Keys.Open(sealed, []byte(rkey))
	var s cache.Stored[V]
	if err == nil {
		err = json.Unmarshal(plain, &s)
	}
	if err != nil {
		c.t.lookups.WithLabelValues("rejected").Inc()
		reason := "does not open"
		if errors.Is(err, seal.ErrUnknownKey) {
			reason = "sealed with a key not in key_file"
		}
		c.t.log.Warn("shared cache entry rejected; fetching instead", "key", rkey, "reason", reason)
		return none, false
	}
	if !s.Expires.After(c.t.cfg.Now()) {
		c.t.lookups.WithLabelValues("miss").Inc()
		return none, false
	}
	c.t.lookups.WithLabelValues("hit").Inc()
	return s, true
}

// Store seals s and keeps it under key until it expires: the Redis TTL is
// its remaining life, never more.
func (c *Cache[V]) Store(ctx context.Context, key string, s cache.Stored[V]) {
	ttl := s.Expires.Sub(c.t.cfg.Now())
	if ttl <= 0 {
		return
	}
	plain, err := json.Marshal(s)
	if err != nil {
		c.t.log.Error("shared cache entry not encodable; not stored", "err", err)
		return
	}
	rkey := c.entryKey(key)
	sealed, err := c.t.cfg.Keys.Seal(plain, []byte(rkey))
	if err != nil {
		c.t.log.Error("shared cache entry not sealed; not stored", "err", err)
		return
	}
	_ = c.t.do(ctx, "set", func(ctx context.Context) error {
		return c.t.rdb.Set(ctx, rkey, sealed, ttl).Err()
	})
}

// Lease takes key's lease (SET NX PX) with a token of its own, released by
// compare-and-delete. When Redis cannot say, the lease is granted: the
// replica fetches alone.
func (c *Cache[V]) Lease(ctx context.Context, key string, ttl time.Duration) (func(), bool) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	lkey := c.leaseKey(key)
	var taken bool
	err := c.t.do(ctx, "lease", func(ctx context.Context) error {
		var err error
		taken, err = c.t.rdb.SetNX(ctx, lkey, token, ttl).Result()
		return err
	})
	switch {
	case err != nil:
		return func() {}, true
	case !taken:
		return nil, false
	}
	return func() {
		// The release must happen even when the fetch used up ctx.
		_ = c.t.do(context.WithoutCancel(ctx), "release", func(ctx context.Context) error {
			return releaseLease.Run(ctx, c.t.rdb, []string{lkey}, token).Err()
		})
	}, true
}
