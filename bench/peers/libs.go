package main

import (
	"context"
	"errors"
	"time"

	"github.com/dtm-labs/rockscache"
	gocache "github.com/eko/gocache/lib/v4/cache"
	gostore "github.com/eko/gocache/lib/v4/store"
	redisstore "github.com/eko/gocache/store/redis/v4"
	grcache "github.com/go-redis/cache/v9"
	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede"
	"github.com/stampede-go/stampede/bench/internal/benchnode"
	"github.com/viccon/sturdyc"
	"golang.org/x/sync/singleflight"
)

// Every library is set up the way its README shows, with this run's TTL
// where it takes one. docs/bench.md lists each choice.

// env is what the nodes of one run share.
type env struct {
	ns    string        // prefix of every Redis key of the run
	ttl   time.Duration // how long a value is fresh
	stale time.Duration // the stale window, for libraries that keep one

	// inv is stampede's Options.Invalidation.
	inv stampede.Invalidation
	// made, if set, receives the clients a node's stampede cache makes of
	// its own (Options.OnClient), to carry the node's hooks.
	made *benchnode.Clients
}

// stampedeOptions are the options every stampede node of the run shares.
func (e env) stampedeOptions() stampede.Options {
	o := stampede.Options{Namespace: e.ns, TTL: e.ttl, Invalidation: e.inv}
	if e.made != nil {
		o.OnClient = e.made.Add
	}
	return o
}

// key is the hot key as the libraries that take a whole Redis key get it.
func (e env) key() string { return e.ns + ":hot" }

// loadFunc is the database: the harness counts and times every call.
type loadFunc func(ctx context.Context) (string, error)

// getter is one node's client of a library.
type getter interface {
	get(ctx context.Context) (string, error)
	close()
}

// peer is a library under comparison.
type peer struct {
	name string
	// valueKey is where the library keeps the value in Redis.
	valueKey func(e env) string
	// node builds one node's client of the library over rdb.
	node func(e env, rdb *redis.Client, load loadFunc) (getter, error)
	// seedExpired leaves in Redis what the library leaves when the value's
	// TTL has just run out. Nil: nothing survives expiry (the key is gone),
	// so the expired scenario is a cold miss for it.
	seedExpired func(ctx context.Context, e env, rdb *redis.Client) error
}

// peers lists the libraries in the order tables show them.
var peers = []peer{
	{name: "stampede", valueKey: stampedeKey, node: newStampede(false), seedExpired: seedStampede(false)},
	{name: "stampede+Stale", valueKey: stampedeKey, node: newStampede(true), seedExpired: seedStampede(true)},
	{name: "go-redis/cache", valueKey: env.key, node: newGoRedisCache},
	{name: "rockscache", valueKey: env.key, node: newRocksCache},
	{name: "sturdyc", valueKey: env.key, node: newSturdyc(false)},
	{name: "sturdyc+early", valueKey: env.key, node: newSturdyc(true), seedExpired: seedSturdyc},
	{name: "gocache", valueKey: env.key, node: newGoCache},
	{name: "singleflight", valueKey: env.key, node: newFlightOnly},
	{name: "naive", valueKey: env.key, node: newNaive},
}

func peerNames() []string {
	names := make([]string, len(peers))
	for i, p := range peers {
		names[i] = p.name
	}
	return names
}

// stampede: New with TTL, and Stale for the +Stale row; every other option
// at its default (L1 on, LockTTL 5 s, Recheck 50 ms).

const stampedeHot = "hot"

func stampedeKey(e env) string { return e.ns + ":{" + stampedeHot + "}" }

type stampedeNode struct {
	c    *stampede.Cache[string]
	load func(context.Context, string) (string, error)
}

func newStampede(stale bool) func(env, *redis.Client, loadFunc) (getter, error) {
	return func(e env, rdb *redis.Client, load loadFunc) (getter, error) {
		o := e.stampedeOptions()
		if stale {
			o.Stale = e.stale
		}
		c, err := stampede.New[string](rdb, o)
		if err != nil {
			return nil, err
		}
		return &stampedeNode{c: c, load: func(ctx context.Context, _ string) (string, error) { return load(ctx) }}, nil
	}
}

func (n *stampedeNode) get(ctx context.Context) (string, error) {
	return n.c.Get(ctx, stampedeHot, n.load)
}

func (n *stampedeNode) close() { n.c.Close() }

func (n *stampedeNode) stats() stampede.Stats { return n.c.Stats() }

