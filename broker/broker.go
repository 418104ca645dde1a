// Package broker runs the embedded MQTT broker (mochi-mqtt) that serve
// starts when no external broker is configured, so a newcomer needs
// nothing installed. Gateways and cleanprod's own subscriber connect to it
// over TCP exactly as they would to mosquitto: same pipeline, same acks.
//
// Sessions, subscriptions, retained and in-flight messages persist in a
// bbolt file in the data folder, so a restart of the process does not
// lose what gateways published while cleanprod was behind; a second file
// (wal.go) covers the moment between acknowledging a gateway's message and
// queueing it. The files are written without fsync: they survive a crash
// of the process, not of the machine; production deployments use an
// external broker.
package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/hooks/storage/bolt"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mochi-mqtt/server/v2/system"
	"go.etcd.io/bbolt"
)

// Config configures the embedded broker.
type Config struct {
	// Addr is the TCP listen address, e.g. 127.0.0.1:1883 (port 0: any).
	Addr string
	// DataDir holds the persistence file; "" keeps everything in memory.
	DataDir string
	// TLS, when set, makes the listener speak TLS.
	TLS *tls.Config
	// Auth, when set, decides who may connect and publish or subscribe
	// where; nil allows everyone (the listener should then be loopback).
	Auth mqtt.Hook
	// Consumers are the client ids (cleanprod's subscriber) whose queues
	// hold back publishing: while one holds QueueLimit messages
	// unacknowledged, QoS 1 and 2 publishes of other clients wait
	// unacknowledged (see backpressure). Without it mochi drops QoS 1
	// messages for a session past 65,535.
	Consumers []string
	// QueueLimit: 0 is DefaultQueueLimit; at most DefaultQueueLimit.
	// QueueBytes bounds the same queue in bytes (topic plus payload; 0: no
	// bound). Set both to cleanprod's bounds (mqtt.max_unacked_messages
	// and _bytes): the broker then never sends cleanprod more than it
	// takes, so cleanprod never defers a message, which mochi would send
	// again out of order (it orders a session's queue by the second each
	// message came in, truncated to 16 bits).
	QueueLimit int
	QueueBytes int64
}

// Broker is a running embedded broker.
type Broker struct {
	srv      *mqtt.Server
	listener *listeners.TCP
	tls      bool
	bp       *backpressure
}

