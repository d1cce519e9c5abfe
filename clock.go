package stampede

import (
	"sync"
	"sync/atomic"
	"time"
)

// clock is a process-wide coarse monotonic clock for L1 deadlines. Reading
// the system clock costs about as much as the rest of an L1 hit, so a
// goroutine refreshes this one every clockTick while at least one Cache is
// open, and the hit path reads an atomic. L1 deadlines are therefore kept to
// within about a millisecond.
var clock coarseClock

const clockTick = time.Millisecond

var clockEpoch = time.Now()

type coarseClock struct {
	now atomic.Int64 // time since clockEpoch, in ns

	mu    sync.Mutex    // guards users, stop, done
	users int           // open caches
	stop  chan struct{} // closed to stop the ticking goroutine
	done  chan struct{} // closed when it has stopped
}

// Now returns the time since clockEpoch, to within clockTick while the clock
// is in use.
func (k *coarseClock) Now() time.Duration { return time.Duration(k.now.Load()) }

func (k *coarseClock) tick() { k.now.Store(int64(time.Since(clockEpoch))) }

// acquire starts the clock for one more user.
func (k *coarseClock) acquire() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.users++
	if k.users > 1 {
		return
	}
	k.tick()
	k.stop, k.done = make(chan struct{}), make(chan struct{})
	go func(stop <-chan struct{}, done chan<- struct{}) {
		defer close(done)
		t := time.NewTicker(clockTick)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				k.tick()
			}
		}
	}(k.stop, k.done)
}

// release stops the clock when its last user is gone, and waits until it has.
func (k *coarseClock) release() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.users--
	if k.users == 0 {
		close(k.stop)
		<-k.done
	}
}

// now is the time on the coarse monotonic clock.
func (c *Cache[V]) now() time.Duration { return clock.Now() }
