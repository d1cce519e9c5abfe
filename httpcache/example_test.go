package httpcache_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/stampede-go/stampede/httpcache"
)

func Example() {
	// nil: one process, memory only. Pass a redis.UniversalClient to share
	// the cache, and its rebuild lock, across a fleet.
	mw, err := httpcache.New(nil, httpcache.Options{})
	if err != nil {
		panic(err)
	}
	defer mw.Close()

	runs := 0
	mux := http.NewServeMux()
	mux.HandleFunc("GET /report", func(w http.ResponseWriter, r *http.Request) {
		runs++
		w.Header().Set("Cache-Control", "public, max-age=60")
		fmt.Fprintf(w, "expensive report #%d", runs)
	})
	srv := httptest.NewServer(mw.Handler(mux))
	defer srv.Close()

	for range 3 {
		resp, err := http.Get(srv.URL + "/report")
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// The ttl parameter (remaining freshness) is left out: it counts down.
		status, _, _ := strings.Cut(resp.Header.Get("Cache-Status"), "; ttl=")
		fmt.Printf("%s | %s\n", body, status)
	}
	// Output:
	// expensive report #1 | stampede; fwd=uri-miss; fwd-status=200; stored
	// expensive report #1 | stampede; hit
	// expensive report #1 | stampede; hit
}
