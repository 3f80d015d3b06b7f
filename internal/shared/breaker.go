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

// maxCleared is how many suspicions within quietPeriod Redis may clear by
// answering the check before the breaker opens anyway.
const maxCleared = 3

// breaker keeps Redis out after it fails. Closed, every operation runs.
// Refusals open it; soft failures make it suspect, and it opens only when a
// check that Redis answers at all fails too.
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
	// confirming: a check that Redis answers at all is under way;
	// cleared: checks answered since firstCleared.
	confirming   bool
	cleared      int
	firstCleared time.Time
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

// verdict is what a failure makes of the breaker.
type verdict int

const (
	keep    verdict = iota // closed, or already open: nothing to do
	suspect                // soft failures call for a check that Redis answers at all
	opened                 // opened, within an outage already announced
	outage                 // opened, starting an outage
)

// failure records a failed operation and says what it makes of the
// breaker. hard is Redis refusing outright: it opens. alive says Redis
// answered another operation while this one waited. Soft failures (three
// in a row with no answer, or most of a second's operations) make it
// suspect: the caller checks whether Redis answers at all (confirmed), for
// a replica starved of CPU sees every answer late, and that is its own
// load, not an outage.
func (b *breaker) failure(now time.Time, probe, hard, alive bool) verdict {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.count(now, true)
	if !alive {
		b.consecutive++
	}
	if probe {
		b.probing = false
	} else if b.open.Load() {
		return keep // it started before the breaker opened
	}
	if probe || hard {
		return b.trip(now)
	}
	if b.confirming || (b.consecutive < openConsecutive && !b.mostlyFailing(now)) {
		return keep
	}
	b.confirming = true
	return suspect
}

// confirmed ends the check a suspect verdict called for: answered says
// Redis answered it, and the failures were load; otherwise it opens. A
// Redis that keeps making it suspect, though it answers each check
// (maxCleared times within quietPeriod), answers, but too slowly to help:
// it opens too.
func (b *breaker) confirmed(now time.Time, answered bool) verdict {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.confirming = false
	if answered {
		b.consecutive = 0
		b.window = [windowSlots]windowCount{}
		if now.Sub(b.firstCleared) > quietPeriod {
			b.firstCleared, b.cleared = now, 0
		}
		b.cleared++
		if b.cleared < maxCleared {
			return keep
		}
	}
	b.cleared = 0
	if b.open.Load() {
		return keep
	}
	return b.trip(now)
}

// trip opens the breaker; b.mu is held.
func (b *breaker) trip(now time.Time) verdict {
	starts := !b.outage || now.Sub(b.lastOpen) >= quietPeriod
	if starts {
		b.openings, b.outage, b.back = 0, true, false
	}
	b.until = now.Add(min(breakerBase<<min(b.openings, 8), breakerMax))
	b.openings++
	b.lastOpen = now
	b.open.Store(true)
	b.closeGate()
	if starts {
		return outage
	}
	return opened
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
