package stampede

// Tracking mode (InvalidateTracking): Redis remembers which connection read
// which key (CLIENT TRACKING, default mode) and, when the key changes,
// tells those connections only. A node's reads whose values may go to L1
// run on connections of its own ("data" connections) whose tracking
// messages are redirected to this node's subscription on the same server,
// so a node hears about the keys it read since their last change and
// nothing else. A write costs Redis one message per node that holds the
// key, not one per node of the fleet.
//
// What keeps invariant 11 in this mode:
//
//   - Every data connection is tracked, with its messages redirected to a
//     subscription of this node that is confirmed and named as such
//     (client ids are reused after a server restart). A connection that
//     cannot be set up that way is refused, and its call fails as a Redis
//     error.
//   - A subscription that reconnects gets a new client id: the data
//     connections still redirect to the old one, so the data client is
//     replaced (its connections are closed once their calls return) and L1
//     is flushed, as on any resubscription.
//   - A data connection that closes takes its tracked keys with it: L1 is
//     flushed. Each subscription counts the data connections to its
//     server; one with none (a master that left the Cluster) answers for
//     nothing in L1, so its silence and lost probes flush nothing, and it
//     is closed after subIdleFor.
//   - Tracking messages carry no sequence numbers, so lost ones cannot show
//     as a gap. Instead each node probes its own subscriptions every
//     probeEvery; a probe not heard within probeWait, or overtaken by a
//     later one, flushes L1. A silent
//     subscription is pinged and flushes L1 as in broadcast mode, and
//     LocalTTL bounds the rest.
//   - L1 keeps only values read through a data connection. A value this
//     node wrote (Set, a fill) was never read by it, so Redis would not
//     tell it when another node overwrote it; the next Get reads it back.
//
// The scripts still publish on the namespace's channel, so that nodes in
// broadcast mode (an older version during a rolling upgrade, a node that
// fell back) keep hearing every write. Nobody in tracking mode subscribes
// to it; a PUBLISH nobody listens to costs Redis next to nothing.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede/internal/bounded"
	"github.com/stampede-go/stampede/internal/lua"
)

// invalidateChannel is where Redis sends a RESP2 subscriber the tracking
// messages redirected to it.
const invalidateChannel = "__redis__:invalidate"

// tracker is the state of tracking mode.
type tracker struct {
	single  *redis.Options        // the user's client's options, for a *redis.Client
	cluster *redis.ClusterOptions // ... for a *redis.ClusterClient

	subName   string // CLIENT SETNAME of this node's subscriptions
	probeChan string // where this node's probes go

	mu     sync.Mutex           // guards subs and closed
	subs   map[string]*trackSub // this node's subscription on each server, by address
	closed bool                 // no new subscriptions

	stopped atomic.Bool // the last data client is retired, with no successor

	data     atomic.Pointer[dataClient] // the client for tracked reads
	probeSeq atomic.Uint64
	probing  atomic.Bool // a probe is on its way

	checkMu   sync.Mutex      // guards checkWant
	checkWant map[string]bool // New's check keys whose invalidation has yet to come
	checked   chan struct{}   // closed when checkWant is empty
}

// keepsOwnWrites says whether a value this node wrote may go to its L1:
// not in tracking mode, where Redis tells a node only about keys it read.
func (c *Cache[V]) keepsOwnWrites() bool { return c.trk == nil }

// startTracking sets up tracking mode and checks, once, that a tracked read
// followed by a write reaches this node's subscription. It fails without
// leaving anything running when the client or the server cannot do it.
func (c *Cache[V]) startTracking() error {
	t := &tracker{
		subName:   "stampede-" + c.nodeID,
		probeChan: c.opts.Namespace + ":probe:" + c.nodeID,
		subs:      make(map[string]*trackSub),
		checked:   make(chan struct{}),
	}
	// No cache key has an empty hash tag: these are nobody's.
	script, multi := c.opts.Namespace+":{}:check-script:"+c.nodeID, c.opts.Namespace+":{}:check-multi:"+c.nodeID
	t.checkWant = map[string]bool{script: true, multi: true}
	switch r := c.rdb.(type) {
	case *redis.ClusterClient:
		o := *r.Options()
		unsetClusterDefaults(&o)
		t.cluster = &o
	case *redis.Client:
		// A Sentinel failover client's pool follows the master through
		// failovers; a copy of its options would not.
		if r.Options().Addr == "FailoverClient" {
			return fmt.Errorf("%w for a Sentinel failover client", errNoTracking)
		}
		o := *r.Options()
		unsetDefaults(&o)
		t.single = &o
	default:
		return fmt.Errorf("%w for a %T", errNoTracking, c.rdb)
	}
	limit := c.opts.RedisTimeout
	ctx := c.closeCtx
	if err := bounded.Call(ctx, limit, c.ctxDeadlines, func(ctx context.Context) error {
		return trackingAvailable(ctx, c.rdb)
	}); err != nil {
		return err
	}
	// Until the check passes, c.trk stays nil and everything started here
	// goes through t.
	t.data.Store(c.newDataClient(t))
	// Read a key the ways reads go to L1, from a script (lock.lua) and in
	// MULTI (readRedis), then write both as another node would.
	err := bounded.Call(ctx, limit, c.ctxDeadlines, func(ctx context.Context) error {
		rdb, d := t.reader()
		defer d.release()
		if err := lua.TrackCheck.Run(ctx, rdb, []string{script}).Err(); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		pipe := rdb.TxPipeline()
		pipe.Get(ctx, multi)
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		for _, k := range []string{script, multi} {
			if err := c.rdb.Set(ctx, k, "1", time.Second).Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		timer := time.NewTimer(limit)
		select {
		case <-t.checked:
		case <-timer.C:
			err = fmt.Errorf("%w: the invalidation of keys read with tracking on did not arrive within %v", errNoTracking, limit)
		}
		timer.Stop()
	}
	if err != nil {
		_ = c.stopTracking(t)
		return err
	}
	c.trk = t
	c.wg.Add(1)
	go c.guard(nil)
	return nil
}

// all returns this node's subscriptions.
func (t *tracker) all() []*trackSub {
	t.mu.Lock()
	defer t.mu.Unlock()
	subs := make([]*trackSub, 0, len(t.subs))
	for _, s := range t.subs {
		subs = append(subs, s)
	}
	return subs
}

// stopTracking closes the subscriptions and clients of tracking mode.
func (c *Cache[V]) stopTracking(t *tracker) error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	err := c.dropSubs(func(s *sub) bool { return s.t != nil && s.t.trk == t })
	for _, s := range t.all() {
		err = errors.Join(err, s.client.Close())
	}
	// closed is set: renewData stores no successor to this one.
	t.stopped.Store(true)
	t.data.Load().retire()
	return err
}

// onInvalidate handles a tracking message: keys (Redis keys) changed, or
// were read by this node and are tracked no more for it.
func (c *Cache[V]) onInvalidate(t *tracker, keys []string) {
	for _, rk := range keys {
		key, lock, ok := c.cacheKeyOf(rk)
		if !ok {
			t.checkedKey(rk)
			continue
		}
		c.stats.messages.Add(1)
		if !lock {
			c.invalidateL1(key)
		}
		// A lease dropped or a value written: either way, waiters look
		// again.
		c.waiters.notify(key)
	}
}

// checkedKey records the invalidation of a key of New's check.
func (t *tracker) checkedKey(rk string) {
	t.checkMu.Lock()
	defer t.checkMu.Unlock()
	if t.checkWant[rk] {
		delete(t.checkWant, rk)
		if len(t.checkWant) == 0 {
			close(t.checked)
		}
	}
}
