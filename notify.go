package stampede

import (
	"context"
	_ "embed"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed lock.lua
var lockSrc string

//go:embed fill.lua
var fillSrc string

//go:embed write.lua
var writeSrc string

var (
	lockScript  = redis.NewScript(lockSrc)
	fillScript  = redis.NewScript(fillSrc)
	writeScript = redis.NewScript(writeSrc)
)

// Messages on the namespace's channel: one byte of kind, the sender's node
// ID, then the cache key.
const (
	msgFilled      = 'f' // a rebuild landed: wake waiters, evict stale L1 copies
	msgInvalidated = 'i' // Set or Delete: evict L1 everywhere, wake waiters
	nodeIDLen      = 16
)

func (c *Cache[V]) message(kind byte, key string) string {
	b := make([]byte, 0, 1+nodeIDLen+len(key))
	b = append(b, kind)
	b = append(b, c.nodeID...)
	b = append(b, key...)
	return string(b)
}

// subscribe listens on the namespace's channel until Close. A lost
// connection is re-established by go-redis; messages missed meanwhile are
// covered by the waiters' periodic re-check.
func (c *Cache[V]) subscribe() {
	c.pubsub = c.rdb.Subscribe(c.closeCtx, c.channel)
	// Wait for the confirmation, briefly, so a fill right after New is not
	// missed. If Redis is down, go on: the channel reconnects by itself.
	ctx, cancel := context.WithTimeout(c.closeCtx, time.Second)
	if _, err := c.pubsub.Receive(ctx); err != nil {
		c.stats.redisErrors.Add(1)
	}
	cancel()
	ch := c.pubsub.Channel(redis.WithChannelSize(1024))
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for m := range ch {
			c.onMessage(m.Payload)
		}
	}()
}

func (c *Cache[V]) onMessage(p string) {
	if len(p) <= 1+nodeIDLen || (p[0] != msgFilled && p[0] != msgInvalidated) {
		return
	}
	from, key := p[1:1+nodeIDLen], p[1+nodeIDLen:]
	if from != c.nodeID {
		c.invalidateL1(key)
	}
	c.waiters.notify(key)
}

// waitRegistry lets the waiters of a key sleep until its next notification.
type waitRegistry struct {
	mu sync.Mutex           // guards m
	m  map[string]*waitSlot // key -> the slot the next notification closes
}

// waitSlot is closed by the next notification for its key.
type waitSlot struct {
	ch   chan struct{}
	refs int // waiters holding it; guarded by waitRegistry.mu
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
		close(s.ch)
		delete(r.m, key)
	}
}
