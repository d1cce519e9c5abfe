package httpcache

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// earlyHints writes a 102 and a 103 with a Link before a cacheable 200,
// after waiting for release when it is set.
func earlyHints(release chan struct{}) *counter {
	return &counter{fn: func(w http.ResponseWriter, r *http.Request, n int64) {
		w.WriteHeader(http.StatusProcessing)
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		if release != nil {
			<-release
		}
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "final")
	}}
}

// getTraced sends a GET and returns the response, its body and the 1xx
// responses the client saw before it.
func getTraced(t *testing.T, srv *httptest.Server, path string) (*http.Response, string, []string) {
	t.Helper()
	var mu sync.Mutex
	var interim []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		mu.Lock()
		defer mu.Unlock()
		interim = append(interim, fmt.Sprintf("%d %s", code, h.Get("Link")))
		return nil
	}}
	ctx := httptrace.WithClientTrace(context.Background(), trace)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
	mu.Lock()
	defer mu.Unlock()
	return resp, b.String(), interim
}

// RFC 9110 15.2: the 1xx responses of a handler run reach the client whose
// request started it, ahead of the final response; they are not stored,
// their fields do not leak into the final response, and they do not end
// its recording.
func TestInterimResponsesForwarded(t *testing.T) {
	h := earlyHints(nil)
	srv := newServer(t, newMW(t, nil, Options{}).Handler(h))
	resp, body, interim := getTraced(t, srv, "/i")
	if strings.Join(interim, ",") != "102 ,103 </style.css>; rel=preload" {
		t.Fatalf("1xx seen: %q", interim)
	}
	if resp.StatusCode != 200 || body != "final" || resp.Header.Get("Link") != "" ||
		!strings.Contains(resp.Header.Get("Cache-Status"), "stored") {
		t.Fatalf("final: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	resp, body, interim = getTraced(t, srv, "/i")
	if len(interim) != 0 || body != "final" || resp.Header.Get("Link") != "" || h.n.Load() != 1 {
		t.Fatalf("hit: 1xx %q, %q %v, %d runs", interim, body, resp.Header, h.n.Load())
	}
}

// The requests that share another request's run get its final response
// only.
func TestInterimOnlyForTheRequestThatRan(t *testing.T) {
	release := make(chan struct{})
	h := earlyHints(release)
	srv := newServer(t, newMW(t, nil, Options{}).Handler(h))
	type result struct {
		body    string
		interim []string
	}
	leader, follower := make(chan result, 1), make(chan result, 1)
	go func() { _, b, i := getTraced(t, srv, "/j"); leader <- result{b, i} }()
	for h.n.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	go func() { _, b, i := getTraced(t, srv, "/j"); follower <- result{b, i} }()
	time.Sleep(100 * time.Millisecond) // the follower joins the run
	close(release)
	l, f := <-leader, <-follower
	if l.body != "final" || len(l.interim) != 2 || f.body != "final" || len(f.interim) != 0 || h.n.Load() != 1 {
		t.Fatalf("leader %+v, follower %+v, %d runs", l, f, h.n.Load())
	}
}

// RFC 9110 15.2: no 1xx to an HTTP/1.0 client.
func TestInterimNotSentToHTTP10(t *testing.T) {
	srv := newServer(t, newMW(t, nil, Options{}).Handler(earlyHints(nil)))
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET /k HTTP/1.0\r\nHost: x\r\n\r\n")
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.0 200") {
		t.Fatalf("first status line %q, %v", line, err)
	}
}
