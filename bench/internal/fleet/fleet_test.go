package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede"
	"github.com/stampede-go/stampede/bench/internal/benchnode"
	"github.com/stampede-go/stampede/internal/redistest"
)

type quietLog struct{}

func (quietLog) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	// Refused connections are the point of redis-down and crash.
	redis.SetLogger(quietLog{})
	os.Exit(m.Run())
}

const (
	testNodes    = 5
	testRequests = 500
)

func testConfig(addr string) Config {
	return Config{
		Nodes: testNodes, Requests: testRequests,
		Load: 20 * time.Millisecond, LockTTL: time.Second,
		Addr: addr,
	}
}

// The load counts are the harness's promise; timings are not asserted.
func TestLoadsEmbedded(t *testing.T) {
	m, _ := redistest.Mini(t)
	m.ClockTTL(true) // the crash scenario needs the lease to run out
	testLoads(t, testConfig(m.Addr()))
}

// On a redis-server in both invalidation modes: auto picks tracking there.
func TestLoadsRedisServer(t *testing.T) {
	addr := redistest.Start(t).Addr()
	for _, inv := range []stampede.Invalidation{stampede.InvalidateTracking, stampede.InvalidateBroadcast} {
		t.Run(inv.String(), func(t *testing.T) {
			cfg := testConfig(addr)
			cfg.Invalidation = inv
			testLoads(t, cfg)
		})
	}
}

func testLoads(t *testing.T, cfg Config) {
	// At this size the herd fits the machine, and naive and the lock mode
	// have their textbook counts too; at full size those vary.
	want := map[Scenario]map[Mode]int64{
		Cold:   {Naive: testRequests, Lock: 1},
		Expiry: {Naive: testRequests, Lock: 1},
	}
	for _, sc := range Scenarios {
		for _, mode := range Modes {
			t.Run(string(sc)+"/"+string(mode), func(t *testing.T) {
				r, err := Run(t.Context(), cfg, sc, mode)
				if err != nil {
					t.Fatal(err)
				}
				t.Log(r.progress())
				if w, ok := FixedLoads(sc, mode, testNodes, testRequests); ok && r.Loads != w {
					t.Errorf("loads = %d, want %d (fixed by design)", r.Loads, w)
				}
				if w, ok := want[sc][mode]; ok && r.Loads != w {
					t.Errorf("loads = %d, want %d", r.Loads, w)
				}
				if sc == RedisDown && mode == Full && (r.Loads < 1 || r.Loads > testNodes) {
					t.Errorf("loads = %d, want 1 to %d (one per node at most)", r.Loads, testNodes)
				}
				if r.Errors != 0 {
					t.Errorf("errors = %d, want 0", r.Errors)
				}
				if r.Answered+r.Lost != testRequests {
					t.Errorf("answered %d + lost %d != %d requests", r.Answered, r.Lost, testRequests)
				}
				if (sc == Crash) != (r.Lost > 0) {
					t.Errorf("lost = %d requests in %s", r.Lost, sc)
				}
			})
		}
	}
}

// Worker processes are this test binary, re-executed.
func TestProcs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	m, _ := redistest.Mini(t)
	m.ClockTTL(true)
	cfg := testConfig(m.Addr())
	cfg.Procs = 2
	cfg.WorkerCmd = []string{os.Args[0], "-test.run=^TestWorkerProcess$"}
	t.Setenv("FLEET_TEST_WORKER", "1")
	for _, sc := range []Scenario{Cold, Expiry, Crash} {
		r, err := Run(t.Context(), cfg, sc, Full)
		if err != nil {
			t.Fatal(err)
		}
		t.Log(r.progress())
		want := map[Scenario]int64{Cold: 1, Expiry: 1, Crash: 2}[sc]
		if r.Loads != want || r.Errors != 0 || r.Answered+r.Lost != testRequests {
			t.Errorf("%s: loads %d (want %d), errors %d, answered %d + lost %d", sc, r.Loads, want, r.Errors, r.Answered, r.Lost)
		}
	}
}

// A worker gets its job as JSON. The expired value is binary (stampede's
// entry header starts with 0xA7); coerced to UTF-8 it never matched Redis,
// the worker stopped waiting for the refresh at once, and closing its nodes
// cancelled a refresh in flight, whose dropped lease let another worker's
// node refresh a second time.
func TestJobKeepsBinaryExpired(t *testing.T) {
	in := job{Scenario: Expiry, Mode: Full, Expired: []byte("\xa7\x01\x00\x8b\xcd\x12\xf4CZ\xc1\xe6 1")}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out job
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Expired, in.Expired) {
		t.Errorf("Expired after JSON = %x, want %x", out.Expired, in.Expired)
	}
}

