package stampede

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Invalidation is how a Set, a Delete or a fill on one node reaches the L1
// of the others (invariant 11).
type Invalidation uint8

const (
	// InvalidateAuto is InvalidateTracking where New finds that the client
	// and the server support it, and InvalidateBroadcast elsewhere.
	// Stats.Invalidation says which one a cache uses.
	InvalidateAuto Invalidation = iota
	// InvalidateBroadcast publishes every write on the namespace's channel,
	// to which every node subscribes: each node receives every write of
	// the fleet, and Redis's work per write grows with the fleet. It works
	// with every client type and server (miniredis included), and is what
	// a redis.Ring, a Sentinel failover client and any other
	// redis.UniversalClient get.
	InvalidateBroadcast
	// InvalidateTracking has Redis remember which node read which key
	// (server-assisted client-side caching, CLIENT TRACKING, Redis 6.2 and
	// later) and tell only those nodes when the key changes: a node
	// receives messages about the keys it holds in L1 or waits for, and
	// none about the others. It needs a *redis.Client or a
	// *redis.ClusterClient: the cache opens connections of its own from
	// the client's options (see the README, "Invalidation"). New fails with
	// ErrInvalidOptions where it is not available.
	InvalidateTracking
)

func (m Invalidation) String() string {
	switch m {
	case InvalidateAuto:
		return "auto"
	case InvalidateBroadcast:
		return "broadcast"
	case InvalidateTracking:
		return "tracking"
	}
	return "Invalidation(" + strconv.Itoa(int(m)) + ")"
}

// MarshalText returns the mode's name: auto, broadcast or tracking.
func (m Invalidation) MarshalText() ([]byte, error) {
	if m > InvalidateTracking {
		return nil, fmt.Errorf("%w: unknown Invalidation %d", ErrInvalidOptions, m)
	}
	return []byte(m.String()), nil
}

// UnmarshalText sets m from a mode's name (auto, broadcast or tracking),
// so that the mode can come from a flag (flag.TextVar) or a config file.
func (m *Invalidation) UnmarshalText(text []byte) error {
	for _, v := range []Invalidation{InvalidateAuto, InvalidateBroadcast, InvalidateTracking} {
		if string(text) == v.String() {
			*m = v
			return nil
		}
	}
	return fmt.Errorf("%w: unknown Invalidation %q (want auto, broadcast or tracking)", ErrInvalidOptions, text)
}

// errNoTracking says why tracking is not available, for
// InvalidateTracking.
var errNoTracking = errors.New("tracking is not available")

// startInvalidation subscribes in the mode Options.Invalidation asks for,
// falling back from tracking to broadcast where tracking is not available
// and the options allow it.
func (c *Cache[V]) startInvalidation() error {
	want := c.opts.Invalidation
	if want != InvalidateBroadcast {
		err := c.startTracking()
		if err == nil {
			c.mode = InvalidateTracking
			return nil
		}
		if want == InvalidateTracking {
			return fmt.Errorf("%w: InvalidateTracking: %w", ErrInvalidOptions, err)
		}
	}
	c.mode = InvalidateBroadcast
	c.subscribe()
	return nil
}

// trackingAvailable asks the server, through the user's client and without
// changing anything on its connections, whether tracking can work: CLIENT
// TRACKINGINFO (Redis 6.2, like CLIENT LIST ID, which the tracked
// connections need) answers, and the server does not close idle clients,
// which would end the tracking of a pooled connection without anyone
// noticing until it is used again.
func trackingAvailable(ctx context.Context, rdb redis.UniversalClient) error {
	if err := rdb.Do(ctx, "CLIENT", "TRACKINGINFO").Err(); err != nil {
		return fmt.Errorf("%w: CLIENT TRACKINGINFO: %w", errNoTracking, err)
	}
	// CONFIG may be renamed or forbidden (managed services): then the
	// server's default, no timeout, is assumed.
	cfg, err := rdb.ConfigGet(ctx, "timeout").Result()
	if err == nil {
		if v := cfg["timeout"]; v != "" && v != "0" {
			return fmt.Errorf("%w: the server closes clients idle for %s s (timeout)", errNoTracking, v)
		}
	}
	return nil
}
