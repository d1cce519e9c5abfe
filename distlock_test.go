package stampede

import (
	"testing"
	"time"
)

func TestRetryStrategies(t *testing.T) {
	if _, again := NoRetry().Backoff(1); again {
		t.Error("NoRetry retried")
	}

	c := ConstantBackoff(5*time.Millisecond, 3)
	for n := 1; n <= 2; n++ {
		if d, again := c.Backoff(n); !again || d != 5*time.Millisecond {
			t.Errorf("ConstantBackoff.Backoff(%d) = %v, %v; want 5ms, true", n, d, again)
		}
	}
	if _, again := c.Backoff(3); again {
		t.Error("ConstantBackoff(_, 3) retried after the third attempt")
	}

	e := ExponentialBackoff(10*time.Millisecond, 80*time.Millisecond, 1000)
	for n := 1; n < 1000; n++ {
		b := min(10*time.Millisecond<<min(n-1, 20), 80*time.Millisecond)
		d, again := e.Backoff(n)
		if !again || d < b/2 || d > b {
			t.Fatalf("ExponentialBackoff.Backoff(%d) = %v, %v; want within [%v, %v]", n, d, again, b/2, b)
		}
	}
	if _, again := e.Backoff(1000); again {
		t.Error("ExponentialBackoff(_, _, 1000) retried after the last attempt")
	}
	// A huge maximum must not overflow into negative waits.
	huge := ExponentialBackoff(time.Millisecond, 1<<62, 200)
	for n := 1; n < 200; n++ {
		if d, _ := huge.Backoff(n); d <= 0 {
			t.Fatalf("Backoff(%d) = %v, want > 0", n, d)
		}
	}
}
