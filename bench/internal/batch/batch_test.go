package batch

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/stampede-go/stampede/internal/redistest"
)

// Every mode answers every key right, and stampede's GetMany asks the
// database for each key once across the fleet (how often the others do
// depends on timing). On miniredis and a real redis-server.
func TestRun(t *testing.T) {
	mr := miniredis.RunT(t)
	srv := redistest.Start(t)
	for name, addr := range map[string]string{"miniredis": mr.Addr(), "redis": srv.Addr()} {
		t.Run(name, func(t *testing.T) {
			cfg := Config{Nodes: 5, Callers: 10, PerCall: 40, KeySpace: 120, Load: 20 * time.Millisecond, Addr: addr}
			var results []Result
			for _, m := range Modes {
				r, err := Run(context.Background(), cfg, m)
				if err != nil {
					t.Fatal(err)
				}
				if r.Errors != 0 || r.Wrong != 0 {
					t.Fatalf("%s: %d errors, %d wrong values", m, r.Errors, r.Wrong)
				}
				results = append(results, r)
			}
			if full := results[2]; full.KeyLoads != int64(full.Keys) {
				t.Fatalf("full: %d key loads for %d keys, want each key once", full.KeyLoads, full.Keys)
			}
			var b strings.Builder
			if err := WriteMarkdown(&b, cfg, name, results); err != nil {
				t.Fatal(err)
			}
			t.Log("\n" + b.String())
		})
	}
}
