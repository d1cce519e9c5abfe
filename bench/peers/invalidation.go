package main

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede"
)

// parseInvalidation reads the -invalidation flag.
func parseInvalidation(s string) (stampede.Invalidation, error) {
	for _, m := range []stampede.Invalidation{stampede.InvalidateAuto, stampede.InvalidateBroadcast, stampede.InvalidateTracking} {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("unknown %q (want auto, broadcast or tracking)", s)
}

// resolveInvalidation returns the mode stampede's caches use on the server
// at addr when asked for inv: for auto, the one New picks there. Every node
// is then made in that mode, so that one that could not turn tracking on
// fails the run instead of measuring the other mode.
func resolveInvalidation(ctx context.Context, addr string, inv stampede.Invalidation) (stampede.Invalidation, error) {
	if inv == stampede.InvalidateBroadcast {
		return inv, nil
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 2, DisableIdentity: true})
	defer rdb.Close()
	c, err := stampede.New[string](rdb, stampede.Options{Namespace: fmt.Sprintf("peers-mode-%d", time.Now().UnixNano()), Invalidation: inv})
	if err != nil {
		return 0, fmt.Errorf("-invalidation %v: %w", inv, err)
	}
	defer c.Close()
	return c.Stats().Invalidation, nil
}

// describeInvalidation says what was asked and what ran: "tracking (auto)".
func describeInvalidation(asked, got stampede.Invalidation) string {
	if asked == stampede.InvalidateAuto {
		return got.String() + " (auto)"
	}
	return got.String()
}
