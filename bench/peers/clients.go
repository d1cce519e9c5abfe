package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
)

// In tracking mode stampede reads through clients of its own, made from
// the options of the node's client: a client of the reads Redis tracks
// (same address, pool size and timeouts) and one subscription client per
// server. Hooks and a filled pool do not come with the options, so the
// node puts them there through Options.OnClient.

// cacheClients collects the clients a node's cache made of its own.
type cacheClients struct {
	hooks []redis.Hook // what the node's own client carries

	mu   sync.Mutex // guards made
	made []redis.UniversalClient
}

// add is the cache's Options.OnClient: the node's hooks go on rdb before
// the cache uses it.
func (c *cacheClients) add(rdb redis.UniversalClient) {
	for _, h := range c.hooks {
		rdb.AddHook(h)
	}
	c.mu.Lock()
	c.made = append(c.made, rdb)
	c.mu.Unlock()
}

// warm fills the pool of every client the cache made for its reads, as
// the node's own pool is filled, so that the herd times neither the dials
// nor the commands that turn tracking on for each new connection. A
// subscription client has no pool to fill: its one connection is the
// subscription, and a PING through it would open others nobody uses.
func (c *cacheClients) warm(ctx context.Context) error {
	c.mu.Lock()
	made := slices.Clone(c.made)
	c.mu.Unlock()
	var g errgroup.Group
	for _, rdb := range made {
		if !subscribes(rdb) {
			g.Go(func() error { return warm(ctx, rdb) })
		}
	}
	return g.Wait()
}

// subscribes says whether rdb has opened a pub/sub connection. Once New
// has returned in tracking mode, the subscription client has: New checks
// that the invalidation of a tracked read reaches it. The client of
// tracked reads never opens one.
func subscribes(rdb redis.UniversalClient) bool {
	cl, ok := rdb.(*redis.Client)
	return ok && cl.PoolStats().PubSubStats.Created > 0
}

// warm fills rdb's pool, as on a server that has been up for a while:
// poolSize PINGs at once, which fill an empty pool. Where the pool had an
// idle connection (the cache's client of tracked reads has used one by the
// time New returns), quick PINGs may take turns on it; then each of
// poolSize callers holds a connection for a moment (a BLPOP on a key
// nobody writes, answered after warmHold), until the pool is full.
func warm(ctx context.Context, rdb redis.UniversalClient) error {
	cl, ok := rdb.(*redis.Client)
	if !ok {
		return fmt.Errorf("cannot warm a %T", rdb)
	}
	for round := range warmRounds {
		if round > 0 && cl.PoolStats().TotalConns >= poolSize {
			return nil
		}
		var g errgroup.Group
		for range poolSize {
			g.Go(func() error {
				if round == 0 {
					return cl.Ping(ctx).Err()
				}
				// Do: go-redis's BLPop rounds a timeout up to 1 s.
				hold := strconv.FormatFloat(warmHold.Seconds(), 'f', -1, 64)
				if err := cl.Do(ctx, "BLPOP", warmKey, hold).Err(); !errors.Is(err, redis.Nil) {
					return err
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	if n := cl.PoolStats().TotalConns; n < poolSize {
		return fmt.Errorf("%d connections after warming, want %d", n, poolSize)
	}
	return nil
}

const (
	warmKey    = "peers:warm" // never written
	warmHold   = 20 * time.Millisecond
	warmRounds = 10
)
