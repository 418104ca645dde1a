package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/store"
)

// maxBody bounds request bodies.
const maxBody = 64 << 10

// EnterpriseList is the answer of GET /api/v1/enterprises.
// Enterprises are by id.
type EnterpriseList struct {
	Time        time.Time           `json:"time"` // of the engine's latest evaluation
	Enterprises []EnterpriseSummary `json:"enterprises"`
	// MissingShards are the shards whose enterprises have no result here,
	// their replica not answering (several replicas only; omitted when
	// none).
	MissingShards []int `json:"missing_shards,omitempty"`
	Page
}

func (s *server) listEnterprises(c *gin.Context) {
	pg, err := s.pageOf(c, "enterprises", defaultLimit, maxLimit)
	if err != nil {
		s.fail(c, err)
		return
	}
	snap := s.snapshot(c)
	p := principal(c)
	var ents []*registry.Enterprise
	for _, ent := range s.registry(c).Enterprises {
		if p.Sees(ent.ID) {
			ents = append(ents, ent)
		}
	}
	ents, page := paginate(s, pg, ents, func(e *registry.Enterprise) []string { return []string{e.ID} })
	out := EnterpriseList{Time: snap.Time.UTC(), Enterprises: []EnterpriseSummary{}, Page: page, MissingShards: s.missingShards(c)}
	for _, ent := range ents {
		r, _ := snap.Result(ent.ID)
		out.Enterprises = append(out.Enterprises, summaryOf(ent, snap.Standard, snap.Policy, resultView{res: r}, s.freshness(c, ent), s.now()))
	}
	c.JSON(http.StatusOK, out)
}

// freshness reports the newest reading of an enterprise's meters.
func (s *server) freshness(c *gin.Context, ent *registry.Enterprise) DataFreshness {
	if !s.sharded() || s.Shard.Owns(ent.ID) {
		return s.localFreshness(ent)
	}
	// Only the owner's ingest sees the enterprise's meters.
	var f DataFreshness
	if last, ok := s.fleetView(c).lastReading[ent.ID]; ok {
		f.LastReading = timePtr(last)
		f.AgeSeconds = f64(math.Max(0, s.now().Sub(last).Seconds()))
	}
	return f
}

// localFreshness is freshness from this replica's meters.
func (s *server) localFreshness(ent *registry.Enterprise) DataFreshness {
	var f DataFreshness
	if s.Meters == nil {
		return f
	}
	var last time.Time
	for _, m := range ent.Meters {
		if ms, ok := s.Meters.Meter(ent.ID, m.ID); ok && ms.Time.After(last) {
			last = ms.Time
		}
	}
	if !last.IsZero() {
		f.LastReading = timePtr(last)
		f.AgeSeconds = f64(math.Max(0, s.now().Sub(last).Seconds()))
	}
	return f
}

// view returns an enterprise's live result, or, when at is set, the one
// rebuilt from stored points as of at.
func (s *server) view(c *gin.Context, id string, at time.Time) (resultView, error) {
	snap := s.snapshot(c)
	if at.IsZero() {
		r, _ := snap.Result(id)
		return resultView{res: r}, nil
	}
	if r, ok := snap.Result(id); ok && !at.Before(r.Time) {
		return resultView{res: r}, nil
	}
	if s.Points == nil {
		return resultView{}, errorf(http.StatusServiceUnavailable, codeUnavailable, "no store to read past results from")
	}
	return resultAt(c.Request.Context(), s.Points, snap.Standard, snap.Policy, s.solutions(snap), id, at)
}

