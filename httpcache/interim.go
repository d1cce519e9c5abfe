package httpcache

import (
	"maps"
	"net/http"
	"slices"
)

// interim forwards a 1xx response of the handler run that c's request
// started (103 Early Hints, 102 Processing) to that request's client, as
// an intermediary must (RFC 9110 15.2), while the client is still waiting
// for the run. The requests that share the run get its final response
// only: the 1xx was not theirs. Nothing of a 1xx is stored. An HTTP/1.0
// client gets none (RFC 9110 15.2).
//
// It runs on the handler's goroutine. The client's goroutine touches its
// ResponseWriter only after finish, which takes c.mu, so holding c.mu here
// gives this write the writer to itself.
func (c *call) interim(status int, h http.Header) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done || c.w == nil || !c.r.ProtoAtLeast(1, 1) {
		return
	}
	wh := c.w.Header()
	// net/http sends the whole header map with a 1xx and keeps it for the
	// final response: put the 1xx's fields in for the write only.
	saved := maps.Clone(wh)
	clear(wh)
	for k, v := range h {
		if !slices.Contains(hopByHop, k) && k != "Content-Length" {
			wh[k] = v
		}
	}
	c.w.WriteHeader(status)
	clear(wh)
	maps.Copy(wh, saved)
}
