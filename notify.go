package stampede

import (
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Messages on the namespace's channel:
//
//	byte 0       kind
//	bytes 1-16   the sender's node id
//	bytes 17-24  the sender's sequence number, big endian: one per message,
//	             so that a receiver can tell when it missed one (gaps.go)
//	bytes 25-    the cache key
const (
	msgFilled      = 'f' // a rebuild landed: wake waiters, evict stale L1 copies
	msgInvalidated = 'i' // Set or Delete: evict L1 everywhere, wake waiters
	msgNothing     = 'n' // a write-back the lease refused: only its number counts
	nodeIDLen      = 16
	msgHeaderLen   = 1 + nodeIDLen + 8
)

// Watching the subscription (invariant 11).
const (
	// quietAfter is how long a subscription may stay silent before it is
	// pinged.
	quietAfter = time.Second
	// deadAfter is how long a subscription may stay silent, pings
	// unanswered, before L1 is flushed and the connection replaced.
	deadAfter = 3 * time.Second
	// retryPause spaces out reconnection attempts while Redis is away.
	retryPause = 100 * time.Millisecond
)

// message returns a message of kind about key, with this node's next
// sequence number.
func (c *Cache[V]) message(kind byte, key string) string {
	b := make([]byte, 0, msgHeaderLen+len(key))
	b = append(b, kind)
	b = append(b, c.nodeID...)
	b = binary.BigEndian.AppendUint64(b, c.seq.Add(1))
	b = append(b, key...)
	return string(b)
}

// sub is one subscription: of the namespace's channel (broadcast mode), or
// of one server's tracking messages for this node (tracking mode).
type sub struct {
	ps      *redis.PubSub
	t       *trackSub       // nil in broadcast mode
	ctx     context.Context // for its calls: c.closeCtx, marked in tracking mode (see subConn)
	heard   atomic.Int64    // when a frame last came (or L1 was last flushed for its silence), on the coarse clock
	pinging atomic.Bool     // a ping is on its way
}

// subscribe listens on the namespace's channel until Close: once for a
// single server, Sentinel or Cluster (PUBLISH reaches every node), once per
// shard for a Ring, whose scripts publish on the shard of their key.
func (c *Cache[V]) subscribe() {
	ring, _ := c.rdb.(*redis.Ring)
	if ring != nil {
		c.watchRing(ring)
	} else {
		c.watch(c.openChannel(c.rdb.Subscribe), nil)
	}
	c.wg.Add(1)
	go c.guard(ring)
}

// watchRing subscribes on every shard of ring not yet watched.
func (c *Cache[V]) watchRing(ring *redis.Ring) {
	_ = ring.ForEachShard(c.closeCtx, func(ctx context.Context, shard *redis.Client) error {
		c.subMu.Lock()
		seen := c.shards[shard]
		c.shards[shard] = true
		c.subMu.Unlock()
		if !seen {
			c.watch(c.openChannel(shard.Subscribe), nil)
		}
		return nil
	})
}

// openChannel returns how to subscribe to the namespace's channel with
// subscribe (a client's or a Ring shard's Subscribe).
func (c *Cache[V]) openChannel(subscribe func(ctx context.Context, channels ...string) *redis.PubSub) func(context.Context) *redis.PubSub {
	return func(ctx context.Context) *redis.PubSub { return subscribe(ctx, c.channel) }
}

// watch opens a subscription with open and reads it on a goroutine of its
// own until Close; t is the server's tracking subscription it is, in
// tracking mode. A confirmation of the subscription after the first one
// (go-redis reconnected) resyncs: messages sent while the connection was
// down are lost; not for a tracking subscription without data connections
// (see trackSub.tracks), which answers for nothing in L1. A subscription
// silent for deadAfter is replaced (guard has flushed L1 for it
// meanwhile). It returns when the subscription is closed: by Close, or by
// closeTrackSub.
func (c *Cache[V]) watch(open func(ctx context.Context) *redis.PubSub, t *trackSub) {
	// The channel whose confirmation marks a new connection.
	primary := c.channel
	if t != nil {
		primary = invalidateChannel
	}
	s := c.openSub(open, nil, t)
	if s == nil {
		return
	}
	// Wait for the confirmation, briefly, so a fill right after New is not
	// missed. If Redis is down, go on: the subscription keeps trying.
	ctx, cancel := context.WithTimeout(s.ctx, time.Second)
	first, err := s.ps.Receive(ctx)
	if err != nil {
		c.noteErr(ctx, EventRedisError, "", err)
	}
	cancel()
	if m, ok := first.(*redis.Subscription); err == nil && ok && t != nil && m.Kind == "subscribe" && m.Channel == primary {
		c.confirmTracking(t)
	}
	if !c.enter() {
		return // closing: Close closes s
	}
	go func() {
		defer c.wg.Done()
		last := c.now() // the last frame, for replacing a silent connection
		for {
			msg, err := s.ps.ReceiveTimeout(s.ctx, quietAfter)
			if c.closeCtx.Err() != nil || errors.Is(err, redis.ErrClosed) {
				return
			}
			now := c.now()
			var ne net.Error
			switch {
			case err == nil:
				last = now
				s.heard.Store(int64(now))
			case errors.As(err, &ne) && ne.Timeout():
				if now-last >= deadAfter {
					if s = c.openSub(open, s, t); s == nil {
						return
					}
					last = now
				}
				continue
			default:
				if t != nil && !errors.As(err, &ne) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					// A message go-redis could not read on a connection
					// still up: a tracking message without keys says
					// "everything" (FLUSHALL), and any other may have
					// named keys this node holds.
					c.resync(flushUnreadable)
				}
				// The connection broke: go-redis dials again on the next
				// receive and resubscribes, and the confirmation resyncs.
				select {
				case <-c.closeCtx.Done():
					return
				case <-time.After(retryPause):
				}
				continue
			}
			switch m := msg.(type) {
			case *redis.Subscription:
				if m.Kind == "subscribe" && m.Channel == primary {
					// Judged first: replacing the data client closes its
					// connections.
					answers := t.answersForL1()
					if t != nil {
						c.confirmTracking(t)
					}
					if answers {
						c.resync(flushResubscribed)
					}
				}
			case *redis.Message:
				switch {
				case t == nil:
					c.onMessage(m.Payload)
				case m.Channel == invalidateChannel && m.PayloadSlice != nil:
					c.onInvalidate(t.trk, m.PayloadSlice)
				case m.Channel == invalidateChannel:
					c.onInvalidate(t.trk, []string{m.Payload})
				default:
					if t.onProbe(m.Payload) {
						c.resync(flushLostProbe)
					}
				}
			}
		}
	}()
}

