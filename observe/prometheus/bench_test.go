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
