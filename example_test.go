package stampede_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/stampede-go/stampede"
)

type Product struct {
	ID    string
	Price int
}

// Two nodes of a fleet share one Redis: the database is queried once.
func Example() {
	mr, _ := miniredis.Run() // stands in for your Redis
	defer mr.Close()

	queries := 0
	loadProduct := func(ctx context.Context, id string) (Product, error) {
		queries++ // a slow database query
		return Product{ID: id, Price: 42}, nil
	}

	var nodes []*stampede.Cache[Product]
	for range 2 {
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		defer rdb.Close()
		c, err := stampede.New[Product](rdb, stampede.Options{
			Namespace: "products",
			TTL:       time.Minute,
			Stale:     10 * time.Minute, // serve stale while one node rebuilds
		})
		if err != nil {
			panic(err)
		}
		defer c.Close()
		nodes = append(nodes, c)
	}

	ctx := context.Background()
	for _, c := range nodes {
		p, err := c.Get(ctx, "sku-1", loadProduct)
		fmt.Println(p.ID, p.Price, err)
	}
	fmt.Println("database queries:", queries)
	// Output:
	// sku-1 42 <nil>
	// sku-1 42 <nil>
	// database queries: 1
}

// Fetch tells where a value came from and lets the loader steer storage.
func ExampleCache_Fetch() {
	c, _ := stampede.New[string](nil, stampede.Options{}) // one process, no Redis
	defer c.Close()
	ctx := context.Background()
	load := func(ctx context.Context, key string) (string, stampede.Entry, error) {
		return "hello", stampede.Entry{TTL: 5 * time.Second}, nil
	}
	r, _ := c.Fetch(ctx, "greeting", load)
	fmt.Println(r.Value, r.Source)
	r, _ = c.Fetch(ctx, "greeting", load)
	fmt.Println(r.Value, r.Source)
	// Output:
	// hello loader
	// hello local
}

// A loader's ErrNotFound is cached briefly, so a missing row is not queried
// again by every request.
func ExampleErrNotFound() {
	c, _ := stampede.New[string](nil, stampede.Options{NotFoundTTL: time.Second})
	defer c.Close()
	queries := 0
	load := func(ctx context.Context, key string) (string, error) {
		queries++
		return "", stampede.ErrNotFound
	}
	for range 3 {
		_, err := c.Get(context.Background(), "user:404", load)
		fmt.Println(errors.Is(err, stampede.ErrNotFound))
	}
	fmt.Println("queries:", queries)
	// Output:
	// true
	// true
	// true
	// queries: 1
}

// Metrics: count what the cache does. An ObserverFunc sees every event;
// the Prometheus and OpenTelemetry adapters are modules of their own.
func ExampleObserverFunc() {
	var mu sync.Mutex
	counts := map[stampede.EventKind]int{}
	c, _ := stampede.New[string](nil, stampede.Options{
		Observer: stampede.ObserverFunc(func(_ context.Context, e stampede.Event) {
			mu.Lock()
			counts[e.Kind]++ // e.Duration, e.Reason, e.ErrClass() say more
			mu.Unlock()
		}),
	})
	defer c.Close()
	load := func(context.Context, string) (string, error) { return "v", nil }
	for range 3 {
		c.Get(context.Background(), "k", load)
	}
	fmt.Println("loads:", counts[stampede.EventLoad], "local hits:", counts[stampede.EventLocalHit])
	// Output: loads: 1 local hits: 2
}

// Logging: what goes wrong reaches a *slog.Logger, at its level.
func ExampleOptions_logger() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "stack" {
				return slog.Attr{} // left out here, to print the same every time
			}
			return a
		},
	}))
	c, _ := stampede.New[string](nil, stampede.Options{Namespace: "products", Logger: logger})
	defer c.Close()
	_, err := c.Get(context.Background(), "sku-42", func(context.Context, string) (string, error) {
		panic("no database configured")
	})
	fmt.Println(errors.As(err, new(*stampede.PanicError)))
	// Output:
	// level=ERROR msg="stampede: loader panicked" namespace=products key=sku-42 panic="no database configured"
	// true
}

// A product page reads 40 products at once: the ones not cached are loaded
// in one query, once across the fleet, each written back under its own
// lease.
func ExampleCache_GetMany() {
	products, _ := stampede.New[string](nil, stampede.Options{TTL: time.Minute})
	defer products.Close()
	queries := 0
	load := func(ctx context.Context, ids []string) (map[string]string, error) {
		queries++ // SELECT ... WHERE id = ANY($1)
		out := make(map[string]string, len(ids))
		for _, id := range ids {
			if id != "sku-0" { // not in the database: left out, cached as not found
				out[id] = "Product " + id
			}
		}
		return out, nil
	}
	ctx := context.Background()
	got, err := products.GetMany(ctx, []string{"sku-1", "sku-2", "sku-0"}, load)
	fmt.Println(len(got), got["sku-2"], err)
	got, err = products.GetMany(ctx, []string{"sku-1", "sku-2", "sku-3"}, load)
	fmt.Println(len(got), got["sku-3"], err, "queries:", queries)
	// Output:
	// 2 Product sku-2 <nil>
	// 3 Product sku-3 <nil> queries: 2
}
