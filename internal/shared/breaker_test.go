package shared

import (
	"testing"
	"time"
)

func newBreaker() *breaker {
	b := &breaker{}
	b.init()
	return b
}

func TestBreakerTellsAnOutageFromLoad(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for _, tc := range []struct {
		name     string
		failures func(b *breaker) // each at now, none the probe
		open     bool
	}{
		{name: "one slow answer while Redis answers others", open: false, failures: func(b *breaker) {
			b.success(now, false)
			b.failure(now, false, false, true)
		}},
		{name: "timeouts while Redis answers others, a minority of the window", open: false, failures: func(b *breaker) {
			for i := range 40 {
				if i%4 == 0 {
					b.failure(now, false, false, true)
				} else {
					b.success(now, false)
				}
			}
		}},
		{name: "two timeouts in a row", open: false, failures: func(b *breaker) {
			b.failure(now, false, false, false)
			b.failure(now, false, false, false)
		}},
		{name: "answers between timeouts reset the run", open: false, failures: func(b *breaker) {
			for range 4 {
				b.failure(now, false, false, false)
				b.failure(now, false, false, false)
				b.success(now, false)
			}
		}},
		{name: "three timeouts in a row with no answer", open: true, failures: func(b *breaker) {
			for range openConsecutive {
				b.failure(now, false, false, false)
			}
		}},
		{name: "most of a second's operations fail, though Redis answers some", open: true, failures: func(b *breaker) {
			for i := range windowMinOps {
				if i%2 == 0 {
					b.success(now, false)
				} else {
					b.failure(now, false, false, true)
				}
			}
		}},
		{name: "a refusal (no server, AUTH, full)", open: true, failures: func(b *breaker) {
			b.success(now, false)
			b.failure(now, false, true, true)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBreaker()
			gate := b.gate()
			tc.failures(b)
			if b.isOpen() != tc.open {
				t.Fatalf("open = %v, want %v", b.isOpen(), tc.open)
			}
			if (gate.Err() != nil) != tc.open {
				t.Fatalf("gate cancelled = %v, want %v: waiters must act alone at once when it opens", gate.Err() != nil, tc.open)
			}
		})
	}
}

func TestBreakerWindowForgetsOldFailures(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	b := newBreaker()
	for range windowMinOps - 1 {
		b.failure(now, false, false, true)
	}
	// A second later those are out of the window: one more is not most of
	// enough operations.
	b.failure(now.Add(windowSlots*windowSlot), false, false, true)
	if b.isOpen() {
		t.Fatal("failures older than the window opened the breaker")
	}
}

func TestBreakerProbesAndBacksOffWithinOneOutage(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	b := newBreaker()
	if !b.failure(now, false, true, false) {
		t.Fatal("the first opening does not start an outage")
	}
	if _, ok := b.allow(now.Add(breakerBase - time.Millisecond)); ok {
		t.Fatal("an operation ran before the wait was over")
	}
	probe, ok := b.allow(now.Add(breakerBase))
	if !ok || !probe {
		t.Fatal("no probe after the wait")
	}
	if _, ok := b.allow(now.Add(breakerBase)); ok {
		t.Fatal("a second operation ran beside the probe")
	}
	if b.failure(now.Add(breakerBase), true, false, false) {
		t.Fatal("a failed probe started a second outage")
	}
	if _, ok := b.allow(now.Add(2 * breakerBase)); ok {
		t.Fatal("the second wait was no longer than the first")
	}
	probe, _ = b.allow(now.Add(3 * breakerBase))
	if !b.success(now.Add(3*breakerBase), probe) || b.isOpen() {
		t.Fatal("a probe's answer did not close the breaker and announce Redis back")
	}
	if b.gate().Err() != nil {
		t.Fatal("the gate stays cancelled after the breaker closed")
	}
}
