package main

import (
	"bytes"
	"regexp"
	"testing"
	"time"

	"github.com/stampede-go/stampede/internal/redistest"
)

func TestRun(t *testing.T) {
	testRun(t, "")
}

// TestRunRedis runs the example against a real redis-server, as -redis does.
func TestRunRedis(t *testing.T) {
	testRun(t, redistest.Start(t).Addr())
}

func testRun(t *testing.T, redisAddr string) {
	var out bytes.Buffer
	cfg := config{RedisAddr: redisAddr, Nodes: 4, Requests: 5, QueryTime: 200 * time.Millisecond, TTL: 300 * time.Millisecond}
	if err := run(t.Context(), &out, cfg); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())
	for _, want := range []string{
		// Every request misses before the first SET lands 200ms later.
		`plain cache-aside \(GET, miss, SELECT, SET\) +20 requests +20 database queries\n`,
		`stampede.Cache, product not cached yet +20 requests +1 database query +\(\d+ requests? waited for it\)\n`,
		`stampede.Cache, product expired \(Stale on\) +20 requests +1 database query +\(0 requests waited for it\)\n`,
	} {
		if !regexp.MustCompile(want).Match(out.Bytes()) {
			t.Errorf("output does not match %q", want)
		}
	}
}
