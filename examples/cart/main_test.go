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
	cfg := config{RedisAddr: redisAddr, Think: 100 * time.Millisecond}
	if err := run(t.Context(), &out, cfg); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())
	for _, want := range []string{
		// Both workers read the empty cart before either writes it back.
		`without a lock +cart 42: \[(socks|shoes)\] +1 of 2 items lost\n`,
		`with Locker.Do +cart 42: \[(socks shoes|shoes socks)\] +0 of 2 items lost\n`,
		`with ObtainMany +cart 1: \[gloves scarf\] +cart 2: \[hat\] +0 of 3 items lost\n`,
	} {
		if !regexp.MustCompile(want).Match(out.Bytes()) {
			t.Errorf("output does not match %q", want)
		}
	}
}