// seedStampede writes the value through stampede with a TTL that has run
// out 5 ms later: with a stale window the entry stays, stale; without one
// it is gone.
func seedStampede(stale bool) func(context.Context, env, *redis.Client) error {
	return func(ctx context.Context, e env, rdb *redis.Client) error {
		o := e.stampedeOptions()
		o.TTL, o.LocalCapacity, o.Beta = time.Millisecond, -1, -1
		if stale {
			o.Stale = e.stale
		}
		c, err := stampede.New[string](rdb, o)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.Set(ctx, stampedeHot, stamp(time.Now())); err != nil {
			return err
		}
		time.Sleep(5 * time.Millisecond)
		return nil
	}
}

// go-redis/cache: Once with the README's local TinyLFU (1,000 keys, one
// minute), values in Redis for the TTL.

type goRedisCacheNode struct {
	c    *grcache.Cache
	key  string
	ttl  time.Duration
	load loadFunc
}

func newGoRedisCache(e env, rdb *redis.Client, load loadFunc) (getter, error) {
	c := grcache.New(&grcache.Options{Redis: rdb, LocalCache: grcache.NewTinyLFU(1000, time.Minute)})
	return &goRedisCacheNode{c: c, key: e.key(), ttl: e.ttl, load: load}, nil
}

func (n *goRedisCacheNode) get(ctx context.Context) (string, error) {
	var v string
	err := n.c.Once(&grcache.Item{
		Ctx: ctx, Key: n.key, Value: &v, TTL: n.ttl,
		Do: func(it *grcache.Item) (any, error) { return n.load(it.Context()) },
	})
	return v, err
}

func (n *goRedisCacheNode) close() {}

// rockscache: NewClient with NewDefaultOptions (lock 3 s, waiters poll every
// 100 ms, weak consistency), Fetch2 with the TTL.

type rocksNode struct {
	rc   *rockscache.Client
	key  string
	ttl  time.Duration
	load loadFunc
}

func newRocksCache(e env, rdb *redis.Client, load loadFunc) (getter, error) {
	return &rocksNode{rc: rockscache.NewClient(rdb, rockscache.NewDefaultOptions()), key: e.key(), ttl: e.ttl, load: load}, nil
}

func (n *rocksNode) get(ctx context.Context) (string, error) {
	return n.rc.Fetch2(ctx, n.key, n.ttl, func() (string, error) { return n.load(ctx) })
}

func (n *rocksNode) close() {}

// sturdyc: New with the README's first example (capacity 10,000, 10 shards,
// evict 10 %) and the TTL, over Redis as its distributed storage
// (WithDistributedStorage). The +early row uses
// WithDistributedStorageEarlyRefreshes with the TTL as the refresh age and
// keeps records in Redis for TTL + stale window, as its README suggests
// (records outlive the refresh age).

type sturdycNode struct {
	c    *sturdyc.Client[string]
	key  string
	load loadFunc
}

func newSturdyc(early bool) func(env, *redis.Client, loadFunc) (getter, error) {
	return func(e env, rdb *redis.Client, load loadFunc) (getter, error) {
		return &sturdycNode{c: sturdycClient(e, rdb, early, nil), key: e.key(), load: load}, nil
	}
}

func sturdycClient(e env, rdb *redis.Client, early bool, clock sturdyc.Clock) *sturdyc.Client[string] {
	var opts []sturdyc.Option
	if early {
		opts = append(opts, sturdyc.WithDistributedStorageEarlyRefreshes(&redisStorage{rdb: rdb, ttl: e.ttl + e.stale}, e.ttl))
	} else {
		opts = append(opts, sturdyc.WithDistributedStorage(&redisStorage{rdb: rdb, ttl: e.ttl}))
	}
	if clock != nil {
		opts = append(opts, sturdyc.WithClock(clock))
	}
	return sturdyc.New[string](10_000, 10, e.ttl, 10, opts...)
}

func (n *sturdycNode) get(ctx context.Context) (string, error) {
	return n.c.GetOrFetch(ctx, n.key, func(ctx context.Context) (string, error) { return n.load(ctx) })
}

// close: sturdyc has no Close; its eviction goroutine outlives the node.
func (n *sturdycNode) close() {}

// seedSturdyc has a client whose clock runs one TTL and a second behind
// write the record, so that to the nodes it is past the refresh age while
// still in Redis.
func seedSturdyc(ctx context.Context, e env, rdb *redis.Client) error {
	c := sturdycClient(e, rdb, true, laggingClock{e.ttl + time.Second})
	if _, err := c.GetOrFetch(ctx, e.key(), func(context.Context) (string, error) { return stamp(time.Now()), nil }); err != nil {
		return err
	}
	return waitStored(ctx, rdb, e.key()) // sturdyc writes to the storage on a goroutine of its own
}

