package web

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/store"
)

// PointReader reads the points the scorer stored (measurements
// "indicator", "score" and "event"); *store.Bolt and *store.Influx
// implement it.
type PointReader interface {
	Points(ctx context.Context, measurement string, tags map[string]string, from, to time.Time) ([]store.Point, error)
}

// asOfLookback is how far before the asked time resultAt looks for the
// last stored evaluation.
const asOfLookback = 7 * 24 * time.Hour

// resultAt rebuilds an enterprise's result as of at from the points the
// scorer stored (its last evaluation at or before at, within a week): per
// window the index, level, score and completeness, per indicator the
// status, value, level, score, weight, coverage and source, the code and
// the next audit due; lagging indicators are matched to lib again. What
// points do not keep (reasons, evidence, code reasons, stale meter ids) is
// empty. It fails with a 404 apiError when nothing was stored.
func resultAt(ctx context.Context, pr PointReader, std *scoring.Standard, pol *scoring.Policy, lib *scoring.Library, enterprise string, at time.Time) (resultView, error) {
	end := at.Add(time.Nanosecond)
	scores, err := pr.Points(ctx, scoring.MeasurementScore, map[string]string{"enterprise": enterprise, "window": pol.Window}, at.Add(-asOfLookback), end)
	if err != nil {
		return resultView{}, fmt.Errorf("read scores of %s: %w", enterprise, err)
	}
	if len(scores) == 0 {
		return resultView{}, errorf(http.StatusNotFound, codeNotEvaluated, "no evaluation of %s stored in the week before %s", enterprise, at.UTC().Format(time.RFC3339))
	}
	t := scores[len(scores)-1].Time
	scores, err = pr.Points(ctx, scoring.MeasurementScore, map[string]string{"enterprise": enterprise}, t, t.Add(time.Nanosecond))
	if err != nil {
		return resultView{}, fmt.Errorf("read scores of %s: %w", enterprise, err)
	}
	inds, err := pr.Points(ctx, scoring.MeasurementIndicator, map[string]string{"enterprise": enterprise}, t, t.Add(time.Nanosecond))
	if err != nil {
		return resultView{}, fmt.Errorf("read indicators of %s: %w", enterprise, err)
	}
	res := &scoring.Result{Enterprise: enterprise, Time: t, Assessments: make([]scoring.Assessment, len(std.Windows))}
	v := resultView{res: res, valued: make([][]bool, len(std.Windows)), asOf: true}
	winIdx := map[string]int{}
	for wi, w := range std.Windows {
		winIdx[w.Name] = wi
		a := &res.Assessments[wi]
		a.Window, a.From, a.To = w.Name, t.Add(-w.Length), t
		a.Indicators = make([]scoring.IndicatorResult, len(std.Indicators))
		for ii, ind := range std.Indicators {
			a.Indicators[ii] = scoring.IndicatorResult{ID: ind.ID, Unit: ind.Unit, Status: scoring.Insufficient, Reason: "not stored"}
		}
		v.valued[wi] = make([]bool, len(std.Indicators))
	}
	for _, p := range scores {
		wi, ok := winIdx[p.Tags["window"]]
		if !ok {
			continue
		}
		a := &res.Assessments[wi]
		a.Y = [3]float64{num(p, "y_i"), num(p, "y_ii"), num(p, "y_iii")}
		a.Level, a.Score, a.Completeness = scoring.Level(num(p, "level")), num(p, "score"), num(p, "completeness")
		a.Totals = scoring.TotalsFromFields(std, p.Fields)
		if p.Tags["window"] == pol.Window {
			res.Code = scoring.Code(text(p, "code"))
			if due := num(p, "next_audit_due"); due > 0 {
				res.NextAuditDue = time.Unix(int64(due), 0).UTC()
			}
		}
	}
	for _, p := range inds {
		wi, ok := winIdx[p.Tags["window"]]
		ind, ok2 := std.Indicator(p.Tags["indicator"])
		if !ok || !ok2 {
			continue
		}
		r := &res.Assessments[wi].Indicators[ind.Index]
		r.Status, r.Reason = scoring.Status(text(p, "status")), ""
		r.Level, r.Score, r.Weight = scoring.Level(num(p, "level")), num(p, "score"), num(p, "weight")
		r.Coverage, r.Source = num(p, "coverage"), text(p, "source")
		if val, ok := p.Fields["value"]; ok {
			r.Value, v.valued[wi][ind.Index] = toFloat(val), true
		}
	}
	if wi, ok := winIdx[pol.Window]; ok {
		res.Lagging = scoring.LaggingIndicators(std, &res.Assessments[wi], lib)
	}
	return v, nil
}

func num(p store.Point, k string) float64 { return toFloat(p.Fields[k]) }

func toFloat(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case int64:
		return float64(x)
	case int:
		return float64(x)
	}
	return 0
}

func text(p store.Point, k string) string {
	s, _ := p.Fields[k].(string)
	return s
}
