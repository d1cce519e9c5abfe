package stampede

import (
	"context"
	"testing"
)

func BenchmarkLocalHitString(b *testing.B) {
	c, err := New[string](nil, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	load := func(context.Context, string) (string, error) { return "value", nil }
	if _, err := c.Get(ctx, "k", load); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Get(ctx, "k", load); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if c.Stats().Loads != 1 {
		b.Fatalf("loads = %d, want 1", c.Stats().Loads)
	}
}

func BenchmarkLocalHitParallel(b *testing.B) {
	c, err := New[string](nil, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	load := func(context.Context, string) (string, error) { return "value", nil }
	c.Get(ctx, "k", load)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Get(ctx, "k", load)
		}
	})
}
