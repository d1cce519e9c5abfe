package stampede_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stampede-go/stampede"
)

// Every host runs the same hourly cron; the reconciliation runs once per hour
// fleet-wide, and again on the next trigger if it failed.
func ExampleLocker_RunOnce() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	defer rdb.Close()
	locker, err := stampede.NewLocker(rdb, stampede.LockerOptions{Namespace: "cron"})
	if err != nil {
		log.Fatal(err)
	}

	ran, err := locker.RunOnce(context.Background(), "reconcile-payments", time.Hour, func(ctx context.Context) error {
		return reconcile(ctx) // ctx is cancelled if the lease is lost
	})
	switch {
	case err != nil:
		log.Printf("reconcile failed, the next trigger retries: %v", err)
	case !ran:
		log.Print("reconcile already done this hour, or running elsewhere")
	}
}

// A fenced write: the store rejects writes carrying a fence lower than one it
// has seen, so a holder paused past its TTL cannot overwrite a newer one.
func ExampleLock_Fence() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	defer rdb.Close()
	locker, err := stampede.NewLocker(rdb, stampede.LockerOptions{})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	lock, err := locker.Obtain(ctx, "partition:17", 30*time.Second)
	if errors.Is(err, stampede.ErrNotObtained) {
		return // another worker has the partition
	}
	if err != nil {
		log.Fatal(err)
	}
	defer lock.Release(ctx)
	// UPDATE partitions SET owner_fence = $1, ... WHERE id = 17 AND owner_fence <= $1
	writePartition(ctx, 17, lock.Fence())
}

func reconcile(context.Context) error                  { return nil }
func writePartition(context.Context, int, int64) error { return nil }
