package limit_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tokenvendor/tokenvendor/internal/clock"
	"github.com/tokenvendor/tokenvendor/internal/limit"
)

var ctx = context.Background()

func TestAllowSpendsTheBurstThenRefusesWithADelay(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	l, err := limit.New(limit.Config{RPS: 2, Burst: 3, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if ok, _ := l.Allow(ctx, "svc-a"); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := l.Allow(ctx, "svc-a")
	if ok || wait <= 0 || wait > 500*time.Millisecond {
		t.Fatalf("after the burst: ok=%v wait=%s, want a refusal of at most 500ms", ok, wait)
	}
	if ok, _ := l.Allow(ctx, "svc-b"); !ok {
		t.Fatal("another key was refused in the same instant")
	}
	clk.Add(wait)
	if ok, _ := l.Allow(ctx, "svc-a"); !ok {
		t.Fatal("refused after waiting the delay it gave")
	}
}

func TestZeroRateIsOff(t *testing.T) {
	l, err := limit.New(limit.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		if ok, _ := l.Allow(ctx, "k"); !ok {
			t.Fatal("an off limiter refused")
		}
	}
}

func TestMemoryStaysBoundedWithManyKeys(t *testing.T) {
	l, err := limit.New(limit.Config{RPS: 1, MaxKeys: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100_000 {
		l.Allow(ctx, fmt.Sprint("caller-", i))
	}
	if n := l.Len(); n != 10_000 {
		t.Fatalf("keys tracked = %d, want the bound 10000", n)
	}
}

func TestPaceGivesWaitingCallsTurnsInOrderAndSpareCallsOnlyWhatIsLeft(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	p, err := limit.NewPace(10, 4, clk.Now) // a turn every 100 ms, bursts of 4, spare calls leave 2
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Take(ctx, true, 0); !ok {
		t.Fatal("a spare call was refused a full bucket")
	}
	// Three callers take the rest of the burst, then wait in order.
	var waits []time.Duration
	for range 6 {
		w, ok := p.Take(ctx, false, time.Second)
		if !ok {
			t.Fatal("a waiting call was refused a turn within its wait")
		}
		waits = append(waits, w)
	}
	want := []time.Duration{0, 0, 0, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}
	if !slices.Equal(waits, want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
	if _, ok := p.Take(ctx, false, 350*time.Millisecond); ok {
		t.Fatal("a call was given a turn beyond its longest wait")
	}
	// While callers wait, a spare call gets nothing.
	if _, ok := p.Take(ctx, true, 0); ok {
		t.Fatal("a spare call took a turn while callers waited")
	}
	// Once the queue is gone and half the burst is back, it does.
	clk.Add(300*time.Millisecond + 3*100*time.Millisecond)
	if _, ok := p.Take(ctx, true, 0); !ok {
		t.Fatal("a spare call was refused with the reserve free")
	}
	if _, ok := p.Take(ctx, true, 0); ok {
		t.Fatal("a spare call ate into the reserve")
	}
}
