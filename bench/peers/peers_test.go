package main

import (
	"bytes"
	"encoding/xml"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede"
)

func TestMain(m *testing.M) {
	redis.SetLogger(quietLog{})
	os.Exit(m.Run())
}

// testServer starts a redis-server for the test, or skips the test when
// there is none (fails under CI=true, where there must be one).
func testServer(t *testing.T) *server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not on PATH")
		}
		t.Skip("redis-server is not on PATH")
	}
	s, err := startServer(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	return s
}

// Every library answers every request of a small herd with a value, in
// every scenario. Counts are checked only where the harness promises them:
// stampede loads once in cold, and no library loads on a hit. Timings are
// printed, never asserted.
func TestFleetEveryPeer(t *testing.T) {
	s := testServer(t)
	cfg := fleetConfig{addr: s.addr, nodes: 3, requests: 60, load: 5 * time.Millisecond}
	prog := newProgress(io.Discard)
	for _, sc := range scenarios {
		for _, p := range peers {
			t.Run(string(sc)+"/"+p.name, func(t *testing.T) {
				r, err := runFleet(t.Context(), cfg, p, sc, prog)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("loads=%d p99=%sms cmds=%d trips=%d %s", r.Loads, ms(r.P99), r.Commands, r.RoundTrips, r.Note)
				if r.Errors != 0 {
					t.Errorf("errors = %d, want 0", r.Errors)
				}
				if sc == cold && strings.HasPrefix(p.name, "stampede") && r.Loads != 1 {
					t.Errorf("stampede loads = %d in cold, want 1", r.Loads)
				}
				if sc == hit && r.Loads != 0 {
					t.Errorf("loads = %d on a hit, want 0", r.Loads)
				}
				if r.Commands == 0 || r.RoundTrips == 0 {
					t.Errorf("Redis commands %d, round trips %d: nothing counted", r.Commands, r.RoundTrips)
				}
			})
		}
	}
}

// The whole program, at its smallest: every section of the report is there.
func TestRunSmall(t *testing.T) {
	s := testServer(t)
	var out, errOut bytes.Buffer
	dir := t.TempDir()
	args := []string{"-redis", s.addr, "-nodes", "2", "-requests", "20", "-load", "2ms",
		"-peers", "stampede,singleflight", "-scenario", "cold,hit", "-benchtime", "20ms",
		"-json", dir + "/out.json", "-svg", dir + "/out.svg"}
	if err := run(t.Context(), args, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	for _, want := range []string{"| stampede | 1 | 0 |", "| singleflight |", "Hit path", "| raw go-redis GET, mean of", "| rueidislock |", "| bsm/redislock |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	// -from prints the same report from the saved run.
	var again bytes.Buffer
	if err := run(t.Context(), []string{"-from", dir + "/out.json"}, &again, &errOut); err != nil {
		t.Fatal(err)
	}
	if again.String() != out.String() {
		t.Errorf("-from printed\n%s\nwant\n%s", again.String(), out.String())
	}
	f, err := os.Open(dir + "/out.svg")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := xml.NewDecoder(f)
	for {
		if _, err := d.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("SVG not well-formed: %v", err)
		}
	}
}

func TestServerStatsSub(t *testing.T) {
	a := serverStats{calls: map[string]int64{"get": 10, "info": 3, "set": 1}, cpu: time.Second}
	b := serverStats{calls: map[string]int64{"get": 4, "info": 2, "set": 1}, cpu: 250 * time.Millisecond}
	d := a.sub(b)
	if d.total() != 6 || d.calls["get"] != 6 || d.cpu != 750*time.Millisecond {
		t.Errorf("sub = %+v, want 6 GETs, nothing else, 750ms", d)
	}
}

func TestRatio(t *testing.T) {
	for _, c := range []struct {
		a, b float64
		want string
	}{{1, 2, "0.50×"}, {30, 2, "15.0×"}, {5000, 2, "2,500×"}, {1, 0, "–"}} {
		if got := ratio(c.a, c.b); got != c.want {
			t.Errorf("ratio(%v, %v) = %q, want %q", c.a, c.b, got, c.want)
		}
	}
}

func TestPickLists(t *testing.T) {
	if _, err := pickPeers("stampede,nope"); err == nil {
		t.Error("unknown library accepted")
	}
	if ps, err := pickPeers(" naive , stampede "); err != nil || len(ps) != 2 || ps[0].name != "naive" {
		t.Errorf("pickPeers = %v, %v", ps, err)
	}
	if scs, err := pickScenarios(""); err != nil || len(scs) != 0 {
		t.Errorf("pickScenarios(\"\") = %v, %v; want none", scs, err)
	}
}

// In both invalidation modes the stampede nodes' round trips are counted:
// in tracking mode the reads go through clients the cache makes, which
// get the node's hook through Options.OnClient. On a hit every node reads
// Redis at least once, and through nothing else in tracking mode.
func TestStampedeModesCountTrips(t *testing.T) {
	s := testServer(t)
	prog := newProgress(io.Discard)
	for _, inv := range []stampede.Invalidation{stampede.InvalidateTracking, stampede.InvalidateBroadcast} {
		t.Run(inv.String(), func(t *testing.T) {
			got, err := resolveInvalidation(t.Context(), s.addr, inv)
			if err != nil || got != inv {
				t.Fatalf("resolveInvalidation = %v, %v; want %v", got, err, inv)
			}
			cfg := fleetConfig{addr: s.addr, nodes: 3, requests: 60, load: 5 * time.Millisecond, inv: got}
			for _, sc := range []scenario{cold, hit} {
				r, err := runFleet(t.Context(), cfg, peers[0], sc, prog)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s: loads=%d cmds=%d trips=%d %s", sc, r.Loads, r.Commands, r.RoundTrips, r.Note)
				if r.Errors != 0 || r.RoundTrips < int64(cfg.nodes) {
					t.Errorf("%s: errors %d, round trips %d; want none, and at least one per node", sc, r.Errors, r.RoundTrips)
				}
			}
		})
	}
}
