package fleet

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The herd gate. On a real fleet the nodes' cache lookups run in parallel
// on fifty machines and Redis answers them all well within the loader's
// time, so the whole herd has missed before the first value lands. On one
// small machine the same lookups queue for seconds, the first value lands
// while most of the herd is still in line, and the load counts would
// measure the machine rather than the protection. So the database answers
// no sooner than Config.Load after every caller of the herd has finished its
// first Redis command, or no caller has for gateQuiet (some never will: a
// node whose circuit breaker opened skips Redis). Callers' latencies
// include the wait, as they would include a slow database. RedisDown has no
// gate: there is nothing to read.

const (
	// gateQuiet opens the gate when arrivals stop.
	gateQuiet = 250 * time.Millisecond
	// gateLimit bounds the gate; it stays under stampede's LoadTimeout.
	gateLimit = 20 * time.Second
)

// gate opens when every caller of the herd has made its first Redis call.
type gate interface {
	// arrived records that one more caller of this process did.
	arrived()
	// wait returns once the whole herd has arrived, or after gateLimit.
	wait(ctx context.Context)
}

// localGate is the gate of a fleet that lives in one process.
type localGate struct {
	want  int64
	count atomic.Int64
	last  atomic.Int64 // Unix ns of the latest arrival
	open  chan struct{}
}

func newLocalGate(want int) *localGate {
	g := &localGate{want: int64(want), open: make(chan struct{})}
	g.last.Store(time.Now().UnixNano())
	return g
}

func (g *localGate) arrived() { g.add() }

// add counts a caller and says whether it was the last one.
func (g *localGate) add() bool {
	g.last.Store(time.Now().UnixNano())
	if g.count.Add(1) == g.want {
		close(g.open)
		return true
	}
	return false
}

func (g *localGate) wait(ctx context.Context) {
	deadline := time.Now().Add(gateLimit)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !g.quiet() && time.Now().Before(deadline) {
		select {
		case <-g.open:
			return
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

func (g *localGate) quiet() bool {
	return time.Since(time.Unix(0, g.last.Load())) > gateQuiet
}

// redisGate spans worker processes: each worker counts its own callers
// and, when all of them have arrived, increments <ns>:arrived; the gate is
// open when that count reaches the number of workers (or this worker's
// arrivals have stopped).
type redisGate struct {
	local *localGate
	rdb   *redis.Client
	key   string
	procs int
	open  atomic.Bool
}

func (g *redisGate) arrived() {
	if g.local.add() {
		g.rdb.Incr(context.Background(), g.key)
	}
}

func (g *redisGate) wait(ctx context.Context) {
	deadline := time.Now().Add(gateLimit)
	for !g.open.Load() && !g.local.quiet() && time.Now().Before(deadline) {
		n, err := g.rdb.Get(ctx, g.key).Int()
		if err == nil && n >= g.procs {
			g.open.Store(true)
			return
		}
		if err != nil && !errors.Is(err, redis.Nil) {
			return
		}
		select {
		case <-time.After(2 * time.Millisecond):
		case <-ctx.Done():
			return
		}
	}
}

// noGate is for RedisDown.
type noGate struct{}

func (noGate) arrived()             {}
func (noGate) wait(context.Context) {}

// callerKey marks a caller's context, so that the hook below can tell its
// first Redis command from the rest.
type callerKey struct{}

type callerMark struct{ seen atomic.Bool }

// arrivalHook reports each caller's first Redis command to the gate, once
// the command has returned (with a value, a miss, or an error). Work that
// the cache does on a caller's behalf (a background refresh, say) carries
// the caller's context values and is not counted again.
type arrivalHook struct{ g gate }

func (h arrivalHook) seen(ctx context.Context) {
	if m, ok := ctx.Value(callerKey{}).(*callerMark); ok && m.seen.CompareAndSwap(false, true) {
		h.g.arrived()
	}
}

func (h arrivalHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h arrivalHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.seen(ctx)
		return err
	}
}

func (h arrivalHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.seen(ctx)
		return err
	}
}
