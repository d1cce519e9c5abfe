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
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede/internal/bounded"
	"github.com/stampede-go/stampede/internal/lua"
)

// invalidateChannel is where Redis sends a RESP2 subscriber the tracking
// messages redirected to it.
const invalidateChannel = "__redis__:invalidate"

const (
	// probeEvery is how often a node probes its subscriptions.
	probeEvery = time.Second
	// probeWait is how long a probe may take before it counts as lost.
	probeWait = time.Second
	// subIdleFor is how long a subscription stays without data
	// connections to its server before it is closed.
	subIdleFor = 10 * time.Second
)

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

// dataClient is a client whose connections are tracked. It is replaced when
// a subscription reconnects, and closed once the calls using it are done.
type dataClient struct {
	rdb     redis.UniversalClient
	refs    atomic.Int64 // 1 while it is the current one, plus one per call
	retired atomic.Bool  // replaced: its connections closing flush nothing
}

// acquire takes a reference unless the client is already closed.
func (d *dataClient) acquire() bool {
	for {
		n := d.refs.Load()
		if n == 0 {
			return false
		}
		if d.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// retire drops the reference of the current client: d closes once its
// calls are done, and its connections closing flush nothing.
func (d *dataClient) retire() {
	d.retired.Store(true)
	d.release()
}

// release drops a reference taken by readClient; nil (the user's own
// client, in broadcast mode) has none.
func (d *dataClient) release() {
	if d != nil && d.refs.Add(-1) == 0 {
		_ = d.rdb.Close()
	}
}

// readClient returns the client for a read whose value may go to L1, and
// what to release when the call is done: in tracking mode one whose
// connections Redis tracks for this node.
func (c *Cache[V]) readClient() (redis.UniversalClient, *dataClient) {
	if c.trk == nil {
		return c.rdb, nil
	}
	return c.trk.reader()
}

// groupReader is readClient for a batch's group: the group's own client
// (a Ring shard's) in broadcast mode, where the scripts' reads are not
// tracked.
func (c *Cache[V]) groupReader(g group) (redis.Scripter, *dataClient) {
	if c.trk == nil {
		return g.rdb, nil
	}
	return c.trk.reader()
}

// reader returns the current data client, referenced. A client that cannot
// be referenced any more has been replaced, unless tracking stopped: then
// calls on it fail with redis.ErrClosed, as the cache is closing.
func (t *tracker) reader() (redis.UniversalClient, *dataClient) {
	for {
		d := t.data.Load()
		if d.acquire() {
			return d.rdb, d
		}
		if t.stopped.Load() {
			return d.rdb, nil
		}
	}
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

// stopTracking closes the subscriptions and clients of tracking mode.
func (c *Cache[V]) stopTracking(t *tracker) error {
	t.mu.Lock()
	t.closed = true
	subs := make([]*trackSub, 0, len(t.subs))
	for _, s := range t.subs {
		subs = append(subs, s)
	}
	t.mu.Unlock()
	var err error
	c.subMu.Lock()
	for s := range c.subs {
		if s.t != nil && s.t.trk == t {
			err = errors.Join(err, s.ps.Close())
			delete(c.subs, s)
		}
	}
	c.subMu.Unlock()
	for _, s := range subs {
		err = errors.Join(err, s.client.Close())
	}
	// closed is set: renewData stores no successor to this one.
	t.stopped.Store(true)
	t.data.Load().retire()
	return err
}

// unsetDefaults turns o, the options of a client as Options returns them
// (go-redis has filled in its defaults, and turned the settings that mean
// "none" into zeros), back into options from which a new client gets the
// same settings: a zero there would mean "the default" again. Without it a
// client made for tracking would retry where the user's does not
// (MaxRetries -1), or time out reads the user's never times out.
func unsetDefaults(o *redis.Options) {
	if o.MaxRetries == 0 {
		o.MaxRetries = -1
	}
	o.ReadTimeout, o.WriteTimeout = unsetTimeout(o.ReadTimeout), unsetTimeout(o.WriteTimeout)
	o.MinRetryBackoff, o.MaxRetryBackoff = unsetBackoff(o.MinRetryBackoff), unsetBackoff(o.MaxRetryBackoff)
}

// unsetClusterDefaults is unsetDefaults for a Cluster client's options.
// MaxRetries needs nothing: go-redis keeps a Cluster client's -1.
func unsetClusterDefaults(o *redis.ClusterOptions) {
	if o.MaxRedirects == 0 {
		o.MaxRedirects = -1
	}
	o.ReadTimeout, o.WriteTimeout = unsetTimeout(o.ReadTimeout), unsetTimeout(o.WriteTimeout)
	o.MinRetryBackoff, o.MaxRetryBackoff = unsetBackoff(o.MinRetryBackoff), unsetBackoff(o.MaxRetryBackoff)
}

// unsetTimeout maps a filled-in read or write timeout back: 0 (no
// timeout) was -1, and -1 (no deadline set at all) was -2.
func unsetTimeout(d time.Duration) time.Duration {
	switch d {
	case 0:
		return -1
	case -1:
		return -2
	}
	return d
}

// unsetBackoff maps a filled-in retry backoff back: 0 (none) was -1.
func unsetBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// newDataClient makes a client like the user's whose connections are
// tracked, each redirecting to this node's subscription on its server.
func (c *Cache[V]) newDataClient(t *tracker) *dataClient {
	d := &dataClient{}
	d.refs.Store(1)
	if t.single != nil {
		o := *t.single
		c.trackedOptions(t, &o, d, t.single)
		d.rdb = redis.NewClient(&o)
		c.onClient(d.rdb)
		return d
	}
	o := *t.cluster
	// Replicas track their own readers; every read goes to the masters,
	// where the subscriptions are.
	o.ReadOnly, o.RouteByLatency, o.RouteRandomly = false, false, false
	o.Protocol = 2
	newClient := o.NewClient
	if newClient == nil {
		newClient = redis.NewClient
	}
	o.NewClient = func(no *redis.Options) *redis.Client {
		sub := *no
		c.trackedOptions(t, no, d, &sub)
		return newClient(no)
	}
	d.rdb = redis.NewClusterClient(&o)
	c.onClient(d.rdb)
	return d
}

// onClient hands a client the cache made to Options.OnClient.
func (c *Cache[V]) onClient(rdb redis.UniversalClient) {
	if c.opts.OnClient != nil {
		c.opts.OnClient(rdb)
	}
}

// trackedOptions turns o, the options of a client of one server, into
// those of a data client: every connection gets tracking on in OnConnect
// (after the user's OnConnect), and its closing is noticed. sub is what
// this node's subscription on that server is made from.
func (c *Cache[V]) trackedOptions(t *tracker, o *redis.Options, d *dataClient, sub *redis.Options) {
	user, addr := o.OnConnect, o.Addr
	dial := o.Dialer
	if dial == nil {
		dial = redis.NewDialer(o)
	}
	// Tracking messages go to the subscription; RESP3 would also push
	// them down the data connections.
	o.Protocol = 2
	o.ClientSideCache, o.ClientSideCacheConfig = nil, nil
	// A connection that closes loses what it tracked, and L1 with it: none
	// is closed for being idle or old.
	o.ConnMaxIdleTime, o.ConnMaxLifetime, o.MaxIdleConns = -1, 0, 0
	o.Dialer = func(ctx context.Context, network, to string) (net.Conn, error) {
		// The subscription its messages will go to stays while it is
		// open.
		s := c.trackSub(t, addr, sub, true)
		if s == nil {
			return nil, ErrClosed
		}
		conn, err := dial(ctx, network, to)
		if err != nil {
			c.letGo(s)
			return nil, err
		}
		return watchClose(conn, func() {
			c.letGo(s)
			c.dataConnClosed(d)
		}), nil
	}
	o.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		if user != nil {
			if err := user(ctx, cn); err != nil {
				return err
			}
		}
		return c.redirect(t, ctx, cn, addr, sub)
	}
}

// redirect turns tracking on for a new data connection to the server at
// addr, its messages going to this node's subscription there. Its errors
// wrap errNoTracking and not the server's reply, which would read as a
// reply about one key (invariant 13): a connection that cannot be
// tracked is a Redis failure.
func (c *Cache[V]) redirect(t *tracker, ctx context.Context, cn *redis.Conn, addr string, subOpts *redis.Options) error {
	s := c.trackSub(t, addr, subOpts, false)
	if s == nil {
		return ErrClosed
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

// trackSub returns this node's subscription on the server at addr, opening
// it (from base, the options of a client of that server) the first time,
// and counts one more data connection to that server if hold is set (see
// letGo). It returns nil once the cache is closing.
func (c *Cache[V]) trackSub(t *tracker, addr string, base *redis.Options, hold bool) *trackSub {
	t.mu.Lock()
	s, seen := t.subs[addr]
	if !seen && !t.closed {
		s = c.newTrackSub(t, addr, base)
		t.subs[addr] = s
	}
	if s != nil && hold {
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
	if s.conns.Add(-1) == 0 {
		s.idleSince.Store(int64(c.now()))
	}
}

// tracks says whether a data connection to s's server is open: else no
// value in L1 came from one that redirects to s (one that closed flushed
// L1), and s's silence or lost probes put nothing at risk. That is the
// state of the subscription on a server that left a Cluster, until it is
// closed.
func (s *trackSub) tracks() bool { return s.conns.Load() > 0 }

// dropIdle takes out of t.subs, and returns, the subscriptions without
// data connections for subIdleFor: those on a server that left a Cluster,
// whose probes would never arrive. A connection to that server opens a
// new one.
func (t *tracker) dropIdle(now time.Duration) []*trackSub {
	var idle []*trackSub
	t.mu.Lock()
	defer t.mu.Unlock()
	for addr, s := range t.subs {
		if !s.tracks() && now-time.Duration(s.idleSince.Load()) >= subIdleFor {
			delete(t.subs, addr)
			s.dropped.Store(true)
			idle = append(idle, s)
		}
	}
	return idle
}

// closeTrackSub closes a subscription dropIdle took out.
func (c *Cache[V]) closeTrackSub(ts *trackSub) {
	c.subMu.Lock()
	for s := range c.subs {
		if s.t == ts {
			_ = s.ps.Close()
			delete(c.subs, s)
		}
	}
	c.subMu.Unlock()
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
	if old := s.live.Swap(id); old != 0 && old != id {
		c.renewData(s.trk)
	}
	s.readyOnce.Do(func() { close(s.ready) })
}

// renewData replaces the data client; the old one closes once its calls
// are done.
func (c *Cache[V]) renewData(t *tracker) {
	d := c.newDataClient(t) // outside t.mu: it calls Options.OnClient
	t.mu.Lock()
	if t.closed { // stopTracking retires the current one: no successor
		t.mu.Unlock()
		d.retire()
		return
	}
	old := t.data.Swap(d)
	t.mu.Unlock()
	old.retire()
}

// dataConnClosed is called when a connection of d closes: the keys it
// tracked are tracked no more, so L1 may keep values nobody will tell this
// node about.
func (c *Cache[V]) dataConnClosed(d *dataClient) {
	if d.retired.Load() || c.isClosed() {
		return
	}
	c.resync(flushUntracked)
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

// onProbe records a probe that s heard, and reports whether it shows that
// the probe s waits for was lost: one that went out later arrived first,
// and a subscription hears a server's messages in the order they were
// sent. Without this, the next probe would mask a lost one that guard had
// not judged yet.
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
			return lost
		}
	}
}

// probe judges the last probe and sends the next (tracking mode): every
// subscription of this node should hear a message published on its probe
// channel (PUBLISH reaches every shard of a Cluster). One that does not
// within probeWait may have lost tracking messages too: L1 is flushed.
// It costs one PUBLISH per node per probeEvery, delivered to that node
// alone.
func (c *Cache[V]) probe(now time.Duration, running *sync.WaitGroup) {
	t := c.trk
	for _, s := range t.dropIdle(now) {
		c.closeTrackSub(s)
	}
	t.mu.Lock()
	subs := make([]*trackSub, 0, len(t.subs))
	for _, s := range t.subs {
		subs = append(subs, s)
	}
	t.mu.Unlock()
	lost := false
	for _, s := range subs {
		if !s.tracks() {
			s.probeWant.Store(0)
			continue
		}
		want := s.probeWant.Load()
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

// watchClose returns conn, calling closed once when it is closed. The
// result implements syscall.Conn when conn does, so that go-redis can
// still check an idle connection's health.
func watchClose(conn net.Conn, closed func()) net.Conn {
	w := &closeWatch{Conn: conn, closed: closed}
	if sc, ok := conn.(syscall.Conn); ok {
		return &closeWatchSys{closeWatch: w, sc: sc}
	}
	return w
}

type closeWatch struct {
	net.Conn
	once   sync.Once
	closed func()
}

func (w *closeWatch) Close() error {
	err := w.Conn.Close()
	w.once.Do(w.closed)
	return err
}

type closeWatchSys struct {
	*closeWatch
	sc syscall.Conn
}

func (w *closeWatchSys) SyscallConn() (syscall.RawConn, error) { return w.sc.SyscallConn() }
