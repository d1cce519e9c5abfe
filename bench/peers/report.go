package main

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// setting describes a set of runs for captions.
type setting struct {
	Nodes      int    `json:"nodes"`
	Requests   int    `json:"requests"`
	Load       string `json:"load"`
	Server     string `json:"server"`
	GoMaxProcs int    `json:"gomaxprocs"`
	// Invalidation is stampede's mode, as asked and as it ran: "tracking
	// (auto)". Empty in runs saved before the flag, which ran broadcast.
	Invalidation string `json:"invalidation,omitempty"`
}

func (s setting) String() string {
	inv := s.Invalidation
	if inv == "" {
		inv = "broadcast"
	}
	return fmt.Sprintf("%d nodes × %s requests on one hot key, loader %s, each node its own go-redis client (pool %d), stampede's invalidation %s, %s, GOMAXPROCS=%d",
		s.Nodes, thousands(int64(s.Requests)), s.Load, poolSize, inv, s.Server, s.GoMaxProcs)
}

var scenarioTitle = map[scenario]string{
	cold:    "cold: the key is absent",
	expired: "expired: the value's TTL has just run out (a stale copy is left only by libraries that keep one)",
	hit:     "hit: a fresh value is in Redis, the nodes' memory is empty",
}

// baselinePeer is the row the ratio columns divide by.
const baselinePeer = "singleflight"

func writeReport(w io.Writer, s setting, fleet []result, hits []hitResult, locks []lockResult) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", s)
	for _, sc := range scenarios {
		rows := rowsOf(fleet, sc)
		if len(rows) == 0 {
			continue
		}
		base, hasBase := find(rows, baselinePeer)
		fmt.Fprintf(&b, "\n%s\n\n", scenarioTitle[sc])
		b.WriteString("| library | loads | errors | p50 ms | p99 ms | max ms | p99 vs singleflight | wall ms | Redis cmds | round trips | fleet CPU s | CPU vs singleflight | Redis CPU s |\n")
		b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, r := range rows {
			p99x, cpux := "–", "–"
			if hasBase {
				p99x, cpux = ratio(r.P99, base.P99), ratio(r.CPU, base.CPU)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.2f | %s | %.2f |\n",
				r.Peer, thousands(r.Loads), thousands(r.Errors), ms(r.P50), ms(r.P99), ms(r.Max), p99x,
				ms(r.WallMS), thousands(r.Commands), thousands(r.RoundTrips), r.CPU, cpux, r.RedisCPU)
		}
	}
	if len(fleet) > 0 {
		b.WriteString("\nLoad counts of libraries without a fleet-wide lock depend on how many nodes miss before the first value lands, and vary between runs. Redis cmds are what redis-server counted (INFO commandstats), the commands a script runs included; round trips are what the nodes sent. fleet CPU is this process (all nodes), Redis CPU the server's.\n")
		if t := targets(fleet); t != "" {
			b.WriteString("\n" + t)
		}
	}
	if len(hits) > 0 {
		writeHits(&b, hits)
	}
	if len(locks) > 0 {
		writeLocks(&b, locks)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeHits(b *strings.Builder, hits []hitResult) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, h := range hits {
		if h.Baseline {
			lo, hi = math.Min(lo, h.NsPerOp), math.Max(hi, h.NsPerOp)
		}
	}
	fmt.Fprintf(b, "\nHit path, one node, sequential and %d goroutines. Each library was measured between two raw go-redis GETs on the same server; its ratios are against their mean (the raw GET ranged %s–%s ns/op over the run)\n\n",
		hitGoroutines, thousands(int64(math.Round(lo))), thousands(int64(math.Round(hi))))
	b.WriteString("| library | a hit reads | ns/op | vs raw GET | allocs/op | ops/s, 64 goroutines | vs raw GET |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|\n")
	for _, h := range hits {
		if h.Baseline {
			continue
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %d | %s | %s |\n", h.Name, h.Reads,
			thousands(int64(math.Round(h.NsPerOp))), ratio(h.NsPerOp, h.RawNsPerOp), h.Allocs,
			thousands(int64(math.Round(h.OpsPerS))), ratio(h.OpsPerS, h.RawOpsPerS))
	}
	var n, ns, ops float64
	var allocs int64
	for _, h := range hits {
		if h.Baseline {
			n, ns, ops, allocs = n+1, ns+h.NsPerOp, ops+h.OpsPerS, h.Allocs
		}
	}
	if n > 0 {
		fmt.Fprintf(b, "| raw go-redis GET, mean of %d | Redis (GET) | %s | 1× | %d | %s | 1× |\n", int(n),
			thousands(int64(math.Round(ns/n))), allocs, thousands(int64(math.Round(ops/n))))
	}
	for _, h := range hits {
		if h.Loads > 0 || h.Errors > 0 {
			fmt.Fprintf(b, "\n- %s: %d loads, %d errors during its hit benchmark (every call should have been a hit).\n", h.Name, h.Loads, h.Errors)
		}
	}
}

