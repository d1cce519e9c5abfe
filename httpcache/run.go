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
// conditions. The run times out after Options.LoadTimeout, before the
// core's deadline, so that its loader can still answer for it.
func (m *Middleware) execute(ctx context.Context, c *call, prev *entry) *outcome {
	ctx, cancel := context.WithTimeout(ctx, m.opts.LoadTimeout)
	defer cancel()
	o := m.run(ctx, c, prev)
	if o.status == http.StatusNotModified && prev != nil && !o.validated && o.err == nil {
		o = m.run(ctx, c, nil)
	}
	o.revalidation = prev != nil
	if o.e != nil && prev != nil {
		o.e.fetch, o.e.fwdStatus = fetchRevalidated, o.fwdStatus()
	}
	c.mu.Lock()
	if o.err == nil && o.status == 0 { // became a stream
		o.stream, o.reason = c.stream, c.stream.reason
	}
	c.mu.Unlock()
	return o
}

// revalidation runs the handler for c's request conditionally on the
// stored response prev of key, as execute does, sharing one run with the
// other revalidations of key in this process: the core's load of a stale
// response (in the background, or without Redis) and the requests that
// revalidate it for themselves (revalidateFor). The run is a load of the
// process-local core cache, under key; the outcome's owner is the call
// whose run it was.
func (m *Middleware) revalidation(ctx context.Context, c *call, key string, prev *entry) *outcome {
	res, err := m.runs.Fetch(ctx, "revalidate:"+key, func(ctx context.Context, _ string) (*outcome, stampede.Entry, error) {
		return m.execute(ctx, c, prev), stampede.Entry{NoStore: true}, nil
	})
	if err != nil { // ctx ended, or the middleware closed
		return &outcome{owner: c, req: c.r, revalidation: true, err: err}
	}
	return res.Value
}

// run runs the handler once for c's request into a recorder, and
// classifies the response. A HEAD runs as a GET, so that the stored entry
// has the GET's body.
//
// The run is a loader of m.runs, the process-local core cache kept for
// this: the core runs it on a goroutine of its own and turns a panic into
// a *stampede.PanicError, and runtime.Goexit into an error. run waits for
// it until ctx ends, or until the response turns into a stream: then run
// returns at once, handing the stream to its owner's request, while the
// handler writes on. The handler's context has ctx's values and ends with
// ctx, or, once streaming, with the owner's request.
func (m *Middleware) run(ctx context.Context, c *call, prev *entry) *outcome {
	hctx, relink, stop := detachFrom(ctx, c.r.Context())
	r2 := c.r.Clone(hctx)
	r2.Method = http.MethodGet
	r2.Body = http.NoBody
	r2.ContentLength = 0
	for _, f := range conditionalFields {
		delete(r2.Header, f)
	}
	if prev != nil && !addValidators(r2.Header, prev, time.Now()) {
		prev = nil
	}
	wctx, leave := context.WithCancel(ctx)
	defer leave()
	rec := newRecorder(c, m.opts.MaxBodySize, relink, leave)
	res, err := m.runs.Fetch(wctx, m.runKey(), func(context.Context, string) (o *outcome, _ stampede.Entry, _ error) {
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
		return m.recorded(hctx, r2, rec, prev), stampede.Entry{NoStore: true}, nil
	})
	select {
	case <-rec.streaming:
		return &outcome{owner: c, req: c.r}
	default:
	}
	if err != nil {
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return &outcome{owner: c, req: c.r, err: err}
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
	if rec.pw != nil { // a stream: nobody waits for this outcome
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
