package ingest

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// SubscriberConfig configures the broker connection.
type SubscriberConfig struct {
	Broker   string // e.g. tcp://127.0.0.1:1883, ssl://host:8883
	ClientID string // fixed: the broker keeps the persistent session under it
	Username string
	Password string
	TLS      *tls.Config // nil: plain TCP unless the URL says ssl/tls
	// SharedGroup, when set, subscribes as $share/{group}/... so several
	// replicas split the telemetry.
	SharedGroup          string
	KeepAlive            time.Duration
	ConnectTimeout       time.Duration
	MaxReconnectInterval time.Duration
	// WatchdogInterval: every interval a QoS 0 heartbeat goes to the
	// client's own watchdog topic; if none has come back for three
	// intervals on a connection that looks up, the client reconnects.
	WatchdogInterval time.Duration
	// PingTimeout is how long paho waits for a PINGRESP before it drops
	// the connection (default 10s).
	PingTimeout time.Duration
	// MaxUnackedMessages and MaxUnackedBytes (topic plus payload) bound
	// what cleanprod holds received and not yet acknowledged (defaults
	// 10000 and 32 MiB). Past either, messages stay with the broker (see
	// window).
	MaxUnackedMessages int
	MaxUnackedBytes    int64
}

// Default bounds of what the subscriber holds unacknowledged.
const (
	DefaultMaxUnackedMessages = 10000
	DefaultMaxUnackedBytes    = 32 << 20
)

// client is what the Subscriber uses of a paho client.
type client interface {
	Connect() mqtt.Token
	Disconnect(quiesce uint)
	IsConnectionOpen() bool
	Publish(topic string, qos byte, retained bool, payload any) mqtt.Token
	SubscribeMultiple(filters map[string]byte, callback mqtt.MessageHandler) mqtt.Token
}

// Subscriber receives telemetry from the broker and submits it to a
// Pipeline in arrival order. It subscribes in the on-connect handler, so
// every reconnect resubscribes, acknowledges nothing itself (the pipeline
// does, after the store accepted), and watches for a connection that is up
// but delivers nothing.
type Subscriber struct {
	cfg      SubscriberConfig
	pipe     *Pipeline
	metrics  *Metrics
	log      *slog.Logger
	c        client
	watchdog string // this client's heartbeat topic

	ctx        context.Context // set by Run before connecting; handlers submit under it
	ready      chan struct{}   // closed when ctx is set
	subscribed atomic.Bool
	lastBeat   atomic.Int64 // unix nanos of the last heartbeat received
	lastMsg    atomic.Int64 // unix nanos of the last telemetry message received
	connected  atomic.Int64 // unix nanos of the last (re)connect, 0 while down
	reconnect  chan struct{}
	closeOnce  sync.Once
	connFail   *rateLog // failed connection attempts
	win        *window  // bounds what is held unacknowledged
	qos0Lg     *rateLog
}

