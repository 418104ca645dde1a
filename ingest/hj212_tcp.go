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
// dead-lettered; a logger of another shard's enterprise gets a 9011
// QnRtn=2 at once (see PipelineConfig.Owns).
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
	case p.cfg.Owns != nil && !p.cfg.Owns(gw.Enterprise.ID):
		// The logger connected to a replica that does not own its
		// enterprise (a load balancer in front of every shard, or a
		// reshard moved it). HJ 212 has no redirect: the frame is refused
		// with 9011 QnRtn=2, not stored and not dead-lettered (it is good
		// data), and the logger sends it again, as it does after any
		// refusal, until it reaches its owner. Processing it here instead
		// would have two replicas compute the station's deltas.
		p.metrics.notOwned.WithLabelValues("hj212_tcp").Inc()
		p.notOwnedLg.warn("not-owned-tcp", "HJ 212 logger of an enterprise of another shard refused; point it at the owner's replica", "mn", r.Packet.MN, "enterprise", gw.Enterprise.ID, "remote", tcpSource(r.Remote))
		r.Refuse(hj212.QnRtnRefused)
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
