package shared

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Pauses of the notices: how long a watcher waits before looking again while
// no subscription can promise to tell it (a poll, only then), how often a
// quiet subscription is pinged, and the longest pause between attempts to
// subscribe again.
const (
	unwatchedPause = 100 * time.Millisecond
	noticePing     = 5 * time.Second
	resubscribeMax = 2 * time.Second
)

// notices is the replica's one subscription to what the other processes
// publish: an entry stored, a lease given back (channel prefix+"stored",
// the entry's Redis key as the message), and a tenant changed (channel
// prefix+"tenants", see AnnounceTenant). Watchers of a key are woken by its
// message; every watcher is woken when the subscription is (re)established
// or lost, for it may have missed one, and the tenants' resync is called.
// While there is no subscription, a watch ends after unwatchedPause: the
// watcher polls.
type notices struct {
	rdb      goredis.UniversalClient
	stored   string
	tenants  string
	onTenant func(group string, rev int64, suspended bool)
	resync   func()
	log      *slog.Logger
	timeout  time.Duration
	ctx      context.Context
	stop     context.CancelFunc
	done     chan struct{}

	mu       sync.Mutex
	ps       *goredis.PubSub // the current subscription, closed to stop it
	live     bool
	watchers map[string]map[chan struct{}]struct{}
}

func startNotices(rdb goredis.UniversalClient, cfg Config) *notices {
	n := &notices{rdb: rdb, stored: cfg.Prefix + "stored", tenants: cfg.Prefix + "tenants", onTenant: cfg.Tenants, resync: cfg.Resync,
		log: cfg.Logger, timeout: cfg.Timeout, done: make(chan struct{}), watchers: map[string]map[chan struct{}]struct{}{}}
	if n.onTenant == nil {
		n.onTenant = func(string, int64, bool) {}
	}
	if n.resync == nil {
		n.resync = func() {}
	}
	n.ctx, n.stop = context.WithCancel(context.Background())
	go n.run()
	return n
}

func (n *notices) close() {
	n.stop()
	n.mu.Lock()
	if n.ps != nil {
		n.ps.Close() // a read in progress ignores the context
	}
	n.mu.Unlock()
	<-n.done
}

// watch returns a channel closed when rkey's message arrives, or the
// subscription changes, or, without one, after unwatchedPause.
func (n *notices) watch(rkey string) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.live {
		t := time.AfterFunc(unwatchedPause, func() { close(ch) })
		return ch, func() { t.Stop() }
	}
	set, ok := n.watchers[rkey]
	if !ok {
		set = map[chan struct{}]struct{}{}
		n.watchers[rkey] = set
	}
	set[ch] = struct{}{}
	return ch, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if set, ok := n.watchers[rkey]; ok {
			if _, ok := set[ch]; ok {
				delete(set, ch)
				if len(set) == 0 {
					delete(n.watchers, rkey)
				}
			}
		}
	}
}

// wake closes the channels of rkey's watchers.
func (n *notices) wake(rkey string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for ch := range n.watchers[rkey] {
		close(ch)
	}
	delete(n.watchers, rkey)
}

// setLive records whether the subscription is in place and wakes every
// watcher: what it waited for may have come while nobody listened.
func (n *notices) setLive(live bool) {
	n.mu.Lock()
	n.live = live
	n.mu.Unlock()
	n.wakeAll()
}

// wakeAll closes every watcher's channel.
func (n *notices) wakeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for rkey, set := range n.watchers {
		for ch := range set {
			close(ch)
		}
		delete(n.watchers, rkey)
	}
}

// run keeps the subscription until close, subscribing again after any
// failure, with growing pauses.
func (n *notices) run() {
	defer close(n.done)
	pause := unwatchedPause
	warned := false
	for n.ctx.Err() == nil {
		wasLive, err := n.subscribe()
		var refused goredis.Error
		switch {
		case err == nil || n.ctx.Err() != nil:
		case errors.As(err, &refused) && !warned:
			warned = true
			n.log.Warn("redis refuses the subscription to its notices (an ACL without the channel pattern &"+n.stored+"?); replicas waiting on another's fetch poll instead",
				"channel", n.stored, "err", err)
		default:
			n.log.Debug("redis notices interrupted; watchers poll until they are back", "err", err)
		}
		n.setLive(false)
		if wasLive {
			pause = unwatchedPause
		}
		select {
		case <-n.ctx.Done():
		case <-time.After(pause):
		}
		pause = min(2*pause, resubscribeMax)
	}
}

// subscribe holds one subscription until it fails or the notices close. A
// subscription that stays quiet is pinged; one that does not answer a ping
// within noticePing is given up.
func (n *notices) subscribe() (wasLive bool, err error) {
	ps := n.rdb.Subscribe(n.ctx)
	defer ps.Close()
	n.mu.Lock()
	n.ps = ps
	n.mu.Unlock()
	if n.ctx.Err() != nil {
		return false, n.ctx.Err()
	}
	sctx, cancel := context.WithTimeout(n.ctx, n.timeout)
	err = ps.Subscribe(sctx, n.stored, n.tenants)
	cancel()
	if err != nil {
		return false, err
	}
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(n.ctx, noticePing)
		var netErr net.Error
		switch {
		case err == nil:
		case errors.As(err, &netErr) && netErr.Timeout() && !pinged:
			pinged = true
			if err := ps.Ping(n.ctx); err != nil {
				return wasLive, err
			}
			continue
		default:
			return wasLive, err
		}
		pinged = false
		switch m := msg.(type) {
		case *goredis.Subscription:
			switch {
			case m.Kind != "subscribe":
			case m.Channel == n.stored:
				wasLive = true
				n.setLive(true)
			case m.Channel == n.tenants:
				n.resync()
			}
		case *goredis.Message:
			switch m.Channel {
			case n.stored:
				n.wake(m.Payload)
			case n.tenants:
				if group, rev, suspended, ok := parseTenantNotice(m.Payload); ok {
					n.onTenant(group, rev, suspended)
				}
			}
		}
	}
}

// tenantNotice is the message of a tenant changed: its group, its new
// revision and whether it is suspended.
func tenantNotice(group string, rev int64, suspended bool) string {
	status := "active"
	if suspended {
		status = "suspended"
	}
	return group + " " + strconv.FormatInt(rev, 10) + " " + status
}

func parseTenantNotice(msg string) (group string, rev int64, suspended, ok bool) {
	parts := strings.Fields(msg)
	if len(parts) != 3 {
		return "", 0, false, false
	}
	rev, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || (parts[2] != "active" && parts[2] != "suspended") {
		return "", 0, false, false
	}
	return parts[0], rev, parts[2] == "suspended", true
}
