package stampede

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stampede-go/stampede/internal/redistest"
)

func TestLeaseValueRoundTrip(t *testing.T) {
	before := time.Now().Truncate(time.Millisecond)
	v := newLeaseValue()
	m, ok := parseLeaseValue(v)
	if !ok {
		t.Fatalf("parseLeaseValue(%q) failed", v)
	}
	if len(m.Token) != tokenLen || strings.Trim(m.Token, "0123456789abcdef") != "" {
		t.Errorf("token %q: want %d hex digits", m.Token, tokenLen)
	}
	if m.Host != host() || m.PID != os.Getpid() {
		t.Errorf("got host %q pid %d, want %q %d", m.Host, m.PID, host(), os.Getpid())
	}
	if m.AcquiredAt.Before(before) || m.AcquiredAt.After(time.Now()) {
		t.Errorf("acquired at %v, want between %v and now", m.AcquiredAt, before)
	}
	if w := newLeaseValue(); w[:tokenLen] == v[:tokenLen] {
		t.Errorf("two lease values share the token %q", v[:tokenLen])
	}
}

func TestParseLeaseValueRejectsForeignFormats(t *testing.T) {
	for _, v := range []string{
		"",
		"1",
		"abc|h|1|2",
		strings.Repeat("a", tokenLen) + "|h|x|2",
		strings.Repeat("a", tokenLen) + "|h|1|2|extra",
	} {
		if _, ok := parseLeaseValue(v); ok {
			t.Errorf("parseLeaseValue(%q) accepted a foreign value", v)
		}
	}
}

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

// The primitives compare the whole lease value: the same token with other
// metadata is someone else.
func TestLeasePrimitivesCompareWholeValue(t *testing.T) {
	ctx := testCtx(t)
	rdb := redistest.Start(t).Client(t)
	v := newLeaseValue()
	if err := rdb.Set(ctx, "k", v, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	forged := v[:tokenLen] + "|elsewhere|1|1"
	for _, other := range []string{forged, newLeaseValue(), ""} {
		if held, err := extendLease(ctx, rdb, "k", other, time.Hour); err != nil || held {
			t.Errorf("extendLease with %q = %v, %v; want false, nil", other, held, err)
		}
		if held, err := releaseLease(ctx, rdb, "k", other); err != nil || held {
			t.Errorf("releaseLease with %q = %v, %v; want false, nil", other, held, err)
		}
	}
	if got := rdb.PTTL(ctx, "k").Val(); got > time.Minute {
		t.Errorf("foreign extend changed the TTL to %v", got)
	}
	if held, err := releaseLease(ctx, rdb, "k", v); err != nil || !held {
		t.Fatalf("releaseLease by the owner = %v, %v; want true, nil", held, err)
	}
	// A release re-sent after its reply was lost is told it released
	// (invariant 12); other tokens still are not.
	if held, err := releaseLease(ctx, rdb, "k", v); err != nil || !held {
		t.Errorf("second releaseLease by the owner = %v, %v; want true, nil", held, err)
	}
	if held, err := releaseLease(ctx, rdb, "k", forged); err != nil || held {
		t.Errorf("releaseLease with a forged token after the owner's = %v, %v; want false, nil", held, err)
	}
}
