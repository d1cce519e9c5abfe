package stampede

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
)

// flight coalesces concurrent calls for one key within this process, the
// way x/sync's singleflight does, but each caller waits only as long as its
// own context lives: the shared work runs on a goroutine and a context of
// its own, detached from all of them (invariant 6).
//
// It is not singleflight.Group because of what a herd costs: DoChan makes a
// channel per caller and sends the result to each under the group's lock,
// and its callers' path outgrows a fresh goroutine's stack. Here a caller
// that joins a call costs one map lookup and one receive from the channel
// the call closes when it is done.
type flight[R any] struct {
	mu    sync.Mutex                // guards calls
	calls map[string]*flightCall[R] // lazily made
}

// flightCall is one call in flight.
type flightCall[R any] struct {
	done chan struct{} // closed once res and err are set
	res  R
	err  error
}

// do runs fn once for all concurrent callers of key and returns its result
// and whether this caller joined a call another started. fn sees the first
// caller's ctx without its cancellation; every caller, the first included,
// returns early with its own ctx.Err() when its ctx ends, while fn goes on
// for the others. fn's panics reach every caller as a *PanicError.
func (f *flight[R]) do(ctx context.Context, key string, fn func(context.Context) (R, error)) (r R, joined bool, err error) {
	f.mu.Lock()
	c := f.calls[key]
	if joined = c != nil; !joined {
		if f.calls == nil {
			f.calls = make(map[string]*flightCall[R])
		}
		c = &flightCall[R]{done: make(chan struct{})}
		f.calls[key] = c
		go f.run(context.WithoutCancel(ctx), key, c, fn)
	}
	f.mu.Unlock()
	r, err = c.wait(ctx)
	return r, joined, err
}

// find returns the call in flight for key, or nil.
func (f *flight[R]) find(key string) *flightCall[R] {
	f.mu.Lock()
	c := f.calls[key]
	f.mu.Unlock()
	return c
}

// wait returns c's result, or ctx's error if ctx ends first.
func (c *flightCall[R]) wait(ctx context.Context) (R, error) {
	if !c.await(ctx) {
		var zero R
		return zero, ctx.Err()
	}
	return c.res, c.err
}

// await waits until c is done (true) or ctx ends (false); then c.res and
// c.err may be read.
func (c *flightCall[R]) await(ctx context.Context) bool {
	if done := ctx.Done(); done != nil {
		select {
		case <-c.done:
			return true
		case <-done:
			return false
		}
	}
	<-c.done
	return true
}

// run is the call's own goroutine: it runs fn and finishes the call, also
// when user code on it (an Observer, a Codec) calls runtime.Goexit.
func (f *flight[R]) run(ctx context.Context, key string, c *flightCall[R], fn func(context.Context) (R, error)) {
	var r R
	err := errGoexit
	defer func() { f.finish(key, c, r, err) }()
	r, err = recovered(ctx, fn)
}

// claim returns, for each key, the call in flight, and whether the caller
// made it: then the caller's work is that call's, and the caller must
// finish it.
func (f *flight[R]) claim(keys []string) (calls []*flightCall[R], made []bool) {
	calls, made = make([]*flightCall[R], len(keys)), make([]bool, len(keys))
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = make(map[string]*flightCall[R])
	}
	for i, key := range keys {
		if c := f.calls[key]; c != nil {
			calls[i] = c
			continue
		}
		c := &flightCall[R]{done: make(chan struct{})}
		f.calls[key] = c
		calls[i], made[i] = c, true
	}
	return calls, made
}

// finish publishes the result of c, made for key, and lets later callers
// start a new call. It is called once per call.
func (f *flight[R]) finish(key string, c *flightCall[R], r R, err error) {
	c.res, c.err = r, err
	f.mu.Lock()
	if f.calls[key] == c {
		delete(f.calls, key)
	}
	f.mu.Unlock()
	close(c.done)
}

// forget makes later callers of key start a new call instead of joining the
// one in flight.
func (f *flight[R]) forget(key string) {
	f.mu.Lock()
	delete(f.calls, key)
	f.mu.Unlock()
}

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
