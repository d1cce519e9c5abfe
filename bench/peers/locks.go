package main

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/bsm/redislock"
	"github.com/redis/rueidis"
	"github.com/redis/rueidis/rueidislock"
	"github.com/stampede-go/stampede"
	"github.com/stampede-go/stampede/bench/internal/benchnode"
)

// The Locker comparison: obtain and release one uncontended lock, over and
// over, in the same run for every locker.

// lockResult is one locker's figure.
type lockResult struct {
	Name    string  `json:"locker"`
	Setup   string  `json:"setup"`
	NsPerOp float64 `json:"ns_per_op"`
	Allocs  int64   `json:"allocs_per_op"`
	Errors  int64   `json:"errors"`
}

const lockTTL = 5 * time.Second

func benchLocks(ctx context.Context, addr string, prog *progress) ([]lockResult, error) {
	ns := fmt.Sprintf("peers-lock-%d", time.Now().UnixNano())
	rdb := newClient(addr)
	defer rdb.Close()
	defer cleanup(context.WithoutCancel(ctx), rdb, ns)
	if err := benchnode.Warm(ctx, rdb, poolSize); err != nil {
		return nil, err
	}

	var out []lockResult
	bench := func(name, setup string, once func() error) {
		prog.start("locker: "+name, 0)
		var errs int64
		r := testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if once() != nil {
					errs++
				}
			}
		})
		out = append(out, lockResult{Name: name, Setup: setup,
			NsPerOp: float64(r.T.Nanoseconds()) / float64(max(r.N, 1)), Allocs: r.AllocsPerOp(), Errors: errs})
	}

	sl, err := stampede.NewLocker(rdb, stampede.LockerOptions{Namespace: ns + ":stampede"})
	if err != nil {
		return nil, err
	}
	bench("stampede Locker", "NewLocker(rdb, LockerOptions{}); Obtain(ctx, key, 5s); Release(ctx)", func() error {
		l, err := sl.Obtain(ctx, "k", lockTTL)
		if err != nil {
			return err
		}
		return l.Release(ctx)
	})

	bl := redislock.New(rdb)
	bench("bsm/redislock", "New(rdb); Obtain(ctx, key, 5s, nil); Release(ctx)", func() error {
		l, err := bl.Obtain(ctx, ns+":redislock:k", lockTTL, nil)
		if err != nil {
			return err
		}
		return l.Release(ctx)
	})

	rl, err := rueidislock.NewLocker(rueidislock.LockerOption{
		ClientOption:   rueidis.ClientOption{InitAddress: []string{addr}},
		KeyPrefix:      ns + ":rueidislock",
		KeyMajority:    1,    // its README: 1 for a single Redis
		NoLoopTracking: true, // its README: for Redis >= 7.0.5
	})
	if err != nil {
		return nil, fmt.Errorf("rueidislock: %w", err)
	}
	defer rl.Close()
	bench("rueidislock", "NewLocker{KeyMajority: 1, NoLoopTracking: true}; WithContext(ctx, key); cancel()", func() error {
		_, cancel, err := rl.WithContext(ctx, "k")
		if err != nil {
			return err
		}
		cancel()
		return nil
	})
	prog.end()
	for _, r := range out {
		if r.Errors > 0 {
			return out, errors.New(r.Name + ": obtain or release failed during the benchmark")
		}
	}
	return out, nil
}
