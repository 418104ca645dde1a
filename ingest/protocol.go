package ingest

import (
	"fmt"
	"strings"
	"time"

	"github.com/cleanprod/cleanprod/registry"
)

// A Protocol decodes the messages of one wire protocol into a Message, the
// one form that the normaliser, the batcher and the acknowledgement path
// behind it take. Gateway contract v1 (JSON) and HJ 212 are protocols; one
// more (Sparkplug B) is one more implementation and one more topic level.
type Protocol interface {
	// Decode decodes payload, which came from gateway gw: the gateway of
	// its topic, or the station a TCP logger identified itself as. It
	// checks that the payload's own identity agrees with gw. A message
	// rejected whole returns a *DecodeError; rejected readings are listed
	// in Message.Rejects and the others kept. now is the arrival time.
	Decode(gw *registry.Gateway, payload []byte, now time.Time) (*Message, *DecodeError)
}

// Topic levels after cp/v1/{enterprise}/{gateway}/ that select a protocol.
const (
	LevelTelemetry = "telemetry" // gateway contract v1, JSON
	LevelHJ212     = "hj212"     // one HJ 212 frame per message
)

// GatewayTopic returns the topic on which gateway of enterprise publishes
// messages of the protocol at level.
func GatewayTopic(enterprise, gateway, level string) string {
	return topicPrefix + enterprise + "/" + gateway + "/" + level
}

// parseGatewayTopic splits cp/v1/{enterprise}/{gateway}/{level}.
func parseGatewayTopic(topic string) (enterprise, gateway, level string, ok bool) {
	rest, found := strings.CutPrefix(topic, topicPrefix)
	if !found {
		return "", "", "", false
	}
	enterprise, rest, found = strings.Cut(rest, "/")
	if !found {
		return "", "", "", false
	}
	gateway, level, found = strings.Cut(rest, "/")
	if !found || !registry.ValidID(enterprise) || !registry.ValidID(gateway) {
		return "", "", "", false
	}
	return enterprise, gateway, level, true
}

// ContractV1 decodes gateway contract v1: a JSON object with the gateway,
// its message sequence and the readings (see Decode).
type ContractV1 struct {
	MaxReadings int // bound on a message's readings (0: none)
}

// Decode implements Protocol.
func (c ContractV1) Decode(gw *registry.Gateway, payload []byte, _ time.Time) (*Message, *DecodeError) {
	msg, err := Decode(payload, c.MaxReadings)
	if err != nil {
		return nil, err.(*DecodeError)
	}
	if msg.Gateway != gw.ID {
		return nil, &DecodeError{ReasonGatewayMismatch, fmt.Sprintf("payload says gateway %q, topic says %q", truncateString(msg.Gateway), gw.ID)}
	}
	return msg, nil
}
