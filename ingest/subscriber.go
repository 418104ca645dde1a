package ingest

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
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
	// Enterprises, when not nil, limits the subscriptions to the topics
	// of these enterprises (cp/v1/{enterprise}/+/telemetry and .../hj212):
	// the replica of one shard of a sharded fleet. nil subscribes to
	// every enterprise's topics with the wildcard filters.
	Enterprises          []string
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
	// Status, when not nil, announces this replica on the broker and
	// holds telemetry while a replica of another shard count is live
	// (see ReplicaStatus).
	Status *ReplicaStatus
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
	Unsubscribe(topics ...string) mqtt.Token
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

	// subMu serialises subscribing: on connect, and when SetEnterprises
	// changes the filters of a connected client. It guards filterSet.
	subMu     sync.Mutex
	filterSet map[string]bool // the telemetry filters wanted now

	gate *replicaGate // nil without SubscriberConfig.Status
	// drain holds telemetry from the moment the gate released it with
	// messages held back until the reconnect that has the broker send
	// those again, so that they are taken in their order.
	drain atomic.Bool
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
		filterSet: filtersOf(cfg.Enterprises),
	}
	if cfg.Status != nil {
		s.gate = newReplicaGate(*cfg.Status, m)
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
	if s.gate != nil {
		s.gate.will(opts)
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
		if s.gate != nil {
			s.gate.withdraw(s.c)
		}
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

// filtersOf returns the telemetry filters of enterprises: every
// protocol's topics of each, or the wildcard filters for nil.
func filtersOf(enterprises []string) map[string]bool {
	if enterprises == nil {
		return map[string]bool{TelemetryFilter: true, HJ212Filter: true}
	}
	fs := make(map[string]bool, 2*len(enterprises))
	for _, f := range EnterpriseFilters(enterprises) {
		fs[f] = true
	}
	return fs
}

// EnterpriseFilters returns the topic filters of every protocol's
// gateway topics of each of enterprises: what the replica of the shard
// that owns them subscribes to.
func EnterpriseFilters(enterprises []string) []string {
	fs := make([]string, 0, 2*len(enterprises))
	for _, e := range enterprises {
		fs = append(fs, topicPrefix+e+"/+/"+LevelTelemetry, topicPrefix+e+"/+/"+LevelHJ212)
	}
	return fs
}

// filtersPerPacket bounds the filters of one SUBSCRIBE or UNSUBSCRIBE: a
// shard of thousands of enterprises subscribes in several packets rather
// than one of hundreds of kilobytes.
const filtersPerPacket = 200

// subscribe subscribes to filters at QoS 1 (and extra at QoS 0), in
// packets of at most filtersPerPacket filters.
func (s *Subscriber) subscribe(filters []string, extra ...string) error {
	subs := map[string]byte{}
	for _, f := range extra {
		subs[f] = 0
	}
	send := func() error {
		if len(subs) == 0 {
			return nil
		}
		tok := s.c.SubscribeMultiple(subs, nil)
		if !tok.WaitTimeout(s.cfg.ConnectTimeout) {
			return fmt.Errorf("subscribe: no SUBACK within %s", s.cfg.ConnectTimeout)
		}
		if err := tok.Error(); err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
		if st, ok := tok.(*mqtt.SubscribeToken); ok {
			for f, code := range st.Result() {
				if code != 0x80 {
					continue
				}
				// A broker's ACL refusing a filter: said, never silent.
				if s.gate != nil && f == s.gate.filter() {
					s.log.Error("the broker refuses the replicas' status topic (its ACL lacks topic readwrite cleanprod/replicas/#): replicas of different shard counts are not kept from running together; regenerate the ACL with cleanprod gateways mosquitto-acl", "filter", f)
					s.gate.disable()
				} else {
					s.log.Error("the broker refuses a subscription (its ACL?)", "filter", f)
				}
			}
		}
		subs = map[string]byte{}
		return nil
	}
	for _, f := range filters {
		subs[f] = 1
		if len(subs) >= filtersPerPacket {
			if err := send(); err != nil {
				return err
			}
		}
	}
	return send()
}

// unsubscribe drops filters, in packets of at most filtersPerPacket.
func (s *Subscriber) unsubscribe(filters []string) error {
	for len(filters) > 0 {
		n := min(len(filters), filtersPerPacket)
		tok := s.c.Unsubscribe(filters[:n]...)
		if !tok.WaitTimeout(s.cfg.ConnectTimeout) {
			return fmt.Errorf("unsubscribe: no UNSUBACK within %s", s.cfg.ConnectTimeout)
		}
		if err := tok.Error(); err != nil {
			return fmt.Errorf("unsubscribe: %w", err)
		}
		filters = filters[n:]
	}
	return nil
}

// SetEnterprises changes the enterprises subscribed to (a reload that
// added or removed enterprises of this shard): a connected client
// subscribes to the new ones' topics and unsubscribes from the gone
// ones' at once, and every reconnect subscribes the new set. It is a no-op
// for a subscriber of every enterprise (Enterprises nil at start). A
// failed (un)subscription forces a reconnect, which subscribes again.
// Safe for concurrent use; it blocks for the broker's answers.
func (s *Subscriber) SetEnterprises(enterprises []string) {
	if s.cfg.Enterprises == nil {
		return
	}
	if enterprises == nil {
		enterprises = []string{}
	}
	want := filtersOf(enterprises)
	s.subMu.Lock()
	defer s.subMu.Unlock()
	var add, drop []string
	for f := range want {
		if !s.filterSet[f] {
			add = append(add, f)
		}
	}
	for f := range s.filterSet {
		if !want[f] {
			drop = append(drop, f)
		}
	}
	s.filterSet = want
	if len(add) == 0 && len(drop) == 0 || !s.subscribed.Load() {
		return // a reconnect subscribes the new set
	}
	sort.Strings(add)
	sort.Strings(drop)
	if err := s.subscribe(add); err != nil {
		s.log.Error("subscribing to the topics of enterprises added; reconnecting", "err", err, "filters", len(add))
		s.requestReconnect()
		return
	}
	if err := s.unsubscribe(drop); err != nil {
		// Their messages still come, and are acknowledged unprocessed
		// (see Pipeline's not-owned check): only a cost, but retried.
		s.log.Warn("unsubscribing from the topics of enterprises removed failed; reconnecting", "err", err, "filters", len(drop))
		s.requestReconnect()
		return
	}
	s.log.Info("subscriptions changed", "subscribed", len(add), "unsubscribed", len(drop), "filters", len(want))
}

// filters returns the telemetry filters wanted now, sorted; call with
// subMu held.
func (s *Subscriber) filters() []string {
	fs := make([]string, 0, len(s.filterSet))
	for f := range s.filterSet {
		fs = append(fs, f)
	}
	sort.Strings(fs)
	return fs
}

func (s *Subscriber) onConnect(c mqtt.Client) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	s.subscribed.Store(false)
	fs := s.filters()
	extra := []string{s.watchdog}
	if s.gate != nil {
		// At QoS 0: a broker sends no QoS 1 message while the in-flight
		// window is full, and it is full of held telemetry when a
		// backlog comes at connect; QoS 0 passes it.
		s.gate.newConnection()
		extra = append(extra, s.gate.filter())
	}
	if err := s.subscribe(fs, extra...); err != nil {
		s.log.Error("subscribe failed; reconnecting", "err", err, "filters", len(fs))
		s.requestReconnect()
		return
	}
	if s.gate != nil {
		if err := s.gate.announce(s.c, s.cfg.ConnectTimeout); err != nil {
			s.log.Error("announcing the replica failed; reconnecting", "err", err)
			s.requestReconnect()
			return
		}
	}
	now := time.Now().UnixNano()
	s.lastBeat.Store(now)
	s.connected.Store(now)
	s.subscribed.Store(true)
	s.metrics.connects.Inc()
	s.metrics.connected.Set(1)
	if len(fs) <= 4 {
		s.log.Info("connected and subscribed", "broker", s.cfg.Broker, "client_id", s.cfg.ClientID, "filters", fs)
	} else {
		s.log.Info("connected and subscribed", "broker", s.cfg.Broker, "client_id", s.cfg.ClientID, "filters", len(fs), "first", fs[0])
	}
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
	s.drain.Store(false) // the reconnect has the broker send the held messages again
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
	if s.gate != nil {
		if strings.HasPrefix(m.Topic(), s.gate.cfg.Prefix) {
			s.onStatus(m)
			return
		}
		if !s.gate.released.Load() || s.drain.Load() {
			// Not acknowledged: the broker sends it again after the
			// reconnect that ends the hold.
			s.gate.heldBack.Add(1)
			s.gate.heldC.Inc()
			return
		}
	}
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

// onStatus takes a replica's status (see ReplicaStatus), on paho's
// router goroutine like every message.
func (s *Subscriber) onStatus(m mqtt.Message) {
	m.Ack()
	releasedNow, msg := s.gate.onStatus(m.Topic(), m.Payload())
	if msg != "" {
		s.log.Warn(msg)
	}
	if !releasedNow {
		return
	}
	held := s.gate.heldBack.Load()
	s.log.Info("no replica of another shard count is live; taking telemetry", "status", s.gate.own, "held_back", held)
	if held > 0 {
		s.drain.Store(true)
		s.requestReconnect()
	}
}

// Waiting returns why the subscriber holds telemetry back (a replica of
// another shard count is live, or the statuses have not come yet), or ""
// once it takes telemetry. Safe for concurrent use.
func (s *Subscriber) Waiting() string {
	if s.gate == nil {
		return ""
	}
	if w := s.gate.Waiting(); w != "" {
		return w
	}
	if s.drain.Load() {
		return "reconnecting to take the messages held back"
	}
	return ""
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
	if s.gate != nil && s.gate.echoOverdue(2*s.cfg.ConnectTimeout) {
		// A broker that takes the status without sending it back (an
		// ACL that lets this user read but not write the topic) must
		// not hold telemetry for good: what it did send decides.
		if releasedNow, msg := s.gate.assumeKnown(); releasedNow || msg != "" {
			s.log.Error("this replica's own status did not come back from the broker (its ACL lacks topic readwrite cleanprod/replicas/#?); deciding on the other replicas' statuses alone")
			if msg != "" {
				s.log.Warn(msg)
			}
			if releasedNow && s.gate.heldBack.Load() > 0 {
				s.drain.Store(true)
				s.requestReconnect()
			}
		}
	}
	if s.gate != nil && s.subscribed.Load() && s.gate.Waiting() != "" {
		// Its own status not back yet (a QoS 0 echo lost), or waiting
		// for another count: announcing again costs nothing.
		if err := s.gate.announce(s.c, s.cfg.ConnectTimeout); err != nil {
			s.log.Warn("announcing the replica again failed", "err", err)
		}
	}
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
	s.drain.Store(false) // the next connection's messages are taken, held ones first
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
