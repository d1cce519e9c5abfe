package stampedetest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/stampede-go/stampede"
	"github.com/stampede-go/stampede/stampedetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A value past its TTL in miniredis is loaded again once FastForward has
// moved the clock; without the flush, L1 would keep serving it.
func TestFastForwardExpires(t *testing.T) {
	c, mr := stampedetest.New[string](t, stampede.Options{TTL: time.Minute})
	ctx := context.Background()
	n := 0
	load := func(context.Context, string) (string, error) { n++; return fmt.Sprint("v", n), nil }
	if v, _ := c.Get(ctx, "k", load); v != "v1" {
		t.Fatalf("Get = %q", v)
	}
	stampedetest.FastForward(mr, 30*time.Second, c)
	if v, _ := c.Get(ctx, "k", load); v != "v1" {
		t.Fatalf("within TTL: Get = %q, want v1", v)
	}
	stampedetest.FastForward(mr, 31*time.Second, c)
	if v, _ := c.Get(ctx, "k", load); v != "v2" {
		t.Fatalf("past TTL: Get = %q, want a new load (v2)", v)
	}
}

// In a test, stampedetest.New(t, opts) makes the cache and the miniredis
// and closes them at the end; here they are made by hand. After the TTL,
// the next lookup reaches the database again.
func ExampleFastForward() {
	mr, _ := miniredis.Run()
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	products, _ := stampede.New[string](rdb, stampede.Options{TTL: time.Minute})
	defer products.Close()

	queries := 0
	lookup := func(id string) (string, error) {
		return products.Get(context.Background(), id, func(context.Context, string) (string, error) {
			queries++
			return "Widget", nil
		})
	}
	lookup("sku-42")
	lookup("sku-42") // from the cache
	stampedetest.FastForward(mr, 2*time.Minute, products)
	lookup("sku-42") // expired: from the database
	fmt.Println("database queries:", queries)
	// Output: database queries: 2
}
