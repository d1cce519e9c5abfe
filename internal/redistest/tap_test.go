package redistest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestParseMessage(t *testing.T) {
	for _, tc := range []struct {
		in      string
		channel string
		payload []string
		ok      bool
	}{
		{"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n", "ch", []string{"x"}, true},
		{">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$0\r\n\r\n", "ch", []string{""}, true},
		{"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n", "__redis__:invalidate", []string{"a", "b"}, true},
		{"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n$-1\r\n", "__redis__:invalidate", nil, true},
		{"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*-1\r\n", "__redis__:invalidate", nil, true},
		{"*2\r\n$7\r\nmessage\r\n$2\r\nch\r\n", "", nil, false},
	} {
		ch, payload, ok := parseMessage([]byte(tc.in))
		if ch != tc.channel || !slices.Equal(payload, tc.payload) || ok != tc.ok || (payload == nil) != (tc.payload == nil) {
			t.Errorf("parseMessage(%q) = %q, %q, %v; want %q, %q, %v", tc.in, ch, payload, ok, tc.channel, tc.payload, tc.ok)
		}
	}
}

// A Tap reports what a subscriber receives, published messages and
// tracking invalidations alike, and the client still receives them.
func TestTap(t *testing.T) {
	s := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	var got [][]string
	tap := &Tap{OnMessage: func(ch string, payload []string) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, append([]string{ch}, payload...))
	}}
	sub := redis.NewClient(&redis.Options{Addr: s.Addr(), Dialer: tap.Dial, Protocol: 2})
	defer sub.Close()
	ps := sub.Subscribe(ctx, "ch", "__redis__:invalidate")
	defer ps.Close()
	for range 2 {
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
	}
	admin := s.Client(t)
	list, err := admin.Do(ctx, "CLIENT", "LIST", "TYPE", "pubsub").Text()
	if err != nil {
		t.Fatal(err)
	}
	var id int64
	if _, err := fmt.Sscanf(list, "id=%d ", &id); err != nil {
		t.Fatalf("no pubsub client in %q: %v", list, err)
	}
	reader := redis.NewClient(&redis.Options{Addr: s.Addr(), PoolSize: 1, Protocol: 2})
	defer reader.Close()
	if err := reader.Do(ctx, "CLIENT", "TRACKING", "ON", "REDIRECT", id).Err(); err != nil {
		t.Fatal(err)
	}
	reader.Get(ctx, "k")
	admin.Set(ctx, "k", "v", 0)
	admin.Publish(ctx, "ch", "hello")
	for range 2 {
		m, err := ps.ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Channel == "ch" && m.Payload != "hello" || m.Channel != "ch" && !slices.Equal(m.PayloadSlice, []string{"k"}) {
			t.Fatalf("the client received %+v after the tap", m)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := [][]string{{"__redis__:invalidate", "k"}, {"ch", "hello"}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("tap saw %q, want %q", got, want)
	}
}
