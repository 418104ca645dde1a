package scoring

import (
	"encoding/json"

	"github.com/cleanprod/cleanprod/store"
)

// Measurements written to the Sink.
const (
	// MeasurementIndicator: one point per enterprise, window and indicator;
	// tags enterprise, window, indicator; fields status, level (0-4),
	// score, weight, coverage, source, and value when the indicator has
	// one.
	MeasurementIndicator = "indicator"
	// MeasurementScore: one point per enterprise and window; tags
	// enterprise, window; fields y_i, y_ii, y_iii, level (0-4), score,
	// completeness, the window totals as total_<id> (Assessment.Totals;
	// TotalsFromFields reads them back); on the policy's window also code
	// ("" while the enterprise has none), next_audit_due (Unix seconds;
	// absent without a code) and stale_meters.
	MeasurementScore = "score"
	// MeasurementEvent: one point per event; tags enterprise, kind,
	// indicator, meter (empty ones absent); fields resolved, reason,
	// window, and old_code, new_code, old_level, new_level, old_value,
	// new_value where they apply; a code_change also reasons (the new
	// code's, as a JSON array of Reason).
	MeasurementEvent = "event"
)

// appendPoints appends an enterprise's indicator and score points.
func appendPoints(ps []store.Point, std *Standard, codeWindow int, res *Result) []store.Point {
	for wi := range res.Assessments {
		a := &res.Assessments[wi]
		f := map[string]any{
			"y_i": a.Y[0], "y_ii": a.Y[1], "y_iii": a.Y[2],
			"level": int64(a.Level), "score": a.Score, "completeness": a.Completeness,
		}
		totalFields(f, a.Totals)
		if wi == codeWindow {
			f["code"] = string(res.Code)
			if !res.NextAuditDue.IsZero() {
				f["next_audit_due"] = res.NextAuditDue.Unix()
			}
			f["stale_meters"] = int64(len(res.StaleMeters))
		}
		ps = append(ps, store.Point{Measurement: MeasurementScore, Time: res.Time,
			Tags: map[string]string{"enterprise": res.Enterprise, "window": a.Window}, Fields: f})
		for i := range a.Indicators {
			r := &a.Indicators[i]
			f := map[string]any{
				"status": string(r.Status), "level": int64(r.Level), "score": r.Score,
				"weight": r.Weight, "coverage": r.Coverage, "source": r.Source,
			}
			if r.HasValue() {
				f["value"] = r.Value
			}
			ps = append(ps, store.Point{Measurement: MeasurementIndicator, Time: res.Time,
				Tags: map[string]string{"enterprise": res.Enterprise, "window": a.Window, "indicator": std.Indicators[i].ID}, Fields: f})
		}
	}
	return ps
}

// EventPoint converts an event to a point of measurement "event".
func EventPoint(ev Event) store.Point {
	f := map[string]any{"resolved": ev.Resolved, "reason": ev.Reason, "window": ev.Window}
	switch ev.Kind {
	case EventCodeChange:
		f["old_code"], f["new_code"] = string(ev.OldCode), string(ev.NewCode)
		f["new_level"] = int64(ev.NewLevel)
		if len(ev.Reasons) > 0 {
			if b, err := json.Marshal(ev.Reasons); err == nil {
				f["reasons"] = string(b)
			}
		}
	case EventLevelDrop:
		f["old_level"], f["new_level"], f["new_value"] = int64(ev.OldLevel), int64(ev.NewLevel), ev.NewValue
	case EventWorsening:
		f["old_value"], f["new_value"] = ev.OldValue, ev.NewValue
	case EventRestrictiveFail:
		f["new_level"], f["new_value"] = int64(ev.NewLevel), ev.NewValue
	case EventExceedance:
		f["old_value"], f["new_value"] = ev.OldValue, ev.NewValue
	}
	return store.Point{Measurement: MeasurementEvent, Time: ev.Time,
		Tags:   map[string]string{"enterprise": ev.Enterprise, "kind": string(ev.Kind), "indicator": ev.Indicator, "meter": ev.Meter},
		Fields: f}
}

// EventFromPoint converts a point of measurement "event", as written by
// the engine and read back from the store, to an Event (for Restore).
func EventFromPoint(p store.Point) (Event, bool) {
	if p.Measurement != MeasurementEvent {
		return Event{}, false
	}
	ev := Event{Time: p.Time, Enterprise: p.Tags["enterprise"], Kind: EventKind(p.Tags["kind"]),
		Indicator: p.Tags["indicator"], Meter: p.Tags["meter"]}
	str := func(k string) string { v, _ := p.Fields[k].(string); return v }
	num := func(k string) float64 { v, _ := p.Fields[k].(float64); return v }
	lvl := func(k string) Level {
		switch v := p.Fields[k].(type) {
		case int64:
			return Level(v)
		case float64:
			return Level(v)
		}
		return NoLevel
	}
	ev.Resolved, _ = p.Fields["resolved"].(bool)
	ev.Reason, ev.Window = str("reason"), str("window")
	ev.OldCode, ev.NewCode = Code(str("old_code")), Code(str("new_code"))
	ev.OldLevel, ev.NewLevel = lvl("old_level"), lvl("new_level")
	ev.OldValue, ev.NewValue = num("old_value"), num("new_value")
	if s := str("reasons"); s != "" {
		// Reasons the store mangled are left out, not fatal: the code
		// itself still restores.
		var rs []Reason
		if json.Unmarshal([]byte(s), &rs) == nil {
			ev.Reasons = rs
		}
	}
	return ev, ev.Enterprise != "" && ev.Kind != ""
}
