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
	// WakeP50 and WakeP99 are this machine's floor for waking the herd
	// (WakeFloor); zero when not measured.
	WakeP50, WakeP99 time.Duration
}

func (s Setting) String() string {
	where := "in one process"
	if s.Procs > 0 {
		where = fmt.Sprintf("in %d processes", s.Procs)
	}
	return fmt.Sprintf("%d nodes × %s requests on one hot key, loader %v, lock TTL %v, %s, %s",
		s.Nodes, thousands(int64(s.Requests)), s.Load, s.LockTTL, s.Backend, where)
}

// WriteMarkdown writes the results as a markdown table, one row per run,
// with each mode's loads as a share of the naive mode's in the same
// scenario.
func WriteMarkdown(w io.Writer, s Setting, results []Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", s)
	b.WriteString("| scenario | mode | DB loads | vs naive | errors | p50 ms | p99 ms | max ms | overhead p50 ms | overhead p99 ms |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	var notes []string
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.Scenario, r.Mode, thousands(r.Loads), vsNaive(r, results), thousands(r.Errors),
			ms(r.P50), ms(r.P99), ms(r.Max), ms(r.OverheadP50), ms(r.OverheadP99))
		if r.Lost > 0 {
			notes = append(notes, fmt.Sprintf("%s/%s: the crashed node's %s requests died with it and are not counted.",
				r.Scenario, r.Mode, thousands(int64(r.Lost))))
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

func vsNaive(r Result, all []Result) string {
	for _, n := range all {
		if n.Scenario == r.Scenario && n.Mode == Naive && n.Loads > 0 {
			return percent(float64(r.Loads) / float64(n.Loads))
		}
	}
	return "–"
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