// guard watches the subscriptions' health until Close: a subscription
// quiet for quietAfter is pinged, and one silent for deadAfter, pings
// unanswered, flushes L1, and again every deadAfter while it stays silent
// (invariant 11), unless it is a tracking subscription without data
// connections. It also gives up on holes in other nodes' sequences, and
// subscribes to Ring shards added since New. It does this on its own
// goroutine, so that a subscription stuck inside the client (a dial into a
// partition) cannot delay it.
func (c *Cache[V]) guard(ring *redis.Ring) {
	defer c.wg.Done()
	t := time.NewTicker(quietAfter / 2)
	defer t.Stop()
	var pings sync.WaitGroup
	defer pings.Wait()
	for n := 1; ; n++ {
		select {
		case <-c.closeCtx.Done():
			return
		case <-t.C:
		}
		now := c.now()
		if c.gaps.sweep(now) {
			c.flushL1(flushLostMessage)
		}
		if ring != nil && n%int(deadAfter/(quietAfter/2)) == 0 {
			c.watchRing(ring)
		}
		if c.trk != nil && n%int(probeEvery/(quietAfter/2)) == 0 {
			c.probe(now, &pings)
		}
		c.subMu.Lock()
		subs := make([]*sub, 0, len(c.subs))
		for s := range c.subs {
			subs = append(subs, s)
		}
		c.subMu.Unlock()
		silent := false
		for _, s := range subs {
			quiet := now - time.Duration(s.heard.Load())
			if quiet >= quietAfter && s.pinging.CompareAndSwap(false, true) {
				pings.Go(func() {
					defer s.pinging.Store(false)
					_ = s.ps.Ping(s.ctx)
				})
			}
			if quiet >= deadAfter {
				silent = silent || s.t.answersForL1()
				s.heard.Store(int64(now))
			}
		}
		if silent {
			c.resync(flushSilent)
		}
	}
}

