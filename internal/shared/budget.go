package shared

import (
	"context"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tokenvendor/tokenvendor/internal/limit"
)

// takeTurn is limit.Pace's GCRA in Redis, on Redis's clock, so that every
// replica takes its turns from one budget. KEYS: the budget. ARGV: the
// interval in µs, the burst, the longest wait in µs, and the turns a call
// that may be put off leaves (-1 for a call that must happen). It returns
// the wait in µs, or -1 when no turn is given.
var takeTurn = goredis.NewScript(`
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call("GET", KEYS[1]) or "0")
if tat < now then tat = now end
local next = tat + interval
local wait = next - tonumber(ARGV[2]) * interval - now
local reserve = tonumber(ARGV[4])
if reserve >= 0 then
  if wait + reserve * interval > 0 then return -1 end
elseif wait > tonumber(ARGV[3]) then
  return -1
end
redis.call("SET", KEYS[1], string.format("%.0f", next), "PX", math.ceil((next - now) / 1000) + 1000)
if wait < 0 then wait = 0 end
return wait`)

// Budget is the pace of STS calls counted across replicas, in Redis; while
// Redis does not answer, each replica keeps its own pace.
type Budget struct {
	t     *Tier
	key   string
	local *limit.Pace
}

// NewBudget returns a budget with local's rate, burst and reserve.
func NewBudget(t *Tier, local *limit.Pace) *Budget {
	return &Budget{t: t, key: t.cfg.Prefix + "sts-budget", local: local}
}

// Take is limit.Pace.Take across replicas.
func (b *Budget) Take(ctx context.Context, spare bool, maxWait time.Duration) (time.Duration, bool) {
	reserve := "-1"
	if spare {
		reserve = strconv.Itoa(b.local.Reserve())
	}
	var wait int64
	err := b.t.do(ctx, "budget", false, func(ctx context.Context) error {
		var err error
		wait, err = takeTurn.Run(ctx, b.t.rdb, []string{b.key}, b.local.Interval().Microseconds(),
			b.local.Burst(), maxWait.Microseconds(), reserve).Int64()
		return err
	})
	if err != nil {
		return b.local.Take(ctx, spare, maxWait)
	}
	if wait < 0 {
		return 0, false
	}
	return time.Duration(wait) * time.Microsecond, true
}
