// Package scoring grades enterprises continuously against a
// cleaner-production indicator standard and keeps each one's dynamic code.
//
// # Data it reads (each strict, every problem reported with file:line)
//
//   - standards/*.yaml (LoadStandard): indicator groups and indicators with
//     weights, Level I/II/III benchmarks, direction, restrictive flag and a
//     source for every number; the formulas of metered indicators over the
//     registry's canonical quantities (language in expr.go); conversion and
//     emission factors (grid CO2 by region and year, with a flagged
//     fallback) and discharge limits; the rolling windows (30 days hourly
//     for the live code, 12 months daily for the official level).
//   - policy/*.yaml (LoadPolicy): what a window's state means for the code
//     (green/yellow/red), the audit interval of each code, the hysteresis
//     of code changes, and when regressions are announced.
//   - solutions/*.yaml (LoadLibrary): measures with their typical effect on
//     indicators, cost class and payback; and (prices.yaml) which
//     intensity indicator measures which amount and the unit prices, from
//     which (*Library).Benefit estimates a measure's yearly saving in
//     kgce, kWh, m³, t CO2 and yuan from an enterprise's window totals.
//   - declarations (Declarations; DeclarationFiles reads declarations/*.yaml
//     by default): levels of qualitative indicators, values of non-metered
//     ones, not-applicable indicators, and amounts the enterprise does not
//     have (absent: natural_gas), each with evidence and validity.
//
// # What flows in
//
//   - Readings, through (*Engine).Observe, after ingest stored them: Delta
//     is the amount to add for counters and delta meters (corrections of
//     out-of-order inserts arrive as differences), Value the reading of a
//     gauge. The registry maps each meter to its quantity, workshop and
//     paired flow meter.
//   - At start, (*Engine).Run first refills the windows from the store
//     (History, the store's EachAggregate) in groups of enterprises, a
//     few read at once (Config.RefillConcurrency), each window at its own
//     bucket, while ingest already runs: readings for an
//     enterprise being refilled mark their buckets, which are read again
//     under a short ingest hold at the end (rebuild.go). An enterprise not
//     yet refilled is not graded; (*Engine).Loading says how far the refill
//     is. (*Engine).Restore replays the events announced before the
//     restart (read back from the store with EventFromPoint), so a restart
//     neither forgets 30 days nor re-announces anything.
//
// # What flows out
//
//   - (*Engine).Snapshot: per enterprise and window the indicator values,
//     units, statuses and levels, Y_I/Y_II/Y_III, the level, the
//     continuous score and data completeness; the code with its reasons and
//     pending change, the next audit due, lagging indicators with matched
//     solutions and stale meters; rankings overall and per indicator.
//   - Events (code_change, level_drop, worsening, restrictive_fail, stale,
//     exceedance: an analyser hour above its limit)
//     to Config.Outbox, which keeps them durably and writes them to the
//     store and MQTT cp/v1/{enterprise}/events (package outbox); once it
//     took them, to Config.OnEvent, for the API. An outbox that refuses a
//     tick's events (full, its file failing) has them offered again every
//     tick: they are held, never dropped, and announced only once durable.
//   - Points to Config.Sink: measurements "indicator" and "score" (and
//     "event" without an Outbox; see MeasurementIndicator and friends)
//     through a bounded queue: a full queue or a failed write drops them
//     (counted), and the next PointEvery writes fresh ones.
//   - Prometheus metrics (cleanprod_scoring_*) on Config.Registerer.
//
// # Method
//
// Standard.Grade implements the 2013 通则 method exactly: cumulative 0/100
// membership, Y_g = Σ w_i Σ ω_ij Y_g(x_ij) in integer basis points, Level I
// for Y_I >= 85 with every restrictive indicator at I, Level II for Y_II >=
// 85 with every restrictive indicator at II or better, Level III for Y_III =
// 100 exactly, else below III; not-applicable indicators renormalise their
// group; multi-product output shares. Insufficient data is never a good
// value: the policy says whether it fails (metered and declared separately)
// or is left out of Y, but the level is never better than with it failing;
// a completeness floor keeps a poorly metered enterprise ungraded. A
// missing meter is insufficient data; only an absent declaration makes an
// amount 0 (and an indicator that applies only with it not applicable).
// Coverage is that of the worst meter: each meter sharing an amount track
// keeps a presence bit per bucket in the window. The continuous score
// (IndicatorScore, §2.6 of the domain research) orders enterprises within
// a level.
//
// # Time
//
// Windows slide, holds run and events are stamped in each enterprise's
// data time: the engine clock, except while the enterprise catches up (a
// gateway delivering within the policy's stale.after, with data older
// than that): then the time through which its delivering gateways have
// delivered (Result.DataTime). A backlog thus moves the code as the same
// data arriving live would; an enterprise that delivers nothing stays on
// the clock, so silence still ages its windows and goes stale. An
// enterprise has no code until its first assessment with enough data.
//
// # Concurrency
//
// One goroutine, the one in (*Engine).Run, owns all scoring state: it
// applies observed readings on a cap-1 wake-up channel and evaluates, on
// each tick, only the enterprises with new data (every enterprise once per
// FullEvery, as windows slide and meters go stale). Observe, Snapshot,
// ReloadDeclarations may be called from any goroutine; published snapshots
// are immutable (copy on write). Sink writes run on their own goroutine
// with a bounded queue.
//
// # Wiring
//
//	std, _ := scoring.LoadStandard("scoring/standards/auto-manufacturing.yaml")
//	pol, _ := scoring.LoadPolicy("scoring/policy/default.yaml", std)
//	lib, _ := scoring.LoadLibrary("scoring/solutions", std)
//	eng, _ := scoring.NewEngine(scoring.Config{
//		Standard: std, Policy: pol, Solutions: lib, Registry: reg,
//		History: st, Sink: st, // *store.Bolt or *store.Influx
//		Declarations: scoring.DeclarationFiles{Dir: "scoring/declarations", Standard: std},
//		OnEvent: publish, Registerer: promReg, Logger: logger,
//	})
//	_ = eng.Rebuild(ctx)    // before ingest starts
//	eng.Restore(pastEvents) // optional
//	go eng.Run(ctx)
//	// ingest: after each stored batch, eng.Observe(readings)
package scoring
