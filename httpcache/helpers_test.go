package httpcache

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Everything New starts ends in Close; every server and client a test
	// starts ends with it.
	goleak.VerifyTestMain(m)
}

// newMW returns a middleware closed when the test ends.
func newMW(t testing.TB, rdb redis.UniversalClient, opts Options) *Middleware {
	t.Helper()
	m, err := New(rdb, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// newServer serves h over a real connection until the test ends.
func newServer(t testing.TB, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// counter is a handler that counts its runs and answers with a fixed
// response built by fn (n is the run's number, from 1).
type counter struct {
	n  atomic.Int64
	fn func(w http.ResponseWriter, r *http.Request, n int64)
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.fn(w, r, c.n.Add(1)) }

func cacheable(body string) func(http.ResponseWriter, *http.Request, int64) {
	return func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, body)
	}
}

// do sends one request through h without a network.
func do(h http.Handler, method, target string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// get sends a real request to a server.
func get(t testing.TB, client *http.Client, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Every node of a fleet is reached under one name, as behind a load
	// balancer.
	req.Host = "fleet.test"
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Error(err)
		return nil, ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Error(err)
	}
	return resp, string(b)
}

func status(w *httptest.ResponseRecorder) string { return w.Header().Get("Cache-Status") }

func hasDetail(cs, want string) bool { return strings.Contains(cs, "detail="+want) }

type redisClient = redis.Client

func newRedisClient(addr string) *redis.Client { return redis.NewClient(&redis.Options{Addr: addr}) }

// origin is a handler whose first run answers with a stored response,
// fresh for 10 s, and whose later runs answer as second says. It records
// the validators each run was sent.
type origin struct {
	counter
	mu   sync.Mutex
	sent []string // If-None-Match + If-Modified-Since of each run
}

const lastMod = "Sun, 01 Feb 2026 10:00:00 GMT"

func newOrigin(cc, validator string, second func(w http.ResponseWriter, r *http.Request, n int64)) *origin {
	o := &origin{}
	o.fn = func(w http.ResponseWriter, r *http.Request, n int64) {
		o.mu.Lock()
		o.sent = append(o.sent, r.Header.Get("If-None-Match")+r.Header.Get("If-Modified-Since"))
		o.mu.Unlock()
		if n > 1 {
			second(w, r, n)
			return
		}
		w.Header().Set("Cache-Control", cc)
		setValidator(w, validator)
		w.Header().Set("X-From", "run 1")
		fmt.Fprint(w, "v1 body")
	}
	return o
}

func setValidator(w http.ResponseWriter, validator string) {
	switch validator {
	case "etag":
		w.Header().Set("Etag", `"v1"`)
	case "last-modified":
		w.Header().Set("Last-Modified", lastMod)
	}
}

func (o *origin) validators() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.sent...)
}

// answer304 answers 304 with the stored validator and a field of its own.
func answer304(validator string) func(http.ResponseWriter, *http.Request, int64) {
	return func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=100")
		setValidator(w, validator)
		w.Header().Set("X-From", fmt.Sprintf("run %d, a 304", n))
		w.WriteHeader(http.StatusNotModified)
	}
}

func respond(status int, body string) func(http.ResponseWriter, *http.Request, int64) {
	return func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=100")
		w.Header().Set("X-From", fmt.Sprintf("run %d", n))
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}
}
