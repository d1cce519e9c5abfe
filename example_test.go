package stampede_test

import (
	"context"
	"errors"
	"fmt"
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
