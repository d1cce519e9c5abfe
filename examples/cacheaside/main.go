// Command cacheaside shows a cache stampede reaching a database, and
// stampede stopping it. A product catalogue lives in SQLite; 20 simulated
// nodes, each with its own Redis client, ask for the same product at the
// same moment while it is not in the cache. Plain cache-aside (GET, miss,
// SELECT, SET) sends one query per request; stampede.Cache sends one in
// all, and once the value has expired, one refresh that nobody waits for.
// The queries are counted by the database layer, not by the cache.
//
//	cd examples && go run ./cacheaside
//	cd examples && go run ./cacheaside -redis localhost:6379 -nodes 50
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stampede-go/stampede"
	"github.com/stampede-go/stampede/examples/internal/demo"
)

type config struct {
	RedisAddr string        // empty: embedded miniredis
	Nodes     int           // simulated servers, each with its own Redis client and DB pool
	Requests  int           // concurrent requests per node
	QueryTime time.Duration // how long the product query takes
	TTL       time.Duration // how long a cached product is fresh
}

func main() {
	cfg := config{}
	flag.StringVar(&cfg.RedisAddr, "redis", "", "Redis address (default: an embedded miniredis)")
	flag.IntVar(&cfg.Nodes, "nodes", 20, "simulated nodes")
	flag.IntVar(&cfg.Requests, "requests", 50, "concurrent requests per node")
	flag.DurationVar(&cfg.QueryTime, "query", 200*time.Millisecond, "how long one database query takes")
	flag.DurationVar(&cfg.TTL, "ttl", time.Second, "how long a cached product is fresh")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "cacheaside:", err)
		os.Exit(1)
	}
}

// Product is a row of the catalogue.
type Product struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Price int    `json:"price_cents"`
}

// catalogue is the database layer. It counts the queries it runs, so the
// numbers printed are what the database saw.
type catalogue struct {
	db      *sql.DB
	delay   time.Duration
	queries *atomic.Int64 // shared by every node's catalogue: one database
}

func (c catalogue) product(ctx context.Context, id string) (Product, error) {
	c.queries.Add(1)
	// Stands in for the expensive part of a real query (joins, a cold page
	// cache, a busy server): what makes a stampede hurt.
	time.Sleep(c.delay)
	var p Product
	err := c.db.QueryRowContext(ctx,
		`SELECT id, name, price_cents FROM products WHERE id = ?`, id).Scan(&p.ID, &p.Name, &p.Price)
	if errors.Is(err, sql.ErrNoRows) {
		return p, stampede.ErrNotFound
	}
	return p, err
}

// node is one simulated server: its own Redis client and database pool.
type node struct {
	rdb *redis.Client
	cat catalogue
}

const productID = "sku-1"

