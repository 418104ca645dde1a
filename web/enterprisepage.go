package web

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cleanprod/cleanprod/review"
	"github.com/cleanprod/cleanprod/scoring"
)

// enterprisePageData is what templates/enterprise.html shows: an
// enterprise's own page, for its environmental officer.
type enterprisePageData struct {
	clock
	Generated time.Time
	Role      Role
	E         EnterpriseDetail
	// Live is the assessment on the policy's window (nil before the first
	// evaluation); Groups its indicators by class.
	Live   *AssessmentDTO
	Groups []indicatorGroup
	// Plan is the recommended measures by cost tier; Benefits their
	// yearly benefits by measure id.
	Plan     []PlanTier
	Benefits map[string]benefitView
	// Declarations and Cases are nil when the server keeps none (no store).
	Kept         bool
	Declarations []DeclarationDTO
	Pending      int
	Cases        []CaseDTO
	Provisional  Provisional
	// Drill is what the code and level badges open to.
	Drill drill
	x     explainer
}

// indicatorGroup is a first-level class with its indicators' results.
type indicatorGroup struct {
	NameZH, NameEN string
	Weight         float64
	Rows           []IndicatorDTO
}

// enterprisePage renders GET /enterprises/:id.
func (s *server) enterprisePage(c *gin.Context) {
	id := c.Param("id")
	ent, _ := s.registry(c).Enterprise(id)
	v, err := s.view(c, id, time.Time{})
	if err != nil {
		s.fail(c, err)
		return
	}
	d, err := s.detail(c, ent, v)
	if err != nil {
		s.fail(c, err)
		return
	}
	snap := s.snapshot(c)
	std, now := snap.Standard, s.now()
	pg := enterprisePageData{clock: clock{localZone(std.UTCOffset)}, Generated: now, Role: principal(c).Role, E: d,
		Benefits: map[string]benefitView{}, Provisional: provisionalOf(std)}
	for i := range d.Assessments {
		if d.Assessments[i].Window == snap.Policy.Window {
			pg.Live = &d.Assessments[i]
		}
	}
	if pg.Live != nil {
		for _, g := range std.Groups {
			ig := indicatorGroup{NameZH: g.NameZH, NameEN: g.NameEN, Weight: g.Weight}
			for _, ind := range g.Indicators {
				ig.Rows = append(ig.Rows, pg.Live.Indicators[ind.Index])
			}
			pg.Groups = append(pg.Groups, ig)
		}
	}
	pg.Plan = actionPlan(planIndicatorsOf(&d))
	for _, b := range d.Benefits {
		pg.Benefits[b.Solution] = benefitViewOf(b)
	}
	if s.Declarations != nil {
		pg.Kept = true
		ctx := c.Request.Context()
		rs, err := s.Declarations.Records(ctx, review.Filter{Enterprise: id})
		if err != nil {
			s.fail(c, err)
			return
		}
		pg.Declarations = declarationDTOs(std, rs, now)
		for _, r := range rs {
			if r.State == review.Submitted {
				pg.Pending++
			}
		}
		ks, err := s.Declarations.Cases(ctx, review.CaseFilter{Enterprise: id, Now: now})
		if err != nil {
			s.fail(c, err)
			return
		}
		for _, k := range ks {
			pg.Cases = append(pg.Cases, caseDTO(k, now, s.loc(c), false))
		}
		// Open cases first, overdue first among them.
		slices.SortStableFunc(pg.Cases, func(a, b CaseDTO) int {
			ca, cb := a.State == string(review.CaseClosed), b.State == string(review.CaseClosed)
			switch {
			case ca != cb && ca:
				return 1
			case ca != cb:
				return -1
			case a.Overdue != b.Overdue && a.Overdue:
				return -1
			case a.Overdue != b.Overdue:
				return 1
			}
			return b.OpenedAt.Compare(a.OpenedAt)
		})
	}
	pg.x = explainer{std, snap.Policy}
	var live *scoring.Assessment
	if r, ok := snap.Result(id); ok {
		live, _ = r.Assessment(snap.Policy.Window)
	}
	pg.Drill = drillOf(pg.x, id, "", d.EnterpriseSummary, live, pg.Cases)
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, "enterprise.html", &pg); err != nil {
		s.fail(c, fmt.Errorf("render enterprise page: %w", err))
		return
	}
	c.Header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
	c.Header("Cache-Control", "no-store")
	c.Data(http.StatusOK, "text/html; charset=utf-8", b.Bytes())
}

// Qualitative reports whether an indicator result is of a qualitative
// indicator (its level texts stand for the benchmarks).
func (pg *enterprisePageData) Qualitative(r IndicatorDTO) bool {
	return r.Kind == string(scoring.Qualitative)
}

// indicatorDrill is what an indicator's level opens to on the page.
type indicatorDrill struct {
	IndicatorDTO
	Text    Text // its value against the benchmark of the level above
	History string
	Case    *caseLink // the case not closed opened on it (nil: none)
}

// IndicatorDrill is the drill-down of an indicator below Level I or short
// of data (nil for one at Level I or not applicable: nothing to explain).
func (pg *enterprisePageData) IndicatorDrill(r IndicatorDTO) *indicatorDrill {
	if r.Status == string(scoring.NotApplicable) || levelFromDTO(r.Level) == scoring.LevelI {
		return nil
	}
	d := &indicatorDrill{IndicatorDTO: r, Text: pg.x.indicatorCause(r),
		History: historyURL(pg.E.ID, r.ID)}
	for _, k := range pg.Cases {
		if k.State != string(review.CaseClosed) && k.Indicator == r.ID {
			d.Case = &caseLink{k.ID, k.StateZH, k.Overdue}
			break
		}
	}
	return d
}

// benefitView is a measure's benefit as the page's table shows it.
type benefitView struct {
	BenefitDTO
	Cells []benefitCell
}

// benefitCell is one amount of a benefit: its value, or insufficient
// data when the measure changes the amount and the data cannot tell.
type benefitCell struct {
	Key, Label   string
	Value        *float64
	Insufficient bool
}

func benefitViewOf(b BenefitDTO) benefitView {
	lacks := func(amount scoring.Amount) bool {
		return slices.ContainsFunc(b.Missing, func(m string) bool { return strings.HasPrefix(m, string(amount)+":") })
	}
	energy, water, co2 := lacks(scoring.AmountEnergy), lacks(scoring.AmountFreshWater), lacks(scoring.AmountCO2)
	return benefitView{BenefitDTO: b, Cells: []benefitCell{
		{"electricity_kwh", "节电 electricity, kWh/年 a year", b.ElectricityKWh, energy},
		{"natural_gas_m3", "天然气 gas, m³/年 a year", b.NaturalGasM3, energy},
		{"energy_kgce", "节能 energy, kgce/年 a year", b.EnergyKgce, energy},
		{"fresh_water_m3", "节水 fresh water, m³/年 a year", b.FreshWaterM3, water},
		{"co2_t", "减碳 CO₂, t/年 a year", b.CO2Tonnes, co2},
		{"yuan", "节约费用 cost saved, 元/年 yuan a year", b.Yuan, b.Insufficient},
	}}
}