// openSub opens a subscription, in place of old if not nil, and registers
// it for guard and Close. It returns nil once the cache is closed, or the
// tracking subscription t has been dropped (dropIdle).
func (c *Cache[V]) openSub(open func(ctx context.Context) *redis.PubSub, old *sub, t *trackSub) *sub {
	if old != nil {
		c.subMu.Lock()
		delete(c.subs, old)
		c.subMu.Unlock()
		_ = old.ps.Close()
	}
	if c.closeCtx.Err() != nil {
		return nil
	}
	// Subscribing dials: not under subMu, which guard takes every tick.
	ctx := c.closeCtx
	if t != nil {
		ctx = context.WithValue(ctx, subConn{}, t)
	}
	s := &sub{ps: open(ctx), t: t, ctx: ctx}
	s.heard.Store(int64(c.now()))
	c.subMu.Lock()
	defer c.subMu.Unlock()
	// Close, or dropIdle for a tracking subscription, ran meanwhile and
	// missed s.
	if c.closeCtx.Err() != nil || t != nil && t.dropped.Load() {
		_ = s.ps.Close()
		return nil
	}
	c.subs[s] = true
	return s
}

// closeSubs closes every subscription, and in tracking mode the clients
// behind them; their goroutines then return.
func (c *Cache[V]) closeSubs() error {
	var err error
	if c.trk != nil {
		err = c.stopTracking(c.trk)
	}
	return errors.Join(err, c.dropSubs(func(*sub) bool { return true }))
}

// dropSubs takes the subscriptions that match out of guard's sight and
// closes them. Closing a PubSub waits while its reader dials (to a server
// that may be gone, for as long as the dial takes): not under subMu, which
// guard and openSub take.
func (c *Cache[V]) dropSubs(match func(*sub) bool) error {
	var closing []*sub
	c.subMu.Lock()
	for s := range c.subs {
		if match(s) {
			closing = append(closing, s)
			delete(c.subs, s)
		}
	}
	c.subMu.Unlock()
	var err error
	for _, s := range closing {
		err = errors.Join(err, s.ps.Close())
	}
	return err
}

// resync flushes L1 and wakes every waiter, for when messages may have been
// lost: waiters then re-read Redis instead of sleeping until the re-check.
func (c *Cache[V]) resync(reason string) {
	c.flushL1(reason)
	c.gaps.reset()
	c.waiters.notifyAll()
}

func (c *Cache[V]) onMessage(p string) {
	if len(p) <= msgHeaderLen {
		return
	}
	kind, from, key := p[0], p[1:1+nodeIDLen], p[msgHeaderLen:]
	c.stats.messages.Add(1)
	evict := false
	switch kind {
	case msgFilled, msgInvalidated:
		evict = true
	case msgNothing: // only its number counts
	default:
		return
	}
	if from != c.nodeID {
		// This node's own writes order themselves against its L1 (Set,
		// Delete and fills go through generations), and its own sequence
		// needs no watching.
		seq := binary.BigEndian.Uint64([]byte(p[1+nodeIDLen : msgHeaderLen]))
		if c.gaps.observe(from, seq, c.now()) {
			c.flushL1(flushLostMessage)
		}
		if evict {
			c.invalidateL1(key)
		}
	}
	if evict {
		c.waiters.notify(key)
	}
}

// waitRegistry lets the waiters of a key sleep until its next notification.
type waitRegistry struct {
	mu sync.Mutex           // guards m
	m  map[string]*waitSlot // key -> the slot the next notification closes
}

// waitSlot is closed by the next notification for its key.
type waitSlot struct {
	ch    chan struct{}
	refs  int             // waiters holding it; guarded by waitRegistry.mu
	wakes []chan struct{} // also signalled (batches waiting on many keys); guarded by waitRegistry.mu
}

// acquire returns the slot the next notification of key will close.
func (r *waitRegistry) acquire(key string) *waitSlot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.m[key]
	if s == nil {
		s = &waitSlot{ch: make(chan struct{})}
		r.m[key] = s
	}
	s.refs++
	return s
}

// watch is acquire for a waiter of many keys: wake (buffered) is also
// signalled when the slot fires, so that one channel tells of any key.
func (r *waitRegistry) watch(key string, wake chan struct{}) *waitSlot {
	s := r.acquire(key)
	r.mu.Lock()
	s.wakes = append(s.wakes, wake)
	r.mu.Unlock()
	return s
}

// fire closes s and signals its wakes; r.mu is held.
func (s *waitSlot) fire() {
	close(s.ch)
	for _, w := range s.wakes {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// release drops a waiter's hold on s; the last one out forgets it.
func (r *waitRegistry) release(key string, s *waitSlot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s.refs--
	if s.refs == 0 && r.m[key] == s {
		delete(r.m, key)
	}
}

// notify wakes every waiter of key.
func (r *waitRegistry) notify(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.m[key]; s != nil {
		s.fire()
		delete(r.m, key)
	}
}

// notifyAll wakes every waiter of every key.
func (r *waitRegistry) notifyAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, s := range r.m {
		s.fire()
		delete(r.m, key)
	}
}
