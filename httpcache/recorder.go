package httpcache

import (
	"errors"
	"io"
	"net/http"
	"strconv"
)

var (
	// errNoReader fails the writes of a handler whose response turned into
	// a stream when the request that ran it is no longer there to take it.
	errNoReader = errors.New("httpcache: response outgrew the cache and nobody is reading it")
	// errIncomplete: the handler wrote fewer or more bytes than its
	// Content-Length, or returned after its context ended.
	errIncomplete = errors.New("httpcache: incomplete response")
)

// recorder is the ResponseWriter a handler writes to while its response is
// recorded for the cache. It keeps up to max body bytes. When the body
// grows past that, or the handler flushes, the response stops being a
// candidate for the cache and becomes a stream: the headers and the bytes so
// far, then every later write, go through a pipe to the request that started
// the run (its own client gets the whole response, with memory bounded by the
// pipe), and the run reports the response as not stored.
//
// It is used by the handler's goroutine only, except for stream, which is
// handed over under the owning call's mutex.
type recorder struct {
	owner *call
	max   int

	header      http.Header
	wroteHeader bool
	status      int
	snap        http.Header // header as of WriteHeader
	body        []byte
	written     int64

	// relink moves the handler's context from the load's context to the
	// owner's request context, once the response has become a stream: the
	// load ends (and cancels its context) as soon as it has reported the
	// stream, while the handler goes on writing. leave then ends the run's
	// wait for the handler (see Middleware.run).
	relink func() error
	leave  func()

	streaming chan struct{} // closed when the response becomes a stream
	reason    string        // why it became one
	pw        *io.PipeWriter
	werr      error // sticky write error
}

func newRecorder(owner *call, max int, relink func() error, leave func()) *recorder {
	return &recorder{owner: owner, max: max, header: make(http.Header), relink: relink, leave: leave,
		streaming: make(chan struct{})}
}

func (rec *recorder) Header() http.Header { return rec.header }

func (rec *recorder) WriteHeader(status int) {
	if rec.wroteHeader || status < 100 || status > 999 {
		return
	}
	if status < 200 && status != http.StatusSwitchingProtocols {
		// Informational (103 Early Hints and the like): forwarded, not
		// the response.
		rec.owner.interim(status, rec.header)
		return
	}
	rec.wroteHeader = true
	rec.status = status
	rec.snap = rec.header.Clone()
}

func (rec *recorder) Write(p []byte) (int, error) {
	if !rec.wroteHeader {
		rec.WriteHeader(http.StatusOK)
	}
	if rec.werr != nil {
		return 0, rec.werr
	}
	if rec.pw == nil && len(rec.body)+len(p) > rec.max {
		if err := rec.startStream("too-big"); err != nil {
			return 0, err
		}
	}
	if rec.pw != nil {
		n, err := rec.pw.Write(p)
		rec.written += int64(n)
		if err != nil {
			rec.werr = err
		}
		return n, err
	}
	rec.body = append(rec.body, p...)
	rec.written += int64(len(p))
	return len(p), nil
}

// Flush turns the response into a stream: a handler that flushes wants its
// client to see bytes as they are produced (server-sent events, progress
// output), which a cache that holds the response back cannot give.
func (rec *recorder) Flush() { _ = rec.FlushError() }

// FlushError is Flush for http.ResponseController.
func (rec *recorder) FlushError() error {
	if !rec.wroteHeader {
		rec.WriteHeader(http.StatusOK)
	}
	if rec.werr != nil {
		return rec.werr
	}
	if rec.pw == nil {
		return rec.startStream("streamed")
	}
	return nil
}

// startStream hands the response over to the owning request, if it is still
// waiting for it.
func (rec *recorder) startStream(reason string) error {
	c := rec.owner
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		rec.werr = errNoReader
		return rec.werr
	}
	if err := rec.relink(); err != nil {
		rec.werr = err
		return err
	}
	pr, pw := io.Pipe()
	rec.pw = pw
	rec.reason = reason
	c.stream = &stream{status: rec.status, header: rec.snap, prefix: rec.body, pr: pr, reason: reason}
	rec.body = nil
	close(rec.streaming)
	rec.leave()
	return nil
}

// finish ends a stream once the handler has returned; panicked says the
// response is incomplete, so the client must see it cut off.
func (rec *recorder) finish(failure error) {
	if rec.pw != nil {
		_ = rec.pw.CloseWithError(failure)
	}
}

// result returns the recorded response, or errIncomplete when the body does
// not match its declared Content-Length. A 304 has no body, and its
// Content-Length, if any, is that of the representation it validates (RFC
// 9110 8.6); a 204 has none either.
func (rec *recorder) result() (status int, h http.Header, body []byte, err error) {
	if !rec.wroteHeader {
		rec.WriteHeader(http.StatusOK)
	}
	noBody := rec.status == http.StatusNotModified || rec.status == http.StatusNoContent
	if cl := rec.snap.Get("Content-Length"); cl != "" && !noBody {
		n, perr := strconv.ParseInt(cl, 10, 64)
		if perr != nil || n != rec.written {
			return 0, nil, nil, errIncomplete
		}
	}
	return rec.status, rec.snap, rec.body, nil
}

// stream is a response that turned out too big for the cache (or
// streamed), being written by its handler while its owner copies it out.
type stream struct {
	status int
	header http.Header
	prefix []byte
	pr     *io.PipeReader
	reason string
}

// copyTo writes the stream to w. A handler that fails mid-stream (panic,
// incomplete) aborts the response, so the client sees a truncated one rather
// than a short body that looks whole.
func (s *stream) copyTo(w http.ResponseWriter, r *http.Request, cacheStatus string) {
	defer s.pr.Close()
	h := w.Header()
	for k, v := range s.header {
		h[k] = v
	}
	addCacheStatus(h, cacheStatus)
	w.WriteHeader(s.status)
	head := r.Method == http.MethodHead
	rc := http.NewResponseController(w)
	var werr error
	if !head && len(s.prefix) > 0 {
		_, werr = w.Write(s.prefix)
	}
	buf := make([]byte, 32<<10)
	for werr == nil {
		n, err := s.pr.Read(buf)
		if n > 0 && !head {
			if _, werr = w.Write(buf[:n]); werr == nil {
				werr = rc.Flush()
				if errors.Is(werr, http.ErrNotSupported) {
					werr = nil
				}
			}
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			panic(http.ErrAbortHandler)
		}
	}
	_ = s.pr.CloseWithError(werr) // the client is gone: fail the handler's writes
}
