package web

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/cleanprod/cleanprod/scoring"
)

// StandardDTO is the indicator standard and code policy in force. Every
// number carries src: tags of Sources, "estimate" or "unverified".
type StandardDTO struct {
	ID         string            `json:"id"`
	NameZH     string            `json:"name_zh"`
	NameEN     string            `json:"name_en"`
	File       string            `json:"file"`
	Industries []string          `json:"industries"`
	Src        []string          `json:"src"`
	Sources    map[string]string `json:"sources"` // source tag -> citation
	Method     MethodDTO         `json:"method"`
	Windows    []WindowDTO       `json:"windows"`
	Groups     []GroupDTO        `json:"groups"`
	Factors    []FactorDTO       `json:"factors"`
	Limits     []LimitDTO        `json:"limits"`
	Policy     PolicyDTO         `json:"policy"`
}

// MethodDTO describes the grading method.
type MethodDTO struct {
	Description                    string  `json:"description"`
	LevelIRequiresNonRestrictiveII bool    `json:"level_i_requires_nonrestrictive_ii"`
	MinCoverage                    float64 `json:"min_coverage"`
	UTCOffsetHours                 float64 `json:"utc_offset_hours"`
}

// WindowDTO is a rolling window.
type WindowDTO struct {
	Name          string   `json:"name"`
	LengthSeconds float64  `json:"length_seconds"`
	BucketSeconds float64  `json:"bucket_seconds"`
	Src           []string `json:"src"`
}

// GroupDTO is an indicator group with its indicators.
type GroupDTO struct {
	ID         string         `json:"id"`
	NameZH     string         `json:"name_zh"`
	NameEN     string         `json:"name_en"`
	Weight     float64        `json:"weight"`
	Src        []string       `json:"src"`
	Indicators []IndicatorDef `json:"indicators"`
}

// IndicatorDef is an indicator's definition.
type IndicatorDef struct {
	IndicatorDTO
	Formula          string   `json:"formula,omitempty"`
	IndicatorWeight  float64  `json:"indicator_weight"` // within its group
	MinCoverage      float64  `json:"min_coverage,omitempty"`
	AppliesIfMetered []string `json:"applies_if_metered,omitempty"`
}

// FactorDTO is a conversion or emission factor.
type FactorDTO struct {
	ID       string             `json:"id"`
	Unit     string             `json:"unit"`
	Value    *float64           `json:"value"` // null for regional factors
	ByRegion []RegionalValueDTO `json:"by_region,omitempty"`
	Fallback string             `json:"fallback,omitempty"`
	Src      []string           `json:"src"`
	Note     string             `json:"note,omitempty"`
}

// RegionalValueDTO is a factor's value for a region and year.
type RegionalValueDTO struct {
	Region string   `json:"region"`
	Year   int      `json:"year"`
	Value  float64  `json:"value"`
	Src    []string `json:"src"`
}

// LimitDTO is a regulatory concentration limit.
type LimitDTO struct {
	ID       string   `json:"id"`
	Quantity string   `json:"quantity"`
	Unit     string   `json:"unit"`
	Value    float64  `json:"value"`
	Src      []string `json:"src"`
	Note     string   `json:"note,omitempty"`
}

// PolicyDTO is the dynamic-code policy.
type PolicyDTO struct {
	ID                 string        `json:"id"`
	File               string        `json:"file"`
	Src                []string      `json:"src"`
	Window             string        `json:"window"`
	Baseline           string        `json:"baseline"`
	MinCompleteness    float64       `json:"min_completeness"`
	LastAuditIndicator string        `json:"last_audit_indicator,omitempty"`
	Codes              []CodeSpecDTO `json:"codes"` // best first
	Rules              []RuleDTO     `json:"rules"` // first match wins
	StaleAfterSeconds  float64       `json:"stale_after_seconds"`
}

// CodeSpecDTO is a code and the audit interval it implies.
type CodeSpecDTO struct {
	Code                string `json:"code"`
	AuditIntervalMonths int    `json:"audit_interval_months"`
}

// RuleDTO assigns a code when any of its conditions holds.
type RuleDTO struct {
	Code    string   `json:"code"`
	WhenAny []string `json:"when_any"`
}

