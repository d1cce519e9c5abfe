package main

import (
	"context"

	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede"
	"github.com/stampede-go/stampede/bench/internal/benchnode"
)

// resolveInvalidation returns the mode stampede's caches use on the server
// at addr when asked for inv (benchnode.Invalidation).
func resolveInvalidation(ctx context.Context, addr string, inv stampede.Invalidation) (stampede.Invalidation, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 2, DisableIdentity: true})
	defer rdb.Close()
	return benchnode.Invalidation(ctx, rdb, inv)
}
