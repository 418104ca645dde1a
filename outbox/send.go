package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/store"
)

// Run delivers the outbox's events until ctx ends: one goroutine writes
// them to the store, another publishes what the store accepted. Each
// retries with back-off until it succeeds; neither ever drops an event.
// Call it once.
func (o *Outbox) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { o.storeLoop(ctx) })
	wg.Go(func() { o.publishLoop(ctx) })
	wg.Wait()
}

// backoff is a retry's wait: doubling from MinBackoff to MaxBackoff, or
// what the store asked for.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) reset() { b.cur = 0 }

// wait sleeps before the next try (at least hint); false when ctx ended.
func (b *backoff) wait(ctx context.Context, hint time.Duration) bool {
	b.cur = min(max(2*b.cur, b.min), b.max)
	d := max(b.cur, min(hint, b.max))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// warner logs a failing step at most once a minute, with how many
// failures it did not log; the metrics count each one.
type warner struct {
	last       time.Time
	suppressed int
}

func (w *warner) warn(o *Outbox, msg string, args ...any) {
	if time.Since(w.last) < time.Minute {
		w.suppressed++
		return
	}
	o.mu.Lock()
	waiting, oldest := len(o.entries), time.Duration(0)
	if waiting > 0 {
		oldest = o.cfg.Now().Sub(o.entries[0].at).Round(time.Second)
	}
	o.mu.Unlock()
	o.log.Warn(msg, append(args, "events_waiting", waiting, "oldest_waiting", oldest, "failures_not_logged", w.suppressed)...)
	w.last, w.suppressed = time.Now(), 0
}

// storeLoop writes the events not yet stored, in order, in requests of
// at most Batch events.
func (o *Outbox) storeLoop(ctx context.Context) {
	bo := backoff{min: o.cfg.MinBackoff, max: o.cfg.MaxBackoff}
	var w warner
	singles := 0 // after a refused batch: write its events one by one
	for {
		n := o.cfg.Batch
		if singles > 0 {
			n = 1
		}
		o.mu.Lock()
		batch := o.take(o.stored, o.last, n)
		o.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-o.storeWake:
				continue
			}
		}
		ps := make([]store.Point, len(batch))
		for i := range batch {
			ps[i] = scoring.EventPoint(batch[i].ev)
		}
		wctx, cancel := context.WithTimeout(ctx, o.cfg.WriteTimeout)
		err := o.cfg.Store.WritePoints(wctx, ps)
		cancel()
		if err == nil {
			o.m.delivered.WithLabelValues("store").Add(float64(len(batch)))
			o.mark(recStored, batch[len(batch)-1].seq)
			bo.reset()
			if singles > 0 {
				singles--
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		o.m.failures.WithLabelValues("store").Inc()
		if store.Refused(err) {
			if len(batch) > 1 {
				singles = len(batch) // find the one it refuses
				continue
			}
			o.refuse(batch[0].ev, err)
			o.mark(recStored, batch[0].seq)
			singles = max(singles-1, 0)
			continue
		}
		w.warn(o, "outbox: writing events to the store failed; retrying until it accepts them", "err", err)
		var hint time.Duration
		var we *store.WriteError
		if errors.As(err, &we) {
			hint = we.RetryAfter
		}
		if !bo.wait(ctx, hint) {
			return
		}
	}
}

// refuse keeps an event the store refused for good in RefusedName and
// logs it, so that it does not hold back the events after it.
func (o *Outbox) refuse(ev scoring.Event, err error) {
	o.m.refused.Inc()
	o.log.Error("outbox: the store refused an event for good; it is kept in the refused file and published", "event", ev.String(), "err", err)
	if o.cfg.Dir == "" {
		return
	}
	line, _ := json.Marshal(ev)
	f, ferr := os.OpenFile(filepath.Join(o.cfg.Dir, RefusedName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if ferr == nil {
		_, ferr = f.Write(append(line, '\n'))
		if ferr == nil {
			ferr = f.Sync()
		}
		f.Close()
	}
	if ferr != nil {
		o.log.Error("outbox: keeping a refused event failed", "event", ev.String(), "err", ferr)
	}
}

// publishLoop publishes the stored events not yet published, in order.
func (o *Outbox) publishLoop(ctx context.Context) {
	bo := backoff{min: o.cfg.MinBackoff, max: o.cfg.MaxBackoff}
	var w warner
	for {
		o.mu.Lock()
		batch := o.take(o.published, o.stored, o.cfg.Batch)
		o.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-o.pubWake:
				continue
			}
		}
		if o.cfg.Publish == nil {
			o.mark(recPublished, batch[len(batch)-1].seq)
			continue
		}
		var done uint64 // the last published
		for _, en := range batch {
			payload, _ := json.Marshal(en.ev)
			for {
				pctx, cancel := context.WithTimeout(ctx, o.cfg.WriteTimeout)
				err := o.cfg.Publish(pctx, "cp/v1/"+en.ev.Enterprise+"/events", payload)
				cancel()
				if err == nil {
					o.m.delivered.WithLabelValues("mqtt").Inc()
					done = en.seq
					bo.reset()
					break
				}
				if ctx.Err() != nil {
					if done > 0 {
						o.mark(recPublished, done)
					}
					return
				}
				o.m.failures.WithLabelValues("mqtt").Inc()
				w.warn(o, "outbox: publishing an event failed; retrying until the broker takes it", "err", err, "enterprise", en.ev.Enterprise, "kind", en.ev.Kind)
				if !bo.wait(ctx, 0) {
					if done > 0 {
						o.mark(recPublished, done)
					}
					return
				}
			}
		}
		o.mark(recPublished, done)
	}
}
