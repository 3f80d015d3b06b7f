package testsupport

import (
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestPollReturnsOnceCondHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start, calls := time.Now(), 0
		err := Poll(time.Minute, func() error {
			if calls++; calls < 4 {
				return errors.New("not yet")
			}
			return nil
		})
		// At once, then after 5, 10 and 20 ms.
		if err != nil || calls != 4 || time.Since(start) != 35*time.Millisecond {
			t.Fatalf("Poll = %v after %d calls and %s, want nil after 4 and 35ms", err, calls, time.Since(start))
		}
	})
}

func TestPollGivesUpAtTheTimeoutWithTheLastError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start, calls := time.Now(), 0
		err := Poll(2*time.Second, func() error {
			calls++
			return errors.New("still 3 of 5")
		})
		if err == nil || !strings.Contains(err.Error(), "still 3 of 5") || !strings.Contains(err.Error(), "2s") {
			t.Fatalf("Poll = %v, want the last error and the timeout", err)
		}
		if time.Since(start) != 2*time.Second {
			t.Errorf("gave up after %s, want 2s", time.Since(start))
		}
		// 5, 10, …, 160 ms, then every 250 ms: light on a busy machine.
		if calls > 16 {
			t.Errorf("%d calls in 2 s, want at most 16", calls)
		}
	})
}

func TestPollStopsAtAFinalError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		exited := errors.New("exited")
		start, calls := time.Now(), 0
		err := Poll(time.Minute, func() error { calls++; return Final(exited) })
		if err != exited || calls != 1 || time.Since(start) != 0 {
			t.Fatalf("Poll = %v after %d calls and %s, want the final error at once", err, calls, time.Since(start))
		}
	})
}

// recorder is a test that records its failure instead of failing.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatal(args ...any) {
	r.failed = args[0].(error).Error()
}

func TestEventuallyFailsTheTestWithWhatWasSeen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{TB: t}
		Eventually(r, time.Second, func() error { return errors.New("2 of 3 replicas") })
		if !strings.Contains(r.failed, "2 of 3 replicas") {
			t.Fatalf("failed with %q, want what cond saw", r.failed)
		}
		r = &recorder{TB: t}
		Eventually(r, time.Second, func() error { return nil })
		if r.failed != "" {
			t.Fatalf("failed with %q though cond held", r.failed)
		}
	})
}
