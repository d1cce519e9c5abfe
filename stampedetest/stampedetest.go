// Package stampedetest helps test code that uses stampede: a cache on an
// in-process Redis (miniredis) whose clock a test moves.
//
// A cache keeps values in memory (L1) on its own clock as well as in Redis.
// A test that moves miniredis's clock with FastForward to make a value
// expire must empty that memory too, or the cache keeps serving the value
// until its own clock catches up; FastForward here does both.
package stampedetest

import (
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/stampede-go/stampede"
)

// New returns a cache with opts on a fresh miniredis, and the miniredis.
// Both are closed when the test ends; New fails the test if the options
// are invalid.
func New[V any](t testing.TB, opts stampede.Options) (*stampede.Cache[V], *miniredis.Miniredis) {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	c, err := stampede.New[V](rdb, opts)
	if err != nil {
		_ = rdb.Close()
		t.Fatalf("stampedetest: %v", err)
	}
	t.Cleanup(func() {
		_ = c.Close()
		_ = rdb.Close()
	})
	return c, mr
}

// Flusher is what FastForward needs of a cache: any *stampede.Cache[V].
type Flusher interface {
	FlushLocal()
}

// FastForward moves mr's clock by d, so that keys expire in Redis as if d
// had passed, and empties the in-process memory of every cache given, so
// that they read what is left in Redis instead of serving their own copies.
func FastForward(mr *miniredis.Miniredis, d time.Duration, caches ...Flusher) {
	mr.FastForward(d)
	for _, c := range caches {
		c.FlushLocal()
	}
}
