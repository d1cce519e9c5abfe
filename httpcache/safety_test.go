package httpcache

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stampede-go/stampede/internal/redistest"
)

// Conditional requests are answered 304 from the stored copy, and only to
// the clients that sent validators: the handler always sees an
// unconditional request, so the entry holds the full response.
func TestConditionalRequests(t *testing.T) {
	lm := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		if r.Header.Get("If-None-Match") != "" || r.Header.Get("If-Modified-Since") != "" {
			t.Errorf("handler saw validators")
		}
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Etag", `W/"v1"`)
		w.Header().Set("Last-Modified", lm.Format(http.TimeFormat))
		fmt.Fprint(w, "full body")
	}}
	s := newMW(t, nil, Options{}).Handler(h)

	w := do(s, "GET", "/c", "If-None-Match", `"v1"`) // strong tag, weak comparison
	if w.Code != http.StatusNotModified || w.Body.Len() != 0 || w.Header().Get("Etag") != `W/"v1"` {
		t.Fatalf("first: %d %q %v", w.Code, w.Body.String(), w.Header())
	}
	if w := do(s, "GET", "/c"); w.Code != 200 || w.Body.String() != "full body" {
		t.Fatalf("unconditional after a 304: %d %q", w.Code, w.Body.String())
	}
	for _, tc := range []struct {
		hdr  []string
		want int
	}{
		{[]string{"If-None-Match", `"other", W/"v1"`}, 304},
		{[]string{"If-None-Match", `"other"`}, 200},
		{[]string{"If-None-Match", `*`}, 304},
		{[]string{"If-Modified-Since", lm.Format(http.TimeFormat)}, 304},
		{[]string{"If-Modified-Since", lm.Add(-time.Second).Format(http.TimeFormat)}, 200},
		// If-None-Match takes precedence over If-Modified-Since.
		{[]string{"If-None-Match", `"other"`, "If-Modified-Since", lm.Format(http.TimeFormat)}, 200},
	} {
		if w := do(s, "GET", "/c", tc.hdr...); w.Code != tc.want {
			t.Errorf("%q: %d, want %d", tc.hdr, w.Code, tc.want)
		}
	}
	if h.n.Load() != 1 {
		t.Fatalf("handler ran %d times", h.n.Load())
	}
}

