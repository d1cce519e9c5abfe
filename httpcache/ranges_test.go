package httpcache

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stampede-go/stampede"
)

// RFC 9110 14.1.1, 14.1.2: one byte range-spec of the three forms, units
// compared case-insensitively; anything else is not a single byte range.
func TestParseSingleRange(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want byteRange
		ok   bool
	}{
		{[]string{"bytes=0-1"}, byteRange{0, 1}, true},
		{[]string{"bytes=5-"}, byteRange{5, -1}, true},
		{[]string{"bytes=-5"}, byteRange{-1, 5}, true},
		{[]string{"BYTES=0-1"}, byteRange{0, 1}, true},
		{[]string{"bytes=0-1,"}, byteRange{0, 1}, true}, // an empty list element is ignored
		{[]string{"bytes= 0-1"}, byteRange{0, 1}, true},
		{[]string{"bytes=0-1,2-3"}, byteRange{}, false}, // several ranges
		{[]string{"bytes=0-1", "bytes=2-3"}, byteRange{}, false},
		{[]string{"items=0-1"}, byteRange{}, false},
		{[]string{"bytes=2-1"}, byteRange{}, false}, // last before first: invalid
		{[]string{"bytes=-"}, byteRange{}, false},
		{[]string{"bytes=a-b"}, byteRange{}, false},
		{[]string{"bytes=+1-2"}, byteRange{}, false},
		{[]string{"bytes 0-1"}, byteRange{}, false},
		{[]string{"bytes=99999999999999999999-"}, byteRange{}, false},
		{[]string{"bytes="}, byteRange{}, false},
	} {
		got, ok := parseSingleRange(tc.in)
		if ok != tc.ok || ok && got != tc.want {
			t.Errorf("%q: %v %v, want %v %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// RFC 9110 14.1.2: what a range selects in a representation of 11 bytes.
func TestResolveRange(t *testing.T) {
	for _, tc := range []struct {
		br         byteRange
		size       int64
		start, end int64
		ok         bool
	}{
		{byteRange{0, 1}, 11, 0, 1, true},
		{byteRange{1, -1}, 11, 1, 10, true},
		{byteRange{-1, 1}, 11, 10, 10, true},
		{byteRange{-1, 50}, 11, 0, 10, true}, // a suffix longer than the body: all of it
		{byteRange{5, 500}, 11, 5, 10, true}, // a last-pos past the end: to the end
		{byteRange{11, -1}, 11, 0, 0, false}, // first-pos at the end
		{byteRange{-1, 0}, 11, 0, 0, false},  // a zero-length suffix
		{byteRange{0, 0}, 0, 0, 0, false},    // nothing to select in an empty body
		{byteRange{-1, 3}, 0, 0, 0, false},
	} {
		start, end, ok := tc.br.resolve(tc.size)
		if ok != tc.ok || ok && (start != tc.start || end != tc.end) {
			t.Errorf("%v in %d: %d-%d %v", tc.br, tc.size, start, end, ok)
		}
	}
}

// A single byte range of a stored 200 is answered from it: 206 with
// Content-Range, or 416 (RFC 9110 14.4, 15.3.7, 15.5.17); If-Range is
// honoured (RFC 9110 13.1.5); HEAD, other statuses and a failed If-Range
// get the whole response.
func TestRangeFromStoredResponse(t *testing.T) {
	lm := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		if r.Header.Get("Range") != "" {
			t.Errorf("the handler saw a Range for a stored response")
		}
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Etag", `"v1"`)
		w.Header().Set("Last-Modified", lm)
		w.Header().Set("Content-Type", "text/plain")
		if r.URL.Path == "/gone" {
			w.WriteHeader(http.StatusNotFound)
		}
		fmt.Fprint(w, "01234567890")
	}}
	s := newMW(t, nil, Options{}).Handler(h)
	do(s, "GET", "/b")
	do(s, "GET", "/gone")
	for _, tc := range []struct {
		method string
		path   string
		hdr    []string
		code   int
		body   string
		cr     string // Content-Range
	}{
		{"GET", "/b", []string{"Range", "bytes=0-1"}, 206, "01", "bytes 0-1/11"},
		{"GET", "/b", []string{"Range", "bytes=1-"}, 206, "1234567890", "bytes 1-10/11"},
		{"GET", "/b", []string{"Range", "bytes=-1"}, 206, "0", "bytes 10-10/11"},
		{"GET", "/b", []string{"Range", "bytes=20-"}, 416, "", "bytes */11"},
		{"GET", "/b", []string{"Range", "bytes=-0"}, 416, "", "bytes */11"},
		{"GET", "/b", []string{"Range", "bytes=0-1", "If-Range", `"v1"`}, 206, "01", "bytes 0-1/11"},
		{"GET", "/b", []string{"Range", "bytes=0-1", "If-Range", `W/"v1"`}, 200, "01234567890", ""},
		{"GET", "/b", []string{"Range", "bytes=0-1", "If-Range", `"v2"`}, 200, "01234567890", ""},
		{"GET", "/b", []string{"Range", "bytes=0-1", "If-Range", lm}, 206, "01", "bytes 0-1/11"},
		{"GET", "/b", []string{"Range", "bytes=0-1", "If-Range", time.Now().UTC().Format(http.TimeFormat)}, 200, "01234567890", ""},
		{"GET", "/b", []string{"Range", "bytes=0-1", "If-None-Match", `"v1"`}, 304, "", ""},
		{"HEAD", "/b", []string{"Range", "bytes=0-1"}, 200, "", ""},
		{"GET", "/gone", []string{"Range", "bytes=0-1"}, 404, "01234567890", ""},
	} {
		w := do(s, tc.method, tc.path, tc.hdr...)
		if w.Code != tc.code || w.Body.String() != tc.body || w.Header().Get("Content-Range") != tc.cr {
			t.Errorf("%s %s %q: %d %q %q", tc.method, tc.path, tc.hdr, w.Code, w.Body.String(), w.Header().Get("Content-Range"))
		}
		if tc.code == 206 {
			if cl := w.Header().Get("Content-Length"); cl != strconv.Itoa(len(tc.body)) ||
				w.Header().Get("Etag") != `"v1"` || w.Header().Get("Content-Type") != "text/plain" {
				t.Errorf("206 fields: %v", w.Header())
			}
			if !strings.Contains(status(w), "hit") {
				t.Errorf("206 Cache-Status %q", status(w))
			}
		}
	}
	if h.n.Load() != 2 {
		t.Fatalf("handler ran %d times", h.n.Load())
	}
}

// A range request for a URL with nothing stored goes to the handler with
// its Range, and nothing is stored; the full GETs that arrive meanwhile
// still fill the entry with one handler run between them, and are never
// handed a partial response.
func TestRangeMissPassesThrough(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	full := 0
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		if rg := r.Header.Get("Range"); rg != "" {
			if rg != "bytes=2-4" {
				t.Errorf("handler saw Range %q", rg)
			}
			w.Header().Set("Content-Range", "bytes 2-4/11")
			w.WriteHeader(http.StatusPartialContent)
			fmt.Fprint(w, "234")
			return
		}
		mu.Lock()
		full++
		mu.Unlock()
		<-release
		fmt.Fprint(w, "01234567890")
	})
	m := newMW(t, nil, Options{})
	srv := newServer(t, m.Handler(h))
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				resp, body := get(t, srv.Client(), srv.URL+"/p", "Range", "bytes=2-4")
				if resp == nil || resp.StatusCode != 206 || body != "234" {
					t.Errorf("range request got %v %q", resp, body)
				}
				return
			}
			resp, body := get(t, srv.Client(), srv.URL+"/p")
			if resp == nil || resp.StatusCode != 200 || body != "01234567890" {
				t.Errorf("full request got %v %q", resp, body)
			}
		}()
	}
	time.Sleep(100 * time.Millisecond) // let the requests queue; release in any case
	close(release)
	wg.Wait()
	if full != 1 {
		t.Fatalf("%d full handler runs, want 1", full)
	}
	resp, body := get(t, srv.Client(), srv.URL+"/p", "Range", "bytes=2-4")
	if resp.StatusCode != 206 || body != "234" || !strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
		t.Fatalf("after the fill: %d %q %q", resp.StatusCode, body, resp.Header.Get("Cache-Status"))
	}
}

