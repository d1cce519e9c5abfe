package fleet

import (
	"slices"
	"sync"
	"time"
)

// WakeFloor measures what this machine needs to wake n goroutines blocked
// on one event, the way a herd's waiters are woken when a load lands: the
// time from the event to each goroutine's return, p50 and p99. No cache
// can answer a herd of n waiters faster on this machine; the overhead
// columns are to be read against it.
func WakeFloor(n int) (p50, p99 time.Duration) {
	if n <= 0 {
		return 0, 0
	}
	var (
		event   = make(chan struct{})
		ready   sync.WaitGroup
		done    sync.WaitGroup
		woke    = make([]time.Duration, n)
		fired   time.Time
		firedMu sync.RWMutex
	)
	ready.Add(n)
	done.Add(n)
	firedMu.Lock()
	for i := range n {
		go func() {
			defer done.Done()
			ready.Done()
			<-event
			t := time.Now()
			firedMu.RLock()
			woke[i] = t.Sub(fired)
			firedMu.RUnlock()
		}()
	}
	ready.Wait()
	time.Sleep(10 * time.Millisecond) // let them all block
	fired = time.Now()
	firedMu.Unlock()
	close(event)
	done.Wait()
	slices.Sort(woke)
	return woke[n/2], woke[min(n-1, n*99/100)]
}
