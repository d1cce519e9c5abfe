package fleet

import (
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strings"
)

// modeColor gives each mode the same colour in both panels.
var modeColor = map[Mode]string{
	Naive:        "#d62728",
	SingleFlight: "#ff7f0e",
	Lock:         "#9467bd",
	Full:         "#2ca02c",
}

// WriteSVG writes a chart of the results: database loads per mode and
// scenario on the left, caller latency (p50 solid, p99 pale) on the right,
// both on log scales.
func WriteSVG(w io.Writer, s Setting, results []Result) error {
	const (
		width, height = 1000, 470
		top, bottom   = 90, 390 // plot area, y
	)
	var scs []Scenario
	var mds []Mode
	for _, r := range results {
		if !slices.Contains(scs, r.Scenario) {
			scs = append(scs, r.Scenario)
		}
		if !slices.Contains(mds, r.Mode) {
			mds = append(mds, r.Mode)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="17" font-weight="bold" text-anchor="middle">One hot key, a herd of requests: what reaches the database, and how long callers wait</text>`+"\n", width/2)
	fmt.Fprintf(&b, `<text x="%d" y="44" fill="#555" text-anchor="middle">%s</text>`+"\n", width/2, esc(s.String()))

	loads := func(r Result) (float64, float64) { return float64(r.Loads), math.NaN() }
	lat := func(r Result) (float64, float64) { return r.P99, r.P50 }
	panel(&b, results, scs, mds, 70, 480, top, bottom, "Database loads (log scale)", loads, func(v float64) string { return thousands(int64(v)) })
	panel(&b, results, scs, mds, 570, 980, top, bottom, "Caller latency, ms (log scale): p50 solid, p99 pale", lat, ms)

	// Legend.
	x := 300
	for _, m := range mds {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="14" height="14" fill="%s"/>`, x, height-40, modeColor[m])
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", x+20, height-28, esc(string(m)))
		x += 110
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#777" font-size="11" text-anchor="middle">full = stampede. In expiry the other modes keep no stale copy, so for them it is a cold miss. In crash the dead node's callers are not counted.</text>`+"\n", width/2, height-8)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// panel draws one log-scale bar chart: a group of bars per scenario, a bar
// per mode. value returns the bar's height and an optional inner mark
// (drawn solid inside a pale bar when not NaN).
func panel(b *strings.Builder, results []Result, scs []Scenario, mds []Mode,
	x0, x1, top, bottom int, title string,
	value func(Result) (float64, float64), label func(float64) string) {
	hi := 1.0
	lo := math.Inf(1)
	for _, r := range results {
		v, inner := value(r)
		for _, f := range []float64{v, inner} {
			if !math.IsNaN(f) && f > 0 {
				hi = max(hi, f)
				lo = min(lo, f)
			}
		}
	}
	top10 := math.Ceil(math.Log10(hi))
	bot10 := math.Min(0, math.Floor(math.Log10(lo)))
	if math.IsInf(lo, 1) {
		bot10 = 0
	}
	if top10 <= bot10 {
		top10 = bot10 + 1
	}
	// A bar of the axis' lowest value still shows as a sliver, and the
	// tallest leaves room for its label.
	floor := bot10 - 0.15
	ceil := top10 + 0.45
	y := func(v float64) float64 {
		if v <= 0 || math.IsNaN(v) {
			return float64(bottom)
		}
		f := (math.Log10(v) - floor) / (ceil - floor)
		return float64(bottom) - f*float64(bottom-top)
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="14" font-weight="bold" text-anchor="middle">%s</text>`+"\n", (x0+x1)/2, top-22, esc(title))
	for e := bot10; e <= top10; e++ {
		v := math.Pow(10, e)
		yy := y(v)
		fmt.Fprintf(b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e3e3e3"/>`, x0, x1, yy, yy)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" fill="#666" font-size="11" text-anchor="end">%s</text>`+"\n", x0-6, yy+4, esc(axisLabel(v)))
	}
	fmt.Fprintf(b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#999"/>`+"\n", x0, x1, bottom, bottom)

	groupW := float64(x1-x0) / float64(len(scs))
	barW := math.Min(22, (groupW-16)/float64(len(mds)))
	for gi, sc := range scs {
		gx := float64(x0) + groupW*float64(gi)
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", gx+groupW/2, bottom+18, esc(string(sc)))
		start := gx + (groupW-barW*float64(len(mds)))/2
		for mi, m := range mds {
			i := slices.IndexFunc(results, func(r Result) bool { return r.Scenario == sc && r.Mode == m })
			if i < 0 {
				continue
			}
			v, inner := value(results[i])
			bx := start + barW*float64(mi)
			color := modeColor[m]
			if math.IsNaN(v) {
				continue
			}
			opacity := "1"
			if !math.IsNaN(inner) {
				opacity = "0.35"
			}
			yy := y(v)
			fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="%s"><title>%s / %s: %s</title></rect>`+"\n",
				bx+1, yy, barW-2, float64(bottom)-yy, color, opacity, esc(string(sc)), esc(string(m)), esc(label(v)))
			if !math.IsNaN(inner) {
				iy := y(inner)
				fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", bx+1, iy, barW-2, float64(bottom)-iy, color)
			}
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="10" text-anchor="start" transform="rotate(-60 %.1f %.1f)">%s</text>`+"\n",
				bx+barW/2+3, yy-3, bx+barW/2+3, yy-3, esc(label(v)))
		}
	}
}

func axisLabel(v float64) string {
	switch {
	case v >= 1:
		return thousands(int64(v))
	default:
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
	}
}

func esc(s string) string { return html.EscapeString(s) }
