package httpcache

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/stampede-go/stampede"
)

// A handler run goes through the core's loaders: a panic reaches
// ErrorHandler as the core's *stampede.PanicError, value and stack kept,
// runtime.Goexit as an error, and a run that outlives LoadTimeout as a
// deadline; none of them takes the process down or leaves the request
// waiting, and none is stored.
func TestHandlerFailuresReachErrorHandler(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name  string
		fail  func(w http.ResponseWriter, r *http.Request)
		check func(t *testing.T, err error)
		code  int
	}{
		{"panic", func(http.ResponseWriter, *http.Request) { panic(boom) }, func(t *testing.T, err error) {
			var pe *stampede.PanicError
			require.ErrorAs(t, err, &pe)
			require.ErrorIs(t, err, boom, "the panic value is reachable")
			require.Contains(t, string(pe.Stack), "run_test.go", "the stack is the handler's")
		}, http.StatusInternalServerError},
		{"Goexit", func(http.ResponseWriter, *http.Request) { runtime.Goexit() }, func(t *testing.T, err error) {
			require.ErrorContains(t, err, "Goexit")
		}, http.StatusInternalServerError},
		{"timeout", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, func(t *testing.T, err error) {
			require.ErrorIs(t, err, context.DeadlineExceeded)
		}, http.StatusGatewayTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := make(chan error, 2)
			h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
				w.Header().Set("Cache-Control", "max-age=60")
				tc.fail(w, r)
			}}
			m := newMW(t, nil, Options{LoadTimeout: 100 * time.Millisecond, ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				errs <- err
				defaultErrorHandler(w, r, err)
			}})
			s := m.Handler(h)
			for range 2 {
				w := do(s, "GET", "/f")
				require.Equal(t, tc.code, w.Code)
				tc.check(t, <-errs)
			}
			require.EqualValues(t, 2, h.n.Load(), "nothing stored")
		})
	}
}

// A response that turns into a stream goes on to its own client while the
// handler writes on, and the request that waited for that run is let go at
// once, to run the handler itself: it does not wait for the stream to end.
func TestStreamLetsWaitersGo(t *testing.T) {
	joined, release := make(chan struct{}), make(chan struct{})
	h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=60")
		if n > 1 {
			fmt.Fprintf(w, "run %d", n)
			return
		}
		fmt.Fprint(w, "streamed ")
		<-joined
		_ = http.NewResponseController(w).Flush() // a stream from here on
		<-release
		fmt.Fprint(w, "to the end")
	}}
	s := newMW(t, nil, Options{}).Handler(h)
	first := make(chan *httptest.ResponseRecorder, 1)
	go func() { first <- do(s, "GET", "/s") }()
	eventually(t, "the first run starts", func() bool { return h.n.Load() == 1 })
	second := make(chan *httptest.ResponseRecorder, 1)
	go func() { second <- do(s, "GET", "/s") }()
	time.Sleep(100 * time.Millisecond) // the second request joins the run
	close(joined)
	select {
	case w := <-second:
		require.Equal(t, "run 2", w.Body.String())
		require.Equal(t, "stampede; fwd=bypass; detail=hit-for-miss", status(w))
	case <-time.After(10 * time.Second):
		t.Fatal("the second request waits for the stream to end")
	}
	close(release)
	w := <-first
	require.Equal(t, "streamed to the end", w.Body.String())
	require.Equal(t, "stampede; fwd=uri-miss; detail=streamed", status(w))
}
