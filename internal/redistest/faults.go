package redistest

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Faults sits on the client side of the connections to Redis and does to
// them what a production network does to one node: a partition (traffic
// stops, then resumes where it stopped), a cut (connections reset, dials
// refused), pub/sub frames lost while the connection stays up, and one
// reply lost after the server executed the command (which makes go-redis
// send the command again).
//
// Install it as the Dialer of a client (any go-redis client type has one):
//
//	f := redistest.NewFaults()
//	rdb := redis.NewClient(&redis.Options{Addr: addr, Dialer: f.Dial})
type Faults struct {
	mu        sync.Mutex
	healed    chan struct{}           // nil when traffic flows; closed by Heal
	cut       bool                    // dials are refused until Heal
	loseReply []byte                  // the next command containing it loses its reply
	conns     map[*faultConn]struct{} // open connections

	dropPubSub atomic.Bool
	dropped    atomic.Int64 // pub/sub frames dropped
	lost       atomic.Int64 // replies lost
}

// dialTimeout is how long a dial into a partition takes to fail when its
// context has no earlier deadline, as net.Dialer's would.
const dialTimeout = 5 * time.Second

// NewFaults returns a Faults through which traffic flows untouched until a
// fault is switched on.
func NewFaults() *Faults {
	return &Faults{conns: make(map[*faultConn]struct{})}
}

// Dial connects to addr; it has the signature of go-redis's Dialer option.
// While partitioned it waits for Heal; while cut it refuses.
func (f *Faults) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	f.mu.Lock()
	gate, cut := f.healed, f.cut
	f.mu.Unlock()
	if cut {
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	}
	if gate != nil {
		// A connect into a partition goes unanswered until the dialer
		// gives up.
		t := time.NewTimer(dialTimeout)
		defer t.Stop()
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
		case <-t.C:
			return nil, &net.OpError{Op: "dial", Net: network, Err: os.ErrDeadlineExceeded}
		}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c := &faultConn{Conn: conn, f: f, closed: make(chan struct{})}
	f.mu.Lock()
	f.conns[c] = struct{}{}
	f.mu.Unlock()
	return c, nil
}

// Partition stops all traffic: reads, writes and dials block until Heal or
// their deadline, as they do when the network between a node and Redis
// goes away without resetting anything. Bytes in flight are delivered after
// Heal.
func (f *Faults) Partition() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.healed == nil {
		f.healed = make(chan struct{})
	}
}

// Cut resets every open connection and refuses new dials until Heal, as
// when Redis or the route to it is gone and the kernel says so.
func (f *Faults) Cut() {
	f.mu.Lock()
	f.cut = true
	conns := make([]*faultConn, 0, len(f.conns))
	for c := range f.conns {
		conns = append(conns, c)
	}
	f.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// Heal ends a partition or a cut.
func (f *Faults) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.healed != nil {
		close(f.healed)
		f.healed = nil
	}
	f.cut = false
}

// DropPubSub makes every connection that has subscribed lose the messages
// published to it (whole frames, so the stream stays well formed) while
// on is true. Replies, subscription confirmations and pongs still arrive.
func (f *Faults) DropPubSub(on bool) { f.dropPubSub.Store(on) }

// LoseReplyTo arms a one-shot fault: the next command whose bytes contain
// substr is executed by the server, but its reply is lost: the connection
// is closed as the first bytes of the reply arrive.
func (f *Faults) LoseReplyTo(substr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loseReply = []byte(substr)
}

// Dropped returns how many pub/sub frames were dropped.
func (f *Faults) Dropped() int64 { return f.dropped.Load() }

// Lost returns how many replies were lost.
func (f *Faults) Lost() int64 { return f.lost.Load() }

// gate returns the channel Heal closes, or nil when traffic flows.
func (f *Faults) gate() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.healed
}