func run(ctx context.Context, w io.Writer, cfg config) error {
	rds, err := demo.StartRedis(ctx, cfg.RedisAddr)
	if err != nil {
		return err
	}
	ns := demo.Namespace("cacheaside")
	defer rds.Close(context.WithoutCancel(ctx), ns)

	dbFile, err := demo.NewSQLite("catalogue.db")
	if err != nil {
		return err
	}
	defer dbFile.Remove()
	if err := createCatalogue(ctx, dbFile); err != nil {
		return err
	}

	var queries atomic.Int64
	nodes := make([]node, cfg.Nodes)
	for i := range nodes {
		db, err := dbFile.Open()
		if err != nil {
			return err
		}
		defer db.Close()
		rdb := rds.Client()
		defer rdb.Close()
		nodes[i] = node{rdb: rdb, cat: catalogue{db: db, delay: cfg.QueryTime, queries: &queries}}
	}
	total := cfg.Nodes * cfg.Requests

	fmt.Fprintf(w, "Product catalogue in SQLite, each query takes %v; Redis: %s.\n", cfg.QueryTime, rds)
	fmt.Fprintf(w, "%d nodes, each with its own Redis client, ask for product %s %d times at once (%d requests).\n\n",
		cfg.Nodes, productID, cfg.Requests, total)

	// 1. Plain cache-aside: every request that misses queries the database.
	if err := stampedeOnce(cfg, func(i int) error {
		_, err := plainGet(ctx, nodes[i], ns+":plain:"+productID, cfg.TTL)
		return err
	}); err != nil {
		return err
	}
	report(w, "plain cache-aside (GET, miss, SELECT, SET)", total, queries.Swap(0), -1)

	// 2. stampede.Cache on every node, all on one namespace.
	caches := make([]*stampede.Cache[Product], len(nodes))
	for i, n := range nodes {
		c, err := stampede.New[Product](n.rdb, stampede.Options{
			Namespace: ns,
			TTL:       cfg.TTL,
			Stale:     time.Minute, // after TTL, serve the old copy while one node refreshes it
			Beta:      -1,          // no early refresh, so the expiry below is a real one
		})
		if err != nil {
			return err
		}
		defer c.Close()
		caches[i] = c
	}
	get := func(i int) error {
		_, err := caches[i].Get(ctx, productID, nodes[i].cat.product)
		return err
	}
	if err := stampedeOnce(cfg, get); err != nil {
		return err
	}
	report(w, "stampede.Cache, product not cached yet", total, queries.Swap(0), int64(misses(caches)))

	// 3. The same after the product's TTL has passed: the stale copy is
	// served at once while one node, fleet-wide, refreshes it.
	time.Sleep(cfg.TTL + cfg.TTL/10)
	before := misses(caches)
	if err := stampedeOnce(cfg, get); err != nil {
		return err
	}
	waitForRefresh(&queries, cfg.QueryTime)
	report(w, "stampede.Cache, product expired (Stale on)", total, queries.Swap(0), int64(misses(caches)-before))
	return nil
}

// stampedeOnce sends cfg.Requests concurrent requests through each node
// (request(i) runs on node i), all released at the same moment, and returns
// the first error.
func stampedeOnce(cfg config, request func(i int) error) error {
	start := make(chan struct{})
	errs := make(chan error, cfg.Nodes*cfg.Requests)
	var wg sync.WaitGroup
	for n := range cfg.Nodes {
		for range cfg.Requests {
			wg.Go(func() {
				<-start
				if err := request(n); err != nil {
					errs <- err
				}
			})
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	return <-errs // nil when the channel is empty
}

// plainGet is cache-aside as it is usually written.
func plainGet(ctx context.Context, n node, key string, ttl time.Duration) (Product, error) {
	var p Product
	b, err := n.rdb.Get(ctx, key).Bytes()
	if err == nil {
		return p, json.Unmarshal(b, &p)
	}
	if !errors.Is(err, redis.Nil) {
		return p, err
	}
	p, err = n.cat.product(ctx, productID)
	if err != nil {
		return p, err
	}
	b, err = json.Marshal(p)
	if err != nil {
		return p, err
	}
	return p, n.rdb.Set(ctx, key, b, ttl).Err()
}

// misses sums the requests that found no usable value and so waited for a
// load (their own node's or another's).
func misses(caches []*stampede.Cache[Product]) uint64 {
	var n uint64
	for _, c := range caches {
		n += c.Stats().Misses
	}
	return n
}

// waitForRefresh waits for the background refresh started by the stale
// reads to reach the database, then as long again for any other query, so
// that a duplicate would be counted. It gives up after a few seconds.
func waitForRefresh(queries *atomic.Int64, queryTime time.Duration) {
	deadline := time.Now().Add(5*time.Second + 10*queryTime)
	for queries.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(2 * queryTime)
}

// report prints one line of the result table; waited < 0 leaves out the
// number of requests that waited.
func report(w io.Writer, what string, requests int, queries, waited int64) {
	line := fmt.Sprintf("%-44s %5d requests  %5d database %s", what, requests, queries, plural(queries, "query", "queries"))
	if waited >= 0 {
		line += fmt.Sprintf("  (%d %s waited for it)", waited, plural(waited, "request", "requests"))
	}
	fmt.Fprintln(w, line)
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func createCatalogue(ctx context.Context, f *demo.SQLite) error {
	db, err := f.Open()
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, `
		CREATE TABLE products (id TEXT PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL);
		INSERT INTO products VALUES
			('sku-1', 'Espresso machine', 34900),
			('sku-2', 'Coffee grinder', 12900),
			('sku-3', 'Milk jug', 1990);`)
	return err
}
