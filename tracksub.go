package stampede

// This node's subscriptions in tracking mode, one per server: where the
// tracking messages of its data connections to that server go, how a
// data connection is pointed at one, and the probes that tell whether
// their messages still arrive.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede/internal/bounded"
)

const (
	// probeEvery is how often a node probes its subscriptions.
	probeEvery = time.Second
	// probeWait is how long a probe may take before it counts as lost.
	probeWait = time.Second
	// subIdleFor is how long a subscription stays without data
	// connections to its server before it is closed (at the next probe
	// after that).
	subIdleFor = 10 * time.Second
)

// trackSub is this node's subscription on one server: where the tracking
// messages of its data connections to that server are redirected.
type trackSub struct {
	trk       *tracker
	addr      string
	client    *redis.Client // for this subscription only: RESP2, named, its id recorded
	pending   atomic.Int64  // CLIENT ID of the newest connection made for the subscription
	live      atomic.Int64  // CLIENT ID of the connection that confirmed the subscription: the redirect target
	ready     chan struct{} // closed at the first confirmation
	readyOnce sync.Once

	probeWant  atomic.Uint64 // the probe it has yet to hear; 0: none
	probeSent  atomic.Int64  // when that probe went out, on the coarse clock
	probeHeard atomic.Uint64 // the last probe heard

	conns     atomic.Int64 // data connections to its server that are open or being made
	idleSince atomic.Int64 // when conns last fell to 0, on the coarse clock
	dropped   atomic.Bool  // taken out of the tracker by dropIdle: closed
}

// redirect turns tracking on for a new data connection to the server at
// addr, its messages going to this node's subscription there. Its errors
// wrap errNoTracking and not the server's reply, which would read as a
// reply about one key (invariant 13): a connection that cannot be
// tracked is a Redis failure.
func (c *Cache[V]) redirect(t *tracker, ctx context.Context, cn *redis.Conn, addr string) error {
	t.mu.Lock()
	s := t.subs[addr]
	t.mu.Unlock()
	if s == nil || !s.answersForL1() {
		// The data client's dialer opens the subscription and counts each
		// connection it makes, from before its dial to its close, and
		// counted none: another dialer made this one (a Cluster client's
		// NewClient replaced it). Its closing would go unnoticed, and with
		// it the keys it tracked.
		return fmt.Errorf("%w: a connection to %s was not made by the cache's dialer (does ClusterOptions.NewClient set Dialer?)", errNoTracking, addr)
	}
	id, err := s.liveID(ctx, c.opts.RedisTimeout, c.closeCtx)
	if err != nil {
		return err
	}
	// Client ids are unique within one run of a server only: after a
	// restart, the subscription's last id may be another client's.
	who, err := cn.Do(ctx, "CLIENT", "LIST", "ID", id).Text()
	if err != nil {
		return fmt.Errorf("%w: CLIENT LIST: %v", errNoTracking, err)
	}
	if !strings.Contains(who, " name="+t.subName+" ") {
		return fmt.Errorf("%w: the subscription on %s (client %d) is gone", errNoTracking, addr, id)
	}
	if err := cn.Do(ctx, "CLIENT", "TRACKING", "ON", "REDIRECT", id).Err(); err != nil {
		return fmt.Errorf("%w: CLIENT TRACKING: %v", errNoTracking, err)
	}
	return nil
}

// liveID waits, within limit, until the subscription is confirmed, and
// returns its client id.
func (s *trackSub) liveID(ctx context.Context, limit time.Duration, closed context.Context) (int64, error) {
	select {
	case <-s.ready:
		return s.live.Load(), nil
	default:
	}
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-s.ready:
		return s.live.Load(), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-closed.Done():
		return 0, ErrClosed
	case <-t.C:
		return 0, fmt.Errorf("%w: no subscription on %s after %v", errNoTracking, s.addr, limit)
	}
}

// holdSub returns this node's subscription on the server at addr, opening
// it (from base, the options of a client of that server) the first time,
// and counts one more data connection to that server (see letGo). It
// returns nil once the cache is closing.
func (c *Cache[V]) holdSub(t *tracker, addr string, base *redis.Options) *trackSub {
	t.mu.Lock()
	s, seen := t.subs[addr]
	if !seen && !t.closed {
		s = c.newTrackSub(t, addr, base)
		t.subs[addr] = s
	}
	if s != nil {
		s.conns.Add(1) // under t.mu, where dropIdle looks for none
	}
	t.mu.Unlock()
	if s != nil && !seen {
		c.onClient(s.client)
		c.watch(func(ctx context.Context) *redis.PubSub {
			return s.client.Subscribe(ctx, invalidateChannel, t.probeChan)
		}, s)
	}
	return s
}

// letGo counts one data connection to s's server less: it closed, or was
// never made.
func (c *Cache[V]) letGo(s *trackSub) {
	// Before the count falls, so that dropIdle never sees none with an
	// older time.
	s.idleSince.Store(int64(c.now()))
	s.conns.Add(-1)
}

// answersForL1 says whether s's silence, lost probes or reconnection may
// have cost L1 an invalidation: in broadcast mode (s is nil) always; in
// tracking mode while a data connection to s's server is open or being
// made. With none, no value in L1 came from one that redirects to s (one
// that closed flushed L1): the state of the subscription on a server that
// left a Cluster, until it is closed.
func (s *trackSub) answersForL1() bool { return s == nil || s.conns.Load() > 0 }

