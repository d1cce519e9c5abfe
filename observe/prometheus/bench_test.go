package prometheus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stampede-go/stampede"
	stampedeprom "github.com/stampede-go/stampede/observe/prometheus"
)

// BenchmarkObserve is what the Collector adds to each event: a counter
// for every event, and a histogram for loads and waits.
func BenchmarkObserve(b *testing.B) {
	for _, bc := range []struct {
		name string
		e    stampede.Event
	}{
		{"local_hit", stampede.Event{Kind: stampede.EventLocalHit, Namespace: "products", Key: "sku-1"}},
		{"load", stampede.Event{Kind: stampede.EventLoad, Namespace: "products", Key: "sku-1", Duration: 12 * time.Millisecond, Reason: stampede.LoadMiss}},
		{"load_error", stampede.Event{Kind: stampede.EventLoad, Namespace: "products", Key: "sku-1", Duration: 12 * time.Millisecond, Reason: stampede.LoadRefresh, Err: errors.New("db down")}},
		{"wait", stampede.Event{Kind: stampede.EventWait, Namespace: "products", Key: "sku-1", Duration: 3 * time.Millisecond, Reason: stampede.WaitNotify}},
	} {
		c, err := stampedeprom.New(stampedeprom.Options{})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.Observe(ctx, bc.e)
			}
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c.Observe(ctx, bc.e)
				}
			})
		})
	}
}

// BenchmarkLocalHit is an L1 hit, the cheapest Get, without an observer
// and with this one: what turning it on costs where it costs the most.
func BenchmarkLocalHit(b *testing.B) {
	observer := newBenchObserver(b)
	for _, bc := range []struct {
		name string
		obs  stampede.Observer
	}{{"unobserved", nil}, {"observed", observer}} {
		b.Run(bc.name, func(b *testing.B) {
			c, err := stampede.New[string](nil, stampede.Options{Observer: bc.obs})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			load := func(context.Context, string) (string, error) { return "v", nil }
			if _, err := c.Get(ctx, "k", load); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Get(ctx, "k", load); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if s := c.Stats(); s.Loads != 1 || s.LocalHits == 0 {
				b.Fatalf("%d loads, %d L1 hits; want 1 load, the rest L1 hits", s.Loads, s.LocalHits)
			}
		})
	}
}

func newBenchObserver(b *testing.B) stampede.Observer {
	c, err := stampedeprom.New(stampedeprom.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return c
}