func (s *server) getEnterprise(c *gin.Context) {
	id := c.Param("id")
	ent, _ := s.registry(c).Enterprise(id)
	at, err := timeParam(c, "at", time.Time{}, s.loc(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	v, err := s.view(c, id, at)
	if err != nil {
		s.fail(c, err)
		return
	}
	d, err := s.detail(c, ent, v)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, d)
}

func (s *server) detail(c *gin.Context, ent *registry.Enterprise, v resultView) (EnterpriseDetail, error) {
	snap := s.snapshot(c)
	d := EnterpriseDetail{EnterpriseSummary: summaryOf(ent, snap.Standard, snap.Policy, v, s.freshness(c, ent), s.now()),
		Assessments: []AssessmentDTO{}, Lagging: []LaggingDTO{}, RecentEvents: []EventDTO{},
		Benefits: []BenefitDTO{}, BenefitPrices: []PriceDTO{},
		EstimatedBenchmarks: nonNil(snap.Standard.Estimated())}
	if v.res == nil {
		return d, nil
	}
	d.Assessments = assessmentsOf(snap.Standard, v)
	d.Lagging = laggingOf(snap.Standard, v.res.Lagging)
	d.NextLevel = nextLevelOf(snap.Standard, snap.Policy, v, s.solutions(snap))
	addBenefits(&d, snap.Standard, snap.Policy, ent, v, s.solutions(snap))
	to := v.res.Time
	if !v.asOf {
		to = s.now()
	}
	from, until := to.Add(-30*24*time.Hour), to.Add(time.Nanosecond)
	if s.Recent != nil && !v.asOf {
		d.RecentEvents = eventsOf(explainer{snap.Standard, snap.Policy}, s.Recent.Enterprise(ent.ID, from, until, recentEventsShown))
		return d, nil
	}
	evs, err := s.readEvents(c, ent.ID, "", from, until, recentEventsShown)
	if err != nil {
		return d, err
	}
	d.RecentEvents = eventsOf(explainer{snap.Standard, snap.Policy}, evs)
	return d, nil
}

// recentEventsShown is how many events an enterprise's detail lists.
const recentEventsShown = 20

// readEvents returns the stored events matching enterprise and kind ("":
// any) in [from, to), newest first, at most limit.
func (s *server) readEvents(c *gin.Context, enterprise, kind string, from, to time.Time, limit int) ([]scoring.Event, error) {
	out := []scoring.Event{}
	if s.Points == nil {
		return out, nil
	}
	tags := map[string]string{}
	if enterprise != "" {
		tags["enterprise"] = enterprise
	}
	if kind != "" {
		tags["kind"] = kind
	}
	ps, err := s.Points.Points(c.Request.Context(), scoring.MeasurementEvent, tags, from, to)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	for i := len(ps) - 1; i >= 0 && len(out) < limit; i-- {
		if ev, ok := scoring.EventFromPoint(ps[i]); ok {
			out = append(out, ev)
		}
	}
	return out, nil
}

// EventList is the answer of GET /api/v1/events: newest first (events
// of one time by their id).
type EventList struct {
	From   time.Time  `json:"from"`
	To     time.Time  `json:"to"`
	Events []EventDTO `json:"events"`
	Page
}

// EventDTO is a scoring event (its fields as the scorer writes them, kind
// and reasons the ids to key on) with what it means in words.
type EventDTO struct {
	scoring.Event
	Text Text `json:"text"`
}

// eventsOf words evs with the standard and policy in force.
func eventsOf(x explainer, evs []scoring.Event) []EventDTO {
	out := make([]EventDTO, len(evs))
	for i, ev := range evs {
		out[i] = EventDTO{Event: ev, Text: x.event(ev)}
	}
	return out
}

func (s *server) events(c *gin.Context) {
	ent, err := s.enterpriseScope(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	// One enterprise's live events are announced by its owner only.
	if ent != "" && s.forward(c, ent) {
		return
	}
	kind, err := enumParam(c, "kind", "", eventKinds...)
	if err != nil {
		s.fail(c, err)
		return
	}
	pg, err := s.pageOf(c, "events|"+ent+"|"+kind, defaultLimit, maxLimit)
	if err != nil {
		s.fail(c, err)
		return
	}
	// to defaults to the time the walk started, so that its pages cover
	// one period.
	from, to, err := period(c, pg.at, 7*24*time.Hour, 400*24*time.Hour, s.loc(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	evs, err := s.readEvents(c, ent, kind, from, to.Add(time.Nanosecond), math.MaxInt)
	if err != nil {
		s.fail(c, err)
		return
	}
	evs, page := paginate(s, pg, evs, func(ev scoring.Event) []string { return []string{keyDesc(keyTime(ev.Time)), eventID(ev)} })
	snap := s.snapshot(c)
	c.JSON(http.StatusOK, EventList{From: from.UTC(), To: to.UTC(), Events: eventsOf(explainer{snap.Standard, snap.Policy}, evs), Page: page})
}

var eventKinds = []string{string(scoring.EventCodeChange), string(scoring.EventLevelDrop), string(scoring.EventWorsening),
	string(scoring.EventRestrictiveFail), string(scoring.EventStale), string(scoring.EventExceedance),
	string(scoring.EventDeclarationSubmitted), string(scoring.EventDeclarationAccepted), string(scoring.EventDeclarationRejected),
	string(scoring.EventCaseOpened), string(scoring.EventCaseAcknowledged), string(scoring.EventCasePlanSubmitted),
	string(scoring.EventCasePlanRejected), string(scoring.EventCaseClosed), string(scoring.EventCaseReopened), string(scoring.EventCaseOverdue)}

// stream sends live events as server-sent events until the client goes
// away or the server shuts down. Each event's id names it (its time,
// enterprise, kind, indicator or meter, and whether it resolves); a client
// reconnecting with Last-Event-ID (as EventSource does) is first sent the
// events since that one, from the store and the events kept in memory
// (those the store may not hold yet), oldest first: events of that same
// time may come again, none is skipped.
func (s *server) stream(c *gin.Context) {
	ent, err := s.enterpriseScope(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	// One enterprise's live events are announced by its owner only.
	if ent != "" && s.forward(c, ent) {
		return
	}
	kind, err := enumParam(c, "kind", "", eventKinds...)
	if err != nil {
		s.fail(c, err)
		return
	}
	last := c.GetHeader("Last-Event-ID")
	var since time.Time
	if last != "" {
		ns, _, _ := strings.Cut(last, ".")
		n, err := strconv.ParseInt(ns, 10, 64)
		if err != nil {
			s.fail(c, errorf(http.StatusBadRequest, codeBadRequest, "Last-Event-ID %q is not an id this stream sent", clip(last, 80)))
			return
		}
		since = time.Unix(0, n)
	}
	var events <-chan scoring.Event
	if s.Events != nil {
		// Subscribed before the replay is read: nothing falls between.
		ch, cancel, ok := s.Events.Subscribe(256)
		if !ok {
			s.fail(c, errorf(http.StatusServiceUnavailable, codeUnavailable, "the server is shutting down"))
			return
		}
		defer cancel()
		events = ch
	}
	// A fleet-wide stream of a sharded replica carries the peers' events
	// too (unless a peer asks: then its own only); an event two replicas
	// announce is sent once.
	var peerEvents <-chan scoring.Event
	var sent *idRing
	if s.sharded() && ent == "" && c.GetHeader(forwardedHeader) == "" {
		peerEvents = s.peerEvents(c.Request.Context(), c.Request, kind)
		sent = newIDRing(4096)
	}
	var replay []scoring.Event
	if last != "" {
		if replay, err = s.eventsSince(c, ent, kind, since); err != nil {
			s.fail(c, err)
			return
		}
	}
	w := c.Writer
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 5000\n: cleanprod scoring events\n\n")
	send := func(ev scoring.Event) {
		snap := s.Scorer.Snapshot() // the configuration in force now: a stream outlives reloads
		data, _ := json.Marshal(EventDTO{Event: ev, Text: explainer{snap.Standard, snap.Policy}.event(ev)})
		fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", eventID(ev), ev.Kind, data)
	}
	replayed := make(map[string]bool, len(replay))
	for _, ev := range replay {
		if id := eventID(ev); id != last {
			replayed[id] = true
			send(ev)
		}
	}
	w.Flush()
	keepAlive := time.NewTicker(15 * time.Second)
	defer keepAlive.Stop()
	for {
		select {
		case <-c.Request.Context().Done():
			return
		case <-keepAlive.C:
			fmt.Fprint(w, ": keep-alive\n\n")
		case ev, ok := <-events:
			if !ok {
				return
			}
			if (ent != "" && ev.Enterprise != ent) || (kind != "" && string(ev.Kind) != kind) || replayed[eventID(ev)] ||
				(sent != nil && sent.seen(eventID(ev))) {
				continue
			}
			send(ev)
		case ev := <-peerEvents:
			if (kind != "" && string(ev.Kind) != kind) || replayed[eventID(ev)] || sent.seen(eventID(ev)) {
				continue
			}
			send(ev)
		}
		w.Flush()
	}
}

// eventID names an event in the stream: its store identity (time and
// tags) and whether it resolves.
func eventID(ev scoring.Event) string {
	id := strconv.FormatInt(ev.Time.UnixNano(), 10) + "." + ev.Enterprise + "." + string(ev.Kind) + "." + ev.Indicator + "." + ev.Meter
	if ev.Resolved {
		id += ".resolved"
	}
	return id
}

// maxReplay bounds the events a reconnecting stream is sent first.
const maxReplay = 10000

// eventsSince returns the events of enterprise and kind ("": any) at or
// after since, oldest first: the stored ones and those kept in memory,
// each once.
func (s *server) eventsSince(c *gin.Context, enterprise, kind string, since time.Time) ([]scoring.Event, error) {
	now := s.now()
	if since.Before(now.Add(-400 * 24 * time.Hour)) {
		since = now.Add(-400 * 24 * time.Hour)
	}
	evs, err := s.readEvents(c, enterprise, kind, since, now.Add(time.Hour), maxReplay)
	if err != nil {
		return nil, err
	}
	if s.Recent != nil {
		for _, ev := range s.Recent.Since(enterprise, since) {
			if kind == "" || string(ev.Kind) == kind {
				evs = append(evs, ev)
			}
		}
	}
	seen := make(map[string]bool, len(evs))
	out := evs[:0]
	for _, ev := range evs {
		if id := eventID(ev); !seen[id] {
			seen[id] = true
			out = append(out, ev)
		}
	}
	slices.SortStableFunc(out, func(a, b scoring.Event) int { return a.Time.Compare(b.Time) })
	return out, nil
}

// RankingDTO is a ranking with the requester's position and the fleet's
// distribution.
//
// Entries and then Unranked are one list to page through: a page holds
// the next entries and, once they are all sent, the unranked ones.
// Position and Distribution are of the whole ranking, on every page.
type RankingDTO struct {
	Time      time.Time      `json:"time"`
	Window    string         `json:"window"`
	Indicator *IndicatorRef  `json:"indicator"` // null for the overall ranking
	Entries   []RankEntryDTO `json:"entries"`   // best first (equal ranks by enterprise id)
	Unranked  []RankEntryDTO `json:"unranked"`  // by enterprise id
	// Position is the entry of the enterprise asked for (or the token's);
	// null when none is asked or it is not in the ranking.
	Position     *RankEntryDTO `json:"position"`
	Distribution Distribution  `json:"distribution"`
	// MissingShards are the shards whose enterprises are left out, their
	// replica not answering (several replicas only; omitted when none).
	MissingShards []int `json:"missing_shards,omitempty"`
	Page
}

// IndicatorRef names an indicator.
type IndicatorRef struct {
	ID        string `json:"id"`
	NameZH    string `json:"name_zh"`
	NameEN    string `json:"name_en"`
	Unit      string `json:"unit,omitempty"`
	Direction string `json:"direction,omitempty"`
}

// RankEntryDTO is one enterprise in a ranking. For an enterprise token,
// the others' enterprise and name are null.
type RankEntryDTO struct {
	Rank       int      `json:"rank"` // 1-based; equal entries share a rank; 0 when unranked
	Enterprise *string  `json:"enterprise"`
	Name       *string  `json:"name"`
	You        bool     `json:"you"` // the token's own enterprise
	Level      *string  `json:"level"`
	Score      *float64 `json:"score"`
	Value      *float64 `json:"value"` // indicator rankings (quantitative)
	Reason     string   `json:"reason,omitempty"`
}

// Distribution summarises the fleet in a ranking: how many enterprises
// are at each level, and quantiles of the score (overall) or value
// (indicator) of the ranked ones.
type Distribution struct {
	Enterprises int            `json:"enterprises"`
	Ranked      int            `json:"ranked"`
	Levels      map[string]int `json:"levels"` // I, II, III, below III, not graded
	Of          string         `json:"of"`     // score or value
	Min         *float64       `json:"min"`
	P25         *float64       `json:"p25"`
	Median      *float64       `json:"median"`
	P75         *float64       `json:"p75"`
	Max         *float64       `json:"max"`
}

func (s *server) ranking(c *gin.Context) {
	snap := s.snapshot(c)
	window, err := s.windowParam(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	who, err := s.enterpriseScope(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	pg, err := s.pageOf(c, "rankings|"+c.Param("indicator")+"|"+window, defaultLimit, maxLimit)
	if err != nil {
		s.fail(c, err)
		return
	}
	var rk scoring.Ranking
	out := RankingDTO{Time: snap.Time.UTC(), Window: window, Entries: []RankEntryDTO{}, Unranked: []RankEntryDTO{}, MissingShards: s.missingShards(c)}
	var ind *scoring.Indicator
	if id := c.Param("indicator"); id != "" {
		var ok bool
		if ind, ok = snap.Standard.Indicator(id); !ok {
			s.fail(c, errorf(http.StatusNotFound, codeNotFound, "no indicator %q in standard %s", id, snap.Standard.ID))
			return
		}
		rk, _ = snap.IndicatorRanking(window, id)
		out.Indicator = &IndicatorRef{ID: ind.ID, NameZH: ind.NameZH, NameEN: ind.NameEN, Unit: ind.Unit, Direction: string(ind.Direction)}
	} else {
		rk = snap.Ranking(window)
	}
	p := principal(c)
	entry := func(e scoring.RankEntry) RankEntryDTO {
		d := RankEntryDTO{Rank: e.Rank, You: p.Role == RoleEnterprise && e.Enterprise == p.Enterprise, Level: levelPtr(e.Level)}
		if p.Sees(e.Enterprise) {
			d.Enterprise = &e.Enterprise
			if ent, ok := s.registry(c).Enterprise(e.Enterprise); ok {
				d.Name = &ent.Name
			}
			d.Reason = e.Reason
		}
		if e.Rank > 0 {
			if ind == nil || ind.Kind == scoring.Qualitative {
				d.Score = f64(e.Score)
			}
			if ind != nil && ind.Kind == scoring.Quantitative {
				d.Value = f64(e.Value)
			}
		}
		return d
	}
	// The entries, then the unranked, paged as one list.
	type ranked struct {
		e        scoring.RankEntry
		unranked bool
	}
	all := make([]ranked, 0, len(rk.Entries)+len(rk.Unranked))
	for _, e := range rk.Entries {
		all = append(all, ranked{e, false})
	}
	for _, e := range rk.Unranked {
		all = append(all, ranked{e, true})
	}
	shown, page := paginate(s, pg, all, func(r ranked) []string {
		if r.unranked {
			return []string{"1", "", r.e.Enterprise}
		}
		return []string{"0", keyNum(r.e.Rank), r.e.Enterprise}
	})
	for _, r := range shown {
		if r.unranked {
			out.Unranked = append(out.Unranked, entry(r.e))
		} else {
			out.Entries = append(out.Entries, entry(r.e))
		}
	}
	out.Page = page
	dist := Distribution{Levels: map[string]int{"I": 0, "II": 0, "III": 0, "below III": 0, "not graded": 0}, Of: "score"}
	var vals []float64
	for _, e := range rk.Entries {
		d := entry(e)
		dist.Levels[levelName(e.Level)]++
		if ind != nil && ind.Kind == scoring.Quantitative {
			dist.Of = "value"
			vals = append(vals, e.Value)
		} else {
			vals = append(vals, e.Score)
		}
		if who != "" && e.Enterprise == who {
			out.Position = &d
		}
	}
	for _, e := range rk.Unranked {
		d := entry(e)
		dist.Levels["not graded"]++
		if who != "" && e.Enterprise == who {
			out.Position = &d
		}
	}
	dist.Enterprises, dist.Ranked = len(rk.Entries)+len(rk.Unranked), len(rk.Entries)
	if len(vals) > 0 {
		slices.Sort(vals)
		q := func(p float64) *float64 { // linear interpolation between closest ranks
			x := p * float64(len(vals)-1)
			lo := int(math.Floor(x))
			hi := min(lo+1, len(vals)-1)
			return f64(vals[lo] + (x-float64(lo))*(vals[hi]-vals[lo]))
		}
		dist.Min, dist.P25, dist.Median, dist.P75, dist.Max = q(0), q(0.25), q(0.5), q(0.75), q(1)
	}
	out.Distribution = dist
	c.JSON(http.StatusOK, out)
}

func levelName(l scoring.Level) string {
	if l == scoring.NoLevel {
		return "not graded"
	}
	return l.String()
}

func (s *server) windowParam(c *gin.Context) (string, error) {
	snap := s.snapshot(c)
	w := c.Query("window")
	if w == "" {
		return snap.Policy.Window, nil
	}
	if _, _, ok := snap.Standard.Window(w); !ok {
		var names []string
		for _, sw := range snap.Standard.Windows {
			names = append(names, sw.Name)
		}
		return "", errorf(http.StatusBadRequest, codeBadRequest, "window %q: the standard has %s", w, strings.Join(names, ", "))
	}
	return w, nil
}

// MetersDTO is the answer of GET /api/v1/enterprises/{id}/meters.
//
// Meters are paged, by id; Gateways are every gateway, on every page.
type MetersDTO struct {
	Enterprise string       `json:"enterprise"`
	Meters     []MeterDTO   `json:"meters"`
	Gateways   []GatewayDTO `json:"gateways"`
	// Tracking says since when last values and rejects are counted.
	Note string `json:"note"`
	Page
}

// MeterDTO is one registered meter and what was last seen of it.
type MeterDTO struct {
	ID            string     `json:"id"`
	Gateway       string     `json:"gateway"`
	Quantity      string     `json:"quantity"`
	Unit          string     `json:"unit"`           // the unit the device reports in
	CanonicalUnit string     `json:"canonical_unit"` // the unit last_value is in
	Kind          string     `json:"kind"`
	Workshop      string     `json:"workshop,omitempty"`
	FlowMeter     string     `json:"flow_meter,omitempty"`
	LastValue     *float64   `json:"last_value"`
	LastSeen      *time.Time `json:"last_seen"`
	AgeSeconds    *float64   `json:"age_seconds"`
	Stale         bool       `json:"stale"`
	Rejects       int        `json:"rejects"`
	LastReject    *time.Time `json:"last_reject"`
	LastReason    string     `json:"last_reject_reason,omitempty"`
}

// GatewayDTO is one gateway with the rejects not blamed on a meter.
type GatewayDTO struct {
	ID          string     `json:"id"`
	Description string     `json:"description,omitempty"`
	Meters      int        `json:"meters"`
	Rejects     int        `json:"rejects"` // whole messages, and readings of meters that are not its own
	LastReject  *time.Time `json:"last_reject"`
	LastReason  string     `json:"last_reject_reason,omitempty"`
}

func (s *server) meters(c *gin.Context) {
	ent, _ := s.registry(c).Enterprise(c.Param("id"))
	pg, err := s.pageOf(c, "meters|"+ent.ID, defaultLimit, maxLimit)
	if err != nil {
		s.fail(c, err)
		return
	}
	ms, page := paginate(s, pg, ent.Meters, func(m *registry.Meter) []string { return []string{m.ID} })
	out := MetersDTO{Enterprise: ent.ID, Meters: []MeterDTO{}, Gateways: []GatewayDTO{},
		Note: "last values come from readings stored since the server started (or found in the store at start); rejects are counted since the server started"}
	stale := map[string]bool{}
	if r, ok := s.snapshot(c).Result(ent.ID); ok {
		for _, m := range r.StaleMeters {
			stale[m] = true
		}
	}
	now := s.now()
	out.Page = page
	for _, m := range ms {
		d := MeterDTO{ID: m.ID, Gateway: m.Gateway.ID, Quantity: m.Quantity.Name, Unit: m.Unit, CanonicalUnit: m.Quantity.Unit,
			Kind: string(m.Kind), Workshop: m.Workshop, Stale: stale[m.ID]}
		if m.FlowMeter != nil {
			d.FlowMeter = m.FlowMeter.ID
		}
		if s.Meters != nil {
			if ms, ok := s.Meters.Meter(ent.ID, m.ID); ok {
				if !ms.Time.IsZero() {
					d.LastValue, d.LastSeen = f64(ms.Value), timePtr(ms.Time)
					d.AgeSeconds = f64(math.Max(0, now.Sub(ms.Time).Seconds()))
				}
				d.Rejects, d.LastReject, d.LastReason = ms.Rejects, timePtr(ms.LastReject), string(ms.LastReason)
			}
		}
		out.Meters = append(out.Meters, d)
	}
	for _, g := range ent.Gateways {
		d := GatewayDTO{ID: g.ID, Description: g.Description, Meters: len(g.Meters)}
		if s.Meters != nil {
			if gs, ok := s.Meters.Gateway(ent.ID, g.ID); ok {
				d.Rejects, d.LastReject, d.LastReason = gs.Rejects, timePtr(gs.LastReject), string(gs.LastReason)
			}
		}
		out.Gateways = append(out.Gateways, d)
	}
	c.JSON(http.StatusOK, out)
}

// HistoryDTO is the answer of .../indicators/{indicator}/history: the
// points stored in from..to, thinned to max_points, oldest first. Pages
// walk that thinned series; without to, a walk keeps the to of its first
// page (now, then).
type HistoryDTO struct {
	Enterprise string         `json:"enterprise"`
	Indicator  IndicatorRef   `json:"indicator"`
	Window     string         `json:"window"`
	From       time.Time      `json:"from"`
	To         time.Time      `json:"to"`
	Stored     int            `json:"stored"` // points stored in the period, before thinning
	Points     []HistoryPoint `json:"points"`
	Page
}

// HistoryPoint is one stored evaluation of an indicator.
type HistoryPoint struct {
	Time   time.Time `json:"time"`
	Status string    `json:"status"`
	Value  *float64  `json:"value"`
	Level  *string   `json:"level"`
	Score  *float64  `json:"score"`
}

func (s *server) history(c *gin.Context) {
	snap := s.snapshot(c)
	id := c.Param("id")
	ind, ok := snap.Standard.Indicator(c.Param("indicator"))
	if !ok {
		s.fail(c, errorf(http.StatusNotFound, codeNotFound, "no indicator %q in standard %s", c.Param("indicator"), snap.Standard.ID))
		return
	}
	window, err := s.windowParam(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	maxPoints, err := intParam(c, "max_points", 500, 2, maxHistoryPoints)
	if err != nil {
		s.fail(c, err)
		return
	}
	pg, err := s.pageOf(c, "history|"+id+"|"+ind.ID+"|"+window+"|"+strconv.Itoa(maxPoints), maxHistoryPoints, maxHistoryPoints)
	if err != nil {
		s.fail(c, err)
		return
	}
	// to defaults to the time the walk started: its pages walk one
	// thinned series.
	from, to, err := period(c, pg.at, 30*24*time.Hour, 800*24*time.Hour, s.loc(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	pts, err := s.indicatorPoints(c, id, window, ind.ID, from, to.Add(time.Nanosecond))
	if err != nil {
		s.fail(c, err)
		return
	}
	shown, page := paginate(s, pg, thin(pts, maxPoints), func(p store.Point) []string { return []string{keyTime(p.Time)} })
	out := HistoryDTO{Enterprise: id, Indicator: IndicatorRef{ID: ind.ID, NameZH: ind.NameZH, NameEN: ind.NameEN, Unit: ind.Unit, Direction: string(ind.Direction)},
		Window: window, From: from.UTC(), To: to.UTC(), Stored: len(pts), Points: []HistoryPoint{}, Page: page}
	for _, p := range shown {
		hp := HistoryPoint{Time: p.Time.UTC(), Status: text(p, "status")}
		if v, ok := p.Fields["value"]; ok {
			hp.Value = f64(toFloat(v))
		}
		if hp.Status == string(scoring.Graded) {
			hp.Level, hp.Score = levelPtr(scoring.Level(num(p, "level"))), f64(num(p, "score"))
		}
		out.Points = append(out.Points, hp)
	}
	c.JSON(http.StatusOK, out)
}

func (s *server) indicatorPoints(c *gin.Context, enterprise, window, indicator string, from, to time.Time) ([]store.Point, error) {
	if s.Points == nil {
		return nil, nil
	}
	ps, err := s.Points.Points(c.Request.Context(), scoring.MeasurementIndicator,
		map[string]string{"enterprise": enterprise, "window": window, "indicator": indicator}, from, to)
	if err != nil {
		return nil, fmt.Errorf("read %s of %s: %w", indicator, enterprise, err)
	}
	return ps, nil
}

// maxHistoryPoints bounds max_points and the history's pages, whose
// size defaults to it: a series thinned to max_points is one page unless
// a smaller limit is asked.
const maxHistoryPoints = 10000

// thin keeps at most n points, evenly spread, always the first and last.
func thin[T any](ps []T, n int) []T {
	if len(ps) <= n {
		return ps
	}
	out := make([]T, 0, n)
	for i := range n {
		out = append(out, ps[i*(len(ps)-1)/(n-1)])
	}
	return out
}

// decodeJSON decodes the request body strictly: one JSON object of the
// expected shape, no unknown fields, at most maxBody bytes.
func decodeJSON(c *gin.Context, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if dec.Decode(&struct{}{}) != io.EOF {
			err = errors.New("the body must hold exactly one JSON object")
		}
	}
	var mbe *http.MaxBytesError
	var ute *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &mbe):
		return errorf(http.StatusRequestEntityTooLarge, codeTooLarge, "the body is larger than %d bytes", maxBody)
	case errors.As(err, &ute):
		return errorf(http.StatusBadRequest, codeBadRequest, "field %s: want %s, got JSON %s", ute.Field, ute.Type, ute.Value)
	case errors.As(err, &se):
		return errorf(http.StatusBadRequest, codeBadRequest, "malformed JSON at byte %d: %v", se.Offset, err)
	case errors.Is(err, io.EOF):
		return errorf(http.StatusBadRequest, codeBadRequest, "the body is empty; send a JSON object")
	default:
		return errorf(http.StatusBadRequest, codeBadRequest, "%v", err)
	}
}

// clip cuts s to at most n bytes for an error text.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