// A request that shares the lookup of a range request which found nothing
// stored is not handed that miss: it looks again, and fills the entry.
func TestRangeMissFollowerLooksAgain(t *testing.T) {
	h := &counter{fn: cacheable("whole")}
	m := newMW(t, nil, Options{})
	s := m.Handler(h)
	key := primaryKeyOf("http", "example.com", &url.URL{Path: "/rr"})
	release := make(chan struct{})
	done := make(chan struct{})
	go func() { // a range request's lookup, held open until released
		defer close(done)
		_, _ = m.cache.Fetch(context.Background(), key, func(context.Context, string) (*entry, stampede.Entry, error) {
			<-release
			return &entry{kind: kindPass, reason: reasonRangeMiss}, stampede.Entry{NoStore: true}, nil
		})
	}()
	got := make(chan *httptest.ResponseRecorder, 1)
	go func() { got <- do(s, "GET", "/rr") }()
	time.Sleep(100 * time.Millisecond) // the GET joins the held lookup
	close(release)
	<-done
	w := <-got
	if w.Code != 200 || w.Body.String() != "whole" || h.n.Load() != 1 {
		t.Fatalf("follower got %d %q %q, %d runs", w.Code, w.Body.String(), status(w), h.n.Load())
	}
	if w := do(s, "GET", "/rr"); !strings.Contains(status(w), "hit") {
		t.Fatalf("not stored: %q", status(w))
	}
}