// A successful unsafe request invalidates the stored GET of its URL (and of
// same-origin Location and Content-Location); a failed one does not. Purge
// removes an entry from Redis and from the memory of every node.
func TestInvalidationAndPurge(t *testing.T) {
	mr, rdb := redistest.Mini(t)
	h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		switch r.Method {
		case http.MethodGet:
			w.Header().Set("Cache-Control", "max-age=600")
			fmt.Fprintf(w, "%s v%d", r.URL.Path, n)
		case http.MethodPost:
			if r.URL.Query().Get("fail") != "" {
				http.Error(w, "no", http.StatusConflict)
				return
			}
			w.Header().Set("Location", "/other")
			w.WriteHeader(http.StatusCreated)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}}
	a := newMW(t, rdb, Options{})
	b := newMW(t, redistestClient(t, mr.Addr()), Options{})
	sa, sb := a.Handler(h), b.Handler(h)

	first := do(sa, "GET", "/x").Body.String()
	other := do(sa, "GET", "/other").Body.String()
	if do(sb, "GET", "/x").Body.String() != first {
		t.Fatal("node b does not share the entry")
	}
	do(sa, "POST", "/x?fail=1")
	if got := do(sa, "GET", "/x").Body.String(); got != first {
		t.Fatalf("failed POST invalidated: %q", got)
	}
	if w := do(sa, "POST", "/x"); w.Code != http.StatusCreated {
		t.Fatal(w.Code)
	}
	second := do(sa, "GET", "/x").Body.String()
	if second == first {
		t.Fatal("successful POST did not invalidate")
	}
	if got := do(sa, "GET", "/other").Body.String(); got == other {
		t.Fatal("Location target not invalidated")
	}
	for _, method := range []string{"PUT", "PATCH", "DELETE"} {
		before := do(sa, "GET", "/x").Body.String()
		do(sa, method, "/x")
		if do(sa, "GET", "/x").Body.String() == before {
			t.Fatalf("%s did not invalidate", method)
		}
	}

	// Purge on node a evicts node b's in-memory copy too.
	cur := do(sa, "GET", "/x").Body.String()
	if do(sb, "GET", "/x").Body.String() != cur {
		t.Fatal("node b out of step")
	}
	if err := a.Purge(context.Background(), "http://example.com/x"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for do(sb, "GET", "/x").Body.String() == cur {
		if time.Now().After(deadline) {
			t.Fatal("node b still serves the purged entry")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := a.Purge(context.Background(), "/relative"); err == nil {
		t.Fatal("Purge accepted a relative URL")
	}
}

// What is never stored, and the Cache-Status that says why.
func TestNeverStored(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		req    []string
		resp   func(w http.ResponseWriter)
		opts   Options
		detail string
		fwd    string
		stored bool
	}{
		{name: "request no-store", req: []string{"Cache-Control", "no-store"}, detail: "no-store"},
		{name: "response no-store", resp: withCC("no-store, max-age=60"), detail: "no-store"},
		{name: "private", resp: withCC("private, max-age=60"), detail: "private"},
		{name: "no-cache", resp: withCC("no-cache, max-age=60"), detail: "no-cache"},
		{name: "set-cookie", resp: func(w http.ResponseWriter) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Set-Cookie", "a=b")
		}, detail: "set-cookie"},
		{name: "set-cookie allowed, stripped", opts: Options{CacheSetCookie: true}, resp: func(w http.ResponseWriter) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Set-Cookie", "a=b")
		}, stored: true},
		{name: "vary star", resp: func(w http.ResponseWriter) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Vary", "Accept, *")
		}, detail: "vary-star"},
		{name: "authorization", req: []string{"Authorization", "Bearer x"}, resp: withCC("max-age=60"), detail: "authorization"},
		{name: "authorization public", req: []string{"Authorization", "Bearer x"}, resp: withCC("public, max-age=60"), stored: true},
		{name: "authorization s-maxage", req: []string{"Authorization", "Bearer x"}, resp: withCC("s-maxage=60"), stored: true},
		{name: "authorization must-revalidate", req: []string{"Authorization", "Bearer x"}, resp: withCC("max-age=60, must-revalidate"), stored: true},
		{name: "POST", method: "POST", resp: withCC("max-age=60"), fwd: "method"},
		{name: "OPTIONS", method: "OPTIONS", resp: withCC("max-age=60"), fwd: "method"},
		{name: "If-Match", req: []string{"If-Match", `"a"`}, resp: withCC("max-age=60"), detail: "precondition"},
		{name: "If-Unmodified-Since", req: []string{"If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"}, resp: withCC("max-age=60"), detail: "precondition"},
		{name: "two ranges", req: []string{"Range", "bytes=0-1,3-4"}, resp: withCC("max-age=60"), detail: "range"},
		{name: "range miss", req: []string{"Range", "bytes=0-1"}, resp: withCC("max-age=60"), detail: "range"},
		{name: "206", resp: func(w http.ResponseWriter) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.WriteHeader(http.StatusPartialContent)
		}, detail: "status"},
		{name: "302", resp: func(w http.ResponseWriter) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.WriteHeader(http.StatusFound)
		}, detail: "status"},
		{name: "302 made cacheable", opts: Options{CacheableStatuses: []int{200, 302}}, resp: func(w http.ResponseWriter) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.WriteHeader(http.StatusFound)
		}, stored: true},
		{name: "404 is cacheable", resp: func(w http.ResponseWriter) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.WriteHeader(http.StatusNotFound)
		}, stored: true},
		{name: "too big", opts: Options{MaxBodySize: 10}, resp: func(w http.ResponseWriter) {
			w.Header().Set("Cache-Control", "max-age=60")
			_, _ = io.WriteString(w, "more than ten bytes")
		}, detail: "too-big"},
		{name: "no freshness", resp: func(w http.ResponseWriter) {}, detail: "no-freshness"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
				if tc.resp != nil {
					tc.resp(w)
				}
				_, _ = io.WriteString(w, "body")
			}}
			s := newMW(t, nil, tc.opts).Handler(h)
			method := tc.method
			if method == "" {
				method = "GET"
			}
			w := do(s, method, "/n", tc.req...)
			if tc.detail != "" && !hasDetail(status(w), tc.detail) {
				t.Errorf("Cache-Status %q, want detail=%s", status(w), tc.detail)
			}
			if tc.fwd != "" && !strings.Contains(status(w), "fwd="+tc.fwd) {
				t.Errorf("Cache-Status %q, want fwd=%s", status(w), tc.fwd)
			}
			if tc.name == "set-cookie allowed, stripped" && w.Header().Get("Set-Cookie") == "" {
				t.Errorf("the filling client lost its cookie")
			}
			// A plain GET is what a wrongly stored entry would be served to.
			w = do(s, "GET", "/n")
			if stored := h.n.Load() == 1; stored != tc.stored {
				t.Fatalf("stored = %v, want %v (%q)", stored, tc.stored, status(w))
			}
			if tc.stored && w.Header().Get("Set-Cookie") != "" {
				t.Errorf("a cookie was served from the cache")
			}
		})
	}
}

