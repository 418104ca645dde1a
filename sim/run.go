package sim

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Publisher publishes one message. Publish blocks until the broker has
// accepted the message (for MQTT QoS 1: its PUBACK) or fails. Run calls it
// from several goroutines at once, but never concurrently for messages of
// the same gateway.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte) error
}

// PublisherFunc adapts a function to a Publisher.
type PublisherFunc func(ctx context.Context, topic string, payload []byte) error

// Publish calls f.
func (f PublisherFunc) Publish(ctx context.Context, topic string, payload []byte) error {
	return f(ctx, topic, payload)
}

// Run generates the fleet's messages and publishes them through pub,
// pacing simulated time by Config.Speed, never ahead of the wall clock, and
// messages by Config.MaxRate. A failed publish is retried with back-off
// until it succeeds or ctx is done, so that a broker outage loses nothing
// and every message of a gateway arrives in the order it was generated.
// Messages enter the ledger once published.
//
// With Config.Progress, Run writes a progress line every ProgressEvery,
// one line ("history loaded: ...; now live") once the past it replays is
// published and it reaches the wall clock, and a summary at the end.
//
// Run returns when Config.Duration has been simulated (after flushing
// buffered and held-back messages) or when ctx is done; a stop by ctx is
// not an error. It may be called once, and not together with Next.
func (s *Simulator) Run(ctx context.Context, pub Publisher) error {
	if pub == nil {
		return errors.New("sim: nil publisher")
	}
	if s.running {
		return errors.New("sim: Run called twice")
	}
	s.running = true
	began := time.Now()
	s.mu.Lock()
	s.began = began
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var workers sync.WaitGroup
	queues := make([]chan Message, s.cfg.Workers)
	for i := range queues {
		q := make(chan Message, 256)
		queues[i] = q
		workers.Go(func() { s.publish(ctx, pub, q) })
	}
	var progress sync.WaitGroup
	stopProgress := make(chan struct{})
	if w := s.cfg.Progress; w != nil {
		progress.Go(func() {
			tick := time.NewTicker(s.cfg.ProgressEvery)
			defer tick.Stop()
			for {
				select {
				case <-tick.C:
					st := s.Stats()
					s.progressMu.Lock()
					fmt.Fprintln(w, st)
					s.progressMu.Unlock()
				case <-stopProgress:
					return
				}
			}
		})
	}

	s.produce(ctx, queues, began)
	for _, q := range queues {
		close(q)
	}
	workers.Wait()
	close(stopProgress)
	progress.Wait()
	s.mu.Lock()
	s.elapsed = time.Since(began)
	s.mu.Unlock()
	if w := s.cfg.Progress; w != nil {
		if err := s.WriteSummary(w); err != nil {
			return fmt.Errorf("sim: write summary: %w", err)
		}
	}
	return nil
}

// produce generates ticks, waits for their time and hands their messages
// to the workers, until the end of the run or ctx is done.
func (s *Simulator) produce(ctx context.Context, queues []chan Message, began time.Time) {
	lim := limiter{rate: s.cfg.MaxRate, burst: max(1, s.cfg.MaxRate/20), tokens: 1, last: began}
	var handed int64                         // messages given to the workers
	live := !s.cfg.Start.Before(s.cfg.Now()) // no history to announce
	for {
		t, msgs, ok := s.generate()
		if !ok {
			return
		}
		if !live && t.After(s.cfg.Now()) {
			live = true
			if !s.announceLive(ctx, handed) {
				return
			}
		}
		handed += int64(len(msgs))
		if !s.waitFor(ctx, t, began) {
			return
		}
		s.setSimTime(t)
		for i := range msgs {
			m := msgs[i]
			msgs[i] = Message{}
			if !lim.wait(ctx) {
				return
			}
			select {
			case queues[m.shard] <- m:
			case <-ctx.Done():
				return
			}
		}
	}
}

// announceLive waits until the history's handed messages are published
// (for MQTT: acknowledged by the broker), then writes a line saying so to
// Config.Progress. It reports false if ctx is done first.
func (s *Simulator) announceLive(ctx context.Context, handed int64) bool {
	for s.Stats().Messages < handed {
		if !sleep(ctx, 20*time.Millisecond) {
			return false
		}
	}
	if w := s.cfg.Progress; w != nil {
		st := s.Stats()
		s.progressMu.Lock()
		defer s.progressMu.Unlock()
		fmt.Fprintf(w, "history loaded: %s of %d enterprises up to %s in %s (%d messages, %d readings, %d carrying an injected fault); now live, each meter every %s\n",
			span(st.SimTime.Sub(s.cfg.Start)), len(s.reg.Enterprises), st.SimTime.UTC().Format("2006-01-02 15:04 UTC"),
			st.Elapsed.Round(time.Second), st.Messages, st.Readings, st.Faults, s.cfg.Interval)
	}
	return true
}

// span formats a simulated span: whole days from two days on.
func span(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", d.Round(24*time.Hour)/(24*time.Hour))
	}
	return d.Round(time.Minute).String()
}

// waitFor waits until simulated time t is due: Speed simulated seconds per
// real second since the start of Run, and never after the wall clock. It
// reports false if ctx is done first.
func (s *Simulator) waitFor(ctx context.Context, t, began time.Time) bool {
	for {
		var d time.Duration
		if s.cfg.Speed > 0 {
			d = time.Until(began.Add(time.Duration(float64(t.Sub(s.cfg.Start)) / s.cfg.Speed)))
		}
		d = max(d, t.Sub(s.cfg.Now()))
		if d <= 0 {
			return ctx.Err() == nil
		}
		if !sleep(ctx, d) {
			return false
		}
	}
}

// publish is a worker: it publishes the messages of its gateways in order,
// retrying each until it is accepted or ctx is done.
func (s *Simulator) publish(ctx context.Context, pub Publisher, q <-chan Message) {
	// A StationLink needs what the simulator knows of a frame (its QN, an
	// offline period before it).
	mp, _ := pub.(interface {
		publishMessage(ctx context.Context, m *Message) error
	})
	for m := range q {
		backoff := 50 * time.Millisecond
		for ctx.Err() == nil {
			var err error
			if mp != nil {
				err = mp.publishMessage(ctx, &m)
			} else {
				err = pub.Publish(ctx, m.Topic, m.Payload)
			}
			if err == nil {
				s.commit(&m)
				break
			}
			if ctx.Err() != nil {
				break
			}
			s.mu.Lock()
			s.stats.Errors++
			s.mu.Unlock()
			s.cfg.Logger.Warn("publish failed; retrying", "topic", m.Topic, "err", err, "backoff", backoff)
			sleep(ctx, backoff)
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

// sleep waits for d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// limiter is a token bucket of rate messages per second (0: unlimited).
type limiter struct {
	rate, burst, tokens float64
	last                time.Time
}

// wait takes one token, sleeping until there is one; false if ctx is done.
func (l *limiter) wait(ctx context.Context) bool {
	if l.rate <= 0 {
		return true
	}
	now := time.Now()
	l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		return true
	}
	d := time.Duration((1 - l.tokens) / l.rate * float64(time.Second))
	if !sleep(ctx, d) {
		return false
	}
	l.tokens, l.last = 0, now.Add(d)
	return true
}
