package shared

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// How long the breaker keeps Redis out after it opens: doubling from
// breakerBase to breakerMax within one outage, so that Redis back is used
// again within seconds.
const (
	breakerBase = 500 * time.Millisecond
	breakerMax  = 4 * time.Second
)

// When soft failures (timeouts, cut connections) open the breaker: that
// many in a row with no answer in between, or that share of a window's
// operations once it holds enough of them.
const (
	openConsecutive = 3
	windowSlots     = 10
	windowSlot      = 100 * time.Millisecond // windowSlots of them: one second
	windowMinOps    = 20
	openRatio       = 0.5
)

// quietPeriod is how long the breaker must stay closed for an outage to be
// over; an opening after it is a new outage, logged again.
const quietPeriod = 10 * time.Second

// breaker keeps Redis out after it fails. Closed, every operation runs.
// Open, none does until the wait has passed; then one probe at a time runs,
// and only a probe's success closes it again, so answers to operations that
// started before it opened do not make it flap. Each opening within one
// outage doubles the wait, so a Redis that fails only in part (full, it
// answers reads and refuses writes) is asked less and less often. An
// outage is logged when it starts and when Redis first answers again.
type breaker struct {
	open atomic.Bool // read on every operation without the lock

	mu sync.Mutex
	// gateCtx is cancelled when the breaker opens, cutting short what
	// waits for a connection or an answer.
	gateCtx   context.Context
	closeGate context.CancelFunc
	until     time.Time
	probing   bool
	openings  int // in this outage
	lastOpen  time.Time
	outage    bool // an outage was announced
	back      bool // and its end
	// consecutive counts soft failures since the last answer.
	consecutive int
	window      [windowSlots]windowCount
}

// windowCount is one slot of the failure ratio's window.
type windowCount struct {
	slot          int64 // the time it counts, in windowSlot units
	ops, failures int
}

func (b *breaker) init() { b.gateCtx, b.closeGate = context.WithCancel(context.Background()) }

func (b *breaker) isOpen() bool { return b.open.Load() }

// gate is a context cancelled when the breaker next opens.
func (b *breaker) gate() context.Context {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.gateCtx
}

// allow says whether an operation may run, and whether it is the probe.
func (b *breaker) allow(now time.Time) (probe, ok bool) {
	if !b.open.Load() {
		return false, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open.Load() {
		return false, true
	}
	if b.probing || now.Before(b.until) {
		return false, false
	}
	b.probing = true
	return true, true
}

// success records an answer and reports whether it is the first of an
// announced outage.
func (b *breaker) success(now time.Time, probe bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.count(now, false)
	b.consecutive = 0
	if !probe {
		return false
	}
	b.probing = false
	b.open.Store(false)
	b.gateCtx, b.closeGate = context.WithCancel(context.Background())
	if !b.outage || b.back {
		return false
	}
	b.back = true
	return true
}

// failure records a failed operation, opens the breaker when it should, and
// reports whether that starts an outage. hard is Redis refusing outright;
// alive says Redis answered another operation while this one waited.
func (b *breaker) failure(now time.Time, probe, hard, alive bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.count(now, true)
	if !alive {
		b.consecutive++
	}
	if probe {
		b.probing = false
	} else if b.open.Load() {
		return false // it started before the breaker opened
	}
	if !probe && !hard && b.consecutive < openConsecutive && !b.mostlyFailing(now) {
		return false
	}
	starts := !b.outage || now.Sub(b.lastOpen) >= quietPeriod
	if starts {
		b.openings, b.outage, b.back = 0, true, false
	}
	b.until = now.Add(min(breakerBase<<min(b.openings, 8), breakerMax))
	b.openings++
	b.lastOpen = now
	b.open.Store(true)
	b.closeGate()
	return starts
}

// abandon lets another probe run when this one ended for its caller's sake.
func (b *breaker) abandon(probe bool) {
	if !probe {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
}

// count adds an operation to the window; b.mu is held.
func (b *breaker) count(now time.Time, failed bool) {
	slot := now.UnixNano() / int64(windowSlot)
	w := &b.window[slot%windowSlots]
	if w.slot != slot {
		*w = windowCount{slot: slot}
	}
	w.ops++
	if failed {
		w.failures++
	}
}

// mostlyFailing reports whether the last second's operations are enough to
// judge and fail at openRatio or more; b.mu is held.
func (b *breaker) mostlyFailing(now time.Time) bool {
	slot := now.UnixNano() / int64(windowSlot)
	var ops, failures int
	for _, w := range b.window {
		if slot-w.slot < windowSlots {
			ops += w.ops
			failures += w.failures
		}
	}
	return ops >= windowMinOps && float64(failures) >= openRatio*float64(ops)
}