// laggingClock is the real clock, behind by a fixed amount.
type laggingClock struct{ by time.Duration }

func (c laggingClock) Now() time.Time { return time.Now().Add(-c.by) }
func (c laggingClock) NewTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}
func (c laggingClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}
func (c laggingClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// redisStorage is sturdyc's DistributedStorage on go-redis, as its README
// asks users to write one: plain GET/SET with a TTL, MGET and a pipeline
// for batches.
type redisStorage struct {
	rdb *redis.Client
	ttl time.Duration
}

func (s *redisStorage) Get(ctx context.Context, key string) ([]byte, bool) {
	b, err := s.rdb.Get(ctx, key).Bytes()
	return b, err == nil
}

func (s *redisStorage) Set(ctx context.Context, key string, value []byte) {
	s.rdb.Set(ctx, key, value, s.ttl)
}

func (s *redisStorage) GetBatch(ctx context.Context, keys []string) map[string][]byte {
	out := make(map[string][]byte, len(keys))
	vals, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return out
	}
	for i, v := range vals {
		if str, ok := v.(string); ok {
			out[keys[i]] = []byte(str)
		}
	}
	return out
}

func (s *redisStorage) SetBatch(ctx context.Context, records map[string][]byte) {
	pipe := s.rdb.Pipeline()
	for k, v := range records {
		pipe.Set(ctx, k, v, s.ttl)
	}
	pipe.Exec(ctx)
}

func (s *redisStorage) Delete(ctx context.Context, key string) { s.rdb.Del(ctx, key) }

func (s *redisStorage) DeleteBatch(ctx context.Context, keys []string) { s.rdb.Del(ctx, keys...) }

// gocache (eko): NewLoadable over cache.New on the Redis store, with the
// TTL as the store's default expiration, as its README shows.

type goCacheNode struct {
	c   *gocache.LoadableCache[string]
	key string
}

func newGoCache(e env, rdb *redis.Client, load loadFunc) (getter, error) {
	st := redisstore.NewRedis(rdb, gostore.WithExpiration(e.ttl))
	lc := gocache.NewLoadable[string](func(ctx context.Context, _ any) (string, []gostore.Option, error) {
		v, err := load(ctx)
		return v, nil, err
	}, gocache.New[string](st))
	return &goCacheNode{c: lc, key: e.key()}, nil
}

func (n *goCacheNode) get(ctx context.Context) (string, error) { return n.c.Get(ctx, n.key) }

func (n *goCacheNode) close() { n.c.Close() }

// singleflight: GET; on a miss, x/sync singleflight per node, which looks
// again, loads and SETs. Nothing between nodes.

type flightNode struct {
	naiveNode
	g singleflight.Group
}

func newFlightOnly(e env, rdb *redis.Client, load loadFunc) (getter, error) {
	return &flightNode{naiveNode: naiveNode{rdb: rdb, key: e.key(), ttl: e.ttl, load: load}}, nil
}

func (n *flightNode) get(ctx context.Context) (string, error) {
	if v, err := n.rdb.Get(ctx, n.key).Result(); err == nil {
		return v, nil
	}
	ch := n.g.DoChan(n.key, func() (any, error) {
		// A flight that ended just before this one may have stored it.
		if v, err := n.rdb.Get(ctx, n.key).Result(); err == nil {
			return v, nil
		}
		return n.fill(context.WithoutCancel(ctx))
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

// naive: GET; on a miss, load and SET.

type naiveNode struct {
	rdb  *redis.Client
	key  string
	ttl  time.Duration
	load loadFunc
}

func newNaive(e env, rdb *redis.Client, load loadFunc) (getter, error) {
	return &naiveNode{rdb: rdb, key: e.key(), ttl: e.ttl, load: load}, nil
}

func (n *naiveNode) get(ctx context.Context) (string, error) {
	v, err := n.rdb.Get(ctx, n.key).Result()
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, redis.Nil) {
		return "", err
	}
	return n.fill(ctx)
}

func (n *naiveNode) fill(ctx context.Context) (string, error) {
	v, err := n.load(ctx)
	if err != nil {
		return "", err
	}
	n.rdb.Set(ctx, n.key, v, n.ttl)
	return v, nil
}

func (n *naiveNode) close() {}
