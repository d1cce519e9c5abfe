package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"
)

// writeSVG charts the fleet runs: one panel per scenario, one bar per
// library, caller latency on a log scale (p50 solid, p99 pale), with the
// loads and the fleet's CPU time beside each bar.
func writeSVG(w io.Writer, s setting, fleet []result) error {
	const (
		width    = 1000
		left     = 150 // bar start
		right    = 700 // bar end; labels to its right
		rowH     = 20
		panelGap = 46
	)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range fleet {
		if r.P50 > 0 {
			lo = math.Min(lo, r.P50)
		}
		hi = math.Max(hi, r.Max)
	}
	if math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		lo, hi = 1, 10
	}
	// Memory hits answer in microseconds; below 0.1 ms a bar is empty.
	lo = math.Max(lo, 0.1)
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	x := func(v float64) float64 {
		v = math.Max(v, lo)
		return left + (right-left)*(math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
	}

	var body strings.Builder
	y := 70
	for _, sc := range scenarios {
		rows := rowsOf(fleet, sc)
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(&body, `<text x="10" y="%d" font-weight="bold">%s</text>`+"\n", y, esc(scenarioTitle[sc]))
		y += 10
		top := y
		for _, r := range rows {
			fmt.Fprintf(&body, `<text x="%d" y="%d" text-anchor="end">%s</text>`, left-8, y+14, esc(r.Peer))
			color := "#1f77b4"
			if strings.HasPrefix(r.Peer, "stampede") {
				color = "#2ca02c"
			}
			fmt.Fprintf(&body, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s" fill-opacity="0.35"/>`, left, y+3, x(r.P99)-left, rowH-6, color)
			fmt.Fprintf(&body, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`, left, y+3, x(r.P50)-left, rowH-6, color)
			fmt.Fprintf(&body, `<text x="%d" y="%d" fill="#333">p99 %s ms · %s load%s · CPU %.2f s</text>`+"\n",
				right+10, y+14, ms(r.P99), thousands(r.Loads), plural(r.Loads), r.CPU)
			y += rowH
		}
		// Decade grid lines.
		for v := lo; v <= hi*1.001; v *= 10 {
			fmt.Fprintf(&body, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ccc"/>`, x(v), top, x(v), y)
			fmt.Fprintf(&body, `<text x="%.1f" y="%d" fill="#777" font-size="10" text-anchor="middle">%s ms</text>`+"\n", x(v), y+12, strconv.FormatFloat(v, 'g', -1, 64))
		}
		y += panelGap
	}
	height := y
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" font-weight="bold" text-anchor="middle">One hot key, a herd on every node: caller latency per library (log scale; p50 solid, p99 pale)</text>`+"\n", width/2)
	fmt.Fprintf(&b, `<text x="%d" y="44" fill="#555" text-anchor="middle">%s</text>`+"\n", width/2, esc(s.String()))
	b.WriteString(body.String())
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func plural(n int64) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func esc(s string) string { return html.EscapeString(s) }
