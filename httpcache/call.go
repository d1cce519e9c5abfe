package httpcache

import (
	"errors"
	"net/http"
	"sync"
)

// call is one request's part in a lookup: the loader it hands the core, and
// what that loader leaves for it when its own handler run is the one that
// happened.
type call struct {
	m    *Middleware
	next http.Handler
	r    *http.Request
	w    http.ResponseWriter // the request's writer, for 1xx responses
	// variant is the Vary record when this call looks up a variant key, nil
	// for a primary key.
	variant *entry
	primary string // the primary key, when variant is set
	// rng is set for a GET with a single byte range: on a miss it is
	// passed to the handler as it is, and nothing is stored.
	rng bool
	// retries counts the times this request looked again after sharing
	// the lookup of a range request that found nothing stored.
	retries int

	mu     sync.Mutex // guards done, own, stream, and c.w while !done
	done   bool       // the request has stopped waiting: a stream has no reader
	own    *outcome   // the outcome of this call's own handler run
	stream *stream    // set when this call's run turned into a stream
}

// finish marks the request as no longer waiting and returns the outcome of
// its own handler run, if that run happened and ended (or became a stream).
func (c *call) finish() *outcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = true
	if c.own == nil && c.stream != nil {
		return &outcome{owner: c, stream: c.stream, reason: c.stream.reason}
	}
	return c.own
}

// streamed returns the stream c's own run turned into, if it did.
func (c *call) streamed() *stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stream
}

// setOwn records o as the outcome of c's own handler run, for c's request
// to serve when it is still waiting for it.
func (c *call) setOwn(o *outcome) {
	c.mu.Lock()
	c.own = o
	c.mu.Unlock()
}

// errorFwd is the Cache-Status fwd value of a request whose lookup failed
// with err: stale when the run that failed revalidated a stored response.
func (c *call) errorFwd(err error) string {
	var oe *originError
	if errors.Is(err, ErrRevalidationFailed) || errors.As(err, &oe) && oe.o.revalidation {
		return fwdStale
	}
	return c.missFwd()
}

// missFwd is the Cache-Status fwd value of a run for a key with nothing
// stored: a miss of the URL, or of the variant.
func (c *call) missFwd() string {
	if c.variant != nil {
		return fwdVaryMiss
	}
	return fwdURIMiss
}

// reasonRangeMiss marks the loader result of a range request that found
// nothing stored: never stored, and served to nobody.
const reasonRangeMiss = "range-miss"

// takeRangeMiss reports whether c's request, a range request still waiting
// for its lookup, takes this miss to the handler itself. A run the core
// starts after the request was answered (a background refresh) fetches the
// whole response as usual.
func (c *call) takeRangeMiss() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rng && !c.done
}
