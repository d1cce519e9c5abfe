package fleet

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede"
	"github.com/stampede-go/stampede/bench/internal/benchnode"
	"golang.org/x/sync/singleflight"
)

// poolSize is each node's connection pool. The herd puts thousands of
// requests on every node at once; a few connections per core of a real
// host keep Redis busy without drowning it in thousands of sockets.
const poolSize = 16

// ttl of the values every mode writes. Runs are much shorter.
const ttl = time.Minute

// recheck is how often the lock mode's losers look again, as in the seed.
const recheck = 50 * time.Millisecond

// node is one simulated application server.
type node struct {
	id    int
	j     job
	link  *link
	rdb   *redis.Client
	impl  getter
	claim claimer
	gate  gate
	watch *watch
	made  benchnode.Clients // the clients its cache made of its own (tracking mode)

	ctx    context.Context // its callers' context; cancelled when it dies
	cancel context.CancelFunc

	loads    atomic.Int64
	dead     atomic.Bool
	dieOnce  sync.Once
	died     chan struct{} // closed when the node dies
	kill     chan struct{} // closed when the run ends: dead loaders return
	done     chan struct{} // closed when all its callers have returned
	requests sync.WaitGroup

	// One slot per request, written by its own goroutine.
	lat   []int64 // ns
	over  []int64 // ns; -1: did not wait for a load
	errs  []bool
	marks []callerMark

	reportMu sync.Mutex // guards reported and firstErr
	reported int
	firstErr string
}

// observe counts the errors stampede reports through its Observer: failed
// background refreshes, lost leases, unusable entries.
func (n *node) observe(_ context.Context, e stampede.Event) {
	switch {
	case e.Kind == stampede.EventLeaseLost, e.Kind == stampede.EventCorrupt,
		e.Kind == stampede.EventLoad && e.Err != nil && (e.Reason == stampede.LoadRefresh || e.Reason == stampede.LoadEarly):
		n.report(e.Err)
	}
}

// report counts one error.
func (n *node) report(err error) {
	n.reportMu.Lock()
	defer n.reportMu.Unlock()
	if n.reported == 0 {
		n.firstErr = err.Error()
	}
	n.reported++
}

// getter is a mode: how a node gets the hot key.
type getter interface {
	get(ctx context.Context) (string, error)
	close() error
}

func newNode(ctx context.Context, j job, id int, cl claimer, g gate, w *watch) (*node, error) {
	n := &node{
		id: id, j: j, claim: cl, gate: g, watch: w,
		link: &link{addr: j.Addr, conns: make(map[*trackedConn]struct{})},
		died: make(chan struct{}), kill: make(chan struct{}), done: make(chan struct{}),
	}
	n.ctx, n.cancel = context.WithCancel(ctx)
	// New turns tracking on only after asking the server, so a node in
	// tracking mode loses Redis once it is up; the others never reach it.
	cutLate := j.Mode == Full && j.Invalidation == stampede.InvalidateTracking
	if j.Scenario == RedisDown && !cutLate {
		n.link.sever()
	}
	n.rdb = redis.NewClient(&redis.Options{
		Addr:     j.Addr,
		Dialer:   n.link.dial,
		PoolSize: poolSize,
		// Pipelines share the one pool, so poolSize is the node's whole
		// footprint on the server.
		PipelinePoolSize: -1,
		// The herd queues for connections far longer than a live service
		// would; that is the simulation, not an outage.
		PoolTimeout:  time.Minute,
		ReadTimeout:  30 * time.Second,
		WriteTimeout: 30 * time.Second,
		// An unreachable Redis answers at once and is not retried: the
		// cache's own fallback is under test, not the client's.
		MaxRetries:    -1,
		DialerRetries: 1,
		// Refused connections fail at once; this bounds a dial to a
		// server slowed down by the machine's other work.
		DialTimeout:     10 * time.Second,
		DisableIdentity: true,
	})
	if j.Scenario != RedisDown {
		n.made.Hooks = []redis.Hook{arrivalHook{g}}
		for _, h := range n.made.Hooks {
			n.rdb.AddHook(h)
		}
		if err := benchnode.Warm(ctx, n.rdb, poolSize); err != nil {
			n.rdb.Close()
			return nil, err
		}
	}
	var err error
	n.impl, err = n.newGetter()
	if err == nil && j.Scenario != RedisDown {
		err = n.made.Warm(ctx, poolSize)
	}
	if err != nil {
		if n.impl != nil {
			_ = n.impl.close()
		}
		n.rdb.Close()
		return nil, err
	}
	if j.Scenario == RedisDown && cutLate {
		n.link.sever()
	}
	return n, nil
}

