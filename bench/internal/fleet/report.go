package fleet

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Setting describes a set of runs for the captions of tables and charts.
type Setting struct {
	Nodes    int
	Requests int
	Load     time.Duration
	LockTTL  time.Duration
	Backend  string // "embedded miniredis", "redis-server 127.0.0.1:6390", ...
	Procs    int
	// Invalidation says how stampede's caches were set up and what that
	// became on this server, "tracking (auto)"; empty when no run used
	// them.
	Invalidation string
	// WakeP50 and WakeP99 are this machine's floor for waking the herd
	// (WakeFloor); zero when not measured.
	WakeP50, WakeP99 time.Duration
}

func (s Setting) String() string {
	where := "in one process"
	if s.Procs > 0 {
		where = fmt.Sprintf("in %d processes", s.Procs)
	}
	inv := ""
	if s.Invalidation != "" {
		inv = ", stampede's invalidation " + s.Invalidation
	}
	return fmt.Sprintf("%d nodes × %s requests on one hot key, loader %v, lock TTL %v%s, %s, %s",
		s.Nodes, thousands(int64(s.Requests)), s.Load, s.LockTTL, inv, s.Backend, where)
}

// WriteMarkdown writes the results as a markdown table, one row per run,
// with each run's loads as a share of its requests. A count that depends on
// timing, and so varies from run to run, is marked with a tilde.
func WriteMarkdown(w io.Writer, s Setting, results []Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", s)
	b.WriteString("| scenario | mode | DB loads | per request | errors | p50 ms | p99 ms | max ms | overhead p50 ms | overhead p99 ms |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	var notes []string
	varies := false
	for _, r := range results {
		loads := thousands(r.Loads)
		if _, fixed := FixedLoads(r.Scenario, r.Mode, r.Nodes, r.Requests); !fixed {
			loads = "~" + loads
			varies = true
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.Scenario, r.Mode, loads, percent(float64(r.Loads)/float64(r.Requests)), thousands(r.Errors),
			ms(r.P50), ms(r.P99), ms(r.Max), ms(r.OverheadP50), ms(r.OverheadP99))
		if r.Lost > 0 {
			notes = append(notes, fmt.Sprintf("%s/%s: the crashed node's %s requests died with it and are not counted.",
				r.Scenario, r.Mode, thousands(int64(r.Lost))))
		}
	}
	if varies {
		notes = append(notes, "~: this count depends on timing (how much of the herd misses before the first value lands, or gives up waiting) and varies from run to run. The counts without ~ are fixed by design and asserted by the tests in bench/internal/fleet; one that differs from its fixed value is listed below.")
	}
	for _, r := range results {
		if want, fixed := FixedLoads(r.Scenario, r.Mode, r.Nodes, r.Requests); fixed && r.Loads != want {
			notes = append(notes, fmt.Sprintf("%s/%s: %s loads where the design gives %s.", r.Scenario, r.Mode, thousands(r.Loads), thousands(want)))
		}
	}
	if s.WakeP99 > 0 {
		notes = append(notes, fmt.Sprintf("Machine floor: waking %s goroutines blocked on one event takes p50 %s ms, p99 %s ms here, with no cache involved; the overhead columns cannot go below it.",
			thousands(int64(s.Requests)), ms(float64(s.WakeP50)/1e6), ms(float64(s.WakeP99)/1e6)))
	}
	if len(notes) > 0 {
		b.WriteString("\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the results as a JSON array.
func WriteJSON(w io.Writer, results []Result) error {
	out := make([]jsonResult, len(results))
	for i, r := range results {
		out[i] = jsonResult{
			Scenario: r.Scenario, Mode: r.Mode, Nodes: r.Nodes, Requests: r.Requests,
			Loads: r.Loads, Errors: r.Errors,
			P50: jsonMS(r.P50), P99: jsonMS(r.P99), Max: jsonMS(r.Max), OverheadP99: jsonMS(r.OverheadP99),
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// jsonResult holds exactly the keys the JSON output promises. A figure
// with no data (no caller waited) is null.
type jsonResult struct {
	Scenario    Scenario `json:"scenario"`
	Mode        Mode     `json:"mode"`
	Nodes       int      `json:"nodes"`
	Requests    int      `json:"requests"`
	Loads       int64    `json:"loads"`
	Errors      int64    `json:"errors"`
	P50         *float64 `json:"p50_ms"`
	P99         *float64 `json:"p99_ms"`
	Max         *float64 `json:"max_ms"`
	OverheadP99 *float64 `json:"overhead_p99_ms"`
}

func jsonMS(v float64) *float64 {
	if math.IsNaN(v) {
		return nil
	}
	v = math.Round(v*1000) / 1000
	return &v
}

// FixedLoads is the load count that a mode's design fixes in a scenario,
// whatever the timing; ok is false where the count depends on timing.
// bench/internal/fleet's tests assert each of these.
func FixedLoads(sc Scenario, m Mode, nodes, requests int) (want int64, ok bool) {
	switch {
	case m == Full && (sc == Cold || sc == Expiry):
		return 1, true // one load per key per expiry, fleet-wide
	case m == Full && sc == Crash:
		return 2, true // the dead one, and one after its lease ran out
	case m == SingleFlight && (sc == Cold || sc == Expiry):
		return int64(nodes), true // one per node
	case (m == Naive || m == Lock) && sc == RedisDown:
		return int64(requests), true // every request, with nothing to share
	}
	return 0, false
}

// percent formats a share with three significant digits: 100%, 0.05%, 0.001%.
func percent(f float64) string {
	p := f * 100
	if p == 0 {
		return "0%"
	}
	digits := max(0, 2-int(math.Floor(math.Log10(math.Abs(p)))))
	s := strconv.FormatFloat(p, 'f', digits, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s + "%"
}

// ms formats milliseconds for humans.
func ms(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case v < 1000:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return thousands(int64(math.Round(v)))
}

// Thousands formats n with comma separators: 100,000.
func Thousands(n int) string { return thousands(int64(n)) }

// thousands formats n with comma separators.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
