package ingest

import (
	"fmt"
	"net"
	"time"

	"github.com/cleanprod/cleanprod/hj212"
)

// ReceiveHJ212 is the hj212.Server's Handler: it hands a packet from a
// logger connected over TCP to the pipeline as a message of its station's
// gateway, decoded like a frame forwarded over MQTT. The logger gets its
// 9014 only once the packet's readings are stored (or it was
// dead-lettered), through the message's acknowledgement; a logger of an
// unknown MN or with a wrong PW gets a 9011 refusal once the frame is
// dead-lettered.
func (p *Pipeline) ReceiveHJ212(r *hj212.Request) {
	now := p.cfg.Now()
	reg := p.current.Load()
	gw, ok := reg.Station(r.Packet.MN)
	switch {
	case !ok:
		p.Submit(Delivery{Topic: tcpSource(r.Remote), Payload: r.Raw, Received: now, Ack: func() { r.Refuse(hj212.QnRtnBadMN) },
			Rejected: &DecodeError{ReasonUnknownMN, fmt.Sprintf("MN %q is the station of no gateway", truncateString(r.Packet.MN))}})
	case r.Packet.PW != gw.Station.Password:
		p.Submit(Delivery{Topic: tcpSource(r.Remote), Payload: r.Raw, Received: now, Ack: func() { r.Refuse(hj212.QnRtnBadPW) },
			Rejected: &DecodeError{ReasonBadPassword, fmt.Sprintf("frame of MN %q: wrong PW", r.Packet.MN)}})
	default:
		p.Submit(Delivery{Topic: GatewayTopic(gw.Enterprise.ID, gw.ID, LevelHJ212), Payload: r.Raw, Received: now, Ack: r.Confirm})
	}
}

// HJ212Error is the hj212.Server's OnError: a frame the receiver refused
// (its reply already decided) is counted and dead-lettered like any
// rejected message.
func (p *Pipeline) HJ212Error(remote net.Addr, err *hj212.Error) {
	p.Submit(Delivery{Topic: tcpSource(remote), Payload: err.Raw, Received: time.Now(), Rejected: &DecodeError{hj212Reason(err.Reason), err.Error()}})
}

// tcpSource names a TCP peer where a message's topic would be.
func tcpSource(a net.Addr) string {
	if a == nil {
		return "hj212+tcp://"
	}
	return "hj212+tcp://" + a.String()
}
