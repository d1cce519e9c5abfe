package redistest

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"sync"
)

// Tap watches the pub/sub messages that arrive over the connections it
// dials and reports each one to OnMessage, leaving the bytes untouched. It
// is for measuring what a subscriber receives (how many messages, about
// which keys, when), where a hook inside the client would see only what
// the client chose to decode.
//
// Install it as the Dialer of a client, as with [Faults]:
//
//	tap := &redistest.Tap{OnMessage: count}
//	rdb := redis.NewClient(&redis.Options{Addr: addr, Dialer: tap.Dial})
type Tap struct {
	// OnMessage receives the channel and the payload of every published
	// message, on the goroutine reading the connection and before the
	// client sees the message. A payload that is an array (a tracking
	// invalidation names several keys) comes as its elements; a null one
	// (an invalidation of everything, after FLUSHALL) as nil.
	OnMessage func(channel string, payload []string)
	// Dialer dials the connections; nil means a plain net.Dialer.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Dial connects to addr; it has the signature of go-redis's Dialer option.
func (t *Tap) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	dial := t.Dialer
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	conn, err := dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &tapConn{Conn: conn, t: t}, nil
}

// tapConn is one connection through a Tap.
type tapConn struct {
	net.Conn
	t *Tap

	mu         sync.Mutex // guards subscribed and in (reads and writes may run concurrently)
	subscribed bool       // a SUBSCRIBE went out: parse what comes back
	in         []byte     // bytes read since the last complete frame
}

func (c *tapConn) Write(p []byte) (int, error) {
	if bytes.Contains(bytes.ToLower(p), []byte("subscribe")) {
		c.mu.Lock()
		c.subscribed = true
		c.mu.Unlock()
	}
	return c.Conn.Write(p)
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.watch(p[:n])
	}
	return n, err
}

// watch splits what was read into frames and reports the messages among
// them.
func (c *tapConn) watch(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.subscribed {
		return
	}
	c.in = append(c.in, b...)
	for len(c.in) > 0 {
		n, err := frameLen(c.in)
		if err != nil { // not RESP after all: stop watching
			c.subscribed, c.in = false, nil
			return
		}
		if n == 0 {
			break
		}
		if frame := c.in[:n]; isPubSubMessage(frame) && c.t.OnMessage != nil {
			if ch, payload, ok := parseMessage(frame); ok {
				c.t.OnMessage(ch, payload)
			}
		}
		c.in = c.in[n:]
	}
	c.in = append([]byte(nil), c.in...)
}

// parseMessage decodes a complete "message" or "smessage" frame (RESP2 or
// RESP3) into its channel and payload.
func parseMessage(frame []byte) (channel string, payload []string, ok bool) {
	elems, i, ok := arrayHeader(frame, 0)
	if !ok || elems != 3 {
		return "", nil, false
	}
	if _, i, ok = bulk(frame, i); !ok { // the kind
		return "", nil, false
	}
	if channel, i, ok = bulk(frame, i); !ok {
		return "", nil, false
	}
	if i < len(frame) && (frame[i] == '*' || frame[i] == '>') {
		n, j, ok := arrayHeader(frame, i)
		if !ok {
			return "", nil, false
		}
		if n < 0 {
			return channel, nil, true
		}
		payload = make([]string, 0, n)
		for range n {
			var s string
			if s, j, ok = bulk(frame, j); !ok {
				return "", nil, false
			}
			payload = append(payload, s)
		}
		return channel, payload, true
	}
	if i < len(frame) && frame[i] == '_' {
		return channel, nil, true
	}
	s, _, ok := bulk(frame, i)
	if !ok {
		return "", nil, false
	}
	if s == "" && bytes.HasPrefix(frame[i:], []byte("$-1")) {
		return channel, nil, true
	}
	return channel, []string{s}, true
}

// line returns the header line starting at frame[i] (without its type
// byte) and the offset after it.
func line(frame []byte, i int) (string, int, bool) {
	if i >= len(frame) {
		return "", 0, false
	}
	end := bytes.Index(frame[i:], []byte("\r\n"))
	if end < 0 {
		return "", 0, false
	}
	return string(frame[i+1 : i+end]), i + end + 2, true
}

func arrayHeader(frame []byte, i int) (int, int, bool) {
	if i >= len(frame) || (frame[i] != '*' && frame[i] != '>') {
		return 0, 0, false
	}
	l, next, ok := line(frame, i)
	if !ok {
		return 0, 0, false
	}
	n, err := strconv.Atoi(l)
	return n, next, err == nil
}

// bulk reads a bulk string ($n, or a simple string) at frame[i]; a null
// bulk string reads as "".
func bulk(frame []byte, i int) (string, int, bool) {
	if i >= len(frame) {
		return "", 0, false
	}
	l, next, ok := line(frame, i)
	if !ok {
		return "", 0, false
	}
	switch frame[i] {
	case '+':
		return l, next, true
	case '$':
		n, err := strconv.Atoi(l)
		if err != nil {
			return "", 0, false
		}
		if n < 0 {
			return "", next, true
		}
		if next+n+2 > len(frame) {
			return "", 0, false
		}
		return string(frame[next : next+n]), next + n + 2, true
	}
	return "", 0, false
}