// Start starts the broker and returns once it listens.
func Start(cfg Config, log *slog.Logger) (*Broker, error) {
	var w *wal
	caps := mqtt.NewDefaultServerCapabilities()
	// Defaults drop QoS 1 messages under load ("client store quota
	// reached"); a consumer that falls behind must find them queued.
	caps.MaximumClientWritesPending = 262144
	caps.MaximumInflight = 65535
	// mochi drops a queued message after MaximumMessageExpiryInterval (a
	// day by default), however long the store has been down: a year.
	caps.MaximumMessageExpiryInterval = 365 * 24 * 60 * 60
	srv := mqtt.New(&mqtt.Options{Capabilities: caps, Logger: log.With("component", "embedded-broker"), InlineClient: true})
	var err error
	if cfg.Auth != nil {
		err = srv.AddHook(cfg.Auth, nil)
	} else {
		err = srv.AddHook(new(auth.AllowHook), nil)
	}
	if err != nil {
		return nil, fmt.Errorf("embedded broker auth: %w", err)
	}
	// Before the WAL's hook: a publish that waits is not yet written there.
	limit := cfg.QueueLimit
	if limit <= 0 || limit > DefaultQueueLimit {
		limit = DefaultQueueLimit
	}
	limitBytes := cfg.QueueBytes
	if limitBytes <= 0 {
		limitBytes = math.MaxInt64
	}
	bp := newBackpressure(srv, cfg.Consumers, limit, limitBytes)
	if err := srv.AddHook(bp, nil); err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return nil, fmt.Errorf("embedded broker data dir: %w", err)
		}
		err := srv.AddHook(&persistence{Hook: new(bolt.Hook), restored: bp.restored}, &bolt.Options{
			Path:    filepath.Join(cfg.DataDir, "broker.db"),
			Options: &bbolt.Options{Timeout: 2 * time.Second, NoSync: true},
		})
		if err != nil {
			return nil, fmt.Errorf("embedded broker persistence %s: %w", cfg.DataDir, err)
		}
		if w, err = openWAL(filepath.Join(cfg.DataDir, "broker-wal.db"), log); err != nil {
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
		if err := srv.AddHook(w, nil); err != nil {
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
	}
	l := listeners.NewTCP(listeners.Config{ID: "tcp", Address: cfg.Addr, TLSConfig: cfg.TLS})
	if err := srv.AddListener(l); err != nil {
		srv.Close()
		return nil, fmt.Errorf("embedded broker listen on %s: %w", cfg.Addr, err)
	}
	if err := srv.Serve(); err != nil {
		srv.Close()
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	if w != nil {
		n, err := w.replay(srv)
		if err != nil {
			srv.Close()
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
		if n > 0 {
			log.Info("embedded broker: published again messages acknowledged before a crash", "messages", n)
		}
	}
	return &Broker{srv: srv, listener: l, tls: cfg.TLS != nil, bp: bp}, nil
}

// Addr returns the address the broker listens on.
func (b *Broker) Addr() string { return b.listener.Address() }

// URL returns the broker URL for MQTT clients.
func (b *Broker) URL() string {
	if b.tls {
		return "ssl://" + b.Addr()
	}
	return "tcp://" + b.Addr()
}

// HeldPublishes returns how many publishes have waited because a
// consumer's queue was full.
func (b *Broker) HeldPublishes() int64 { return b.bp.held.Load() }

// Dropped returns how many messages mochi dropped for a full session
// (its in-flight table or a client's write queue).
func (b *Broker) Dropped() int64 {
	return atomic.LoadInt64(&b.srv.Info.InflightDropped) + atomic.LoadInt64(&b.srv.Info.MessagesDropped)
}

// Queued returns how many messages the session of clientID holds
// unacknowledged, sent or waiting to be sent (0: no session).
func (b *Broker) Queued(clientID string) int {
	if c, ok := b.srv.Clients.Get(clientID); ok {
		return c.State.Inflight.Len()
	}
	return 0
}

// Close stops the broker and closes its persistence file.
func (b *Broker) Close() error {
	if b == nil || b.srv == nil {
		return errors.New("broker not started")
	}
	return b.srv.Close()
}

// persistence is mochi's bbolt storage hook with one repair: its
// OnQosPublish does not record the packet id of an in-flight message, so
// after a restart every stored message would come back with id 0 and all
// but one would be lost. The id is the last part of the stored key
// ("if_{client}:{id}"); restore it when loading.
//
// A second repair: a session taken over keeps its stored queue
// (OnQosDropped).
//
// A third: mochi stops its hooks while its event loop may still
// tick, and the hook's OnSysInfoTick reads the database handle that Stop
// clears (a data race at every shutdown); the two are serialised here.
//
// It also tells restored (backpressure's count of what a consumer's
// queue holds) of each in-flight message it loads, which mochi puts back
// without calling any hook.
type persistence struct {
	*bolt.Hook
	restored func(client string, id uint16, size int64)
	mu       sync.Mutex // serialises OnSysInfoTick and Stop
	stopped  bool
}

// OnSysInfoTick stores the broker's statistics, unless the hook stopped.
func (p *persistence) OnSysInfoTick(info *system.Info) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stopped {
		p.Hook.OnSysInfoTick(info)
	}
}

// Stop closes the database once no statistics are being stored.
func (p *persistence) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	return p.Hook.Stop()
}

// OnQosDropped forgets a message dropped from a session's queue, unless
// the session was taken over by a new connection of the same client: mochi
// clears the old connection's queue (dropping each message) after handing
// it to the new one, which stores each again only as it sends it (and not
// at all if it fails before). The stored message has the same key under
// the new connection and stays until it is acknowledged.
func (p *persistence) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if cl.IsTakenOver() {
		return
	}
	p.Hook.OnQosDropped(cl, pk)
}

// StoredInflightMessages returns the stored in-flight messages with their
// packet ids.
func (p *persistence) StoredInflightMessages() ([]storage.Message, error) {
	msgs, err := p.Hook.StoredInflightMessages()
	if err != nil {
		return nil, err
	}
	for i := range msgs {
		if msgs[i].PacketID != 0 {
			continue
		}
		k := msgs[i].ID
		if id, err := strconv.ParseUint(k[strings.LastIndexByte(k, ':')+1:], 10, 16); err == nil {
			msgs[i].PacketID = uint16(id)
		}
	}
	if p.restored != nil {
		for _, m := range msgs {
			if m.FixedHeader.Type == packets.Publish {
				p.restored(m.Client, m.PacketID, int64(len(m.TopicName)+len(m.Payload)))
			}
		}
	}
	return msgs, nil
}
