package fleet

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// tickEvery is how often a run reports its progress.
const tickEvery = time.Second

// watch is what a run's nodes report while it goes on: requests answered
// and the phase it is in. The zero value counts and discards phases.
type watch struct {
	answered atomic.Int64
	mu       sync.Mutex // guards phase
	phase    string
}

func (w *watch) setPhase(p string) {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.phase = p
	w.mu.Unlock()
}

func (w *watch) getPhase() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.phase
}

// ticker writes a line to out every tickEvery until stopped: the run, its
// phase, requests answered out of the herd, time elapsed. answered reads
// the count (from this process, or from Redis for worker processes).
type ticker struct {
	stop chan struct{}
	done chan struct{}
}

func startTicker(out io.Writer, label string, total int, w *watch, answered func() int64) *ticker {
	t := &ticker{stop: make(chan struct{}), done: make(chan struct{})}
	began := time.Now()
	go func() {
		defer close(t.done)
		tk := time.NewTicker(tickEvery)
		defer tk.Stop()
		for {
			select {
			case <-t.stop:
				return
			case <-tk.C:
			}
			fmt.Fprintf(out, "bench: %s: %s, %s/%s answered, %.1fs\n",
				label, w.getPhase(), thousands(answered()), thousands(int64(total)), time.Since(began).Seconds())
		}
	}()
	return t
}

func (t *ticker) close() {
	close(t.stop)
	<-t.done
}

// flushAnswered adds a worker's answered requests to <ns>:answered every
// quarter of tickEvery, and once more when ctx ends, so that the
// coordinator can report them.
func flushAnswered(ctx context.Context, rdb *redis.Client, key string, w *watch) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var sent int64
		flush := func(ctx context.Context) {
			if n := w.answered.Load(); n > sent {
				if rdb.IncrBy(ctx, key, n-sent).Err() == nil {
					sent = n
				}
			}
		}
		tk := time.NewTicker(tickEvery / 4)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				flush(context.WithoutCancel(ctx))
				return
			case <-tk.C:
				flush(ctx)
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