func withCC(cc string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) { w.Header().Set("Cache-Control", cc) }
}

// The key covers method, scheme, host, path and normalized query in an
// encoding where no two distinct requests meet.
func TestKeyCollisions(t *testing.T) {
	var a, b keyBuf
	a.add("ab")
	a.add("c")
	b.add("a")
	b.add("bc")
	if a.sum() == b.sum() {
		t.Fatal("length prefixes do not separate fields")
	}
	h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "%s|%s|%s", r.Host, r.URL.EscapedPath(), r.URL.RawQuery)
	}}
	s := newMW(t, nil, Options{}).Handler(h)
	for _, target := range []string{
		"http://example.com/x?a=1",
		"http://example.com/x%3Fa=1", // the '?' inside the path
		"http://example.com/x/?a=1",
		"http://example.com/x?a=1&a=2",
		"http://example.com/x?a=2&a=1", // order within one name matters
		"http://example.com/x?a=1%26b%3D2",
		"http://example.com/x?a=1&b=2",
		"http://example.co/mx?a=1",
		"https://example.com/x?a=1",
		"http://example.com:8080/x?a=1",
		"http://example.com/x?a%3D1",
	} {
		r := httptest.NewRequest("GET", target, nil)
		if strings.HasPrefix(target, "https") {
			r.TLS = nil // httptest sets TLS for https targets
			r = httptest.NewRequest("GET", target, nil)
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if !strings.Contains(status(w), "fwd=uri-miss") {
			t.Errorf("%s answered from another request's entry: %q %q", target, w.Body.String(), status(w))
		}
	}
	// Normalization: parameter order across names and percent-encoding do
	// not matter.
	n := h.n.Load()
	for _, target := range []string{"/y?b=2&a=1", "/y?a=1&b=2", "/y?a=%31&b=2"} {
		do(s, "GET", target)
	}
	if got := h.n.Load() - n; got != 1 {
		t.Fatalf("equivalent queries ran the handler %d times, want 1", got)
	}
}

