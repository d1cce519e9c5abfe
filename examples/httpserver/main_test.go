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
	cfg := config{RedisAddr: redisAddr, Requests: 20, Slow: 200 * time.Millisecond}
	if err := run(t.Context(), &out, cfg); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())
	for _, want := range []string{
		`without httpcache +20 requests, handler ran 20 times\n +20 × no Cache-Status header\n`,
		`with httpcache, cold +20 requests, handler ran 1 time\n`,
		// Exactly one response is the run that filled the cache; the others
		// waited for it, on its server (collapsed) or on the other (hit).
		`\n +1 × Cache-Status: stampede; fwd=uri-miss; fwd-status=200; stored\n`,
		`with httpcache, again +20 requests, handler ran 0 times\n +20 × Cache-Status: stampede; hit\n`,
	} {
		if !regexp.MustCompile(want).Match(out.Bytes()) {
			t.Errorf("output does not match %q", want)
		}
	}
}
