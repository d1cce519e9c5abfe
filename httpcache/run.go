package httpcache

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/stampede-go/stampede"
)

// outcome is what one handler run produced.
type outcome struct {
	owner *call         // the call whose request started the run
	req   *http.Request // that request

	// The response as the handler wrote it; for a 304 that freshened the
	// stored response, that response as freshened.
	status int
	header http.Header
	body   []byte

	revalidation bool           // the run revalidated a stored response (Cache-Status fwd=stale)
	validated    bool           // the handler answered 304 to the cache's validators
	e            *entry         // the entry to store; nil when not cacheable
	ent          stampede.Entry // how long to store it
	reason       string         // why it is not stored
	err          error          // panic, incomplete response, timeout
	stream       *stream        // the response became a stream to its owner
	// stale is the stale copy served in place of this run, which failed.
	stale *entry
}

// fwdStatus is the status the handler answered with.
func (o *outcome) fwdStatus() int {
	if o.validated {
		return http.StatusNotModified
	}
	return o.status
}

// fwd is the Cache-Status fwd value of the requests this run answers, c's
// when it did not revalidate a stored response.
func (o *outcome) fwd(c *call) string {
	if o.revalidation {
		return fwdStale
	}
	return c.missFwd()
}

// originError carries a server error response (500, 502, 503, 504) through
// the core as a load error: it is never stored, a stale copy is served in
// its place within stale-if-error, and the requests that waited for the run
// get it as it is.
type originError struct{ o *outcome }

func (e *originError) Error() string {
	return "httpcache: handler responded " + strconv.Itoa(e.o.status)
}

// conditionalFields are removed from the request a handler run sees, so that
// it produces the full response to store; validators are answered from the
// stored copy, and only to the clients that sent them. Range goes too: the
// whole response is what is stored.
var conditionalFields = []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Range"}

// execute runs the handler for c's request, conditionally on prev, the
// stored response it revalidates, when set. A 304 that does not select prev
// (RFC 9111 4.3.4) cannot be used: the request is then made again without
// conditions. The runs time out after Options.LoadTimeout in all, before
// the core's deadline, so that the loader can still answer for them.
//
// A revalidation (key set) shares its run with the other revalidations of
// key in this process: the core's load of a stale response (in the
// background, or without Redis) and the requests that revalidate it for
// themselves (revalidateFor). The outcome's owner is the call whose run
// it was; outcomes are shared, and never modified.
func (m *Middleware) execute(ctx context.Context, c *call, prev *entry, key string) *outcome {
	if key != "" {
		key = "revalidate:" + key
	}
	deadline := time.Now().Add(m.opts.LoadTimeout)
	o := m.run(ctx, c, prev, prev != nil, key)
	if o.status == http.StatusNotModified && prev != nil && !o.validated && o.err == nil {
		ctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		o = m.run(ctx, c, nil, true, key)
	}
	return o
}

