package ingest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
)

// ReplicaStatus makes a Subscriber announce its replica on the broker and
// hold telemetry while a replica of another shard count is live: two
// replicas of different counts would both own some enterprise and compute
// its meters' deltas at the same time (a reshard whose old replicas still
// run).
//
// Each replica keeps a retained message on StatusPrefix + "<i>of<n>"
// saying its shard count, marked gone by its last will when its
// connection dies and cleared by Close when it stops. On every connect the subscriber
// subscribes to StatusPrefix + "+", publishes its own status and takes no
// telemetry until that status comes back (every retained status came
// before it). If a status of another count was among them, it goes on
// holding, and is not ready, until that status is cleared (the replica
// stopped, or "cleanprod shards retire" cleared a stale one). Held
// messages are not acknowledged; the reconnect that ends the hold makes
// the broker send them again. Once taking telemetry, a replica goes on
// (it logs a status of another count that appears): the replica that
// started last is the one that waits.
type ReplicaStatus struct {
	// Prefix is the topic prefix of the fleet's statuses, ending in '/',
	// e.g. cleanprod/replicas/cleanprod/.
	Prefix       string
	Index, Count int
}

// StatusTopic returns the topic of shard index of count under prefix.
func StatusTopic(prefix string, index, count int) string {
	return prefix + strconv.Itoa(index) + "of" + strconv.Itoa(count)
}

// statusMessage is a replica's retained status.
type statusMessage struct {
	Count int       `json:"count"`
	Index int       `json:"index"`
	Run   string    `json:"run"` // random per process: tells this run's echo from a stale status
	Since time.Time `json:"since"`
	// Gone is the last will's: the replica's connection died. (A will
	// of no payload would clear the retained status, but mochi refuses
	// one.)
	Gone bool `json:"gone,omitempty"`
}

// replicaGate is the Subscriber's side of ReplicaStatus.
type replicaGate struct {
	cfg      ReplicaStatus
	own      string // this replica's status topic
	payload  []byte
	run      string
	released atomic.Bool
	// heldBack counts telemetry messages left unacknowledged while held.
	heldBack atomic.Int64
	heldC    prometheus.Counter

	mu        sync.Mutex
	peers     map[string]int // status topic -> shard count of a live replica (not this one)
	known     bool           // this connection saw its own status come back
	announced time.Time      // when this connection first announced it (zero: not yet)
	waiting   string         // why it holds, for /readyz and the log ("" when not)
}

func newReplicaGate(cfg ReplicaStatus, m *Metrics) *replicaGate {
	b := make([]byte, 8)
	rand.Read(b)
	g := &replicaGate{cfg: cfg, own: StatusTopic(cfg.Prefix, cfg.Index, cfg.Count), run: hex.EncodeToString(b), peers: map[string]int{}, heldC: m.statusHeld}
	g.payload, _ = json.Marshal(statusMessage{Count: cfg.Count, Index: cfg.Index, Run: g.run, Since: time.Now().UTC()})
	g.waiting = "waiting for the replicas' statuses on the broker"
	return g
}

// filter is the subscription to every replica's status.
func (g *replicaGate) filter() string { return g.cfg.Prefix + "+" }

// newConnection forgets what the last connection saw: the statuses come
// again, retained, with the subscription.
func (g *replicaGate) newConnection() {
	g.mu.Lock()
	g.known = false
	g.announced = time.Time{}
	clear(g.peers)
	g.mu.Unlock()
}

// disable releases telemetry for good: the broker refuses the status
// topic, so no status can be seen or kept.
func (g *replicaGate) disable() {
	g.mu.Lock()
	g.waiting = ""
	g.mu.Unlock()
	g.released.Store(true)
}

// echoOverdue reports whether this connection announced the replica more
// than after ago and its status has not come back, while held.
func (g *replicaGate) echoOverdue(after time.Duration) bool {
	if g.released.Load() {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.known && !g.announced.IsZero() && time.Since(g.announced) > after
}

// assumeKnown decides as if the replica's own status had come back: on
// the statuses received so far (see onStatus for the results).
func (g *replicaGate) assumeKnown() (releasedNow bool, logMsg string) {
	g.mu.Lock()
	g.known = true
	g.mu.Unlock()
	return g.onStatus("", nil)
}

// conflicts returns the live replicas of another count, sorted; call with
// mu held.
func (g *replicaGate) conflicts() []string {
	var out []string
	for topic, n := range g.peers {
		if n != g.cfg.Count {
			out = append(out, fmt.Sprintf("%s (shard count %d)", strings.TrimPrefix(topic, g.cfg.Prefix), n))
		}
	}
	sort.Strings(out)
	return out
}

// onStatus takes a status message. It returns whether telemetry was
// released just now (the caller reconnects if it held any back) and a
// line to log ("" for none).
func (g *replicaGate) onStatus(topic string, payload []byte) (releasedNow bool, logMsg string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case topic == "":
		// assumeKnown: nothing received, decide on what is known.
	case topic == g.own:
		var st statusMessage
		if json.Unmarshal(payload, &st) == nil && st.Run == g.run {
			g.known = true
		}
	default:
		var st statusMessage
		if len(payload) > 0 && json.Unmarshal(payload, &st) == nil && st.Count > 0 && !st.Gone {
			g.peers[topic] = st.Count
		} else {
			delete(g.peers, topic) // cleared, gone, or not a status
		}
	}
	if !g.known {
		return false, ""
	}
	c := g.conflicts()
	if g.released.Load() {
		if len(c) > 0 && len(payload) > 0 && topic != g.own {
			return false, "a replica of another shard count started while this one takes telemetry: " + strings.Join(c, ", ") + "; it waits until this one stops"
		}
		return false, ""
	}
	if len(c) > 0 {
		w := "replicas of another shard count are live: " + strings.Join(c, ", ") + "; stop them (or clear a stale status with cleanprod shards retire) before this one takes telemetry"
		changed := w != g.waiting
		g.waiting = w
		if changed {
			return false, w
		}
		return false, ""
	}
	g.waiting = ""
	g.released.Store(true)
	return true, ""
}

// Waiting returns why the subscriber holds telemetry back, or "".
func (g *replicaGate) Waiting() string {
	if g.released.Load() {
		return ""
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting
}

// announce publishes this replica's status, retained; call on connect,
// after subscribing to the statuses. It goes at QoS 0: a QoS 1 publish
// made while paho resumes a persistent session lands in the store that
// resume walks, which races with the packet being written (paho issue
// 703); and the status is announced again on every connect, and read
// back before anything is taken, so nothing depends on its PUBACK.
func (g *replicaGate) announce(c client, timeout time.Duration) error {
	g.mu.Lock()
	if g.announced.IsZero() {
		g.announced = time.Now()
	}
	g.mu.Unlock()
	tok := c.Publish(g.own, 0, true, g.payload)
	if !tok.WaitTimeout(timeout) {
		return fmt.Errorf("publish the replica's status: not sent within %s", timeout)
	}
	return tok.Error()
}

// withdraw clears this replica's status (at a clean stop: the will only
// goes with a lost connection).
func (g *replicaGate) withdraw(c client) {
	if c.IsConnectionOpen() {
		c.Publish(g.own, 0, true, []byte{}).WaitTimeout(time.Second)
	}
}

// will sets the last will that says the replica is gone.
func (g *replicaGate) will(opts *mqtt.ClientOptions) {
	gone, _ := json.Marshal(statusMessage{Count: g.cfg.Count, Index: g.cfg.Index, Run: g.run, Gone: true})
	opts.SetBinaryWill(g.own, gone, 1, true)
}
