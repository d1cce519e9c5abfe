package main

import (
	"bytes"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/stampede-go/stampede/internal/redistest"
)

// TestMain lets the test binary play the doomed instance, which run starts
// by executing its own binary again.
func TestMain(m *testing.M) {
	if spec := os.Getenv(doomedEnv); spec != "" {
		os.Exit(doomedInstance(spec))
	}
	os.Exit(m.Run())
}

func TestRun(t *testing.T) {
	testRun(t, "")
}

// TestRunRedis runs the example against a real redis-server, as -redis does.
func TestRunRedis(t *testing.T) {
	testRun(t, redistest.Start(t).Addr())
}

func testRun(t *testing.T, redisAddr string) {
	var out bytes.Buffer
	cfg := config{RedisAddr: redisAddr, Instances: 5, Lease: 300 * time.Millisecond, Work: 100 * time.Millisecond}
	if err := run(t.Context(), &out, cfg); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())
	for _, want := range []string{
		`trigger 1 +ran: instance 1 \(pid \d+\) +skipped: 2 3 4 5\n`,
		`trigger 2 +ran: none +skipped: 2 3 4 5 +the dead pid \d+ still holds the lease`,
		`trigger 3 +ran: instance [2-5], finished +skipped: [2-5] [2-5] [2-5]\n`,
		`trigger 4 +ran: none +skipped: 2 3 4 5 +tonight's snapshot is done\n`,
		`snapshots started: 2, finished: 1\n`,
	} {
		if !regexp.MustCompile(want).Match(out.Bytes()) {
			t.Errorf("output does not match %q", want)
		}
	}
}
