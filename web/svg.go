package web

import (
	"fmt"
	"html"
	"html/template"
	"math"
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
	chartW, chartH                 = 680.0, 210.0
	chartL, chartR, chartT, chartB = 62.0, 70.0, 12.0, 28.0
)

// levelColours are the benchmark lines of Level I, II and III.
var levelColours = [3]string{"#1a7f37", "#9a6700", "#cf222e"}

// trendSVG draws an indicator's stored values over [from, to] with its
// Level I/II/III benchmarks as an inline SVG (no script, no external
// reference), so the report stays self-contained and prints as drawn.
func trendSVG(series []chartPoint, ind *scoring.Indicator, from, to time.Time) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="100%%" role="img" aria-label="%s">`,
		chartW, chartH, html.EscapeString(ind.NameEN+" trend"))
	fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="#fafbfc" stroke="#d0d7de"/>`,
		chartL, chartT, chartW-chartL-chartR, chartH-chartT-chartB)
	if len(series) < 2 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle" font-size="13" fill="#57606a">期内存储的数值不足 · fewer than two stored values in the period</text></svg>`,
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

	// Benchmarks.
	for i, bm := range ind.Benchmarks {
		yy := y(bm)
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="5 4" stroke-width="1"/>`,
			chartL, chartW-chartR, yy, yy, levelColours[i])
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" font-size="11" fill="%s">%s %s</text>`,
			chartW-chartR+4, yy+4, levelColours[i], []string{"I", "II", "III"}[i], html.EscapeString(formatNum(bm)))
	}
	// Axes labels.
	fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" font-size="11" text-anchor="end" fill="#57606a">%s</text>`, chartL-4, y(hi-pad)+4, html.EscapeString(formatNum(hi-pad)))
	fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" font-size="11" text-anchor="end" fill="#57606a">%s</text>`, chartL-4, y(lo+pad)+4, html.EscapeString(formatNum(lo+pad)))
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="11" fill="#57606a">%s</text>`, chartL, chartH-8, from.UTC().Format("2006-01-02 15:04Z"))
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="11" text-anchor="end" fill="#57606a">%s</text>`, chartW-chartR, chartH-8, to.UTC().Format("2006-01-02 15:04Z"))
	if ind.Unit != "" {
		fmt.Fprintf(&b, `<text x="4" y="%.0f" font-size="11" fill="#57606a">%s</text>`, chartT+10, html.EscapeString(ind.Unit))
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

// formatNum writes a number with about four significant digits and no
// exponent for the values indicators take.
func formatNum(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "—"
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
