package shared

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tokenvendor/tokenvendor/internal/cache"
	"github.com/tokenvendor/tokenvendor/internal/seal"
)

// acquire looks an entry up and, unless it finds a value that lives longer
// than asked or the note of a failed fetch, takes the lease: one round trip.
// Its own lease, taken by an earlier attempt that timed out, is its own
// again. A value minted under another revision of its group (the tenant
// changed since) does not count. A revision the replica knows beyond
// Redis's (Redis was not told, or lost it) is written first. KEYS: entry,
// note, lease, the group's revision. ARGV: the lease's token, its life in
// ms, the least remaining life in ms a value must have, "1" to take the
// lease whatever is stored, and the revision the replica knows. It returns
// the value, the note, 1 when the lease is the caller's, and the group's
// revision.
var acquire = goredis.NewScript(`
local rev = tonumber(redis.call("GET", KEYS[4]) or "0")
if tonumber(ARGV[5]) > rev then
  rev = tonumber(ARGV[5])
  redis.call("SET", KEYS[4], ARGV[5])
end
rev = string.format("%.0f", rev)
if ARGV[4] ~= "1" then
  local v = redis.call("GET", KEYS[1])
  if v then
    local ttl = redis.call("PTTL", KEYS[1])
    if string.match(v, "^(%d+):") ~= rev or (ttl >= 0 and ttl <= tonumber(ARGV[3])) then v = false end
  end
  local note = redis.call("GET", KEYS[2])
  if v or note then return {v, note, 0, rev, 0} end
end
local holder = redis.call("GET", KEYS[3])
if holder == ARGV[1] then return {false, false, 1, rev, 0} end
if holder then return {false, false, 0, rev, redis.call("PTTL", KEYS[3])} end
redis.call("SET", KEYS[3], ARGV[1], "PX", ARGV[2])
return {false, false, 1, rev, 0}`)

// renew keeps a lease alive while it is still the caller's. KEYS: the
// lease. ARGV: the token, the life in ms.
var renew = goredis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end
return 0`)

// finish stores a value or a note, unless the group's revision moved since
// the lease was taken (what was fetched may be a suspended tenant's); gives
// the lease back if it is still the caller's; and tells the watchers: one
// round trip. A notice Redis refuses (an ACL without the channel) leaves the
// watchers to poll; it does not fail the store. KEYS: entry, note, lease,
// the group's revision. ARGV: "value", "note" or "release"; the value or
// the note; its life in ms; the lease's token; the channel; the message;
// the revision the lease was taken under.
var finish = goredis.NewScript(`
local current = (redis.call("GET", KEYS[4]) or "0") == ARGV[7]
if ARGV[1] == "value" and current then
  redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[3])
  redis.call("DEL", KEYS[2])
elseif ARGV[1] == "note" and current then
  redis.call("SET", KEYS[2], ARGV[2], "PX", ARGV[3])
