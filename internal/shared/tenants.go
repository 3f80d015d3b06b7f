package shared

import (
	"context"
	"errors"
	"fmt"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// announce raises a group's revision to ARGV[1] (never lowers it) and
// publishes the change. KEYS: the group's revision. ARGV: the revision, the
// channel, the message.
var announce = goredis.NewScript(`
if tonumber(ARGV[1]) > tonumber(redis.call("GET", KEYS[1]) or "0") then
  redis.call("SET", KEYS[1], ARGV[1])
end
redis.pcall("PUBLISH", ARGV[2], ARGV[3])
return 1`)

// AnnounceTenant tells every replica that a tenant group changed, at store
// revision rev: its revision in Redis, which every lookup of its entries
// reads in the same round trip (so that an entry minted before is no longer
// served, and the replica reads the store before it calls STS), and a notice
// on the tenants channel. Then it deletes the group's entries. The revision
// is written before anything else can fail: a replica that misses the
// notice still finds it.
func (t *Tier) AnnounceTenant(ctx context.Context, group string, rev int64, suspended bool) error {
	err := t.do(ctx, "set", true, func(ctx context.Context) error {
		return announce.Run(ctx, t.rdb, []string{t.revisionKey(group)}, rev, t.notices.tenants, tenantNotice(group, rev, suspended)).Err()
	})
	if err != nil {
		return err
	}
	if err := t.dropGroup(ctx, group); err != nil {
		return fmt.Errorf("%w: %w", ErrEntriesKept, err)
	}
	return nil
}

// ErrEntriesKept is an announcement made whose group's entries could not
// be deleted: every replica was told, and the entries, minted under the
// older revision, are never served; they expire with their credentials.
var ErrEntriesKept = errors.New("replicas told, but the tenant's entries in Redis not deleted")

// dropGroup deletes a group's entries, leases and notes (not its
// revision), on every primary of a cluster.
func (t *Tier) dropGroup(ctx context.Context, group string) error {
	pattern := globEscape(t.cfg.Prefix+"{"+group+"}") + ":*"
	keep := t.revisionKey(group)
	drop := func(ctx context.Context, c *goredis.Client) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			if k := iter.Val(); k != keep {
				if err := c.Del(ctx, k).Err(); err != nil {
					return err
				}
			}
		}
		return iter.Err()
	}
	return t.do(ctx, "release", false, func(ctx context.Context) error {
		switch c := t.rdb.(type) {
		case *goredis.ClusterClient:
			return c.ForEachMaster(ctx, drop)
		case *goredis.Client:
			return drop(ctx, c)
		}
		return nil
	})
}

// globEscape quotes the characters SCAN's MATCH treats as a pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
