package stampede

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"golang.org/x/sync/singleflight"
)

// flight coalesces concurrent calls for one key within this process, the way
// singleflight does, but each caller waits only as long as its own context
// lives: the shared work runs on a context detached from all of them
// (invariant 6).
type flight[R any] struct {
	g singleflight.Group
}

// do runs fn once for all concurrent callers of key. fn sees the first
// caller's ctx without its cancellation (invariant 6); every caller, the
// first included, returns early with its own ctx.Err() when its ctx ends,
// while fn goes on for the others. fn's panics reach every caller as a
// *PanicError.
func (f *flight[R]) do(ctx context.Context, key string, fn func(context.Context) (R, error)) (R, error) {
	ch := f.g.DoChan(key, func() (any, error) {
		return recovered(context.WithoutCancel(ctx), fn)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			var zero R
			return zero, res.Err
		}
		return res.Val.(R), nil
	case <-ctx.Done():
		var zero R
		return zero, ctx.Err()
	}
}

// forget makes later callers of key start a new call instead of joining the
// one in flight.
func (f *flight[R]) forget(key string) { f.g.Forget(key) }

// catch is the one panic catcher: deferred by the function whose panic it
// must stop (as "defer catch(&err)"), it turns the panic into a
// *PanicError in *err, keeping the value and the stack (invariant 7).
func catch(err *error) {
	if v := recover(); v != nil {
		*err = newPanicError(v)
	}
}

// recovered calls fn and turns a panic into a *PanicError. singleflight's
// DoChan would otherwise re-panic on a fresh goroutine and kill the process.
func recovered[R any](ctx context.Context, fn func(context.Context) (R, error)) (r R, err error) {
	defer catch(&err)
	return fn(ctx)
}

// PanicError is the error every caller sharing a load receives when the
// loader panicked. It keeps the panic value and the stack of the panicking
// goroutine (invariant 7).
type PanicError struct {
	Value any    // what was passed to panic
	Stack []byte // the panicking goroutine's stack
}

func newPanicError(v any) *PanicError {
	return &PanicError{Value: v, Stack: debug.Stack()}
}

// Error reports the panic value and the stack.
func (e *PanicError) Error() string {
	return fmt.Sprintf("stampede: loader panicked: %v\n\n%s", e.Value, e.Stack)
}

// Unwrap returns the panic value when it is an error, so errors.Is and
// errors.As see through the panic.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// errGoexit is returned when a loader called runtime.Goexit (for example
// t.FailNow inside a test's loader) instead of returning.
var errGoexit = errors.New("stampede: loader called runtime.Goexit")

// callResult carries a loader's outcome from its own goroutine.
type callResult[R any] struct {
	r   R
	err error
}

// callSafely runs fn on a goroutine of its own, so that neither a panic nor
// runtime.Goexit in user code can take the caller down or leave it waiting.
// It returns when fn does or when ctx ends, whichever comes first; in the
// second case fn is left to finish on its own and its result is dropped.
func callSafely[R any](ctx context.Context, fn func(context.Context) (R, error)) (R, error) {
	done := make(chan callResult[R], 1)
	go func() {
		// Neither a return nor a panic leaves errGoexit: runtime.Goexit
		// runs the deferred calls, and recover finds nothing.
		res := callResult[R]{err: errGoexit}
		defer func() { done <- res }()
		defer catch(&res.err)
		res.r, res.err = fn(ctx)
	}()
	select {
	case res := <-done:
		return res.r, res.err
	case <-ctx.Done():
		var zero R
		return zero, context.Cause(ctx)
	}
}
