// Command httpserver puts a slow JSON endpoint behind httpcache on two
// servers that share one Redis, as two nodes behind a load balancer would,
// and sends concurrent requests to both. It prints how often the handler
// ran and the Cache-Status values the clients saw: without the cache every
// request runs the handler; with it one run answers both servers, and the
// next requests are hits.
//
//	cd examples && go run ./httpserver
//	cd examples && go run ./httpserver -redis localhost:6379 -requests 1000
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stampede-go/stampede/examples/internal/demo"
	"github.com/stampede-go/stampede/httpcache"
)

type config struct {
	RedisAddr string        // empty: embedded miniredis
	Requests  int           // concurrent requests per round, split between the two servers
	Slow      time.Duration // how long the handler takes
}

func main() {
	cfg := config{}
	flag.StringVar(&cfg.RedisAddr, "redis", "", "Redis address (default: an embedded miniredis)")
	flag.IntVar(&cfg.Requests, "requests", 100, "concurrent requests per round, half to each server")
	flag.DurationVar(&cfg.Slow, "slow", 300*time.Millisecond, "how long the handler takes")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "httpserver:", err)
		os.Exit(1)
	}
}

const (
	path = "/api/products/sku-1"
	// host is the name clients use for the whole fleet. The cache key
	// includes the Host header, so the two servers share entries because
	// they are reached under one name, as behind a load balancer.
	host = "shop.example"
)

// product is the slow endpoint. It counts its runs.
type product struct {
	slow time.Duration
	runs atomic.Int64
}

func (p *product) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.runs.Add(1)
	time.Sleep(p.slow) // a slow query, a slow upstream service, ...
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=60")
	_ = json.NewEncoder(w).Encode(map[string]any{"id": "sku-1", "name": "Espresso machine", "price_cents": 34900})
}

func run(ctx context.Context, w io.Writer, cfg config) error {
	if cfg.Requests < 2 {
		return errors.New("need at least 2 requests")
	}
	rds, err := demo.StartRedis(ctx, cfg.RedisAddr)
	if err != nil {
		return err
	}
	ns := demo.Namespace("httpserver")
	defer rds.Close(context.WithoutCancel(ctx), ns)

	client := &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Requests},
		Timeout:   30 * time.Second,
	}
	defer client.CloseIdleConnections()

	fmt.Fprintf(w, "GET %s takes %v and says Cache-Control: public, max-age=60.\n", path, cfg.Slow)
	fmt.Fprintf(w, "Two servers on loopback; Redis: %s. %d requests at once, half to each server.\n\n", rds, cfg.Requests)

	// Without the cache.
	api := &product{slow: cfg.Slow}
	urls, stop, err := serve(api, api)
	if err != nil {
		return err
	}
	statuses, err := fire(ctx, client, urls, cfg.Requests)
	stop()
	if err != nil {
		return err
	}
	report(w, "without httpcache", cfg.Requests, api.runs.Swap(0), statuses)

	// Each server with its own middleware and Redis client, sharing Redis.
	var handlers [2]http.Handler
	for i := range handlers {
		rdb := rds.Client()
		defer rdb.Close()
		mw, err := httpcache.New(rdb, httpcache.Options{Namespace: ns})
		if err != nil {
			return err
		}
		defer mw.Close()
		handlers[i] = mw.Handler(api)
	}
	urls, stop, err = serve(handlers[0], handlers[1])
	if err != nil {
		return err
	}
	defer stop()
	for _, round := range []string{"with httpcache, cold", "with httpcache, again"} {
		statuses, err := fire(ctx, client, urls, cfg.Requests)
		if err != nil {
			return err
		}
		report(w, round, cfg.Requests, api.runs.Swap(0), statuses)
	}
	return nil
}

// serve starts two HTTP servers on loopback and returns their base URLs
// and a function that stops them.
func serve(a, b http.Handler) (urls []string, stop func(), err error) {
	var servers []*http.Server
	stop = func() {
		for _, s := range servers {
			_ = s.Close()
		}
	}
	for _, h := range []http.Handler{a, b} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			stop()
			return nil, nil, err
		}
		s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, s)
		go func() { _ = s.Serve(ln) }()
		urls = append(urls, "http://"+ln.Addr().String())
	}
	return urls, stop, nil
}

// fire sends n concurrent GETs, alternating between the servers, and
// returns how many responses carried each Cache-Status value.
func fire(ctx context.Context, client *http.Client, urls []string, n int) (map[string]int, error) {
	var (
		mu       sync.Mutex
		statuses = map[string]int{}
		errs     []error
		wg       sync.WaitGroup
	)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			status, err := get(ctx, client, urls[i%len(urls)]+path)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			statuses[status]++
		})
	}
	close(start)
	wg.Wait()
	return statuses, errors.Join(errs...)
}

// get fetches url under the fleet's name and returns the response's
// Cache-Status without its ttl parameter, which counts down ("" when the
// response has none).
func get(ctx context.Context, client *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var body struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK || body.ID != "sku-1" {
		return "", fmt.Errorf("GET %s: %s, body %+v, %v", url, resp.Status, body, err)
	}
	status := resp.Header.Get("Cache-Status")
	if status == "" {
		return "", nil
	}
	var params []string
	for p := range strings.SplitSeq(status, ";") {
		if p = strings.TrimSpace(p); !strings.HasPrefix(p, "ttl=") {
			params = append(params, p)
		}
	}
	return strings.Join(params, "; "), nil
}

// report prints one round: the handler runs and each Cache-Status value
// with the number of responses that carried it, most frequent first.
func report(w io.Writer, what string, requests int, runs int64, statuses map[string]int) {
	times := "times"
	if runs == 1 {
		times = "time"
	}
	fmt.Fprintf(w, "%-22s %d requests, handler ran %d %s\n", what, requests, runs, times)
	kinds := make([]string, 0, len(statuses))
	for s := range statuses {
		kinds = append(kinds, s)
	}
	slices.SortFunc(kinds, func(a, b string) int {
		return cmp.Or(cmp.Compare(statuses[b], statuses[a]), strings.Compare(a, b))
	})
	for _, s := range kinds {
		if s == "" {
			fmt.Fprintf(w, "  %5d × no Cache-Status header\n", statuses[s])
			continue
		}
		fmt.Fprintf(w, "  %5d × Cache-Status: %s\n", statuses[s], s)
	}
}