func writeLocks(b *strings.Builder, locks []lockResult) {
	var base float64
	for _, l := range locks {
		if strings.HasPrefix(l.Name, "stampede") {
			base = l.NsPerOp
		}
	}
	b.WriteString("\nLocker: obtain and release one uncontended lock, sequentially\n\n")
	b.WriteString("| locker | as set up | ns/op | vs stampede | allocs/op |\n")
	b.WriteString("|---|---|--:|--:|--:|\n")
	for _, l := range locks {
		fmt.Fprintf(b, "| %s | `%s` | %s | %s | %d |\n", l.Name, l.Setup,
			thousands(int64(math.Round(l.NsPerOp))), ratio(l.NsPerOp, base), l.Allocs)
	}
}

// targets checks the targets against this run.
func targets(fleet []result) string {
	var b strings.Builder
	for _, sc := range []scenario{cold, expired} {
		rows := rowsOf(fleet, sc)
		st, ok := find(rows, "stampede")
		if !ok {
			continue
		}
		var best, bestOne *result
		for i := range rows {
			r := &rows[i]
			if strings.HasPrefix(r.Peer, "stampede") || r.Errors > 0 {
				continue
			}
			if best == nil || r.P99 < best.P99 {
				best = r
			}
			if r.Loads == 1 && (bestOne == nil || r.P99 < bestOne.P99) {
				bestOne = r
			}
		}
		if best != nil {
			fmt.Fprintf(&b, "- %s: stampede p99 %s ms vs the best peer's (%s) %s ms: %s, %s; loads %d (want 1): %s\n",
				sc, ms(st.P99), best.Peer, ms(best.P99), ratio(st.P99, best.P99), metIf(st.P99 <= best.P99), st.Loads, metIf(st.Loads == 1))
		}
		if bestOne != nil {
			fmt.Fprintf(&b, "- %s: stampede fleet CPU %.2f s vs the best 1-load peer's (%s) %.2f s: %s, %s\n",
				sc, st.CPU, bestOne.Peer, bestOne.CPU, ratio(st.CPU, bestOne.CPU), metIf(st.CPU <= bestOne.CPU))
		}
	}
	if sf, ok := find(rowsOf(fleet, hit), baselinePeer); ok {
		if st, ok := find(rowsOf(fleet, expired), "stampede+Stale"); ok {
			fmt.Fprintf(&b, "- expired with Stale: stampede+Stale p99 %s ms vs singleflight's hit p99 %s ms at the same fan-in: %s, %s\n",
				ms(st.P99), ms(sf.P99), ratio(st.P99, sf.P99), metIf(st.P99 <= sf.P99))
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "Targets, from this run:\n\n" + b.String()
}

func metIf(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

func rowsOf(all []result, sc scenario) []result {
	var out []result
	for _, r := range all {
		if r.Scenario == sc {
			out = append(out, r)
		}
	}
	return out
}

func find(rows []result, name string) (result, bool) {
	for _, r := range rows {
		if r.Peer == name {
			return r, true
		}
	}
	return result{}, false
}

// ratio formats a/b as "1.23×"; "–" when it is undefined.
func ratio(a, b float64) string {
	if b <= 0 || math.IsNaN(a) || math.IsNaN(b) {
		return "–"
	}
	r := a / b
	switch {
	case r < 10:
		return strconv.FormatFloat(r, 'f', 2, 64) + "×"
	case r < 100:
		return strconv.FormatFloat(r, 'f', 1, 64) + "×"
	}
	return thousands(int64(math.Round(r))) + "×"
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
