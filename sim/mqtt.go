package sim

import (
	"context"
	"fmt"
	"net/url"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// pahoClient is the part of a paho client MQTTPublisher uses.
type pahoClient interface {
	Publish(topic string, qos byte, retained bool, payload any) paho.Token
}

// MQTTPublisher is a Publisher over a paho MQTT client: QoS 1, not
// retained, and Publish waits for the broker's acknowledgement. It is safe
// for concurrent use.
type MQTTPublisher struct {
	client  pahoClient
	timeout time.Duration
}

// NewMQTTPublisher returns a publisher over client (a connected
// paho mqtt.Client) that gives up on a message not acknowledged within
// timeout (0: 10 seconds).
func NewMQTTPublisher(client pahoClient, timeout time.Duration) *MQTTPublisher {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &MQTTPublisher{client: client, timeout: timeout}
}

// Publish publishes payload on topic at QoS 1 and waits for the PUBACK.
func (p *MQTTPublisher) Publish(ctx context.Context, topic string, payload []byte) error {
	tok := p.client.Publish(topic, 1, false, payload)
	t := time.NewTimer(p.timeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("publish %s: %w", topic, err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("publish %s: not acknowledged within %v", topic, p.timeout)
	}
}

// Dial connects a paho client to the broker at brokerURL (tcp://host:port,
// ssl://, ws://, wss://; credentials as user:password@ in the URL) and
// returns it connected. It reconnects on its own after a connection loss;
// the caller disconnects it when done.
func Dial(ctx context.Context, brokerURL, clientID string) (paho.Client, error) {
	u, err := url.Parse(brokerURL)
	if err != nil {
		return nil, fmt.Errorf("dial broker: %w", err)
	}
	opts := paho.NewClientOptions().
		AddBroker(brokerURL).
		SetClientID(clientID).
		SetCleanSession(true).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(5 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetOrderMatters(false)
	c := paho.NewClient(opts)
	tok := c.Connect()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return nil, fmt.Errorf("dial broker %s: %w", u.Redacted(), err)
		}
		return c, nil
	case <-ctx.Done():
		go c.Disconnect(0)
		return nil, fmt.Errorf("dial broker %s: %w", u.Redacted(), ctx.Err())
	}
}