func (n *node) newGetter() (getter, error) {
	key := n.j.NS + ":" + hotKey
	switch n.j.Mode {
	case Naive:
		return &naive{rdb: n.rdb, key: key, load: n.load}, nil
	case SingleFlight:
		return &flightOnly{naive: naive{rdb: n.rdb, key: key, load: n.load}}, nil
	case Lock:
		return &lockOnly{rdb: n.rdb, key: key, node: n.id, lockTTL: n.j.LockTTL, load: n.load}, nil
	}
	c, err := stampede.New[string](n.rdb, stampede.Options{
		Namespace: n.j.NS,
		TTL:       ttl,
		Stale:     ttl,
		LockTTL:   n.j.LockTTL,
		Observer:  stampede.ObserverFunc(n.observe),
		// Broadcast or tracking, never auto: Run has resolved it, so that
		// a node that could not turn tracking on fails the run instead
		// of measuring the other mode.
		Invalidation: n.j.Invalidation,
		OnClient:     n.made.Add,
	})
	if err != nil {
		return nil, err
	}
	return &full{c: c, load: n.load}, nil
}

// launch starts the node's share of the herd, held until start is closed.
func (n *node) launch(start <-chan struct{}) {
	k := n.j.share(n.id)
	n.lat = make([]int64, k)
	n.over = make([]int64, k)
	n.errs = make([]bool, k)
	n.marks = make([]callerMark, k)
	n.requests.Add(k)
	for i := range k {
		go n.request(i, start)
	}
	go func() {
		n.requests.Wait()
		close(n.done)
	}()
}

func (n *node) request(i int, start <-chan struct{}) {
	defer n.requests.Done()
	ctx := context.WithValue(n.ctx, callerKey{}, &n.marks[i])
	<-start
	if n.j.Mode == Full {
		// stampede's callers share one Redis read per node and key, so most
		// make no Redis command of their own: a caller has missed once it
		// is inside Get.
		arrivalHook{n.gate}.seen(ctx)
	}
	t0 := time.Now()
	v, err := n.impl.get(ctx)
	t1 := time.Now()
	n.watch.answered.Add(1)
	n.lat[i] = int64(t1.Sub(t0))
	n.over[i] = -1
	if err != nil {
		n.errs[i] = true
		return
	}
	loaded, perr := strconv.ParseInt(v, 10, 64)
	switch {
	case perr != nil:
		n.errs[i] = true
	case loaded > t0.UnixNano():
		n.over[i] = max(t1.UnixNano()-loaded, 0)
	}
}

// load stands for the database query.
func (n *node) load(ctx context.Context, _ string) (string, error) {
	if n.dead.Load() {
		<-n.kill // a dead machine sends no more queries
		return "", errDied
	}
	n.loads.Add(1)
	if n.j.Scenario == Crash && n.claim.claim(ctx) {
		n.die()
	}
	if !n.dead.Load() {
		n.gate.wait(ctx)
		time.Sleep(n.j.Load)
	}
	if n.dead.Load() {
		<-n.kill // it died mid-load: the query never returns
		return "", errDied
	}
	return stamp(time.Now()), nil
}

// die cuts the node off: its Redis connections close and new ones are
// refused, so whatever lease it holds is neither renewed nor released.
func (n *node) die() {
	n.dieOnce.Do(func() {
		n.dead.Store(true)
		close(n.died)
		n.link.sever()
		// Its callers that never reached Redis never will.
		for i := range n.marks {
			if n.marks[i].seen.CompareAndSwap(false, true) {
				n.gate.arrived()
			}
		}
	})
}

func (n *node) close() {
	n.cancel()
	_ = n.impl.close()
	_ = n.rdb.Close()
}

