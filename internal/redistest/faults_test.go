package redistest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestFrameLen(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"+OK\r\n", 5},
		{"+OK\r", 0},
		{":12\r\n+x", 5},
		{"$3\r\nabc\r\n", 9},
		{"$3\r\nab", 0},
		{"$-1\r\n", 5},
		{"*2\r\n$1\r\na\r\n:1\r\n", 15},
		{"*2\r\n$1\r\na\r\n", 0},
		{">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n", 32},
		{"%1\r\n+a\r\n:1\r\n", 12},
		{"_\r\n", 3},
	} {
		got, err := frameLen([]byte(tc.in))
		if err != nil || got != tc.want {
			t.Errorf("frameLen(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	if _, err := frameLen([]byte("?x\r\n")); err == nil {
		t.Error("frameLen accepted a frame of unknown type")
	}
	if !isPubSubMessage([]byte(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n")) {
		t.Error("a RESP3 message push is not recognised")
	}
	if isPubSubMessage([]byte("*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n")) {
		t.Error("a subscription confirmation is taken for a message")
	}
}

func faultyClient(t *testing.T, s *Server, f *Faults, opts redis.Options) *redis.Client {
	opts.Addr, opts.Dialer = s.Addr(), f.Dial
	c := redis.NewClient(&opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestFaultsDropPubSub(t *testing.T) {
	for _, proto := range []int{2, 3} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		s := Start(t)
		f := NewFaults()
		sub := faultyClient(t, s, f, redis.Options{Protocol: proto})
		ps := sub.Subscribe(ctx, "ch")
		defer ps.Close()
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		pub := s.Client(t)
		f.DropPubSub(true)
		for range 3 {
			pub.Publish(ctx, "ch", "lost")
		}
		// The subscription itself keeps working: a PING is answered.
		if err := ps.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		m, err := ps.Receive(ctx)
		if _, ok := m.(*redis.Pong); err != nil || !ok {
			t.Fatalf("RESP%d: got %v, %v; want the pong (the lost messages must not arrive)", proto, m, err)
		}
		f.DropPubSub(false)
		pub.Publish(ctx, "ch", "kept")
		m, err = ps.Receive(ctx)
		if msg, ok := m.(*redis.Message); err != nil || !ok || msg.Payload != "kept" {
			t.Fatalf("RESP%d: got %v, %v; want message kept", proto, m, err)
		}
		if f.Dropped() != 3 {
			t.Fatalf("RESP%d: dropped %d frames, want 3", proto, f.Dropped())
		}
	}
}

func TestFaultsLoseReplyMakesTheClientResend(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := Start(t)
	f := NewFaults()
	c := faultyClient(t, s, f, redis.Options{})
	f.LoseReplyTo("counter")
	// The server executes INCR, the reply is lost, go-redis sends it again.
	n, err := c.Incr(ctx, "counter").Result()
	if err != nil || n != 2 {
		t.Fatalf("INCR after a lost reply = %d, %v; want 2 (executed twice)", n, err)
	}
	if f.Lost() != 1 {
		t.Fatalf("lost %d replies, want 1", f.Lost())
	}
}

func TestFaultsPartitionAndCut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := Start(t)
	f := NewFaults()
	c := faultyClient(t, s, f, redis.Options{ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond, MaxRetries: -1})
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	f.Partition()
	var ne interface{ Timeout() bool }
	if err := c.Get(ctx, "k").Err(); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("GET while partitioned = %v, want a timeout", err)
	}
	f.Heal()
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET after Heal = %q, %v", v, err)
	}
	f.Cut()
	if err := c.Get(ctx, "k").Err(); err == nil {
		t.Fatal("GET while cut succeeded")
	}
	f.Heal()
	if err := c.Get(context.Background(), "k").Err(); err != nil {
		t.Fatalf("GET after Heal = %v", err)
	}
}

func TestPauseResume(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := Start(t)
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), ReadTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	s.Pause(t)
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered by a paused server")
	}
	s.Resume()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Resume = %v", err)
	}
}
