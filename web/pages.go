package web

import (
	"embed"
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/cleanprod/cleanprod/scoring"
)

// The page templates and their stylesheet are embedded: no build step,
// no files to deploy, and every page is one self-contained response.
//
//go:embed templates/*.html templates/*.css
var templateFS embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"num":         numText,
	"lvl":         levelText,
	"lvclass":     levelClass,
	"pct":         func(v float64) string { return formatNum(100*v) + "%" },
	"pctp":        func(v *float64) string { return ptrOr(v, func(x float64) string { return formatNum(100*x) + "%" }) },
	"fixed1":      func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"fixed1p":     func(v *float64) string { return ptrOr(v, func(x float64) string { return fmt.Sprintf("%.1f", x) }) },
	"code":        func(c *string) string { return ptrOr(c, func(s string) string { return s }) },
	"codeZH":      codeZH,
	"costZH":      costZH,
	"statusZH":    statusZH,
	"kindZH":      kindZH,
	"levelZH":     levelZH,
	"stateZH":     stateZH,
	"caseStateZH": caseStateZH,
	"causeZH":     causeZH,
	"needed":      neededText,
	"inc":         func(i int) int { return i + 1 },
	"qty":         qtyText,
	"unit":        unitText,
	"days":        func(from, to time.Time) string { return formatNum(math.Round(to.Sub(from).Hours() / 24)) },
	"css":         func() template.CSS { return template.CSS(stylesheet) },
}).ParseFS(templateFS, "templates/*.html"))

var stylesheet = mustRead("templates/page.css")

func mustRead(name string) string {
	b, err := templateFS.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func ptrOr[T any](p *T, f func(T) string) string {
	if p == nil {
		return "—"
	}
	return f(*p)
}

// numText formats a number, a *float64 (nil: "—") or any for templates.
func numText(v any) string {
	switch x := v.(type) {
	case float64:
		return formatNum(x)
	case *float64:
		return ptrOr(x, formatNum)
	case int:
		return fmt.Sprint(x)
	case nil:
		return "—"
	}
	return fmt.Sprint(v)
}

func levelText(l *string) string {
	if l == nil {
		return "—"
	}
	return *l
}

func levelClass(l *string) string {
	if l == nil {
		return "lv-none"
	}
	switch *l {
	case "I", "II", "III":
		return "lv-" + *l
	}
	return "lv-below"
}

// caseStateZH names a rectification case's state.
func caseStateZH(s string) string {
	return map[string]string{"open": "待受理", "acknowledged": "整改中", "plan_submitted": "方案待审", "closed": "已结案"}[s]
}

// stateZH names a declaration's review state.
func stateZH(s string) string {
	return map[string]string{"submitted": "待审", "accepted": "已通过", "rejected": "已驳回", "superseded": "已被替代"}[s]
}

func levelZH(l *string) string {
	if l == nil {
		return "未评级"
	}
	switch *l {
	case "I":
		return "一级"
	case "II":
		return "二级"
	case "III":
		return "三级"
	}
	return "三级以下"
}

func codeZH(c any) string {
	var s string
	switch x := c.(type) {
	case string:
		s = x
	case *string:
		if x != nil {
			s = *x
		}
	default:
		s = fmt.Sprint(c)
	}
	switch s {
	case "green":
		return "绿码"
	case "yellow":
		return "黄码"
	case "red":
		return "红码"
	}
	return "未赋码"
}

func costZH(c string) string {
	return map[string]string{"no": "无费", "low": "低费", "medium": "中费", "high": "高费"}[c]
}

func statusZH(s string) string {
	return map[string]string{"graded": "已评价", "not_applicable": "不适用", "insufficient": "数据不足"}[s]
}

func kindZH(k string) string {
	return map[string]string{"code_change": "赋码变化", "level_drop": "等级下降", "worsening": "指标恶化",
		"restrictive_fail": "限定性指标不达标", "stale": "仪表离线", "exceedance": "小时均值超标",
		"declaration_submitted": "申报待审", "declaration_accepted": "申报通过", "declaration_rejected": "申报驳回",
		"case_opened": "整改立案", "case_acknowledged": "整改受理", "case_plan_submitted": "整改方案提交", "case_plan_rejected": "整改方案退回",
		"case_closed": "整改结案", "case_reopened": "整改重开", "case_overdue": "整改逾期"}[k]
}

// clock formats times in the standard's local time for the pages.
type clock struct{ loc *time.Location }

// Date formats a time (or *time.Time; nil: "—") as a local date.
func (c clock) Date(t any) string { return c.format(t, "2006-01-02") }

// DateTime formats a time (or *time.Time) as local date and time.
func (c clock) DateTime(t any) string { return c.format(t, "2006-01-02 15:04 MST") }

// Due formats a deadline: one at local midnight (a deadline given as a
// date) as that date's end, 2026-06-20 24:00, not the next day's start.
func (c clock) Due(t any) string {
	var x time.Time
	switch v := t.(type) {
	case time.Time:
		x = v
	case *time.Time:
		if v != nil {
			x = *v
		}
	}
	if x.IsZero() {
		return "—"
	}
	l := x.In(c.loc)
	if l.Hour() == 0 && l.Minute() == 0 && l.Second() == 0 && l.Nanosecond() == 0 {
		return l.Add(-time.Nanosecond).Format("2006-01-02") + " 24:00 " + l.Format("MST")
	}
	return l.Format("2006-01-02 15:04 MST")
}

func (c clock) format(t any, layout string) string {
	switch x := t.(type) {
	case Date:
		return x.In(c.loc).Format(layout)
	case *Date:
		if x == nil {
			return "—"
		}
		return x.In(c.loc).Format(layout)
	case time.Time:
		if x.IsZero() {
			return "—"
		}
		return x.In(c.loc).Format(layout)
	case *time.Time:
		if x == nil || x.IsZero() {
			return "—"
		}
		return x.In(c.loc).Format(layout)
	}
	return "—"
}

func localZone(offset time.Duration) *time.Location {
	h := int(offset / time.Hour)
	name := fmt.Sprintf("UTC%+d", h)
	if offset%time.Hour != 0 {
		name = fmt.Sprintf("UTC%+.1f", offset.Hours())
	}
	return time.FixedZone(name, int(offset/time.Second))
}

// neededText says what a step must reach: "≤ 160 kgce/vehicle" (lower is
// better), "≥ 60 %" (higher is better), or the level's description of a
// qualitative indicator.
func neededText(s StepDTO) string {
	if s.Kind == string(scoring.Qualitative) {
		return s.NeededText
	}
	if s.Needed == nil {
		return "—"
	}
	op := "≤ "
	if s.Direction == string(scoring.HigherBetter) {
		op = "≥ "
	}
	return op + formatNum(*s.Needed) + " " + s.Unit
}

// qtyText formats a total (a *float64; nil: "—"): whole numbers with
// thousands separators from 10,000 up, else like num.
func qtyText(v *float64) string {
	if v == nil {
		return "—"
	}
	x := *v
	if math.IsNaN(x) || math.IsInf(x, 0) || math.Abs(x) < 1e4 || math.Abs(x) >= 1e18 {
		return formatNum(x)
	}
	digits := strconv.FormatInt(int64(math.Abs(math.Round(x))), 10)
	var b strings.Builder
	if x < 0 {
		b.WriteByte('-')
	}
	for i, c := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