// Vary makes variants; a header the handler does not key on cannot poison
// the entry, and one it keys on (and declares) makes a variant of its own.
func TestVaryAndPoisoning(t *testing.T) {
	h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=60")
		switch r.URL.Path {
		case "/lang":
			w.Header().Set("Vary", "Accept-Language")
			fmt.Fprintf(w, "lang=%s", r.Header.Get("Accept-Language"))
		case "/links": // keys on X-Forwarded-Host and says so
			w.Header().Set("Vary", "X-Forwarded-Host")
			host := r.Header.Get("X-Forwarded-Host")
			if host == "" {
				host = r.Host
			}
			fmt.Fprintf(w, "https://%s/", host)
		default: // ignores it
			fmt.Fprintf(w, "https://%s/", r.Host)
		}
	}}
	s := newMW(t, nil, Options{}).Handler(h)
	for _, lang := range []string{"en", "fr", "en", "fr", "en, de", "en,de"} {
		want := "lang=" + lang
		if lang == "en,de" {
			want = "lang=en, de" // the same list: the same variant
		}
		if got := do(s, "GET", "/lang", "Accept-Language", lang).Body.String(); got != want {
			t.Fatalf("Accept-Language %q got %q", lang, got)
		}
	}
	if got := h.n.Load(); got != 3 {
		t.Fatalf("handler ran %d times, want 3 (en, fr, en+de)", got)
	}

	evil := []string{"X-Forwarded-Host", "evil.test"}
	if got := do(s, "GET", "/plain", evil...).Body.String(); got != "https://example.com/" {
		t.Fatalf("attacker got %q", got)
	}
	if got := do(s, "GET", "/plain").Body.String(); got != "https://example.com/" {
		t.Fatalf("plain entry poisoned: %q", got)
	}
	do(s, "GET", "/links", evil...)
	if got := do(s, "GET", "/links").Body.String(); got != "https://example.com/" {
		t.Fatalf("variant entry poisoned: %q", got)
	}
}

// Hop-by-hop fields are not stored, Content-Length is the body's, multi-value
// fields keep every value, and a HEAD fills the entry with the GET's body.
func TestStoredFields(t *testing.T) {
	h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		if r.Method != http.MethodGet {
			t.Errorf("handler saw %s", r.Method)
		}
		hd := w.Header()
		hd.Set("Cache-Control", "max-age=60")
		hd.Set("Connection", "X-Private-Hop")
		hd.Set("X-Private-Hop", "1")
		hd.Set("Keep-Alive", "timeout=5")
		hd.Set("Proxy-Authenticate", "Basic")
		hd.Set("Upgrade", "h2c")
		hd.Add("Link", "</a>; rel=preload")
		hd.Add("Link", "</b>; rel=preload")
		_, _ = io.WriteString(w, "twelve bytes")
	}}
	s := newMW(t, nil, Options{}).Handler(h)
	w := do(s, "HEAD", "/h")
	if w.Body.Len() != 0 || w.Header().Get("Content-Length") != "12" {
		t.Fatalf("HEAD: %q %v", w.Body.String(), w.Header())
	}
	w = do(s, "GET", "/h")
	if w.Body.String() != "twelve bytes" || h.n.Load() != 1 {
		t.Fatalf("GET after HEAD: %q, %d runs", w.Body.String(), h.n.Load())
	}
	for _, f := range []string{"Connection", "X-Private-Hop", "Keep-Alive", "Proxy-Authenticate", "Upgrade"} {
		if v := w.Header().Get(f); v != "" {
			t.Errorf("hop-by-hop %s stored: %q", f, v)
		}
	}
	if got := w.Header().Get("Content-Length"); got != "12" {
		t.Errorf("Content-Length %q", got)
	}
	if got := w.Header().Values("Link"); !slices.Equal(got, []string{"</a>; rel=preload", "</b>; rel=preload"}) {
		t.Errorf("Link %q", got)
	}
	if w.Header().Get("Age") == "" || w.Header().Get("Date") == "" {
		t.Errorf("no Age or Date: %v", w.Header())
	}
}

