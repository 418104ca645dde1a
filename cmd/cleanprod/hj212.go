package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleanprod/cleanprod/hj212"
	"github.com/cleanprod/cleanprod/ingest"
)

// stationReceiver is the TCP receiver of HJ 212 data loggers: it listens
// at start (so a taken port fails the start) and takes connections once
// ingest runs.
type stationReceiver struct {
	srv *hj212.Server
	ln  net.Listener
	log *slog.Logger
}

// listenHJ212 opens cfg's hj212.listen; nil when it is empty.
func listenHJ212(cfg *Config, pipe *ingest.Pipeline, reg prometheus.Registerer, log *slog.Logger) (*stationReceiver, error) {
	if cfg.HJ212.Listen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.HJ212.Listen)
	if err != nil {
		return nil, fmt.Errorf("hj212.listen: %w", err)
	}
	srv := &hj212.Server{
		Codec:          hj212.Codec{MaxSegment: cfg.HJ212.MaxSegment},
		Handler:        pipe.ReceiveHJ212,
		OnError:        pipe.HJ212Error,
		IgnoreCommands: true, // the logger's own replies and status: nothing to store
		MaxConns:       cfg.HJ212.MaxConnections,
		IdleTimeout:    cfg.HJ212.IdleTimeout,
	}
	registerHJ212Metrics(reg, srv)
	return &stationReceiver{srv: srv, ln: ln, log: log}, nil
}

func (r *stationReceiver) addr() string { return r.ln.Addr().String() }

// describe is the receiver's part of the start line.
func (r *stationReceiver) describe() string {
	if r == nil {
		return ""
	}
	return ", HJ 212 loggers tcp://" + r.addr()
}

// serve takes loggers' connections until ctx ends, then gives the packets
// in flight grace to be settled (stored and acknowledged while the
// pipeline's final flush runs, or left unacknowledged for the logger to
// send again).
func (r *stationReceiver) serve(ctx context.Context, grace time.Duration) error {
	r.log.Info("HJ 212 receiver taking data loggers", "addr", r.addr())
	done := make(chan error, 1)
	go func() { done <- r.srv.Serve(r.ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("hj212 receiver: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := r.srv.Shutdown(sctx); err != nil {
		r.log.Warn("HJ 212 receiver: connections still waiting for their data to be stored at shutdown; their loggers send it again", "err", err)
	}
	if err := <-done; err != nil && !errors.Is(err, hj212.ErrServerClosed) {
		return fmt.Errorf("hj212 receiver: %w", err)
	}
	return nil
}

// registerHJ212Metrics exports the receiver's counters.
func registerHJ212Metrics(reg prometheus.Registerer, srv *hj212.Server) {
	counter := func(name, help string, v func(hj212.Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "cleanprod_hj212_" + name, Help: help}, func() float64 { return float64(v(srv.Stats())) })
	}
	gauge := func(name, help string, v func(hj212.Stats) int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cleanprod_hj212_" + name, Help: help}, func() float64 { return float64(v(srv.Stats())) })
	}
	reg.MustRegister(
		gauge("connections", "HJ 212 data loggers connected now.", func(s hj212.Stats) int64 { return s.Active }),
		counter("connections_accepted_total", "HJ 212 logger connections accepted.", func(s hj212.Stats) int64 { return s.Accepted }),
		counter("connections_refused_total", "HJ 212 logger connections closed at once: hj212.max_connections reached or shutting down.", func(s hj212.Stats) int64 { return s.Refused }),
		counter("frames_total", "HJ 212 frames received with a good length and CRC.", func(s hj212.Stats) int64 { return s.Frames }),
		counter("frames_rejected_total", "HJ 212 frames, packets or garbage refused by the receiver (dead-lettered; see cleanprod_ingest_rejected_total by reason).", func(s hj212.Stats) int64 { return s.Rejected }),
		counter("commands_ignored_total", "HJ 212 packets that carry no data (the logger's replies, status), not stored.", func(s hj212.Stats) int64 { return s.Ignored }),
		counter("acks_total", "9014 data acknowledgements sent, each after its data was stored.", func(s hj212.Stats) int64 { return s.Acks }),
		counter("replies_total", "9011 replies sent (refusals: bad CRC, unknown MN, wrong PW, ...).", func(s hj212.Stats) int64 { return s.Replies }),
		gauge("pending", "HJ 212 packets handed to ingest and not yet stored.", func(s hj212.Stats) int64 { return s.Pending }),
		gauge("stalled_connections", "HJ 212 connections not read because their packets wait for the store.", func(s hj212.Stats) int64 { return s.Stalled }),
		counter("idle_timeouts_total", "HJ 212 connections closed for silence (hj212.idle_timeout).", func(s hj212.Stats) int64 { return s.IdleTimeouts }),
		counter("frame_timeouts_total", "HJ 212 connections closed for a frame that did not complete in time (a trickling sender).", func(s hj212.Stats) int64 { return s.FrameTimeouts }),
		counter("bad_closes_total", "HJ 212 connections closed after too many refused frames in a row.", func(s hj212.Stats) int64 { return s.BadCloses }),
	)
}
