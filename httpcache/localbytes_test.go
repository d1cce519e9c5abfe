package httpcache

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/stampede-go/stampede/internal/redistest"
)

// Options.LocalBytes bounds the responses a process keeps in memory by
// their size: one that fits is served from memory the next time, one
// larger than the whole bound from Redis, and with a negative bound none
// is kept.
func TestLocalBytes(t *testing.T) {
	for _, tc := range []struct {
		name       string
		bytes      int64
		body       int
		fromMemory bool
	}{
		{"fits", 64 << 10, 1000, true},
		{"larger than the bound", 4 << 10, 8000, false},
		{"off", -1, 10, false},
		{"default", 0, 100 << 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, rdb := redistest.Mini(t)
			h := &counter{fn: cacheable(strings.Repeat("x", tc.body))}
			m := newMW(t, rdb, Options{LocalBytes: tc.bytes})
			s := m.Handler(h)
			do(s, "GET", "/b")
			before := m.Stats()
			w := do(s, "GET", "/b")
			require.Equal(t, tc.body, w.Body.Len())
			require.Contains(t, status(w), "hit")
			after := m.Stats()
			require.Equal(t, tc.fromMemory, after.LocalHits > before.LocalHits, "served from memory")
			require.Equal(t, !tc.fromMemory, after.RedisHits > before.RedisHits, "served from Redis")
		})
	}
}

// An entry costs its body, its header fields and a fixed overhead.
func TestEntryCost(t *testing.T) {
	e := &entry{kind: kindResponse, status: 200, body: make([]byte, 1000),
		header: http.Header{"Content-Type": {"text/plain"}, "Link": {"</a>", "</b>"}}}
	require.EqualValues(t, entryOverhead+1000+len("Content-Type")+len("text/plain")+len("Link")+8, entryCost(e))
	require.EqualValues(t, entryOverhead, entryCost("not an entry"))
}
