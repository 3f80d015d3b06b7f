package testsupport

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// Poll calls cond until it returns nil, and returns cond's last error when
// timeout passes first, or at once when it is Final. It polls at once, then
// after 5 ms, doubling up to 250 ms: quick for what is nearly there, light
// on a busy machine for what takes seconds. For code that has no test to
// fail (TestMain, a peer starting); tests use Eventually.
func Poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	pause := 5 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		var f final
		if errors.As(err, &f) {
			return f.err
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("not within %s: %w", timeout, err)
		}
		time.Sleep(min(pause, time.Until(deadline)))
		pause = min(2*pause, 250*time.Millisecond)
	}
}

// Final marks err as the end of a Poll: waiting longer cannot help (the
// peer exited; an answer no retry will change).
func Final(err error) error { return final{err} }

type final struct{ err error }

func (f final) Error() string { return f.err.Error() }
func (f final) Unwrap() error { return f.err }

// Eventually waits until cond returns nil, as Poll does, and fails t with
// cond's last error, which says what was seen, when timeout passes first
// or the error is Final. Call it from the test's goroutine.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	if err := Poll(timeout, cond); err != nil {
		t.Fatal(err)
	}
}
