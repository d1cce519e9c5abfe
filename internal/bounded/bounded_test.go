package bounded

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestCall(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("boom")
	for _, ctxDeadlines := range []bool{false, true} {
		if err := Call(ctx, time.Second, ctxDeadlines, func(context.Context) error { return boom }); err != boom {
			t.Errorf("ctxDeadlines=%v: Call = %v, want fn's error", ctxDeadlines, err)
		}
	}

	// A call that hangs: the caller leaves at the limit.
	release := make(chan struct{})
	defer close(release)
	err := Call(ctx, 20*time.Millisecond, false, func(context.Context) error { <-release; return nil })
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Call past its limit = %v, want ErrTimeout", err)
	}
	// ... or when its own ctx ends first.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := Call(cctx, time.Hour, false, func(context.Context) error { <-release; return nil }); err != context.Canceled {
		t.Fatalf("Call with its ctx done = %v, want context.Canceled", err)
	}
	// A client that ends calls at their ctx's deadline gets the limit as
	// a deadline, and its failure then reads as a timeout.
	err = Call(ctx, 20*time.Millisecond, true, func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("no deadline passed down")
		}
		<-ctx.Done()
		return ctx.Err()
	})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("ctxDeadlines: Call past its limit = %v, want ErrTimeout", err)
	}
}