// NewSubscriber returns a Subscriber that feeds p. newClient builds the
// paho client from options (nil: mqtt.NewClient).
func NewSubscriber(cfg SubscriberConfig, p *Pipeline, m *Metrics, log *slog.Logger, newClient func(*mqtt.ClientOptions) mqtt.Client) *Subscriber {
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 30 * time.Second
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.MaxReconnectInterval <= 0 {
		cfg.MaxReconnectInterval = 30 * time.Second
	}
	if cfg.WatchdogInterval <= 0 {
		cfg.WatchdogInterval = 30 * time.Second
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = 10 * time.Second
	}
	if cfg.MaxUnackedMessages <= 0 {
		cfg.MaxUnackedMessages = DefaultMaxUnackedMessages
	}
	if cfg.MaxUnackedBytes <= 0 {
		cfg.MaxUnackedBytes = DefaultMaxUnackedBytes
	}
	if newClient == nil {
		newClient = mqtt.NewClient
	}
	s := &Subscriber{
		cfg: cfg, pipe: p, metrics: m, log: log,
		watchdog:  "cleanprod/watchdog/" + cfg.ClientID,
		reconnect: make(chan struct{}, 1),
		connFail:  newRateLog(log, 30*time.Second),
		qos0Lg:    newRateLog(log, 30*time.Second),
	}
	s.win = newWindow(cfg.MaxUnackedMessages, cfg.MaxUnackedBytes, func() {
		m.backlogReconnects.Inc()
		s.requestReconnect()
	})
	opts := mqtt.NewClientOptions().
		AddBroker(cfg.Broker).
		SetClientID(cfg.ClientID).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		SetCleanSession(false).
		SetAutoAckDisabled(true).
		SetOrderMatters(true). // one handler at a time, in arrival order; it never blocks
		SetKeepAlive(cfg.KeepAlive).
		SetPingTimeout(cfg.PingTimeout).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(cfg.MaxReconnectInterval).
		SetDefaultPublishHandler(s.onMessage). // before Connect: queued session messages arrive at once
		SetOnConnectHandler(s.onConnect).
		SetConnectionLostHandler(s.onConnectionLost).
		SetConnectionNotificationHandler(s.onConnectionNotification)
	if cfg.TLS != nil {
		opts.SetTLSConfig(cfg.TLS)
	}
	s.c = newClient(opts)
	return s
}

// Run connects and keeps the subscription alive until ctx ends. It does
// not disconnect: call Close after the pipeline has flushed, so the last
// acknowledgements reach the broker.
func (s *Subscriber) Run(ctx context.Context) error {
	s.log.Info("connecting to broker", "broker", s.cfg.Broker, "client_id", s.cfg.ClientID)
	tok := s.c.Connect() // with ConnectRetry the token completes on the first success
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("connect to broker %s: %w", s.cfg.Broker, err)
		}
	case <-ctx.Done():
		return nil
	}
	tick := time.NewTicker(s.cfg.WatchdogInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.reconnect:
			s.forceReconnect(ctx)
		case <-tick.C:
			s.checkWatchdog(ctx)
		}
	}
}

// Connected reports whether the client is connected and subscribed.
func (s *Subscriber) Connected() bool { return s.c.IsConnectionOpen() && s.subscribed.Load() }

// Close disconnects, giving in-flight acknowledgements a moment to leave.
func (s *Subscriber) Close() {
	s.closeOnce.Do(func() {
		s.c.Disconnect(1000)
		s.metrics.connected.Set(0)
	})
}

