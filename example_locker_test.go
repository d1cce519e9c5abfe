package stampede_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/stampede-go/stampede"
)

// Every host runs the same hourly cron; the reconciliation runs once per hour
// fleet-wide, and again on the next trigger if it failed.
func ExampleLocker_RunOnce() {
	mr, _ := miniredis.Run() // stands in for your Redis
	defer mr.Close()
	// Windows are counted on the Redis server's clock. Pinning miniredis's
	// clock keeps this example from straddling the top of an hour.
	mr.SetTime(time.Date(2026, 3, 1, 2, 0, 5, 0, time.UTC))

	runs := 0
	reconcile := func(ctx context.Context) error { // ctx is cancelled if the lease is lost
		runs++
		if runs == 1 {
			return errors.New("payment provider timed out")
		}
		return nil
	}

	// Three hosts, each with its own client, fire the same schedule.
	ctx := context.Background()
	for host := 1; host <= 3; host++ {
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		locker, err := stampede.NewLocker(rdb, stampede.LockerOptions{Namespace: "cron"})
		if err != nil {
			panic(err)
		}
		ran, err := locker.RunOnce(ctx, "reconcile-payments", time.Hour, reconcile)
		switch {
		case err != nil:
			fmt.Printf("host %d: failed, the next trigger runs it again: %v\n", host, err)
		case !ran:
			fmt.Printf("host %d: already done this hour, or running elsewhere\n", host)
		default:
			fmt.Printf("host %d: reconciled\n", host)
		}
		rdb.Close()
	}
	// Output:
	// host 1: failed, the next trigger runs it again: payment provider timed out
	// host 2: reconciled
	// host 3: already done this hour, or running elsewhere
}

// Do holds the lock while fn runs, renewing it, and releases it when fn
// returns. Another worker finds the key taken meanwhile.
func ExampleLocker_Do() {
	mr, _ := miniredis.Run() // stands in for your Redis
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	locker, err := stampede.NewLocker(rdb, stampede.LockerOptions{})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	err = locker.Do(ctx, "partition:17", 30*time.Second, func(ctx context.Context) error {
		lock, _ := stampede.LockFromContext(ctx)
		fence := lock.Fence() // pass it with every write to the partition
		fmt.Println("processing partition 17, fenced:", fence > 0)

		_, err := locker.Obtain(ctx, "partition:17", 30*time.Second, stampede.WithRetry(stampede.NoRetry()))
		fmt.Println("another worker is refused:", errors.Is(err, stampede.ErrNotObtained))

		h, err := locker.Holder(ctx, "partition:17")
		if err != nil {
			return err
		}
		fmt.Println("holder is this process:", h.PID == os.Getpid(), "with this fence:", h.Fence == fence)
		return nil
	})
	fmt.Println("Do returned:", err)

	_, err = locker.Holder(ctx, "partition:17")
	fmt.Println("released:", errors.Is(err, stampede.ErrLockNotHeld))
	// Output:
	// processing partition 17, fenced: true
	// another worker is refused: true
	// holder is this process: true with this fence: true
	// Do returned: <nil>
	// released: true
}

// A fenced write: the store refuses writes carrying a fence lower than one it
// has seen, so a holder paused past its TTL cannot overwrite a newer one.
func ExampleLock_Fence() {
	mr, _ := miniredis.Run() // stands in for your Redis
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	locker, err := stampede.NewLocker(rdb, stampede.LockerOptions{})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	// In SQL: UPDATE partitions SET owner_fence = $1, ... WHERE id = 17 AND owner_fence <= $1
	store := &fencedStore{}

	a, err := locker.Obtain(ctx, "partition:17", 30*time.Second)
	if err != nil {
		panic(err)
	}
	// Worker A stalls (a GC pause, a frozen VM) until its lease runs out,
	// and worker B obtains the lock.
	mr.FastForward(31 * time.Second)
	b, err := locker.Obtain(ctx, "partition:17", 30*time.Second)
	if err != nil {
		panic(err)
	}
	fmt.Println("B's fence is greater:", b.Fence() > a.Fence())
	fmt.Println("B writes:", store.write(b.Fence(), "B's rows"))

	// A resumes, unaware, and writes: the store refuses it.
	fmt.Println("A writes:", store.write(a.Fence(), "A's rows"))
	fmt.Println("A's release finds the lease gone:", errors.Is(a.Release(ctx), stampede.ErrLockNotHeld))
	fmt.Println("B releases:", b.Release(ctx))
	fmt.Println("stored:", store.data)
	// Output:
	// B's fence is greater: true
	// B writes: <nil>
	// A writes: refused: a newer holder has written
	// A's release finds the lease gone: true
	// B releases: <nil>
	// stored: B's rows
}

// fencedStore is the resource a lock guards: it remembers the highest fence
// it has accepted and refuses writes with a lower one.
type fencedStore struct {
	fence int64
	data  string
}

func (s *fencedStore) write(fence int64, data string) error {
	if fence < s.fence {
		return errors.New("refused: a newer holder has written")
	}
	s.fence, s.data = fence, data
	return nil
}