// faultConn is one connection through Faults.
type faultConn struct {
	net.Conn
	f      *Faults
	closed chan struct{}
	once   sync.Once

	readDeadline, writeDeadline atomic.Int64 // unix ns; 0: none

	subscribed atomic.Bool // a SUBSCRIBE went out: parse what comes back
	loseNext   atomic.Bool // the next reply is lost

	// Read side, used by one reader at a time.
	buf [32 << 10]byte
	in  []byte // bytes read but not yet split into frames
	out []byte // bytes ready for the reader
}

func (c *faultConn) Read(p []byte) (int, error) {
	for {
		if err := c.awaitTraffic(&c.readDeadline); err != nil {
			return 0, err
		}
		if len(c.out) > 0 {
			n := copy(p, c.out)
			c.out = c.out[n:]
			return n, nil
		}
		n, err := c.Conn.Read(c.buf[:])
		if n > 0 && c.loseNext.CompareAndSwap(true, false) {
			c.f.lost.Add(1)
			_ = c.Close()
			return 0, io.ErrUnexpectedEOF
		}
		c.in = append(c.in, c.buf[:n]...)
		c.split()
		if err != nil && len(c.out) == 0 {
			return 0, err
		}
	}
}

// split moves complete frames from in to out, dropping published messages
// while DropPubSub is on. Before a connection subscribes, bytes pass as
// they come.
func (c *faultConn) split() {
	if !c.subscribed.Load() {
		c.out = append(c.out, c.in...)
		c.in = c.in[:0]
		return
	}
	for len(c.in) > 0 {
		n, err := frameLen(c.in)
		if err != nil { // not RESP after all: stop filtering
			c.out = append(c.out, c.in...)
			c.in = c.in[:0]
			return
		}
		if n == 0 {
			break
		}
		if frame := c.in[:n]; c.f.dropPubSub.Load() && isPubSubMessage(frame) {
			c.f.dropped.Add(1)
		} else {
			c.out = append(c.out, frame...)
		}
		c.in = c.in[n:]
	}
	c.in = append([]byte(nil), c.in...)
}

func (c *faultConn) Write(p []byte) (int, error) {
	if err := c.awaitTraffic(&c.writeDeadline); err != nil {
		return 0, err
	}
	c.f.mu.Lock()
	if c.f.loseReply != nil && bytes.Contains(p, c.f.loseReply) {
		c.f.loseReply = nil
		c.loseNext.Store(true)
	}
	c.f.mu.Unlock()
	if bytes.Contains(bytes.ToLower(p), []byte("subscribe")) {
		c.subscribed.Store(true)
	}
	return c.Conn.Write(p)
}

// awaitTraffic blocks while the network is partitioned, until Heal, the
// deadline in dl, or Close.
func (c *faultConn) awaitTraffic(dl *atomic.Int64) error {
	gate := c.f.gate()
	if gate == nil {
		return nil
	}
	var expire <-chan time.Time
	if d := dl.Load(); d != 0 {
		t := time.NewTimer(time.Until(time.Unix(0, d)))
		defer t.Stop()
		expire = t.C
	}
	select {
	case <-gate:
		return nil
	case <-expire:
		return os.ErrDeadlineExceeded
	case <-c.closed:
		return net.ErrClosed
	}
}

func (c *faultConn) Close() error {
	var err error
	c.once.Do(func() {
		close(c.closed)
		err = c.Conn.Close()
		c.f.mu.Lock()
		delete(c.f.conns, c)
		c.f.mu.Unlock()
	})
	return err
}

func (c *faultConn) SetDeadline(t time.Time) error {
	c.readDeadline.Store(unixNano(t))
	c.writeDeadline.Store(unixNano(t))
	return c.Conn.SetDeadline(t)
}

func (c *faultConn) SetReadDeadline(t time.Time) error {
	c.readDeadline.Store(unixNano(t))
	return c.Conn.SetReadDeadline(t)
}

func (c *faultConn) SetWriteDeadline(t time.Time) error {
	c.writeDeadline.Store(unixNano(t))
	return c.Conn.SetWriteDeadline(t)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
