package stampede

import (
	"context"
	"testing"
)

// warmCache returns a single-process cache holding key "k".
func warmCache[V any](b *testing.B, v V) (*Cache[V], func(context.Context, string) (V, error)) {
	c := newCache[V](b, backend{}, Options{})
	load := func(context.Context, string) (V, error) { return v, nil }
	if _, err := c.Get(context.Background(), "k", load); err != nil {
		b.Fatal(err)
	}
	return c, load
}

func benchLocalHit[V any](b *testing.B, v V) {
	c, load := warmCache(b, v)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Get(ctx, "k", load); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n := c.Stats().Loads; n != 1 {
		b.Fatalf("loads = %d, want 1", n)
	}
}

// BenchmarkLocalHitString: a fresh string value from L1.
func BenchmarkLocalHitString(b *testing.B) { benchLocalHit(b, "value") }

// BenchmarkLocalHitBytes: a fresh []byte value from L1.
func BenchmarkLocalHitBytes(b *testing.B) { benchLocalHit(b, []byte("value")) }

// BenchmarkLocalHitParallel: L1 hits from every core at once.
func BenchmarkLocalHitParallel(b *testing.B) {
	c, load := warmCache(b, "value")
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Get(ctx, "k", load); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkLocalHitObserved: an L1 hit with an Observer set (one that does
// nothing), next to BenchmarkLocalHitString, which has none: what turning
// observation on costs a hit.
func BenchmarkLocalHitObserved(b *testing.B) {
	var n int
	c := newCache[string](b, backend{}, Options{Observer: ObserverFunc(func(context.Context, Event) { n++ })})
	load := func(context.Context, string) (string, error) { return "value", nil }
	ctx := context.Background()
	if _, err := c.Get(ctx, "k", load); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(ctx, "k", load); err != nil {
			b.Fatal(err)
		}
	}
	if n == 0 {
		b.Fatal("the observer saw nothing")
	}
}
