package web

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cleanprod/cleanprod/review"
	"github.com/cleanprod/cleanprod/scoring"
)

// overviewPage is what templates/overview.html renders.
type overviewPage struct {
	clock
	Generated   time.Time
	Evaluated   time.Time // the engine's latest evaluation
	Role        Role
	Enterprise  string // the token's enterprise (enterprise role)
	Total       int
	Codes       []share
	Levels      []share
	Rows        []EnterpriseSummary
	Regressions []regression
	// Pending counts the declarations that wait for review, in all and by
	// enterprise (those the token sees).
	Pending   int
	PendingBy []pendingCount
	// Cases are the rectification cases not closed that the token sees,
	// overdue first.
	Cases []caseRow
	// CaseOf is each enterprise's most pressing case of Cases (for its row).
	CaseOf map[string]caseRow
	// Drill is what each row's badges open to, by enterprise id.
	Drill       map[string]drill
	Nonce       string
	Window      string
	Provisional Provisional
	// MissingShards are the shards whose replica did not answer: their
	// enterprises show no result.
	MissingShards string
}

// share is a count and its share of the total, for the distribution bars.
type share struct {
	Key, Label, Class string
	Count             int
	Percent           float64
}

// pendingCount is an enterprise's declarations waiting for review.
type pendingCount struct {
	Name  string
	Count int
}

// regression is a recent event worth a supervisor's attention.
type regression struct {
	Event scoring.Event
	Name  string
	Text  Text // what it means, in words
}

// codeOrder ranks codes for the overview: worst first.
var codeOrder = map[string]int{"red": 0, "yellow": 1, "green": 2, "": 3}

