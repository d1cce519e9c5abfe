package fleet

import (
	"context"
	"net"
	"os"
	"sync"
	"syscall"
)

// link is a node's network path to Redis. Severing it closes every open
// connection and refuses new ones, as a dead host or a partition would.
type link struct {
	addr string

	mu    sync.Mutex // guards cut and conns
	cut   bool
	conns map[*trackedConn]struct{}
}

func (l *link) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	l.mu.Lock()
	cut := l.cut
	l.mu.Unlock()
	if cut {
		return nil, refused(l.addr)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, l.addr)
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut {
		c.Close()
		return nil, refused(l.addr)
	}
	l.conns[tc] = struct{}{}
	return tc, nil
}

// sever cuts the link for good.
func (l *link) sever() {
	l.mu.Lock()
	l.cut = true
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
}

func refused(addr string) error {
	return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED), Addr: staticAddr(addr)}
}

type staticAddr string

func (a staticAddr) Network() string { return "tcp" }
func (a staticAddr) String() string  { return string(a) }

// trackedConn leaves its link's set when closed.
type trackedConn struct {
	net.Conn
	l *link
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}