// dropIdle takes out of t.subs, and returns, the subscriptions without
// data connections for subIdleFor: those on a server that left a Cluster,
// whose probes would never arrive. A connection to that server opens a
// new one.
func (t *tracker) dropIdle(now time.Duration) []*trackSub {
	var idle []*trackSub
	t.mu.Lock()
	defer t.mu.Unlock()
	for addr, s := range t.subs {
		if !s.answersForL1() && now-time.Duration(s.idleSince.Load()) >= subIdleFor {
			delete(t.subs, addr)
			s.dropped.Store(true)
			idle = append(idle, s)
		}
	}
	return idle
}

// closeTrackSub closes a subscription dropIdle took out; not on guard's
// goroutine (see dropSubs).
func (c *Cache[V]) closeTrackSub(ts *trackSub) {
	_ = c.dropSubs(func(s *sub) bool { return s.t == ts })
	_ = ts.client.Close()
}

// subConn marks the context of a subscription's calls (the value is its
// *trackSub), which go-redis hands to OnConnect when the call dials: the
// connection it makes is the subscription's.
type subConn struct{}

// newTrackSub makes the client of a subscription: RESP2, since RESP2 is
// where Redis sends redirected messages as published ones, and every
// connection named and its id recorded as it connects.
func (c *Cache[V]) newTrackSub(t *tracker, addr string, base *redis.Options) *trackSub {
	s := &trackSub{trk: t, addr: addr, ready: make(chan struct{})}
	s.idleSince.Store(int64(c.now()))
	o := *base
	user := o.OnConnect
	o.Protocol = 2
	o.ClientSideCache, o.ClientSideCacheConfig = nil, nil
	o.MinIdleConns = 0
	o.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		if user != nil {
			if err := user(ctx, cn); err != nil {
				return err
			}
		}
		if err := cn.ClientSetName(ctx, t.subName).Err(); err != nil {
			return err
		}
		if ctx.Value(subConn{}) != s {
			// A connection of the client's pool, for a command someone
			// ran on it (Options.OnClient hands it out): not the
			// subscription, and not a redirect target.
			return nil
		}
		id, err := cn.ClientID(ctx).Result()
		if err != nil {
			return err
		}
		s.pending.Store(id)
		return nil
	}
	s.client = redis.NewClient(&o)
	return s
}

// confirmTracking is called when s confirms its subscription: data
// connections may now redirect to it. When the connection is a new one,
// the tracked connections still redirect to the old one, whose messages
// nobody reads: the data client is replaced. The caller then flushes L1.
func (c *Cache[V]) confirmTracking(s *trackSub) {
	id := s.pending.Load()
	// Without data connections to its server, none redirects to the old
	// one: the data client stays.
	if old := s.live.Swap(id); old != 0 && old != id && s.answersForL1() {
		c.renewData(s.trk)
	}
	s.readyOnce.Do(func() { close(s.ready) })
}

// onProbe records a probe that s heard, and reports whether it shows that
// the probe s waits for was lost, where that matters to L1: one that went
// out later arrived first, and a subscription hears a server's messages in
// the order they were sent. Without this, the next probe would mask a lost
// one that guard had not judged yet.
func (s *trackSub) onProbe(payload string) (lost bool) {
	n, err := strconv.ParseUint(payload, 10, 64)
	if err != nil {
		return false
	}
	if want := s.probeWant.Load(); want != 0 && n > want && s.probeHeard.Load() < want {
		// Judged here, not by guard too.
		lost = s.probeWant.CompareAndSwap(want, 0)
	}
	for {
		h := s.probeHeard.Load()
		if n <= h || s.probeHeard.CompareAndSwap(h, n) {
			return lost && s.answersForL1()
		}
	}
}

// probe judges the last probe and sends the next (tracking mode): every
// subscription of this node should hear a message published on its probe
// channel (PUBLISH reaches every shard of a Cluster). One that does not
// within probeWait may have lost tracking messages too: L1 is flushed.
// A subscription without data connections is not judged, and one without
// them for subIdleFor is closed. It costs one PUBLISH per node per
// probeEvery, delivered to that node alone.
func (c *Cache[V]) probe(now time.Duration, running *sync.WaitGroup) {
	t := c.trk
	for _, s := range t.dropIdle(now) {
		running.Go(func() { c.closeTrackSub(s) })
	}
	subs := t.all()
	lost := false
	for _, s := range subs {
		want := s.probeWant.Load()
		if !s.answersForL1() {
			// Nothing to judge; CompareAndSwap, so as not to undo a probe
			// sent meanwhile.
			s.probeWant.CompareAndSwap(want, 0)
			continue
		}
		if want != 0 && s.probeHeard.Load() < want && now-time.Duration(s.probeSent.Load()) >= probeWait &&
			s.probeWant.CompareAndSwap(want, 0) {
			lost = true
		}
	}
	if lost {
		c.resync(flushLostProbe)
	}
	if !t.probing.CompareAndSwap(false, true) {
		return
	}
	running.Go(func() {
		defer t.probing.Store(false)
		seq := t.probeSeq.Add(1)
		sent := c.now()
		// Not through call: a probe that fails says nothing about the
		// callers' Redis, and must not open their circuit.
		err := bounded.Call(c.closeCtx, c.opts.RedisTimeout, c.ctxDeadlines, func(ctx context.Context) error {
			rdb, d := c.readClient()
			defer d.release()
			return rdb.Publish(ctx, t.probeChan, seq).Err()
		})
		if err != nil {
			return // no verdict: the probe may not have gone out
		}
		for _, s := range subs {
			// A probe still outstanding keeps its place: if it is lost,
			// so may have been tracking messages.
			if s.probeWant.Load() <= s.probeHeard.Load() {
				s.probeSent.Store(int64(sent))
				s.probeWant.Store(seq)
			}
		}
	})
}
