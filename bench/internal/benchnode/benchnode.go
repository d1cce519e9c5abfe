// Package benchnode is what the nodes of go run ./bench and of bench/peers
// share: how a node fills its connection pools before a herd, how it puts
// its hooks on the clients a stampede cache makes of its own (tracking
// mode), and which invalidation mode a run's caches use.
package benchnode

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede"
	"golang.org/x/sync/errgroup"
)

// In tracking mode stampede reads through clients of its own, made from
// the options of the node's client: a client of the reads Redis tracks
// (same address, dialer, pool size and timeouts) and one subscription
// client per server. The dialer comes with the options, so a severed link
// cuts them too; hooks and a filled pool do not, so the node puts them
// there through Options.OnClient.

// Clients collects the clients a node's cache made of its own. Its Add is
// the cache's Options.OnClient.
type Clients struct {
	Hooks []redis.Hook // what the node's own client carries

	mu   sync.Mutex // guards made
	made []redis.UniversalClient
}

// Add puts the node's hooks on rdb before the cache uses it, and keeps
// rdb for Warm.
func (c *Clients) Add(rdb redis.UniversalClient) {
	for _, h := range c.Hooks {
		rdb.AddHook(h)
	}
	c.mu.Lock()
	c.made = append(c.made, rdb)
	c.mu.Unlock()
}

// All returns the clients made so far.
func (c *Clients) All() []redis.UniversalClient {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.made)
}

// Warm fills the pool of every client the cache made for its reads to
// poolSize, as the node's own pool is filled, so that the herd times
// neither the dials nor the commands that turn tracking on for each new
// connection. A subscription client has no pool to fill: its one
// connection is the subscription, and a PING through it would open others
// nobody uses.
func (c *Clients) Warm(ctx context.Context, poolSize int) error {
	var g errgroup.Group
	for _, rdb := range c.All() {
		if !Subscribes(rdb) {
			g.Go(func() error { return Warm(ctx, rdb, poolSize) })
		}
	}
	return g.Wait()
}

// Subscribes says whether rdb has opened a pub/sub connection. Once New
// has returned in tracking mode, the subscription client has: New checks
// that the invalidation of a tracked read reaches it. The client of
// tracked reads never opens one.
func Subscribes(rdb redis.UniversalClient) bool {
	cl, ok := rdb.(*redis.Client)
	return ok && cl.PoolStats().PubSubStats.Created > 0
}

// Warm fills rdb's pool to poolSize connections, as on a server that has
// been up for a while, so that the herd does not time connection set-up:
// poolSize PINGs at once, which fill an empty pool. Where the pool had an
// idle connection (the cache's client of tracked reads has used one by the
// time New returns), quick PINGs may take turns on it; then each of
// poolSize callers holds a connection for a moment (a BLPOP on a key
// nobody writes, answered after warmHold), until the pool is full.
func Warm(ctx context.Context, rdb redis.UniversalClient, poolSize int) error {
	cl, ok := rdb.(*redis.Client)
	if !ok {
		return fmt.Errorf("benchnode: cannot warm a %T", rdb)
	}
	for round := range warmRounds {
		if round > 0 && cl.PoolStats().TotalConns >= uint32(poolSize) {
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
	if n := cl.PoolStats().TotalConns; n < uint32(poolSize) {
		return fmt.Errorf("benchnode: %d connections after warming, want %d", n, poolSize)
	}
	return nil
}

const (
	warmKey    = "benchnode:warm" // never written
	warmHold   = 20 * time.Millisecond
	warmRounds = 10
)

// Invalidation returns the mode stampede's caches use on the server rdb
// reaches when Options.Invalidation is inv: for InvalidateAuto, the mode
// New picks there (tracking on a redis-server 6.2 or later, broadcast on
// miniredis); for InvalidateTracking, an error where New cannot turn it
// on. A run makes every node in the mode returned, so that a node that
// could not turn tracking on fails the run instead of measuring the other
// mode.
func Invalidation(ctx context.Context, rdb redis.UniversalClient, inv stampede.Invalidation) (stampede.Invalidation, error) {
	if inv == stampede.InvalidateBroadcast {
		return inv, nil
	}
	c, err := stampede.New[string](rdb, stampede.Options{
		Namespace:    fmt.Sprintf("bench-mode-%d", time.Now().UnixNano()),
		Invalidation: inv,
	})
	if err != nil {
		return 0, fmt.Errorf("invalidation %v: %w", inv, err)
	}
	defer c.Close()
	return c.Stats().Invalidation, nil
}

// Describe says what was asked and what ran: "tracking (auto)".
func Describe(asked, got stampede.Invalidation) string {
	if asked == stampede.InvalidateAuto {
		return got.String() + " (auto)"
	}
	return got.String()
}
