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
		failures func(b *breaker) verdict // each at now, none the probe; the last verdict
		want     verdict
	}{
		{name: "one slow answer while Redis answers others", want: keep, failures: func(b *breaker) verdict {
			b.success(now, false)
			return b.failure(now, false, false, true)
		}},
		{name: "timeouts while Redis answers others, a minority of the window", want: keep, failures: func(b *breaker) verdict {
			v := keep
			for i := range 40 {
				if i%4 == 0 {
					v = max(v, b.failure(now, false, false, true))
				} else {
					b.success(now, false)
				}
			}
			return v
		}},
		{name: "two timeouts in a row", want: keep, failures: func(b *breaker) verdict {
			b.failure(now, false, false, false)
			return b.failure(now, false, false, false)
		}},
		{name: "answers between timeouts reset the run", want: keep, failures: func(b *breaker) verdict {
			v := keep
			for range 4 {
				v = max(v, b.failure(now, false, false, false), b.failure(now, false, false, false))
				b.success(now, false)
			}
			return v
		}},
		{name: "three timeouts in a row with no answer: suspect", want: suspect, failures: func(b *breaker) verdict {
			v := keep
			for range openConsecutive + 2 { // one check, however many more come meanwhile
				if got := b.failure(now, false, false, false); got != keep {
					if v != keep {
						return opened // a second check asked for
					}
					v = got
				}
			}
			return v
		}},
		{name: "most of a second's operations fail, though Redis answers some: suspect", want: suspect, failures: func(b *breaker) verdict {
			v := keep
			for i := range windowMinOps {
				if i%2 == 0 {
					b.success(now, false)
				} else {
					v = max(v, b.failure(now, false, false, true))
				}
			}
			return v
		}},
		{name: "a refusal (no server, AUTH, full)", want: outage, failures: func(b *breaker) verdict {
			b.success(now, false)
			return b.failure(now, false, true, true)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBreaker()
			gate := b.gate()
			if got := tc.failures(b); got != tc.want {
				t.Fatalf("verdict %d, want %d", got, tc.want)
			}
			open := tc.want == outage
			if b.isOpen() != open || (gate.Err() != nil) != open {
				t.Fatalf("open %v, gate cancelled %v; want %v: waiters must act alone at once when it opens", b.isOpen(), gate.Err() != nil, open)
			}
		})
	}
}

func TestASuspectBreakerOpensOnlyWhenRedisDoesNotAnswerTheCheck(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	suspectOf := func() *breaker {
		b := newBreaker()
		for range openConsecutive {
			b.failure(now, false, false, false)
		}
		return b
	}
	b := suspectOf()
	if v := b.confirmed(now, true); v != keep || b.isOpen() {
		t.Fatalf("the check answered (the replica's own load): verdict %d, open %v; want closed", v, b.isOpen())
	}
	// The run starts again: two more timeouts are not three.
	b.failure(now, false, false, false)
	if v := b.failure(now, false, false, false); v != keep {
		t.Fatalf("after an answered check, two timeouts gave verdict %d", v)
	}
	b = suspectOf()
	if v := b.confirmed(now, false); v != outage || !b.isOpen() {
		t.Fatalf("the check failed too: verdict %d, open %v; want an outage", v, b.isOpen())
	}
}

func TestARedisThatKeepsMakingTheBreakerSuspectIsTooSlowToHelp(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	b := newBreaker()
	var last verdict
	for i := range maxCleared {
		for range openConsecutive {
			b.failure(now, false, false, false)
		}
		last = b.confirmed(now.Add(time.Duration(i)*time.Second), true)
	}
	if last != outage || !b.isOpen() {
		t.Fatalf("after %d suspicions in %s each answered by the check: verdict %d, open %v; want an outage", maxCleared, quietPeriod, last, b.isOpen())
	}
	// Suspicions far apart are each the replica's own load.
	b = newBreaker()
	for i := range maxCleared {
		for range openConsecutive {
			b.failure(now, false, false, false)
		}
		last = b.confirmed(now.Add(time.Duration(i)*2*quietPeriod), true)
	}
	if last != keep || b.isOpen() {
		t.Fatalf("suspicions %s apart: verdict %d, open %v; want closed", 2*quietPeriod, last, b.isOpen())
	}
}

func TestBreakerWindowForgetsOldFailures(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	b := newBreaker()
	for range windowMinOps - 1 {
		b.failure(now, false, false, true)
	}
	// A second later those are out of the window: one more is not most of
	// enough operations. (Within it, it would be: see the suspect case.)
	if v := b.failure(now.Add(windowSlots*windowSlot), false, false, true); v != keep {
		t.Fatalf("failures older than the window made the breaker suspect (verdict %d)", v)
	}
}

func TestBreakerProbesAndBacksOffWithinOneOutage(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	b := newBreaker()
	if b.failure(now, false, true, false) != outage {
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
	if b.failure(now.Add(breakerBase), true, false, false) != opened {
		t.Fatal("a failed probe did not open it again, within the same outage")
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