const methodText = "Comprehensive evaluation index of the national cleaner-production indicator-system guideline (2013): Y_g = Σ group weight × Σ indicator weight × membership(level g), cumulative 0/100 membership. Level I needs Y_I ≥ 85 and every restrictive indicator at Level I; Level II needs Y_II ≥ 85 and every restrictive indicator at Level II or better; Level III needs Y_III = 100. A continuous 0-100 score orders enterprises within a level."

func standardOf(std *scoring.Standard, pol *scoring.Policy) StandardDTO {
	d := StandardDTO{ID: std.ID, NameZH: std.NameZH, NameEN: std.NameEN, File: std.File, Industries: nonNil(std.Industries),
		Src: nonNil(std.Src), Sources: std.Sources, Windows: []WindowDTO{}, Groups: []GroupDTO{}, Factors: []FactorDTO{}, Limits: []LimitDTO{},
		Method: MethodDTO{Description: methodText, LevelIRequiresNonRestrictiveII: std.LevelIRequiresNonRestrictiveII,
			MinCoverage: std.MinCoverage, UTCOffsetHours: std.UTCOffset.Hours()}}
	if d.Sources == nil {
		d.Sources = map[string]string{}
	}
	for _, w := range std.Windows {
		d.Windows = append(d.Windows, WindowDTO{Name: w.Name, LengthSeconds: w.Length.Seconds(), BucketSeconds: w.Bucket.Seconds(), Src: nonNil(w.Src)})
	}
	for _, g := range std.Groups {
		gd := GroupDTO{ID: g.ID, NameZH: g.NameZH, NameEN: g.NameEN, Weight: g.Weight, Src: nonNil(g.Src), Indicators: []IndicatorDef{}}
		for _, ind := range g.Indicators {
			gd.Indicators = append(gd.Indicators, IndicatorDef{IndicatorDTO: definitionOf(ind), Formula: ind.Formula,
				IndicatorWeight: ind.Weight, MinCoverage: ind.MinCoverage, AppliesIfMetered: ind.AppliesIfMetered})
		}
		d.Groups = append(d.Groups, gd)
	}
	for _, f := range std.Factors {
		fd := FactorDTO{ID: f.ID, Unit: f.Unit, Fallback: f.Fallback, Src: nonNil(f.Src), Note: f.Note}
		if !f.Regional() {
			fd.Value = f64(f.Value)
		}
		for _, rv := range f.ByRegion {
			fd.ByRegion = append(fd.ByRegion, RegionalValueDTO{Region: rv.Region, Year: rv.Year, Value: rv.Value, Src: nonNil(rv.Src)})
		}
		d.Factors = append(d.Factors, fd)
	}
	for _, l := range std.Limits {
		d.Limits = append(d.Limits, LimitDTO{ID: l.ID, Quantity: l.Quantity, Unit: l.Unit, Value: l.Value, Src: nonNil(l.Src), Note: l.Note})
	}
	d.Policy = PolicyDTO{ID: pol.ID, File: pol.File, Src: nonNil(pol.Src), Window: pol.Window, Baseline: pol.Baseline,
		MinCompleteness: pol.MinCompleteness, LastAuditIndicator: pol.LastAuditIndicator, Codes: []CodeSpecDTO{}, Rules: []RuleDTO{},
		StaleAfterSeconds: pol.StaleAfter.Seconds()}
	for _, c := range pol.Codes {
		d.Policy.Codes = append(d.Policy.Codes, CodeSpecDTO{Code: string(c.Code), AuditIntervalMonths: c.AuditIntervalMonths})
	}
	for _, r := range pol.Rules {
		rd := RuleDTO{Code: string(r.Code), WhenAny: []string{}}
		for _, w := range r.When {
			rd.WhenAny = append(rd.WhenAny, string(w))
		}
		d.Policy.Rules = append(d.Policy.Rules, rd)
	}
	return d
}

func (s *server) standard(c *gin.Context) {
	snap := s.snapshot(c)
	c.JSON(http.StatusOK, standardOf(snap.Standard, snap.Policy))
}
