// Package bounded runs Redis calls under a deadline its caller keeps,
// whatever the client's own timeouts: the library's promise of bounded
// waiting (invariant 10) must hold when Redis hangs.
package bounded

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrTimeout is a Redis call that took longer than the deadline its caller
// keeps.
var ErrTimeout = errors.New("stampede: redis did not answer in time")

// Call runs one Redis call and returns when it does, when limit passes
// or when ctx ends, whichever comes first go-redis ignores
// context deadlines unless its client was built with ContextTimeoutEnabled,
// so a hung server would otherwise hold the caller for the client's read
// timeout and every retry after it. With such a client (ctxDeadlines) the
// deadline goes into fn's context; otherwise fn runs on a goroutine of its
// own and is abandoned to finish on the client's timeouts. limit <= 0 means
// no limit but ctx.
//
// An answer that did not come in time is ErrTimeout; ctx ending first
// is ctx's error.
func Call(ctx context.Context, limit time.Duration, ctxDeadlines bool, fn func(context.Context) error) error {
	if ctxDeadlines {
		if limit <= 0 {
			return fn(ctx)
		}
		tctx, cancel := context.WithTimeout(ctx, limit)
		defer cancel()
		err := fn(tctx)
		if err != nil && ctx.Err() == nil && tctx.Err() != nil {
			return fmt.Errorf("%w after %v: %w", ErrTimeout, limit, err)
		}
		return err
	}
	call := calls.Get().(*pendingCall)
	go call.run(ctx, fn)
	var expired <-chan time.Time
	if limit > 0 {
		call.timer.Reset(limit)
		expired = call.timer.C
	}
	select {
	case err := <-call.done:
		call.timer.Stop()
		calls.Put(call)
		return err
	case <-expired:
		// The abandoned call still owns its slot; it is not reused.
		return fmt.Errorf("%w after %v", ErrTimeout, limit)
	case <-ctx.Done():
		call.timer.Stop()
		// An answer that came as ctx ended still counts: fn may have
		// taken something (a lease) that only its caller can give back.
		select {
		case err := <-call.done:
			calls.Put(call)
			return err
		default:
			return ctx.Err()
		}
	}
}

// pendingCall carries one bounded call's result. Slots whose call answered
// in time are reused, so a bounded call costs no allocation of its own.
type pendingCall struct {
	done  chan error
	timer *time.Timer
}

var calls = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &pendingCall{done: make(chan error, 1), timer: t}
}}

func (p *pendingCall) run(ctx context.Context, fn func(context.Context) error) {
	p.done <- fn(ctx)
}

// HonorsContext says whether rdb's calls end at their context's deadline.
func HonorsContext(rdb redis.UniversalClient) bool {
	switch c := rdb.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return false
}
