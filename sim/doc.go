// Package sim simulates a fleet of car plants publishing meter readings
// through their gateways, for the demo, load tests and end-to-end tests of
// cleanprod.
//
// In: a *registry.Registry (every enterprise, gateway and meter to
// simulate), a Config (seed, time span and pace, reporting intervals,
// message batching and rate, counter resets, fault mix) and plant Profiles
// (sim/profiles.yaml by default). Out: MQTT messages of the gateway
// contract v1 — topic cp/v1/{enterprise}/{gateway}/telemetry, payload
// {"gateway","seq","sent","readings":[{"meter","ts","value"}]} — either
// returned by Next/Messages (as fast as they are asked for) or published
// through a Publisher by Run (paced, rate-limited, retried); and a Ledger
// of what was sent, to compare with what the service stored and rejected.
//
// # Signals
//
// Each enterprise is a plant model (plant.go) fed by its profile: a line
// rate in jobs per hour on one to three shifts with breaks, weekends off,
// a daily production plan, random line stoppages; an amount per job plus a
// constant base load for every extensive quantity, so intensity worsens at
// low output; wastewater through an equalisation tank; PV following the
// sun and the day's cloud; effluent analysers around the profile's inlet
// and outlet levels, with excursions; stack VOC concentration from the
// g/m2 emitted, the e-coated area and the stack flow. Profiles may drift
// (an enterprise regresses or improves by a share per 30 simulated days)
// and leave gateways silent (Assignment.Silent: a gateway whose readings
// are sent by hand).
// The meters of one quantity in an enterprise partition the plant's total:
// those in workshop "paint" share the profile's paint-shop share, the
// others the rest.
//
// # Meters
//
// Values are in each meter's raw unit and scale (canonical / Factor).
// Counters are cumulative registers that start at a random non-zero value,
// show at most their declared rollover, in steps of its resolution, and
// then 0, as a real register does (rollover 99999: 99998, 99999, 0, 1),
// are reset to zero now and then right after a reading
// the service receives (Config.Resets; never for counters with a rollover
// or a replacement ahead), and switch to the new meter at a declared
// replacement (the register is set up so that the old meter reads exactly
// old_final then; a reading at the very instant is skipped). Delta meters
// report the amount since their previous reading, gauges the average over
// their reporting interval. Registers are integers of 10^-decimals raw
// units, so the ledger's consumption equals what a correct counter-delta
// computation over the emitted values gives.
//
// # Faults
//
// Config.Faults gives, per fault, the percentage of regular messages that
// carry it (at most one each): a truncated payload (malformed_json), a
// copy published under an unregistered gateway (unknown_gateway), an extra
// reading of another enterprise's meter (spoofed) or of an unregistered
// one (unknown_meter), a value sent as the string "NaN" (invalid_value), a
// timestamp a day ahead of the wall clock (future_timestamp), a verbatim
// re-send (absorbed) and a message held back behind later ones (accepted).
// Faults never enter the ledger's readings; its Rejected map counts the
// rejections they must cause, by ingest reason.
//
// # HJ 212 stations
//
// A gateway that declares an hj212 station is its data logger: instead of
// JSON it sends its meters' readings (the same plant model; every meter
// must take minute data) as HJ 212-2017 minute-data frames (2051) each
// interval and, at each full hour of the station's clock, hourly data
// (2061: Avg, Min, Max, Cou of the hour, which the registry's meters do
// not take), Flag=5, on topic cp/v1/{enterprise}/{gateway}/hj212.
// Config.Stations adds their faults, drawn from each station's own
// stream: a copy with a wrong CRC sent before the intact frame
// (hj212_bad_crc, message), one value flagged C, M or D (stored apart
// with its flag, Ledger.Flagged), and offline periods whose frames wait and go as history when
// the logger is back (Ledger.Backlog). Run sends the frames through its
// Publisher like any message; a StationLink sends them over TCP to
// serve's HJ 212 receiver instead, waiting for each frame's 9014 and
// sending again on timeout or reconnect.
//
// # Determinism and concurrency
//
// The same seed, registry and Config give byte-identical messages in the
// same order: every plant, meter and gateway draws from its own random
// stream (math/rand/v2 PCG seeded from the seed and its ids), and nothing
// depends on map order or the wall clock except the future-timestamp
// fault, which uses Config.Now. Generation belongs to one goroutine (the
// caller of Next or Run); Run publishes from Config.Workers goroutines,
// each owning a fixed set of gateways so their messages stay in order.
// Ledger and Stats are safe to call from any goroutine at any time.
package sim
