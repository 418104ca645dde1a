package web

import (
	"net/url"

	"github.com/cleanprod/cleanprod/scoring"
)

// A badge's drill-down: the overview's and the enterprise page's code
// badges, levels and indicator levels open in place (<details>, so it
// needs no script and works with a keyboard and on touch) to the facts
// behind them, each with where to look further. The facts are the ones
// the API explains (ReasonDTO and its ReasonText); nothing here grades.

// drill is what a row's badges open to.
type drill struct {
	// Code holds the facts behind the code in force (the API's
	// code_reasons); Level those behind the level on the policy's window:
	// the level itself, then the restrictive indicators, exceedances and
	// a shortage of data that hold it down.
	Code, Level []cause
	// Case is the enterprise's most pressing case not closed, unless a
	// code's cause links it already (nil: none).
	Case *caseLink
}

// cause is one fact with its links ("" none): the indicator's row on the
// enterprise's page, its history (JSON) and the case opened on it.
type cause struct {
	ReasonDTO
	Page, History string
	Case          *caseLink
}

// caseLink is a case as a drill-down names it.
type caseLink struct {
	ID, StateZH string
	Overdue     bool
}

// drillOf gathers the drill-down of enterprise id: sum's code reasons,
// the reasons of a (the live assessment on the policy's window; nil
// before the first evaluation) and the enterprise's cases not closed,
// most pressing first. page is the address of the indicators' rows
// ("" on the enterprise page itself, whose rows are on the same page).
func drillOf(x explainer, id, page string, sum EnterpriseSummary, a *scoring.Assessment, cases []CaseDTO) drill {
	var d drill
	open := func(c CaseDTO) bool { return c.State != "closed" }
	for _, c := range cases {
		if open(c) {
			d.Case = &caseLink{c.ID, c.StateZH, c.Overdue}
			break
		}
	}
	link := func(r ReasonDTO) cause {
		c := cause{ReasonDTO: r}
		if r.Indicator == nil {
			return c
		}
		ind := *r.Indicator
		c.Page = page + "#ind-" + ind
		c.History = historyURL(id, ind)
		for _, k := range cases {
			if open(k) && k.Indicator == ind {
				c.Case = &caseLink{k.ID, k.StateZH, k.Overdue}
				break
			}
		}
		return c
	}
	for _, r := range sum.CodeReasons {
		c := link(r)
		if c.Case != nil && d.Case != nil && c.Case.ID == d.Case.ID {
			d.Case = nil // the cause names it
		}
		d.Code = append(d.Code, c)
	}
	if a == nil {
		return d
	}
	// A restrictive indicator below Level III is also below Level II: the
	// worse fact says it.
	failing := map[string]bool{}
	rs := scoring.Reasons(x.std, x.pol, a)
	for _, r := range rs {
		if r.Kind == scoring.CondRestrictiveFail {
			failing[r.Indicator] = true
		}
	}
	for _, r := range x.reasons(reasonsOf(rs)) {
		if r.Kind == string(scoring.CondRestrictiveBelowII) && failing[deref(r.Indicator)] {
			continue
		}
		d.Level = append(d.Level, link(r))
	}
	return d
}

// indicatorCause says why an indicator's result is what it is, against
// its benchmarks, for the enterprise page's indicator drill-down.
func (x explainer) indicatorCause(r IndicatorDTO) Text {
	switch r.Status {
	case "not_applicable":
		return Text{"不适用于本企业", "not applicable to this enterprise"}
	case "insufficient":
		zh, en := "数据不足，不计分", "insufficient data: no score"
		if r.Reason != "" {
			en += " (" + r.Reason + ")"
		}
		return Text{zh, en}
	}
	lv := levelFromDTO(r.Level)
	if r.Benchmarks == nil || r.Value == nil {
		w := levelWords(lv)
		return Text{"申报等级：" + w.ZH, "declared: " + w.EN}
	}
	ind, ok := x.std.Indicator(r.ID)
	if !ok {
		return Text{}
	}
	got, w := valueText(r.Value, r.Unit), levelWords(lv)
	t := Text{"实测 " + got + "，属" + w.ZH, "measured " + got + ": " + w.EN}
	if lv == scoring.LevelI {
		return t
	}
	next := scoring.LevelI
	switch lv {
	case scoring.LevelIII:
		next = scoring.LevelII
	case scoring.BelowIII:
		next = scoring.LevelIII
	}
	nw := levelWords(next)
	b := x.benchmarkText(r.ID, ind.Benchmark(next), r.Unit)
	t.ZH += "；" + nw.ZH + "基准值 " + b
	t.EN += "; " + nw.EN + " benchmark " + b
	if r.Restrictive && (lv == scoring.BelowIII || lv == scoring.LevelIII) {
		t.ZH += "（限定性指标）"
		t.EN += " (restrictive)"
	}
	return t
}

// historyURL is the address of an indicator's history (JSON).
func historyURL(enterprise, indicator string) string {
	return "/api/v1/enterprises/" + url.PathEscape(enterprise) + "/indicators/" + url.PathEscape(indicator) + "/history"
}