// run runs the handler once for c's request into a recorder, made
// conditional on cond when set, and classifies the response. revalidation
// says the run revalidates a stored response. A HEAD runs as a GET, so that
// the stored entry has the GET's body.
//
// The run is a load of m.runs, the process-local core cache kept for this,
// under key, or a key of its own when key is "": a caller finding a run
// in progress under key shares its outcome. The core runs the handler on a
// goroutine of its own, on a context with ctx's values detached from its
// callers that ends after Options.LoadTimeout, and turns a panic into a
// *stampede.PanicError, and runtime.Goexit into an error. run waits for it
// until ctx ends, or until the response turns into a stream: then it
// returns at once, handing the stream to c's request while the handler
// writes on, its context now ending with that request; the callers sharing
// the run learn of the stream when it ends.
func (m *Middleware) run(ctx context.Context, c *call, cond *entry, revalidation bool, key string) *outcome {
	if key == "" {
		key = m.runKey()
	}
	wctx, leave := context.WithCancel(ctx)
	defer leave()
	res, err := m.runs.Fetch(wctx, key, func(lctx context.Context, _ string) (o *outcome, _ stampede.Entry, _ error) {
		hctx, relink, stop := detachFrom(lctx, c.r.Context())
		r2 := c.r.Clone(hctx)
		r2.Method = http.MethodGet
		r2.Body = http.NoBody
		r2.ContentLength = 0
		for _, f := range conditionalFields {
			delete(r2.Header, f)
		}
		if cond != nil && !addValidators(r2.Header, cond, time.Now()) {
			cond = nil
		}
		rec := newRecorder(c, m.opts.MaxBodySize, relink, leave)
		returned := false
		defer func() {
			// Not a catcher: a panic or Goexit goes on to the core. This
			// only cuts a stream short, so that its client sees it fail.
			if !returned {
				rec.finish(errHandlerFailed)
			} else {
				rec.finish(o.err)
			}
			stop()
		}()
		c.next.ServeHTTP(rec, r2)
		returned = true
		o = m.recorded(hctx, r2, rec, cond)
		o.revalidation = revalidation
		if o.e != nil && revalidation {
			o.e.fetch, o.e.fwdStatus = fetchRevalidated, o.fwdStatus()
		}
		return o, stampede.Entry{NoStore: true}, nil
	})
	if st := c.streamed(); st != nil && (err != nil || res.Value.owner == c) {
		return &outcome{owner: c, req: c.r, revalidation: revalidation, stream: st, reason: st.reason}
	}
	if err != nil {
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return &outcome{owner: c, req: c.r, revalidation: revalidation, err: err}
	}
	return res.Value
}

// errHandlerFailed ends the stream of a handler that panicked or called
// runtime.Goexit.
var errHandlerFailed = errors.New("httpcache: handler did not return")

// runKey names one handler run in m.runs: no two runs share one.
func (m *Middleware) runKey() string {
	return "run:" + strconv.FormatUint(m.runSeq.Add(1), 36)
}

// recorded is the outcome of a run whose handler returned: the response
// recorded by rec for the request r2, made conditional on prev when set.
func (m *Middleware) recorded(hctx context.Context, r2 *http.Request, rec *recorder, prev *entry) *outcome {
	o := &outcome{owner: rec.owner, req: rec.owner.r}
	if rec.pw != nil { // a stream, of rec.owner's request only
		o.stream, o.reason = rec.owner.streamed(), rec.reason
		return o
	}
	if err := context.Cause(hctx); err != nil {
		o.err = fmt.Errorf("%w: handler returned after its context ended: %w", errIncomplete, err)
		return o
	}
	o.status, o.header, o.body, o.err = rec.result()
	now := time.Now()
	switch {
	case o.err != nil:
	case errors.Is(rec.werr, errNoReader):
		// It outgrew MaxBodySize with nobody left to stream it to (a
		// background refresh, a leader whose client left): what was
		// recorded is cut off, and never stored.
		o.reason = "too-big"
	case o.status == http.StatusNotModified && prev != nil:
		h, ok := freshen(prev, o.header, now)
		if !ok {
			return o // execute asks again, unconditionally
		}
		o.status, o.header, o.body, o.validated = prev.status, h, prev.body, true
		o.e, o.ent, o.reason = m.classify(r2, o.status, o.header, o.body, now)
	case !isServerError(o.status):
		o.e, o.ent, o.reason = m.classify(r2, o.status, o.header, o.body, now)
	}
	return o
}

// detachFrom returns a context for a handler run: ctx's values, cancelled
// when ctx ends, and a relink function that cuts it loose from ctx and ties
// it to until instead.
func detachFrom(ctx, until context.Context) (hctx context.Context, relink func() error, stop func()) {
	hctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	unlink := context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
	var mu sync.Mutex
	var stopUntil func() bool
	relink = func() error {
		if !unlink() {
			return context.Cause(ctx)
		}
		mu.Lock()
		stopUntil = context.AfterFunc(until, func() { cancel(context.Cause(until)) })
		mu.Unlock()
		return nil
	}
	stop = func() {
		unlink()
		mu.Lock()
		if stopUntil != nil {
			stopUntil()
		}
		mu.Unlock()
		cancel(nil)
	}
	return hctx, relink, stop
}
