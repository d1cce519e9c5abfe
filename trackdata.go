package stampede

// The client of tracked reads (tracking mode): a client made from the
// options of the user's, whose every connection has tracking on with its
// messages redirected to this node's subscription on the same server. It
// is replaced when a subscription reconnects, and a connection of it that
// closes flushes L1.

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

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
		s := c.holdSub(t, addr, sub)
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
		return c.redirect(t, ctx, cn, addr)
	}
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
