package prometheus_test

import (
	"context"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stampede-go/stampede"
	stampedeprom "github.com/stampede-go/stampede/observe/prometheus"
)

// Each event is counted by namespace, kind, reason and error class; loads
// and waits land in their histograms; the key is in none of it.
func TestObserve(t *testing.T) {
	c, err := stampedeprom.New(stampedeprom.Options{LoadBuckets: []float64{0.1, 1}, WaitBuckets: []float64{0.05}})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	ctx := context.Background()
	for _, e := range []stampede.Event{
		{Kind: stampede.EventLocalHit},
		{Kind: stampede.EventLocalHit},
		{Kind: stampede.EventLoad, Duration: 20 * time.Millisecond, Reason: stampede.LoadMiss},
		{Kind: stampede.EventLoad, Duration: 2 * time.Second, Reason: stampede.LoadRefresh, Err: errors.New("db down")},
		{Kind: stampede.EventLoad, Duration: 500 * time.Millisecond, Reason: stampede.LoadMiss, Err: stampede.ErrNotFound},
		{Kind: stampede.EventWait, Duration: 10 * time.Millisecond, Reason: stampede.WaitNotify},
		{Kind: stampede.EventWait, Duration: 3 * time.Second, Reason: stampede.WaitTimeout},
		{Kind: stampede.EventHTTPBypass, Reason: "method"},
		{Kind: stampede.EventHTTPHit},
		{Kind: stampede.EventLeaseWon, Namespace: "users"},
		{Kind: stampede.EventMiss, Namespace: "bad\xffutf8"},
	} {
		if e.Namespace == "" {
			e.Namespace = "products"
		}
		e.Key = "sku-1"
		c.Observe(ctx, e)
	}
	want := `
# HELP stampede_events_total Events of stampede caches, by kind (local_hit, redis_hit, stale, miss, load, wait, lease_won, ..., http_hit, ...), reason and error class.
# TYPE stampede_events_total counter
stampede_events_total{error="",kind="http_bypass",namespace="products",reason="method"} 1
stampede_events_total{error="",kind="http_hit",namespace="products",reason=""} 1
stampede_events_total{error="",kind="lease_won",namespace="users",reason=""} 1
stampede_events_total{error="",kind="load",namespace="products",reason="miss"} 1
stampede_events_total{error="",kind="local_hit",namespace="products",reason=""} 2
stampede_events_total{error="",kind="miss",namespace="bad` + "\uFFFD" + `utf8",reason=""} 1
stampede_events_total{error="",kind="wait",namespace="products",reason="notify"} 1
stampede_events_total{error="",kind="wait",namespace="products",reason="timeout"} 1
stampede_events_total{error="error",kind="load",namespace="products",reason="refresh"} 1
stampede_events_total{error="not_found",kind="load",namespace="products",reason="miss"} 1
# HELP stampede_load_duration_seconds How long loader calls took, by why they ran (miss, refresh, early, local) and error class (empty for none).
# TYPE stampede_load_duration_seconds histogram
stampede_load_duration_seconds_bucket{error="",namespace="products",reason="miss",le="0.1"} 1
stampede_load_duration_seconds_bucket{error="",namespace="products",reason="miss",le="1"} 1
stampede_load_duration_seconds_bucket{error="",namespace="products",reason="miss",le="+Inf"} 1
stampede_load_duration_seconds_sum{error="",namespace="products",reason="miss"} 0.02
stampede_load_duration_seconds_count{error="",namespace="products",reason="miss"} 1
stampede_load_duration_seconds_bucket{error="error",namespace="products",reason="refresh",le="0.1"} 0
stampede_load_duration_seconds_bucket{error="error",namespace="products",reason="refresh",le="1"} 0
stampede_load_duration_seconds_bucket{error="error",namespace="products",reason="refresh",le="+Inf"} 1
stampede_load_duration_seconds_sum{error="error",namespace="products",reason="refresh"} 2
stampede_load_duration_seconds_count{error="error",namespace="products",reason="refresh"} 1
stampede_load_duration_seconds_bucket{error="not_found",namespace="products",reason="miss",le="0.1"} 0
stampede_load_duration_seconds_bucket{error="not_found",namespace="products",reason="miss",le="1"} 1
stampede_load_duration_seconds_bucket{error="not_found",namespace="products",reason="miss",le="+Inf"} 1
stampede_load_duration_seconds_sum{error="not_found",namespace="products",reason="miss"} 0.5
stampede_load_duration_seconds_count{error="not_found",namespace="products",reason="miss"} 1
# HELP stampede_wait_duration_seconds How long callers waited for another node's load, by how the wait ended (notify, recheck, timeout, closed).
# TYPE stampede_wait_duration_seconds histogram
stampede_wait_duration_seconds_bucket{namespace="products",reason="notify",le="0.05"} 1
stampede_wait_duration_seconds_bucket{namespace="products",reason="notify",le="+Inf"} 1
stampede_wait_duration_seconds_sum{namespace="products",reason="notify"} 0.01
stampede_wait_duration_seconds_count{namespace="products",reason="notify"} 1
stampede_wait_duration_seconds_bucket{namespace="products",reason="timeout",le="0.05"} 0
stampede_wait_duration_seconds_bucket{namespace="products",reason="timeout",le="+Inf"} 1
stampede_wait_duration_seconds_sum{namespace="products",reason="timeout"} 3
stampede_wait_duration_seconds_count{namespace="products",reason="timeout"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %+v", err, problems)
	}
}

func TestNewRejectsUnsortedBuckets(t *testing.T) {
	for _, opts := range []stampedeprom.Options{
		{LoadBuckets: []float64{1, 0.5}},
		{WaitBuckets: []float64{0.1, 0.1}},
	} {
		if _, err := stampedeprom.New(opts); err == nil {
			t.Errorf("New(%+v): no error", opts)
		}
	}
}

// Every metric the Collector exports is named in the package doc and in
// the README, and nothing else is.
func TestDocumentedNames(t *testing.T) {
	c, err := stampedeprom.New(stampedeprom.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	for _, k := range []stampede.EventKind{stampede.EventLocalHit, stampede.EventLoad, stampede.EventWait} {
		c.Observe(context.Background(), stampede.Event{Kind: k})
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var exported []string
	for _, mf := range mfs {
		exported = append(exported, mf.GetName())
	}
	name := regexp.MustCompile(`stampede_[a-z_]*[a-z]`)
	for _, file := range []string{"doc.go", "README.md"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var documented []string
		for _, n := range name.FindAllString(string(b), -1) {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				n = strings.TrimSuffix(n, suffix)
			}
			if !slices.Contains(documented, n) {
				documented = append(documented, n)
			}
		}
		slices.Sort(documented)
		if !slices.Equal(documented, exported) {
			t.Errorf("%s names %v; the Collector exports %v", file, documented, exported)
		}
	}
}
