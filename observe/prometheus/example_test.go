package prometheus_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/stampede-go/stampede"
	stampedeprom "github.com/stampede-go/stampede/observe/prometheus"
)

// Register one Collector and give it to every cache as its Observer: the
// caches' events are on /metrics, by namespace, never by key.
func Example() {
	metrics, err := stampedeprom.New(stampedeprom.Options{})
	if err != nil {
		panic(err)
	}
	reg := prometheus.NewRegistry() // or prometheus.DefaultRegisterer
	reg.MustRegister(metrics)

	mr, _ := miniredis.Run() // stands in for your Redis
	defer mr.Close()
	var nodes []*stampede.Cache[string]
	for range 2 { // two nodes of a fleet
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		defer rdb.Close()
		c, err := stampede.New[string](rdb, stampede.Options{
			Namespace: "products",
			TTL:       time.Minute,
			Observer:  metrics,
		})
		if err != nil {
			panic(err)
		}
		defer c.Close()
		nodes = append(nodes, c)
	}
	ctx := context.Background()
	load := func(context.Context, string) (string, error) { return "espresso machine", nil }
	nodes[0].Get(ctx, "sku-1", load) // a miss: takes the lease and loads
	nodes[1].Get(ctx, "sku-1", load) // reads what the first node stored

	// What a scrape shows, less the histograms' buckets and sums.
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for line := range strings.Lines(rec.Body.String()) {
		if strings.HasPrefix(line, "stampede_events_total") || strings.HasPrefix(line, "stampede_load_duration_seconds_count") {
			fmt.Print(line)
		}
	}
	// Output:
	// stampede_events_total{error="",kind="lease_won",namespace="products",reason=""} 1
	// stampede_events_total{error="",kind="load",namespace="products",reason="miss"} 1
	// stampede_events_total{error="",kind="load_start",namespace="products",reason="miss"} 1
	// stampede_events_total{error="",kind="miss",namespace="products",reason=""} 1
	// stampede_events_total{error="",kind="redis_hit",namespace="products",reason=""} 1
	// stampede_load_duration_seconds_count{error="",namespace="products",reason="miss"} 1
}
