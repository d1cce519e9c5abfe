package fleet

import (
	"context"
	"sync"
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
// node whose circuit breaker opened skips Redis). In full mode a caller has
// arrived when it enters Get, since stampede's callers share one read per
// node. Callers' latencies
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

	open      chan struct{} // closed when the gate opens
	openOnce  sync.Once
	watchOnce sync.Once
	// ready, if set, is asked by the watcher whether the gate may open
	// before this process's herd is complete (redisGate).
	ready func() bool
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
		if g.ready == nil {
			g.release()
		}
		return true
	}
	return false
}

func (g *localGate) release() { g.openOnce.Do(func() { close(g.open) }) }

// wait blocks the caller on the gate; one watcher goroutine, started by the
// first waiter, opens it when arrivals stop or the limit passes.
func (g *localGate) wait(ctx context.Context) {
	g.watchOnce.Do(func() { go g.watch() })
	select {
	case <-g.open:
	case <-ctx.Done():
	}
}

func (g *localGate) watch() {
	deadline := time.Now().Add(gateLimit)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-g.open:
			return
		case <-tick.C:
		}
		quiet := time.Since(time.Unix(0, g.last.Load())) > gateQuiet
		if quiet || time.Now().After(deadline) || (g.ready != nil && g.ready()) {
			g.release()
			return
		}
	}
}

// redisGate spans worker processes: each worker counts its own callers
// and, when all of them have arrived, increments <ns>:arrived; the gate
// opens when that count reaches the number of workers (or this worker's
// arrivals have stopped).
type redisGate struct {
	*localGate
	rdb   *redis.Client
	key   string
	procs int
}

func newRedisGate(want int, rdb *redis.Client, key string, procs int) *redisGate {
	g := &redisGate{localGate: newLocalGate(want), rdb: rdb, key: key, procs: procs}
	g.ready = func() bool {
		n, err := g.rdb.Get(context.Background(), g.key).Int()
		return err == nil && n >= g.procs
	}
	return g
}

func (g *redisGate) arrived() {
	if g.add() {
		g.rdb.Incr(context.Background(), g.key)
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