// partial sums the node's requests. A dead node's callers died with it:
// they count neither as answered nor as failed.
func (n *node) partial() partial {
	n.reportMu.Lock()
	p := partial{Loads: n.loads.Load(), Reported: n.reported, FirstReported: n.firstErr}
	n.reportMu.Unlock()
	if f, ok := n.impl.(*full); ok {
		p.Stats = f.c.Stats()
	}
	if n.dead.Load() {
		p.Lost = len(n.lat)
		return p
	}
	p.Lat = n.lat
	for i, o := range n.over {
		if n.errs[i] {
			p.Errors++
		}
		if o >= 0 {
			p.Over = append(p.Over, o)
		}
	}
	return p
}

// naive is cache-aside with no protection: GET, load on a miss, SET.
type naive struct {
	rdb  *redis.Client
	key  string
	load func(context.Context, string) (string, error)
}

func (m *naive) get(ctx context.Context) (string, error) {
	v, err := m.rdb.Get(ctx, m.key).Result()
	if err == nil {
		return v, nil
	}
	return m.fill(ctx)
}

// fill loads and stores; Redis errors are ignored (fail open).
func (m *naive) fill(ctx context.Context) (string, error) {
	v, err := m.load(ctx, m.key)
	if err != nil {
		return "", err
	}
	m.rdb.Set(ctx, m.key, v, ttl)
	return v, nil
}

func (m *naive) close() error { return nil }

// flightOnly is naive cache-aside behind an in-process single-flight: one
// load per node at a time, no coordination between nodes.
type flightOnly struct {
	naive
	g singleflight.Group
}

func (m *flightOnly) get(ctx context.Context) (string, error) {
	v, err := m.rdb.Get(ctx, m.key).Result()
	if err == nil {
		return v, nil
	}
	ch := m.g.DoChan(m.key, func() (any, error) {
		// Look again: a flight that ended just before this one started
		// may have stored the value.
		if v, err := m.rdb.Get(ctx, m.key).Result(); err == nil {
			return v, nil
		}
		return m.fill(context.WithoutCancel(ctx))
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// releaseScript deletes the lock only for its owner.
var releaseScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

// lockOnly is the seed's SET NX lock without single-flight: every request
// that misses tries the lock; the winner looks again, loads, stores and
// unlocks; the losers look again every 50 ms (and try the lock again, in
// case its holder died). After 2 × the lock TTL a loser loads by itself.
type lockOnly struct {
	rdb     *redis.Client
	key     string
	node    int
	lockTTL time.Duration
	load    func(context.Context, string) (string, error)
	seq     atomic.Int64
}

func (m *lockOnly) get(ctx context.Context) (string, error) {
	lockKey := m.key + ":lock"
	token := strconv.Itoa(m.node) + "/" + strconv.FormatInt(m.seq.Add(1), 10)
	giveUp := time.Now().Add(2 * m.lockTTL)
	for {
		v, err := m.rdb.Get(ctx, m.key).Result()
		if err == nil {
			return v, nil
		}
		if !errors.Is(err, redis.Nil) || time.Now().After(giveUp) {
			return m.load(ctx, m.key) // Redis is out, or waited too long
		}
		won, err := m.rdb.SetNX(ctx, lockKey, token, m.lockTTL).Result()
		if err != nil {
			return m.load(ctx, m.key)
		}
		if won {
			// Look again: the previous holder may have stored the value
			// between this GET and this lock.
			if v, err := m.rdb.Get(ctx, m.key).Result(); err == nil {
				releaseScript.Run(ctx, m.rdb, []string{lockKey}, token)
				return v, nil
			}
			v, err := m.load(ctx, m.key)
			if err == nil {
				m.rdb.Set(ctx, m.key, v, ttl)
			}
			releaseScript.Run(ctx, m.rdb, []string{lockKey}, token)
			return v, err
		}
		select {
		case <-time.After(recheck):
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

func (m *lockOnly) close() error { return nil }

// full is stampede.
type full struct {
	c    *stampede.Cache[string]
	load func(context.Context, string) (string, error)
}

func (m *full) get(ctx context.Context) (string, error) { return m.c.Get(ctx, hotKey, m.load) }

func (m *full) close() error { return m.c.Close() }
