package stampede

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// kinds counts events by kind and keeps the waits.
type kinds struct {
	mu    sync.Mutex
	n     map[EventKind]int
	waits []Event
	loads []Event
}

func (k *kinds) Observe(_ context.Context, e Event) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.n == nil {
		k.n = map[EventKind]int{}
	}
	k.n[e.Kind]++
	switch e.Kind {
	case EventWait:
		k.waits = append(k.waits, e)
	case EventLoad:
		k.loads = append(k.loads, e)
	}
}

// The observer sees a fleet's stampede as Stats counts it: one load with
// its duration, one lease won, and a wait with its end for every node that
// found the lease taken.
func TestObserverSeesTheStampede(t *testing.T) {
	b := realRedis(t)
	obs := &kinds{}
	opts := Options{Namespace: "obs", Observer: obs}
	nodes := fleet(t, b, 3, opts)
	l := &countingLoader{delay: 50 * time.Millisecond}
	storm(t, nodes, 20, "k", l.load)
	s := totalStats(nodes)
	obs.mu.Lock()
	defer obs.mu.Unlock()
	require.Equal(t, 1, obs.n[EventLoadStart])
	require.Equal(t, 1, obs.n[EventLoad])
	require.Equal(t, 1, obs.n[EventLeaseWon])
	require.EqualValues(t, s.LockContended, obs.n[EventLeaseContended])
	require.Len(t, obs.waits, int(s.LockContended), "a wait event for each wait")
	for _, w := range obs.waits {
		require.Contains(t, []string{WaitNotify, WaitRecheck}, w.Reason)
		require.Positive(t, w.Duration)
		require.Equal(t, "obs", w.Namespace)
		require.Equal(t, "k", w.Key)
	}
	require.Equal(t, LoadMiss, obs.loads[0].Reason)
	require.GreaterOrEqual(t, obs.loads[0].Duration, 50*time.Millisecond)
	require.Empty(t, obs.loads[0].ErrClass())
}

func TestEventErrClass(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{ErrNotFound, "not_found"},
		{newPanicError("boom"), "panic"},
		{errGoexit, "panic"},
		{context.DeadlineExceeded, "timeout"},
		{context.Canceled, "canceled"},
		{ErrClosed, "canceled"},
		{errCircuitOpen, "redis"},
		{errors.New("db down"), "error"},
	} {
		require.Equal(t, tc.want, Event{Err: tc.err}.ErrClass(), "%v", tc.err)
	}
	require.Equal(t, "wait", EventWait.String())
	require.Equal(t, "unknown", EventKind(0).String())
}

// The logger gets what went wrong, at its level, with structured fields:
// a loader's panic with its stack, the circuit opening and closing.
func TestLoggerLogsWhatGoesWrong(t *testing.T) {
	b := mini(t)
	var buf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := newCache[string](t, b, Options{Namespace: "log", Logger: log, BreakerCooldown: 10 * time.Millisecond, RedisTimeout: 200 * time.Millisecond})
	ctx := context.Background()
	_, err := c.Get(ctx, "p", func(context.Context, string) (string, error) { panic("boom") })
	require.Error(t, err)

	b.mr.SetError("LOADING Redis is loading the dataset in memory")
	_, _ = c.Get(ctx, "k", func(context.Context, string) (string, error) { return "v", nil })
	b.mr.SetError("")
	time.Sleep(20 * time.Millisecond) // past the cooldown
	_, _ = c.Get(ctx, "k2", func(context.Context, string) (string, error) { return "v", nil })

	mu.Lock()
	out := buf.String()
	mu.Unlock()
	for _, want := range []string{
		`"level":"ERROR","msg":"stampede: loader panicked","namespace":"log","key":"p","panic":"boom","stack":"`,
		`"level":"WARN","msg":"stampede: redis unavailable: circuit open","namespace":"log"`,
		`"level":"INFO","msg":"stampede: redis available again: circuit closed","namespace":"log"`,
	} {
		require.True(t, strings.Contains(out, want), "log lacks %s:\n%s", want, out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
