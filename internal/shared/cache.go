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
// cache key inside a hash tag; its lease and the note of a failed fetch are
// the same key with ":lease" and ":failed" after it, so all three land in
// one cluster slot while different keys spread over the cluster. The value
// is the sealed JSON of the value with its times, bound to its Redis key. A
// note holds only "recoverable" or "refused".
type Cache[V any] struct {
	t *Tier
}

// NewCache returns the tier's store of values of type V.
func NewCache[V any](t *Tier) *Cache[V] { return &Cache[V]{t: t} }

var _ cache.Shared[int] = (*Cache[int])(nil)

func (c *Cache[V]) entryKey(key string) string { return c.t.cfg.Prefix + "{" + key + "}" }

func (c *Cache[V]) leaseKey(key string) string { return c.entryKey(key) + ":lease" }

func (c *Cache[V]) failedKey(key string) string { return c.entryKey(key) + ":failed" }

// Load returns the value under key when there is one that opens and has
// not expired, and the note of a failed fetch when there is one. A value
// that does not open (moved under another key, altered, or sealed with a
// key no longer in the ring) is counted as rejected and left out.
func (c *Cache[V]) Load(ctx context.Context, key string) (cache.Stored[V], bool) {
	var s cache.Stored[V]
	rkey, fkey := c.entryKey(key), c.failedKey(key)
	var got []any
	err := c.t.do(ctx, "get", func(ctx context.Context) error {
		var err error
		got, err = c.t.rdb.MGet(ctx, rkey, fkey).Result()
		return err
	})
	if err != nil {
		c.t.lookups.WithLabelValues("error").Inc()
		return s, false
	}
	if note, ok := got[1].(string); ok {
		s.Failure = &cache.Failure{Recoverable: note == noteRecoverable}
	}
	sealed, ok := got[0].(string)
	if !ok {
		c.t.lookups.WithLabelValues("miss").Inc()
		return s, s.Failure != nil
	}
	plain, err := c.t.cfg.Keys.Open([]byte(sealed), []byte(rkey))
	var v cache.Stored[V]
	if err == nil {
		err = json.Unmarshal(plain, &v)
	}
	if err != nil {
		c.t.lookups.WithLabelValues("rejected").Inc()
		reason := "does not open"
		if errors.Is(err, seal.ErrUnknownKey) {
			reason = "sealed with a key not in key_file"
		}
		c.t.rejected(rkey, reason)
		return s, s.Failure != nil
	}
	if !v.Expires.After(c.t.cfg.Now()) {
		c.t.lookups.WithLabelValues("miss").Inc()
		return s, s.Failure != nil
	}
	c.t.lookups.WithLabelValues("hit").Inc()
	s.Value, s.Fetched, s.Expires = v.Value, v.Fetched, v.Expires
	return s, true
}

// Notes of a failed fetch.
const (
	noteRecoverable = "recoverable"
	noteRefused     = "refused"
)

// Store seals s's value and keeps it under key until it expires, the Redis
// TTL its remaining life and never more, and drops the note of an earlier
// failure; or, for a failure, writes the note alone, for as long as it says.
func (c *Cache[V]) Store(ctx context.Context, key string, s cache.Stored[V]) {
	if f := s.Failure; f != nil {
		ttl := f.Until.Sub(c.t.cfg.Now())
		note := noteRefused
		if f.Recoverable {
			note = noteRecoverable
		}
		if ttl > 0 {
			_ = c.t.do(ctx, "set", func(ctx context.Context) error {
				return c.t.rdb.Set(ctx, c.failedKey(key), note, ttl).Err()
			})
		}
		return
	}
	ttl := s.Expires.Sub(c.t.cfg.Now())
	if ttl <= 0 {
		return
	}
	plain, err := json.Marshal(cache.Stored[V]{Value: s.Value, Fetched: s.Fetched, Expires: s.Expires})
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
		_, err := c.t.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.Set(ctx, rkey, sealed, ttl)
			p.Del(ctx, c.failedKey(key))
			return nil
		})
		return err
	})
}

// Lease takes key's lease (SET NX PX) with a token of its own, released by
// compare-and-delete. It lasts ttl and two Redis timeouts more, for the
// holder's look before its fetch and its store after. When Redis cannot
// say, the lease is granted: the replica fetches alone.
func (c *Cache[V]) Lease(ctx context.Context, key string, ttl time.Duration) (func(), bool) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	lkey := c.leaseKey(key)
	var taken bool
	err := c.t.do(ctx, "lease", func(ctx context.Context) error {
		var err error
		taken, err = c.t.rdb.SetNX(ctx, lkey, token, ttl+2*c.t.cfg.Timeout).Result()
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
