package web

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cleanprod/cleanprod/scoring"
)

// TestExplainedCodes: the reasons of a code keep their ids (kind) and say
// the same in plain Chinese and English beside them (reason_text), with
// the standard's indicator names, the level names of the audit practice
// and the benchmark; a pending change says the date it takes effect and
// the hold behind it; a level that is not graded says why, and a score
// resting on less data than the policy's min_completeness says so, in the
// API, on the overview and in the report.
//
// As in TestCodeReasonsInAPI, entB is red, below Level III with its
// restrictive VOC per m² (单位涂装面积VOCs排放量) above the Level III
// benchmark of 45 g/m²; with red kept for exceedances only its candidate
// is yellow from fixtureNow (2026-06-01 10:00 UTC+8), which the shipped
// upgrade hold (30 days, 2 evaluations) turns yellow on 2026-07-01. The
// fixture's readings cover fewer days than the official window (365
// days), so that window is not graded for lack of data.
func TestExplainedCodes(t *testing.T) {
	f := newFixture(t)
	f.redWhen(t, "when_any: [exceedance]")
	list := decode[EnterpriseList](t, f.do(t, "GET", "/api/v1/enterprises", supervisorToken, ""))
	var b *EnterpriseSummary
	for i := range list.Enterprises {
		if list.Enterprises[i].ID == entB {
			b = &list.Enterprises[i]
		}
	}
	if b == nil || len(b.CodeReasons) != 2 {
		t.Fatalf("list: %s with two reasons not found: %+v", entB, b)
	}
	// The ids integrators key on stay; the words come beside them.
	y := *b.CodeReasons[0].Value
	voc := *b.CodeReasons[1].Value
	want := []struct{ kind, zh, en string }{
		{"below_iii", fmt.Sprintf("未达三级（国内一般）：综合评价指数 Y_III 为 %.2f，三级要求全部指标达到三级基准值（Y_III = 100）", y),
			fmt.Sprintf("below Level III (domestic general): evaluation index Y_III is %.2f; Level III needs every indicator at its Level III benchmark (Y_III = 100)", y)},
		{"restrictive_fail", "限定性指标“单位涂装面积VOCs排放量”未达三级基准值，须整改：实测 " + formatNum(voc) + " g/m²，三级（国内一般）基准值 ≤ 45 g/m²",
			"restrictive indicator VOC emission per e-coated area misses its Level III benchmark and must be rectified: measured " + formatNum(voc) + " g/m², Level III (domestic general) benchmark ≤ 45 g/m²"},
	}
	for i, w := range want {
		r := b.CodeReasons[i]
		if r.Kind != w.kind || r.ReasonText.ZH != w.zh || r.ReasonText.EN != w.en {
			t.Errorf("reason %d: got %s %+v, want %s {%s %s}", i, r.Kind, r.ReasonText, w.kind, w.zh, w.en)
		}
		if r.TextZH == "" || r.TextEN == "" {
			t.Errorf("reason %d: the scorer's texts are gone: %+v", i, r)
		}
	}
	p := b.PendingChange
	if p == nil {
		t.Fatal("no pending change")
	}
	if wantZH := "自 2026-06-01 起符合黄码条件，若持续保持，将于 2026-07-01 由红码转为黄码（升级须连续保持 30 天并经 2 次评价）"; p.Note.ZH != wantZH {
		t.Errorf("pending note: got %q, want %q", p.Note.ZH, wantZH)
	}
	if wantEN := "meets the conditions of yellow since 2026-06-01; if that holds, turns from red to yellow on 2026-07-01 (an upgrade must hold for 30 days and 2 evaluations)"; p.Note.EN != wantEN {
		t.Errorf("pending note: got %q, want %q", p.Note.EN, wantEN)
	}
	if len(p.Reasons) != 1 || !strings.HasPrefix(p.Reasons[0].ReasonText.ZH, "限定性指标“单位涂装面积VOCs排放量”未达二级基准值：") ||
		!strings.Contains(p.Reasons[0].ReasonText.ZH, "二级（国内先进）基准值 ≤ 35 g/m²") {
		t.Errorf("pending reasons: %+v, want VOC per m² against the Level II benchmark 35 g/m²", p.Reasons)
	}

	// Every enterprise: the official window is not graded for lack of
	// data, and says so with its completeness; so is its score.
	for _, e := range list.Enterprises {
		o := e.Official
		if o == nil || o.Level != nil || o.Completeness == nil || *o.Completeness >= 0.8 {
			t.Fatalf("%s: official %+v, want not graded below 80 %% completeness", e.ID, o)
		}
		pct := fmt.Sprintf("%.0f%%", 100**o.Completeness)
		if o.LevelNote == nil || o.LevelNote.ZH != "未评级：近 365 天评价期（official）内仅 "+pct+" 的计量指标数据充足，评级至少需要 80%" {
			t.Errorf("%s: official level note %+v", e.ID, o.LevelNote)
		}
		if o.ScoreNote == nil || !strings.Contains(o.ScoreNote.ZH, "仅供参考") || !strings.Contains(o.ScoreNote.EN, "indicative only") {
			t.Errorf("%s: official score note %+v, want the score marked indicative", e.ID, o.ScoreNote)
		}
		// The live window has enough data: no notes.
		if e.Level != nil && (e.LevelNote != nil || (e.Completeness != nil && *e.Completeness >= 0.8 && e.ScoreNote != nil)) {
			t.Errorf("%s: live level %v with notes %+v %+v", e.ID, *e.Level, e.LevelNote, e.ScoreNote)
		}
	}

	// Events say what they mean beside their kind: entB's first code.
	evs := decode[EventList](t, f.do(t, "GET", "/api/v1/events?enterprise="+entB+"&kind=code_change", supervisorToken, ""))
	if len(evs.Events) == 0 || evs.Events[len(evs.Events)-1].Kind != scoring.EventCodeChange ||
		evs.Events[len(evs.Events)-1].Text.ZH != "首次赋码：红码。依据："+want[0].zh+"；"+want[1].zh {
		t.Errorf("events: %+v, want entB's first code red with its reasons in words", evs.Events)
	}
	// The plant's VOC analyser exceeds its limit in some hours: the API
	// lists those hours by kind, each in words.
	ex := decode[EventList](t, f.do(t, "GET", "/api/v1/events?enterprise="+entB+"&kind=exceedance&from=2026-01-01&to=2026-12-31", supervisorToken, ""))
	if len(ex.Events) == 0 {
		t.Error("no exceedance events of entB's stack analyser")
	}
	for _, e := range ex.Events {
		if e.Kind != scoring.EventExceedance || e.NewValue <= e.OldValue || !strings.Contains(e.Text.ZH, e.Meter) {
			t.Errorf("exceedance event %+v", e)
		}
	}
	d := decode[EnterpriseDetail](t, f.do(t, "GET", "/api/v1/enterprises/"+entB, supervisorToken, ""))
	// The oldest code change among the recent events (an analyser's
	// exceedances may come before and after it).
	first := -1
	for i, e := range d.RecentEvents {
		if e.Kind == scoring.EventCodeChange {
			first = i // newest first: the last one seen is the oldest
		}
	}
	if first < 0 || d.RecentEvents[first].Text.EN != "first code: red. Because: "+want[0].en+"; "+want[1].en {
		t.Errorf("recent events: %+v, want entB's first code red with its reasons in words", d.RecentEvents)
	}

	page := f.do(t, "GET", "/", supervisorToken, "").Body.String()
	rep := f.do(t, "GET", "/api/v1/enterprises/"+entB+"/report", supervisorToken, "").Body.String()
	for name, body := range map[string]string{"overview": page, "report": rep} {
		for _, w := range []string{want[0].zh, want[1].zh, want[1].en, p.Note.ZH, "未评级：近 365 天评价期（official）", "仅供参考", "完整度 completeness"} {
			if !strings.Contains(body, htmlText(w)) {
				t.Errorf("%s: no %q", name, w)
			}
		}
		if strings.Contains(body, "below_iii:") {
			t.Errorf("%s shows a reason id as text", name)
		}
	}
}

// htmlText is s as html/template writes it in text.
func htmlText(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

// TestExplainExceedance: an analyser's hour above its limit reads with the
// meter, the hour's mean and the limit in both languages.
func TestExplainExceedance(t *testing.T) {
	std, err := scoring.DefaultStandard()
	if err != nil {
		t.Fatal(err)
	}
	x := explainer{std: std}
	got := x.event(scoring.Event{Kind: scoring.EventExceedance, Meter: "WW-OUT-COD", NewValue: 612.5, OldValue: 500})
	if got.ZH != "在线监测 WW-OUT-COD 小时均值 612.5 超过限值 500（超标）" || got.EN != "analyser WW-OUT-COD: hourly mean 612.5 above its limit 500" {
		t.Errorf("got %+v", got)
	}
}