func (s *server) overview(c *gin.Context) {
	snap := s.snapshot(c)
	p := principal(c)
	now := s.now()
	pg := overviewPage{clock: clock{localZone(snap.Standard.UTCOffset)}, Generated: now, Evaluated: snap.Time, Role: p.Role,
		Enterprise: p.Enterprise, Window: snap.Policy.Window, Provisional: provisionalOf(snap.Standard),
		MissingShards: joinInts(s.missingShards(c))}
	codes := map[string]int{}
	levels := map[string]int{}
	names := map[string]string{}
	live := map[string]*scoring.Assessment{}
	for _, ent := range s.registry(c).Enterprises {
		r, _ := snap.Result(ent.ID)
		if r != nil {
			if a, ok := r.Assessment(snap.Policy.Window); ok {
				live[ent.ID] = a
			}
		}
		sum := summaryOf(ent, snap.Standard, snap.Policy, resultView{res: r}, s.freshness(c, ent), now)
		// The distribution is the fleet's (counts only); the rows are
		// what the token may see.
		codes[deref(sum.Code)]++
		levels[levelName(levelOf(sum.Level))]++
		pg.Total++
		if p.Sees(ent.ID) {
			pg.Rows = append(pg.Rows, sum)
			names[ent.ID] = ent.Name
		}
	}
	slices.SortStableFunc(pg.Rows, func(a, b EnterpriseSummary) int {
		return cmp.Or(
			cmp.Compare(codeOrder[deref(a.Code)], codeOrder[deref(b.Code)]),
			cmp.Compare(levelRank(a.Level), levelRank(b.Level)),
			cmp.Compare(val(a.Score), val(b.Score)))
	})
	for _, c := range []struct{ key, label string }{{"red", "红码 red"}, {"yellow", "黄码 yellow"}, {"green", "绿码 green"}, {"", "未赋码 no code yet"}} {
		pg.Codes = append(pg.Codes, s.share(c.key, c.label, c.key, codes[c.key], pg.Total))
	}
	for _, l := range []struct{ key, label, class string }{{"I", "一级 I", "lv-I"}, {"II", "二级 II", "lv-II"}, {"III", "三级 III", "lv-III"},
		{"below III", "三级以下 below III", "lv-below"}, {"not graded", "未评级 not graded", "lv-none"}} {
		pg.Levels = append(pg.Levels, s.share(l.key, l.label, l.class, levels[l.key], pg.Total))
	}
	if s.Points != nil {
		evs, err := s.readEvents(c, p.Enterprise, "", now.Add(-7*24*time.Hour), now.Add(time.Nanosecond), 1000)
		if err != nil {
			s.fail(c, err)
			return
		}
		for _, ev := range evs {
			if len(pg.Regressions) == 15 {
				break
			}
			if ev.Resolved || !p.Sees(ev.Enterprise) {
				continue
			}
			switch ev.Kind {
			case scoring.EventLevelDrop, scoring.EventWorsening, scoring.EventRestrictiveFail:
			case scoring.EventCodeChange:
				if ev.OldCode == "" || codeOrder[string(ev.NewCode)] >= codeOrder[string(ev.OldCode)] {
					continue
				}
			default:
				continue
			}
			pg.Regressions = append(pg.Regressions, regression{Event: ev, Name: names[ev.Enterprise], Text: explainer{snap.Standard, snap.Policy}.event(ev)})
		}
	}
	if s.Declarations != nil {
		recs, err := s.Declarations.Records(c.Request.Context(), review.Filter{Enterprise: p.Enterprise, State: review.Submitted})
		if err != nil {
			s.fail(c, err)
			return
		}
		by := map[string]int{}
		for _, r := range recs {
			if p.Sees(r.Declaration.Enterprise) {
				pg.Pending++
				by[r.Declaration.Enterprise]++
			}
		}
		for _, id := range slices.Sorted(maps.Keys(by)) {
			name := id
			if ent, ok := s.registry(c).Enterprise(id); ok && ent.Name != "" {
				name = ent.Name
			}
			pg.PendingBy = append(pg.PendingBy, pendingCount{name, by[id]})
		}
	}
	pg.CaseOf = map[string]caseRow{}
	if s.Declarations != nil {
		cs, err := s.Declarations.Cases(c.Request.Context(), review.CaseFilter{Enterprise: p.Enterprise, Active: true, Now: now})
		if err != nil {
			s.fail(c, err)
			return
		}
		for _, k := range cs {
			if !p.Sees(k.Enterprise) {
				continue
			}
			pg.Cases = append(pg.Cases, caseRow{caseDTO(k, now, s.loc(c), false), s.enterpriseName(c, k.Enterprise)})
			if _, ok := pg.CaseOf[k.Enterprise]; !ok { // overdue first, then by deadline
				pg.CaseOf[k.Enterprise] = pg.Cases[len(pg.Cases)-1]
			}
		}
	}
	open := map[string][]CaseDTO{}
	for _, k := range pg.Cases {
		open[k.Enterprise] = append(open[k.Enterprise], k.CaseDTO)
	}
	x := explainer{snap.Standard, snap.Policy}
	pg.Drill = map[string]drill{}
	for _, r := range pg.Rows {
		pg.Drill[r.ID] = drillOf(x, r.ID, r.Links.Page, r, live[r.ID], open[r.ID])
	}
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	pg.Nonce = base64.RawStdEncoding.EncodeToString(nonce[:])
	// ?part=fleet is the page's live sections alone, which the page
	// fetches to update itself without a reload.
	tmpl := "overview.html"
	if c.Query("part") == "fleet" {
		tmpl = "live"
	}
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, tmpl, &pg); err != nil {
		s.fail(c, fmt.Errorf("render overview: %w", err))
		return
	}
	c.Header("Content-Security-Policy", fmt.Sprintf("default-src 'none'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'; script-src 'nonce-%s'", pg.Nonce))
	c.Header("Cache-Control", "no-store")
	c.Data(http.StatusOK, "text/html; charset=utf-8", b.Bytes())
}

func (s *server) share(key, label, class string, n, total int) share {
	sh := share{Key: key, Label: label, Class: class, Count: n}
	if total > 0 {
		sh.Percent = 100 * float64(n) / float64(total)
	}
	return sh
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func val(f *float64) float64 {
	if f == nil {
		return -1
	}
	return *f
}

// levelOf parses a level as the DTOs write it (nil: not graded).
func levelOf(l *string) scoring.Level {
	if l == nil {
		return scoring.NoLevel
	}
	lv, _ := scoring.ParseLevel(*l)
	return lv
}

// levelRank orders levels worst first.
func levelRank(l *string) int {
	switch deref(l) {
	case "below III":
		return 0
	case "III":
		return 1
	case "II":
		return 2
	case "I":
		return 3
	}
	return 4
}