// TestWorkerProcess is the body of the workers TestProcs starts.
func TestWorkerProcess(t *testing.T) {
	if os.Getenv("FLEET_TEST_WORKER") != "1" {
		t.Skip("run by TestProcs")
	}
	// The test framework writes to stdout too; the result goes on a line of
	// its own that the coordinator's decoder reads first.
	var out bytes.Buffer
	if err := ServeWorker(context.Background(), os.Stdin, &out); err != nil {
		t.Fatal(err)
	}
	os.Stdout.Write(out.Bytes())
	os.Exit(0)
}

func sample() []Result {
	nan := quantile(nil, 0.5)
	return []Result{
		{Scenario: Cold, Mode: Naive, Nodes: 50, Requests: 100000, Loads: 100000, P50: 150, P99: 300, Max: 310, OverheadP50: 3, OverheadP99: 9},
		{Scenario: Cold, Mode: Full, Nodes: 50, Requests: 100000, Loads: 1, P50: 101, P99: 104, Max: 105, OverheadP50: 1, OverheadP99: 2},
		{Scenario: Expiry, Mode: Full, Nodes: 50, Requests: 100000, Loads: 1, P50: 0.02, P99: 0.9, Max: 3, OverheadP50: nan, OverheadP99: nan},
	}
}

func TestWriteJSONKeys(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJSON(&buf, sample()); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := []string{"errors", "loads", "max_ms", "mode", "nodes", "overhead_p99_ms", "p50_ms", "p99_ms", "requests", "scenario"}
	for _, obj := range got {
		var keys []string
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, want) {
			t.Errorf("keys %v, want %v", keys, want)
		}
	}
	if got[2]["overhead_p99_ms"] != nil {
		t.Errorf("overhead with no waiters = %v, want null", got[2]["overhead_p99_ms"])
	}
}

func TestWriteMarkdown(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteMarkdown(&buf, Setting{Nodes: 50, Requests: 100000, Backend: "test"}, sample()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| cold | naive | ~100,000 | 100% |", "| cold | full | 1 | 0.001% |", "| expiry | full | 1 | 0.001% |", "~: this count depends on timing"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestWriteSVGIsXML(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteSVG(&buf, Setting{Nodes: 50, Requests: 100000, Backend: "a <b> & c"}, sample()); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(&buf)
	for {
		_, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v", err)
		}
	}
}

func TestPercent(t *testing.T) {
	for f, want := range map[float64]string{1: "100%", 0.0005: "0.05%", 0.00001: "0.001%", 0.957: "95.7%", 0: "0%"} {
		if got := percent(f); got != want {
			t.Errorf("percent(%v) = %q, want %q", f, got, want)
		}
	}
}

// In tracking mode the cache reads through clients of its own. The node
// puts its hooks on them and fills their pool as it fills its own: by the
// time the load runs, the arrival hook has seen the caller's reads, which
// went through the cache's client, not the node's.
func TestTrackingClients(t *testing.T) {
	j := job{
		Scenario: Cold, Mode: Full, Nodes: 1, Requests: 1,
		Load: time.Millisecond, LockTTL: time.Second, Addr: redistest.Start(t).Addr(),
		Invalidation: stampede.InvalidateTracking, NS: "tracking-clients",
	}
	n, err := newNode(t.Context(), j, 0, &localClaim{}, newLocalGate(1), &watch{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.close()
	if got := n.impl.(*full).c.Stats().Invalidation; got != stampede.InvalidateTracking {
		t.Fatalf("invalidation %v, want tracking", got)
	}
	if got := n.rdb.PoolStats().TotalConns; got != poolSize {
		t.Errorf("the node's own client has %d connections; want a warm pool of %d", got, poolSize)
	}
	made := n.made.All()
	readers := 0
	for _, c := range made {
		if benchnode.Subscribes(c) {
			continue
		}
		readers++
		if n := c.(*redis.Client).PoolStats().TotalConns; n != poolSize {
			t.Errorf("the cache's client of tracked reads has %d connections; want a warm pool of %d", n, poolSize)
		}
	}
	if len(made) != 2 || readers != 1 {
		t.Fatalf("OnClient got %d clients, %d of them for reads; want the client of tracked reads and a subscription", len(made), readers)
	}

	var m callerMark
	seenAtLoad := false
	f := n.impl.(*full)
	f.load = func(context.Context, string) (string, error) {
		seenAtLoad = m.seen.Load()
		return stamp(time.Now()), nil
	}
	if _, err := f.get(context.WithValue(t.Context(), callerKey{}, &m)); err != nil {
		t.Fatal(err)
	}
	if !seenAtLoad {
		t.Error("the caller's reads before the load were not seen by the arrival hook")
	}
}
