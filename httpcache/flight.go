package httpcache

import (
	"context"
	"sync"
)

// flight lets the handler runs for one key within this process be shared:
// the core's background refresh of a stored entry and the requests that
// revalidate it (past stale-while-revalidate, or because their own
// Cache-Control asks) wait for the same run.
type flight struct {
	mu    sync.Mutex             // guards calls
	calls map[string]*flightCall // lazily made
}

type flightCall struct {
	done chan struct{}
	o    *outcome
}

// do returns the outcome of fn, or of the run of fn for key already in
// progress. ok is false when ctx ended first; fn's run goes on.
func (f *flight) do(ctx context.Context, key string, fn func() *outcome) (o *outcome, ok bool) {
	f.mu.Lock()
	if fc := f.calls[key]; fc != nil {
		f.mu.Unlock()
		select {
		case <-fc.done:
			return fc.o, true
		case <-ctx.Done():
			return nil, false
		}
	}
	if f.calls == nil {
		f.calls = make(map[string]*flightCall)
	}
	fc := &flightCall{done: make(chan struct{})}
	f.calls[key] = fc
	f.mu.Unlock()

	defer func() {
		f.mu.Lock()
		delete(f.calls, key)
		f.mu.Unlock()
		close(fc.done)
	}()
	fc.o = fn()
	return fc.o, true
}