end
if redis.call("GET", KEYS[3]) == ARGV[4] then redis.call("DEL", KEYS[3]) end
redis.pcall("PUBLISH", ARGV[5], ARGV[6])
return 1`)

// betterBy is how much longer than the process's own a value in Redis must
// live to be taken instead of refreshing: Redis keeps an entry's remaining
// life to the millisecond, so the process's own entry reads a little less.
const betterBy = time.Second

// Cache keeps values of type V in Redis, sealed: it is the cache.Shared of
// the credential cache. Each value is one Redis key, the prefix and the
// key's group inside a hash tag and then its id; its lease and the note of
// a failed fetch are the same key with ":lease" and ":failed" after it, and
// the group's revision is "<prefix>{<group>}:rev", so that a group's keys
// land in one cluster slot while groups spread over the cluster. The value
// is the group's revision when it was minted, a colon, and the sealed JSON
// of the value with its times, bound to its Redis key and that revision. A
// note holds only "recoverable" or "refused".
type Cache[V any] struct {
	t *Tier
}

// NewCache returns the tier's store of values of type V.
func NewCache[V any](t *Tier) *Cache[V] { return &Cache[V]{t: t} }

var _ cache.Shared[int] = (*Cache[int])(nil)

// EntryKey is the Redis key of key's value.
func (c *Cache[V]) EntryKey(key cache.Key) string {
	if key.Group == "" {
		return c.t.cfg.Prefix + "{" + key.ID + "}"
	}
	return c.t.cfg.Prefix + "{" + key.Group + "}:" + key.ID
}

// revisionKey is the Redis key of a group's revision.
func (t *Tier) revisionKey(group string) string { return t.cfg.Prefix + "{" + group + "}:rev" }

// keys are the Redis keys of key: entry, note, lease, the group's revision.
func (c *Cache[V]) keys(key cache.Key) []string {
	rkey := c.EntryKey(key)
	tag := key.Group
	if tag == "" {
		tag = key.ID
	}
	return []string{rkey, rkey + ":failed", rkey + ":lease", c.t.revisionKey(tag)}
}

// Notes of a failed fetch.
const (
	noteRecoverable = "recoverable"
	noteRefused     = "refused"
)

// Watch wakes the caller when another replica stores key or gives its lease
// back, through the replica's one subscription.
func (c *Cache[V]) Watch(key cache.Key) (<-chan struct{}, func()) {
	return c.t.notices.watch(c.EntryKey(key))
}

// Acquire looks key up and takes its lease when the answer calls for a
// fetch. A value that does not open (moved under another key, altered, or
// sealed with a key no longer in the ring) is counted as rejected and
// fetched over. When Redis cannot answer, the lease is granted and stores
// nothing: the replica fetches alone.
func (c *Cache[V]) Acquire(ctx context.Context, key cache.Key, q cache.Query) cache.Acquired[V] {
	keys := c.keys(key)
	var b [16]byte
	_, _ = rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	least := int64(0)
	if !q.After.IsZero() {
		least = max(0, q.After.Sub(c.t.cfg.Now())+betterBy).Milliseconds()
	}
	known := int64(0)
	if key.Group != "" && c.t.cfg.KnownRevision != nil {
		known = c.t.cfg.KnownRevision(key.Group)
	}
	for {
		force := "0"
		if q.Force {
			force = "1"
		}
		var got []any
		err := c.t.do(ctx, "get", true, func(ctx context.Context) error {
			var err error
			got, err = acquire.Run(ctx, c.t.rdb, keys, token, c.t.leaseLife().Milliseconds(), least, force, known).Slice()
			return err
		})
		if err != nil || len(got) != 5 {
			c.t.lookups.WithLabelValues("error").Inc()
			return cache.Acquired[V]{Lease: alone[V]{}}
		}
		rev, _ := got[3].(string)
		if n, _ := strconv.ParseInt(rev, 10, 64); n > known && key.Group != "" && c.t.cfg.Revisions != nil {
			c.t.cfg.Revisions(key.Group, n) // before any fetch: the tenant may have been suspended
		}
		var a cache.Acquired[V]
		if note, ok := got[1].(string); ok {
			a.Failure = &cache.Failure{Recoverable: note == noteRecoverable}
		}
		if stored, ok := got[0].(string); ok {
			s, err := c.open(keys[0], stored)
			if err != nil {
				q.Force = true // fetch over what cannot be served
				continue
			}
			a.Value, a.Fetched, a.Expires = s.Value, s.Fetched, s.Expires
		}
		switch {
		case !a.Expires.IsZero():
			c.t.lookups.WithLabelValues("hit").Inc()
		default:
			c.t.lookups.WithLabelValues("miss").Inc()
		}
		if taken, _ := got[2].(int64); taken == 1 {
			a.Lease = c.hold(keys, token, rev, q.Lease+2*c.t.cfg.Timeout)
		} else if ms, _ := got[4].(int64); ms > 0 {
			a.Lapse = time.Duration(ms) * time.Millisecond
		}
		return a
	}
}

// open unseals a stored value of rkey ("<revision>:<sealed>"), counting and
// logging one that does not open.
func (c *Cache[V]) open(rkey, stored string) (cache.Stored[V], error) {
	var v cache.Stored[V]
	rev, sealed, ok := strings.Cut(stored, ":")
	err := errors.New("no revision")
	if ok {
		var plain []byte
		plain, err = c.t.cfg.Keys.Open([]byte(sealed), bound(rkey, rev))
		if err == nil {
			err = json.Unmarshal(plain, &v)
		}
	}
	if err != nil {
		c.t.lookups.WithLabelValues("rejected").Inc()
		reason := "does not open"
		if errors.Is(err, seal.ErrUnknownKey) {
			reason = "sealed with a key not in key_file"
		}
		c.t.rejected(rkey, reason)
	}
	return v, err
}

// bound is what a value is sealed to: its Redis key and its revision, so
// that it opens under no other key and with no other revision.
func bound(rkey, rev string) []byte { return []byte(rkey + "#" + rev) }

// alone is the lease of a replica that fetches without Redis: it stores
// nothing.
type alone[V any] struct{}

func (alone[V]) Store(context.Context, cache.Stored[V]) {}
func (alone[V]) Release(context.Context)                {}

// lease is a replica's lease on one entry, kept alive until it is given
// back or its longest life has passed.
type lease[V any] struct {
	c     *Cache[V]
	keys  []string // entry, note, lease, revision
	token string
	rev   string // the group's revision when the lease was taken
	stop  context.CancelFunc
}

// leaseLife is how long a lease lasts unless its holder renews it: a
// holder that lost Redis lets its waiters take over that soon.
func (t *Tier) leaseLife() time.Duration { return max(8*t.cfg.Timeout, 2*time.Second) }

// hold starts keeping a lease just taken alive, every third of its life,
// for longest at most.
func (c *Cache[V]) hold(keys []string, token, rev string, longest time.Duration) *lease[V] {
	ctx, stop := context.WithTimeout(context.Background(), longest)
	l := &lease[V]{c: c, keys: keys, token: token, rev: rev, stop: stop}
	life := c.t.leaseLife()
	go func() {
		t := time.NewTicker(life / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = c.t.do(ctx, "lease", true, func(ctx context.Context) error {
					return renew.Run(ctx, c.t.rdb, keys[2:3], token, life.Milliseconds()).Err()
				})
			}
		}
	}()
	return l
}

// Store seals s's value and keeps it until it expires, the Redis TTL its
// remaining life and never more, dropping the note of an earlier failure;
// or, for a failure, writes the note alone, for as long as it says. Either
// way it gives the lease back and tells the watchers.
func (l *lease[V]) Store(ctx context.Context, s cache.Stored[V]) {
	l.stop()
	c := l.c
	if f := s.Failure; f != nil {
		note := noteRefused
		if f.Recoverable {
			note = noteRecoverable
		}
		if ttl := f.Until.Sub(c.t.cfg.Now()); ttl > 0 {
			l.finish(ctx, "set", "note", note, ttl)
			return
		}
		l.Release(ctx)
		return
	}
	ttl := s.Expires.Sub(c.t.cfg.Now())
	plain, err := json.Marshal(cache.Stored[V]{Value: s.Value, Fetched: s.Fetched, Expires: s.Expires})
	if err != nil || ttl <= 0 {
		if err != nil {
			c.t.log.Error("shared cache entry not encodable; not stored", "err", err)
		}
		l.Release(ctx)
		return
	}
	sealed, err := c.t.cfg.Keys.Seal(plain, bound(l.keys[0], l.rev))
	if err != nil {
		c.t.log.Error("shared cache entry not sealed; not stored", "err", err)
		l.Release(ctx)
		return
	}
	l.finish(ctx, "set", "value", l.rev+":"+string(sealed), ttl)
}

// Release gives the lease back and tells the watchers.
func (l *lease[V]) Release(ctx context.Context) {
	l.stop()
	l.finish(ctx, "release", "release", "", 0)
}

func (l *lease[V]) finish(ctx context.Context, op, mode, payload string, ttl time.Duration) {
	c := l.c
	ms := strconv.FormatInt(max(1, ttl.Milliseconds()), 10)
	_ = c.t.do(ctx, op, true, func(ctx context.Context) error {
		return finish.Run(ctx, c.t.rdb, l.keys, mode, payload, ms, l.token, c.t.notices.stored, l.keys[0], l.rev).Err()
	})
}
