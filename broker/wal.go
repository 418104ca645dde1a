package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.etcd.io/bbolt"
)

// wal closes mochi's at-most-once window for QoS 1 publishes: mochi sends
// the PUBACK to the publishing gateway before it stores the message for
// the subscribers, so a crash between the two loses a message the gateway
// was told was delivered. wal writes each incoming QoS 1/2 message to a
// bbolt file in OnPublish (before the PUBACK) and deletes it in
// OnPublished (after the subscribers' copies are stored). At start, what
// is left was acknowledged but perhaps never queued: it is published again
// (at worst a duplicate, which ingest absorbs).
//
// The file is written without fsync, like the session store: it survives a
// crash of the process, not of the machine.
type wal struct {
	mqtt.HookBase
	db  *bbolt.DB
	log *slog.Logger

	mu      sync.Mutex
	pending map[walKey]uint64 // in-flight publish -> its entry
}

type walKey struct {
	client string
	id     uint16
}

var walBucket = []byte("wal")

func openWAL(path string, log *slog.Logger) (*wal, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 2e9, NoSync: true})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(walBucket)
		return err
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &wal{db: db, log: log, pending: map[walKey]uint64{}}, nil
}

// ID names the hook.
func (w *wal) ID() string { return "cleanprod-wal" }

// Provides says which events the hook handles.
func (w *wal) Provides(b byte) bool { return b == mqtt.OnPublish || b == mqtt.OnPublished }

// OnPublish records a network client's QoS 1/2 message before it is
// acknowledged.
func (w *wal) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Qos == 0 || cl.Net.Inline {
		return pk, nil
	}
	var seq uint64
	err := w.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(walBucket)
		var err error
		if seq, err = b.NextSequence(); err != nil {
			return err
		}
		return b.Put(binary.BigEndian.AppendUint64(nil, seq), encodeWAL(pk))
	})
	if err != nil {
		// Refuse rather than acknowledge what could be lost; the gateway
		// retries.
		w.log.Error("embedded broker: cannot record a message; refusing it", "err", err, "topic", pk.TopicName)
		return pk, packets.ErrRejectPacket
	}
	w.mu.Lock()
	w.pending[walKey{cl.ID, pk.PacketID}] = seq
	w.mu.Unlock()
	return pk, nil
}

// OnPublished forgets a message once its subscribers' copies are stored.
func (w *wal) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	k := walKey{cl.ID, pk.PacketID}
	w.mu.Lock()
	seq, ok := w.pending[k]
	delete(w.pending, k)
	w.mu.Unlock()
	if !ok {
		return
	}
	if err := w.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(walBucket).Delete(binary.BigEndian.AppendUint64(nil, seq))
	}); err != nil {
		w.log.Warn("embedded broker: cannot clear a delivered message; it may be delivered again after a restart", "err", err)
	}
}

// replay publishes what a previous run acknowledged but may not have
// queued, then forgets it.
func (w *wal) replay(srv *mqtt.Server) (int, error) {
	var keys [][]byte
	var msgs []walMessage
	err := w.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(walBucket).ForEach(func(k, v []byte) error {
			m, err := decodeWAL(v)
			if err != nil {
				w.log.Warn("embedded broker: skipping an unreadable recorded message", "err", err)
				return nil
			}
			keys = append(keys, append([]byte(nil), k...))
			msgs = append(msgs, m)
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	for _, m := range msgs {
		if err := srv.Publish(m.topic, m.payload, false, m.qos); err != nil {
			return 0, fmt.Errorf("replay %s: %w", m.topic, err)
		}
	}
	err = w.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(walBucket)
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return len(msgs), err
}

// Stop closes the file (mochi calls it on Close).
func (w *wal) Stop() error { return w.db.Close() }

type walMessage struct {
	qos     byte
	topic   string
	payload []byte
}

// encodeWAL stores qos, topic and payload: qos byte, uvarint topic
// length, topic, payload.
func encodeWAL(pk packets.Packet) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen32+len(pk.TopicName)+len(pk.Payload))
	b = append(b, pk.FixedHeader.Qos)
	b = binary.AppendUvarint(b, uint64(len(pk.TopicName)))
	b = append(b, pk.TopicName...)
	return append(b, pk.Payload...)
}

func decodeWAL(v []byte) (walMessage, error) {
	if len(v) < 2 {
		return walMessage{}, errors.New("short record")
	}
	n, w := binary.Uvarint(v[1:])
	if w <= 0 || uint64(len(v)-1-w) < n {
		return walMessage{}, errors.New("bad topic length")
	}
	start := 1 + w
	return walMessage{qos: v[0], topic: string(v[start : start+int(n)]), payload: append([]byte(nil), v[start+int(n):]...)}, nil
}