// Publish publishes payload at QoS 1 and waits for the broker's
// acknowledgement or ctx.
func (s *Subscriber) Publish(ctx context.Context, topic string, payload []byte) error {
	if !s.c.IsConnectionOpen() {
		return fmt.Errorf("publish %s: not connected", topic)
	}
	tok := s.c.Publish(topic, 1, false, payload)
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// filters are the subscriptions: every protocol's gateway topics.
func (s *Subscriber) filters() []string {
	fs := []string{TelemetryFilter, HJ212Filter}
	if s.cfg.SharedGroup != "" {
		for i, f := range fs {
			fs[i] = "$share/" + s.cfg.SharedGroup + "/" + f
		}
	}
	return fs
}

func (s *Subscriber) onConnect(c mqtt.Client) {
	s.subscribed.Store(false)
	subs := map[string]byte{s.watchdog: 0}
	for _, f := range s.filters() {
		subs[f] = 1
	}
	tok := s.c.SubscribeMultiple(subs, nil)
	if !tok.WaitTimeout(s.cfg.ConnectTimeout) || tok.Error() != nil {
		s.log.Error("subscribe failed; reconnecting", "err", tok.Error(), "filters", s.filters())
		s.requestReconnect()
		return
	}
	now := time.Now().UnixNano()
	s.lastBeat.Store(now)
	s.connected.Store(now)
	s.subscribed.Store(true)
	s.metrics.connects.Inc()
	s.metrics.connected.Set(1)
	s.log.Info("connected and subscribed", "broker", s.cfg.Broker, "filters", s.filters())
}

// onConnectionNotification logs failed connection attempts, which paho
// retries in silence: a broker certificate of an unknown CA, a refused
// client certificate or password would otherwise leave the service unready
// without a word. At most a line per 30s, counting those held back.
func (s *Subscriber) onConnectionNotification(_ mqtt.Client, n mqtt.ConnectionNotification) {
	if f, ok := n.(mqtt.ConnectionNotificationFailed); ok {
		s.connFail.warn("connect", "connecting to broker failed; retrying", "broker", s.cfg.Broker, "err", f.Reason)
	}
}

func (s *Subscriber) onConnectionLost(_ mqtt.Client, err error) {
	s.win.newConnection()
	s.connected.Store(0)
	s.subscribed.Store(false)
	s.metrics.connLost.Inc()
	s.metrics.connected.Set(0)
	s.log.Warn("connection to broker lost; reconnecting", "err", err)
}

// onMessage runs on paho's router goroutine, in arrival order, and never
// blocks: a blocked handler stops paho's reader, PINGRESPs are not read
// and paho drops the connection. What does not fit in the window stays
// with the broker (see window).
func (s *Subscriber) onMessage(_ mqtt.Client, m mqtt.Message) {
	if m.Topic() == s.watchdog {
		s.lastBeat.Store(time.Now().UnixNano())
		m.Ack()
		return
	}
	s.lastMsg.Store(time.Now().UnixNano())
	h, res := s.win.offer(m.MessageID(), m.Topic(), m.Payload(), m.Ack, m.Qos() > 0)
	switch res {
	case offerRedelivered:
		s.metrics.redelivered.Inc()
		return
	case offerDeferred:
		s.metrics.deferred.Inc()
		return
	case offerDropped:
		s.metrics.qos0Dropped.Inc()
		s.qos0Lg.warn("qos0", "QoS 0 message dropped: the unacknowledged backlog is full and the broker keeps no QoS 0 message; gateways must publish at QoS 1", "topic", truncateString(m.Topic()))
		return
	}
	s.pipe.Submit(Delivery{
		Topic:      m.Topic(),
		Payload:    m.Payload(),
		Redelivery: m.Duplicate(),
		Received:   time.Now(),
		Ack:        h.release,
	})
}

// Unacked returns the messages and bytes (topic plus payload) held
// received and not yet acknowledged. Safe for concurrent use.
func (s *Subscriber) Unacked() (msgs int, bytes int64) { return s.win.usage() }

func (s *Subscriber) requestReconnect() {
	select {
	case s.reconnect <- struct{}{}:
	default:
	}
}

// checkWatchdog publishes a heartbeat and reconnects if the previous ones
// stopped coming back while the connection looked alive.
func (s *Subscriber) checkWatchdog(ctx context.Context) {
	if !s.c.IsConnectionOpen() {
		return
	}
	s.c.Publish(s.watchdog, 0, false, []byte(strconv.FormatInt(time.Now().UnixNano(), 10)))
	since := s.connected.Load()
	if since == 0 {
		return
	}
	limit := 3 * s.cfg.WatchdogInterval
	last := time.Unix(0, max(s.lastBeat.Load(), s.lastMsg.Load(), since))
	// While messages wait unacknowledged (the store is slow or down) the
	// broker's in-flight window may be full and it may hold back even the
	// heartbeat: that silence is back-pressure, not a dead connection.
	if time.Since(last) > limit && !s.pipe.Holding() {
		s.log.Warn("no heartbeat came back on a connection that looks up; forcing a reconnect", "silent_for", time.Since(last).Round(time.Second))
		s.metrics.watchdogResets.Inc()
		s.forceReconnect(ctx)
	}
}

func (s *Subscriber) forceReconnect(ctx context.Context) {
	s.subscribed.Store(false)
	s.connected.Store(0)
	s.c.Disconnect(250)
	s.win.newConnection()
	s.metrics.connected.Set(0)
	tok := s.c.Connect()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			s.log.Error("reconnect failed", "err", err)
		}
	case <-ctx.Done():
	}
}
