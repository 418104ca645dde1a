// Package outbox carries scoring events from the scorer to the store and
// to MQTT so that none is lost and none is announced twice.
//
// Indicator and score points are rewritten by the scorer's next tick, so
// losing one to a full queue or a failed write costs little. An event
// (a code change, a restrictive failure, a stale meter) is announced once
// and never again: lost on its way to the store, it is missing from the
// record for good, and the next start, which learns what was announced
// from the store, announces it a second time. So events take another way:
//
//	scorer --Append (fsync)--> data_dir/outbox/events.log
//	                              |  store loop: WritePoints, retried with
//	                              |  back-off until the store accepts it
//	                              v
//	                           store (measurement "event")
//	                              |  publish loop: only what the store holds,
//	                              |  QoS 1, retried until acknowledged
//	                              v
//	                           MQTT cp/v1/{enterprise}/events
//
// What flows in: batches of events through Append, which returns once
// they are on disk (one write and one fsync per batch: per scoring tick).
// Only then does the scorer count them announced (and tell the API's live
// stream). Append refuses a batch when the undelivered events already
// take MaxBytes (ErrFull) or the file cannot be written; the scorer then
// holds the batch and tries again on its next tick, so nothing is dropped
// and nothing is announced before it is durable.
//
// What flows out: event points to the Store, in order, in requests of at
// most Batch events; a store write is idempotent (points are keyed by
// measurement, tags and time), so writing an event again after a crash
// changes nothing. After the store accepted an event, it is published on
// MQTT. The file records how far each step got ("stored through", and
// "published through", both synced), so a start goes on where the last
// process stopped: Replayed lists what the file still held, which the
// start treats as announced (scoring.Engine.Restore), and the loops
// deliver it before anything new.
//
// The file is an append-only log of framed records (length, CRC-32C,
// payload). A record cut short or damaged at the end is a write the
// process did not finish when it stopped: it was never acknowledged to
// the scorer (Append had not returned), so the next start announces that
// event again if it still holds; the tail is truncated and logged. A
// damaged record followed by intact ones (the disk, not a crash) is
// skipped and logged as an error. Once delivered events take more than
// half of a file over compactAt bytes, the file is rewritten with the
// undelivered events only (atomically, see internal/atomicfile).
//
// An event the store refuses for good (a request it cannot parse; the
// events this version writes never are) would block every later one: it
// is appended to data_dir/outbox/refused.jsonl, logged, counted, and the
// others go on.
//
// At shutdown, Flush delivers what it can within the grace it is given;
// the rest stays in the file for the next start.
//
// Each event reaches the store once in effect (a write again is the same
// point). MQTT is at least once: a crash after the broker acknowledged an
// event and before the file recorded it publishes that event again at the
// next start, as QoS 1 may anyway; subscribers tell it by its enterprise,
// kind, subject and time.
//
// Metrics: cleanprod_events_outbox_events{stage} (waiting for the store,
// for MQTT), cleanprod_events_outbox_oldest_age_seconds,
// cleanprod_events_outbox_bytes, cleanprod_events_outbox_failures_total
// {target} (file, store, mqtt), cleanprod_events_outbox_delivered_total
// {target}, cleanprod_events_outbox_refused_total. Status reports a full
// or unwritable outbox (for /readyz); an outbox whose oldest event waits
// for more than a minute is logged once a minute.
package outbox
