package stampede

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

func TestSmoke(t *testing.T) {
	mr := miniredis.RunT(t)
	var loads atomic.Int64
	load := func(ctx context.Context, key string) (string, error) {
		loads.Add(1)
		time.Sleep(100 * time.Millisecond)
		return "v:" + key, nil
	}
	var caches []*Cache[string]
	for i := 0; i < 5; i++ {
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		defer rdb.Close()
		c, err := New[string](rdb, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		caches = append(caches, c)
	}
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range caches {
		for j := 0; j < 50; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, err := c.Get(context.Background(), "k", load)
				if err != nil || v != "v:k" {
					t.Errorf("got %q %v", v, err)
				}
			}()
		}
	}
	wg.Wait()
	t.Logf("loads=%d elapsed=%v", loads.Load(), time.Since(start))
	for _, c := range caches {
		t.Logf("%+v", c.Stats())
	}
}
