package httpcache

import (
	"net/http"
	"time"
)

// kind says what an entry holds.
type kind uint8

const (
	// kindResponse is a stored response.
	kindResponse kind = iota + 1
	// kindVary says the response varies on request fields; the response is
	// stored under a variant key made from them.
	kindVary
	// kindPass is a hit-for-miss marker: the last response for this key was
	// not cacheable, so requests go to the handler at once, concurrently,
	// instead of queueing behind one another's misses.
	kindPass
)

// entry is the value the core cache stores for a key. Entries are shared
// between requests and must not be modified once handed to the core.
type entry struct {
	kind   kind
	status int
	header http.Header
	body   []byte

	// initialAge is the response's age when it was stored; the age now is
	// initialAge plus the core's Result.Age.
	initialAge time.Duration
	// life is the freshness lifetime from the response's own fields.
	life time.Duration
	// swr and sie are the stale-while-revalidate and stale-if-error
	// windows, zero when stale serving is not allowed.
	swr, sie time.Duration

	// vary holds the varying field names (kindVary, and kindResponse
	// stored under a variant key) and gen the Vary record's generation
	// (kindVary).
	vary []string
	gen  string

	// reason says why a response was not stored (kindPass).
	reason string

	// fetch and fwdStatus say how the handler run that produced this
	// entry went, for the requests that waited for that run (RFC 9211
	// fwd, fwd-status; see runStatus). fwdStatus is 0 for fetchMiss.
	fetch     fetchKind
	fwdStatus int
}

// runStatus is the status the handler answered the run that produced e
// with: e's own status after a miss or a revalidation answered in full,
// 304 when a 304 freshened it, and for a stale copy served in place of a
// failed run, that run's status (0 when there was no response).
func (e *entry) runStatus() int {
	if e.fetch == fetchMiss {
		return e.status
	}
	return e.fwdStatus
}

// fetchKind says what the handler run that produced an entry was.
type fetchKind uint8

const (
	fetchMiss        fetchKind = iota // a run for a key with nothing stored
	fetchRevalidated                  // a run that revalidated a stored response
	fetchFailed                       // a revalidation that failed: the entry is the stale copy served in place of its response
)

// bytes is the size of e's body and strings: header names and values,
// Vary names, gen and reason.
func (e *entry) bytes() int {
	n := len(e.body) + len(e.gen) + len(e.reason)
	for _, s := range e.vary {
		n += len(s)
	}
	for k, vs := range e.header {
		n += len(k)
		for _, s := range vs {
			n += len(s)
		}
	}
	return n
}

// values is the number of header field values in e.
func (e *entry) values() int {
	n := 0
	for _, vs := range e.header {
		n += len(vs)
	}
	return n
}

// entryOverhead is what an entry takes in memory besides its bytes: the
// struct, the header map and the slices, roughly.
const entryOverhead = 512

// entryCost is what an entry counts for against Options.LocalBytes.
func entryCost(v any) int64 {
	e, ok := v.(*entry)
	if !ok || e == nil {
		return entryOverhead
	}
	return int64(entryOverhead + e.bytes())
}
