package stampede

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede/internal/bounded"
)

// call runs one Redis call for key under the library's deadline: limit, or
// RedisTimeout when limit is 0 (invariant 10). Its error is classified:
// the caller's own cancellation is returned as it is; Redis being
// unavailable opens the circuit and wraps ErrRedisUnavailable; any other
// reply error is about this key alone (invariant 13).
func (c *Cache[V]) call(ctx context.Context, key string, limit time.Duration, fn func(context.Context) error) error {
	if limit <= 0 {
		limit = c.opts.RedisTimeout
	}
	err := bounded.Call(ctx, limit, c.ctxDeadlines, fn)
	switch {
	case err == nil || errors.Is(err, redis.Nil):
		c.breaker.success()
		return err
	case ctx.Err() != nil:
		return err
	case unavailable(err):
		c.noteErr(ctx, EventRedisError, key, err)
		if c.breaker.trip(c.now()) {
			c.noteErr(ctx, EventBreakerOpen, key, err)
		}
		return fmt.Errorf("%w: %w", ErrRedisUnavailable, err)
	default:
		// Redis answered: it is up, the key is bad.
		c.breaker.success()
		return &keyError{key: key, err: err}
	}
}
