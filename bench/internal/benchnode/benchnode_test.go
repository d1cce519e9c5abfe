package benchnode

import (
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede"
	"github.com/stampede-go/stampede/internal/redistest"
)

// Auto resolves to what New picks on the server; tracking where New cannot
// have it is an error, not a quiet fallback.
func TestInvalidation(t *testing.T) {
	mr := miniredis.RunT(t)
	mini := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = mini.Close() })
	srv := redistest.Start(t).Client(t)
	for _, tc := range []struct {
		name string
		rdb  redis.UniversalClient
		ask  stampede.Invalidation
		want string // Describe's; "" for an error
	}{
		{"miniredis, auto", mini, stampede.InvalidateAuto, "broadcast (auto)"},
		{"miniredis, tracking", mini, stampede.InvalidateTracking, ""},
		{"redis-server, auto", srv, stampede.InvalidateAuto, "tracking (auto)"},
		{"redis-server, broadcast", srv, stampede.InvalidateBroadcast, "broadcast"},
	} {
		got, err := Invalidation(t.Context(), tc.rdb, tc.ask)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%s: %v, want an error", tc.name, got)
		case tc.want != "" && (err != nil || Describe(tc.ask, got) != tc.want):
			t.Errorf("%s: %v, %v (%q), want %q", tc.name, got, err, Describe(tc.ask, got), tc.want)
		}
	}
}
