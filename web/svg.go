package web

import (
	"cmp"
	"fmt"
	"html"
	"html/template"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cleanprod/cleanprod/scoring"
)

type chartPoint struct {
	t time.Time
	v float64
}

// Chart geometry, in SVG user units.
const (
	chartW, chartH                 = 680.0, 260.0
	chartL, chartR, chartT, chartB = 78.0, 92.0, 26.0, 40.0
	chartFont                      = 17 // legible at half an A4 page's width
)

// levelColours are the benchmark lines of Level I, II and III.
var levelColours = [3]string{"#1a7f37", "#9a6700", "#cf222e"}

// trendSVG draws an indicator's stored values over [from, to] with its
// Level I/II/III benchmarks as an inline SVG (no script, no external
// reference), so the report stays self-contained and prints as drawn. The
// time axis is in loc, the report's local time, with a tick per day or
// per week (dayTicks).
func trendSVG(series []chartPoint, ind *scoring.Indicator, from, to time.Time, loc *time.Location) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="100%%" role="img" aria-label="%s">`,
		chartW, chartH, html.EscapeString(ind.NameEN+" trend"))
	fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="#fafbfc" stroke="#d0d7de"/>`,
		chartL, chartT, chartW-chartL-chartR, chartH-chartT-chartB)
	if len(series) < 2 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle" font-size="15" fill="#57606a">期内存储的数值不足 · fewer than two stored values in the period</text></svg>`,
			(chartL+chartW-chartR)/2, (chartT+chartH-chartB)/2)
		return template.HTML(b.String())
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range series {
		lo, hi = math.Min(lo, p.v), math.Max(hi, p.v)
	}
	for _, bm := range ind.Benchmarks {
		lo, hi = math.Min(lo, bm), math.Max(hi, bm)
	}
	if hi-lo < 1e-9*math.Max(1, math.Abs(hi)) {
		lo, hi = lo-1, hi+1
	}
	pad := (hi - lo) * 0.06
	lo, hi = lo-pad, hi+pad
	if lo < 0 && series[0].v >= 0 && ind.Benchmarks[0] >= 0 {
		lo = math.Max(lo, 0)
	}
	span := to.Sub(from).Seconds()
	x := func(t time.Time) float64 {
		f := t.Sub(from).Seconds() / span
		return chartL + math.Max(0, math.Min(1, f))*(chartW-chartL-chartR)
	}
	y := func(v float64) float64 { return chartT + (hi-v)/(hi-lo)*(chartH-chartT-chartB) }

	// Day ticks in local time.
	for _, tk := range dayTicks(from, to, loc) {
		xx := x(tk)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.0f" y2="%.0f" stroke="#d0d7de" stroke-width="1"/>`, xx, xx, chartT, chartH-chartB+5)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" font-size="%d" text-anchor="middle" fill="#57606a">%s</text>`, xx, chartH-chartB+22, chartFont, tk.In(loc).Format("01-02"))
	}
	// Benchmarks, their labels kept apart when the levels are close.
	labelY := benchLabelYs(ind.Benchmarks, y, chartFont+2)
	for i, bm := range ind.Benchmarks {
		yy := y(bm)
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="6 4" stroke-width="1.5"/>`,
			chartL, chartW-chartR, yy, yy, levelColours[i])
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" font-size="%d" fill="%s">%s %s</text>`,
			chartW-chartR+5, labelY[i]+6, chartFont, levelColours[i], []string{"I", "II", "III"}[i], html.EscapeString(formatNum(bm)))
	}
	// Axes labels.
	fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" font-size="%d" text-anchor="end" fill="#57606a">%s</text>`, chartL-5, y(hi-pad)+6, chartFont, html.EscapeString(formatNum(hi-pad)))
	fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" font-size="%d" text-anchor="end" fill="#57606a">%s</text>`, chartL-5, y(lo+pad)+6, chartFont, html.EscapeString(formatNum(lo+pad)))
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="%d" fill="#57606a">%s</text>`, chartL, chartH-2, chartFont, html.EscapeString(from.In(loc).Format("2006-01-02 15:04")))
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="%d" text-anchor="end" fill="#57606a">%s</text>`, chartW-chartR, chartH-2, chartFont, html.EscapeString(to.In(loc).Format("2006-01-02 15:04 MST")))
	if ind.Unit != "" {
		fmt.Fprintf(&b, `<text x="4" y="%.0f" font-size="%d" fill="#57606a">%s</text>`, chartT-8, chartFont, html.EscapeString(reportUnit(ind.Unit)))
	}
	// The series.
	b.WriteString(`<polyline fill="none" stroke="#0969da" stroke-width="1.8" stroke-linejoin="round" points="`)
	for i, p := range series {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1f,%.1f", x(p.t), y(p.v))
	}
	b.WriteString(`"/>`)
	last := series[len(series)-1]
	fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="#0969da"/>`, x(last.t), y(last.v))
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// dayTicks are the local midnights strictly inside (from, to): every day
// for up to 8 days, else every Monday (or every fourth Monday beyond 16
// weeks), so an axis has at most about 8 ticks.
func dayTicks(from, to time.Time, loc *time.Location) []time.Time {
	if !to.After(from) || to.Sub(from) > 5*366*24*time.Hour {
		return nil
	}
	f := from.In(loc)
	day := time.Date(f.Year(), f.Month(), f.Day()+1, 0, 0, 0, 0, loc)
	days := int(to.Sub(from).Hours()/24) + 1
	var out []time.Time
	weeks := 0
	for t := day; t.Before(to); t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, loc) {
		switch {
		case days <= 8:
			out = append(out, t)
		case t.Weekday() == time.Monday:
			if days <= 16*7 || weeks%4 == 0 {
				out = append(out, t)
			}
			weeks++
		}
	}
	return out
}

// benchLabelYs places the labels of benchmarks at y(b), moved apart so
// that no two are closer than gap (a line of text).
func benchLabelYs(bms [3]float64, y func(float64) float64, gap float64) [3]float64 {
	var ys [3]float64
	idx := []int{0, 1, 2}
	for i, bm := range bms {
		ys[i] = y(bm)
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(ys[a], ys[b]) })
	for k := 1; k < 3; k++ {
		if ys[idx[k]]-ys[idx[k-1]] < gap {
			ys[idx[k]] = ys[idx[k-1]] + gap
		}
	}
	return ys
}

// formatNum writes a number with about four significant digits and no
// exponent for the values indicators take.
func formatNum(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "—"
	case a >= 1e15:
		return strconv.FormatFloat(v, 'g', 4, 64)
	case a >= 1e4:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return trimZeros(fmt.Sprintf("%.1f", v))
	case a >= 1:
		return trimZeros(fmt.Sprintf("%.2f", v))
	case a == 0:
		return "0"
	}
	return trimZeros(fmt.Sprintf("%.4f", v))
}

func trimZeros(s string) string {
	if !strings.Contains(s, ".") {
		return s
	}
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}