// Bypassed requests get the server's own ResponseWriter: server-sent events
// flush, WebSocket-style upgrades hijack, and an unsafe request's writer
// keeps Flush, Hijack and Unwrap. A cacheable request whose handler flushes
// streams to its client and is not stored.
func TestBypassKeepsWriterInterfaces(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Upgrade") != "":
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			defer conn.Close()
			_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\nhello")
			_ = brw.Flush()
		case r.Method == http.MethodPost:
			_, f := w.(http.Flusher)
			_, hj := w.(http.Hijacker)
			_, uw := w.(interface{ Unwrap() http.ResponseWriter })
			if !f || !hj || !uw {
				t.Errorf("POST writer: Flusher %v Hijacker %v Unwrap %v", f, hj, uw)
			}
			fmt.Fprint(w, "posted")
		default:
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 3 {
				fmt.Fprintf(w, "data: %d\n\n", i)
				if err := http.NewResponseController(w).Flush(); err != nil {
					t.Errorf("flush: %v", err)
				}
			}
		}
	})
	m := newMW(t, nil, Options{})
	srv := httptest.NewServer(m.Handler(h))
	defer srv.Close()

	for _, accept := range []string{"text/event-stream", ""} {
		resp, body := get(t, srv.Client(), srv.URL+"/events", "Accept", accept)
		if body != "data: 0\n\ndata: 1\n\ndata: 2\n\n" {
			t.Fatalf("Accept %q: %q", accept, body)
		}
		want := "event-stream"
		if accept == "" {
			want = "streamed"
		}
		if !hasDetail(resp.Header.Get("Cache-Status"), want) {
			t.Fatalf("Accept %q: Cache-Status %q", accept, resp.Header.Get("Cache-Status"))
		}
	}

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	rest := make([]byte, 5)
	if _, err := io.ReadFull(br, rest); err != nil || string(rest) != "hello" {
		t.Fatalf("after upgrade: %q %v", rest, err)
	}

	r, err := srv.Client().Post(srv.URL+"/p", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
}

// A 5xx shared with the requests that waited for it keeps its status and
// body but not the cookie meant for the client whose request ran it.
func TestServerErrorCookieNotShared(t *testing.T) {
	h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		time.Sleep(100 * time.Millisecond) // the others arrive and wait
		w.Header().Set("Set-Cookie", fmt.Sprintf("sess=%d", n))
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, "busy")
	}}
	s := newMW(t, nil, Options{}).Handler(h)
	var wg sync.WaitGroup
	var cookies, unavailable atomic.Int64
	for range 5 {
		wg.Go(func() {
			w := do(s, "GET", "/e")
			if w.Code == http.StatusServiceUnavailable && w.Body.String() == "busy" {
				unavailable.Add(1)
			}
			if w.Header().Get("Set-Cookie") != "" {
				cookies.Add(1)
			}
		})
	}
	wg.Wait()
	if unavailable.Load() != 5 {
		t.Fatalf("%d of 5 clients got the 503", unavailable.Load())
	}
	if cookies.Load() != h.n.Load() {
		t.Fatalf("%d clients got a Set-Cookie from %d handler runs: a cookie reached another client", cookies.Load(), h.n.Load())
	}
}

// Purge of a bare origin ("http://host") removes the entry for "/".
func TestPurgeBareOrigin(t *testing.T) {
	h := &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "home")
	}}
	mw := newMW(t, nil, Options{})
	s := mw.Handler(h)
	do(s, "GET", "/")
	do(s, "GET", "/")
	if h.n.Load() != 1 {
		t.Fatalf("not stored: %d runs", h.n.Load())
	}
	if err := mw.Purge(context.Background(), "http://example.com"); err != nil {
		t.Fatal(err)
	}
	do(s, "GET", "/")
	if h.n.Load() != 2 {
		t.Fatalf("%d runs after Purge: the entry for / survived", h.n.Load())
	}
}
