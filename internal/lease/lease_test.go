package lease

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stampede-go/stampede/internal/redistest"
)

func TestLeaseValueRoundTrip(t *testing.T) {
	before := time.Now().Truncate(time.Millisecond)
	v := NewValue()
	m, ok := Parse(v)
	if !ok {
		t.Fatalf("Parse(%q) failed", v)
	}
	if len(m.Token) != TokenLen || strings.Trim(m.Token, "0123456789abcdef") != "" {
		t.Errorf("token %q: want %d hex digits", m.Token, TokenLen)
	}
	if m.Host != Host() || m.PID != os.Getpid() {
		t.Errorf("got host %q pid %d, want %q %d", m.Host, m.PID, Host(), os.Getpid())
	}
	if m.AcquiredAt.Before(before) || m.AcquiredAt.After(time.Now()) {
		t.Errorf("acquired at %v, want between %v and now", m.AcquiredAt, before)
	}
	if w := NewValue(); w[:TokenLen] == v[:TokenLen] {
		t.Errorf("two lease values share the token %q", v[:TokenLen])
	}
}

func TestParseLeaseValueRejectsForeignFormats(t *testing.T) {
	for _, v := range []string{
		"",
		"1",
		"abc|h|1|2",
		strings.Repeat("a", TokenLen) + "|h|x|2",
		strings.Repeat("a", TokenLen) + "|h|1|2|extra",
	} {
		if _, ok := Parse(v); ok {
			t.Errorf("Parse(%q) accepted a foreign value", v)
		}
	}
}

// The primitives compare the whole lease value: the same token with other
// metadata is someone else.
func TestLeasePrimitivesCompareWholeValue(t *testing.T) {
	ctx := t.Context()
	rdb := redistest.Start(t).Client(t)
	v := NewValue()
	if err := rdb.Set(ctx, "k", v, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	forged := v[:TokenLen] + "|elsewhere|1|1"
	for _, other := range []string{forged, NewValue(), ""} {
		if held, err := Extend(ctx, rdb, "k", other, time.Hour); err != nil || held {
			t.Errorf("extendLease with %q = %v, %v; want false, nil", other, held, err)
		}
		if held, err := Release(ctx, rdb, "k", other); err != nil || held {
			t.Errorf("releaseLease with %q = %v, %v; want false, nil", other, held, err)
		}
	}
	if got := rdb.PTTL(ctx, "k").Val(); got > time.Minute {
		t.Errorf("foreign extend changed the TTL to %v", got)
	}
	if held, err := Release(ctx, rdb, "k", v); err != nil || !held {
		t.Fatalf("releaseLease by the owner = %v, %v; want true, nil", held, err)
	}
	// A release re-sent after its reply was lost is told it released
	// (invariant 12); other tokens still are not.
	if held, err := Release(ctx, rdb, "k", v); err != nil || !held {
		t.Errorf("second releaseLease by the owner = %v, %v; want true, nil", held, err)
	}
	if held, err := Release(ctx, rdb, "k", forged); err != nil || held {
		t.Errorf("releaseLease with a forged token after the owner's = %v, %v; want false, nil", held, err)
	}
}

// Keep renews a lease past its ttl, and reports ErrLost once it is gone.
func TestKeep(t *testing.T) {
	ctx := t.Context()
	rdb := redistest.Start(t).Client(t)
	const ttl = 300 * time.Millisecond
	v := NewValue()
	start := time.Now()
	rdb.Set(ctx, "k", v, ttl)
	kctx, stop := context.WithCancel(ctx)
	renewals := 0
	errc := make(chan error, 1)
	go func() { errc <- Keep(kctx, rdb, "k", v, ttl, start, false, func() { renewals++ }) }()
	time.Sleep(3 * ttl)
	if rdb.Get(ctx, "k").Val() != v {
		t.Fatal("the lease ran out while kept")
	}
	rdb.Del(ctx, "k") // released elsewhere, or taken over
	select {
	case err := <-errc:
		if !errors.Is(err, ErrLost) || renewals < 2 {
			t.Fatalf("Keep = %v after %d renewals, want ErrLost after several", err, renewals)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Keep went on after the lease was gone")
	}
	stop()
}
