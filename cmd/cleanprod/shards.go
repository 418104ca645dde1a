package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cleanprod/cleanprod/ingest"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/shard"
)

// shardOf resolves this replica's shard from cfg: shard.index, or the
// ordinal of the host name (hostname) with shard.index_from_hostname.
func shardOf(cfg *Config, hostname func() (string, error)) (shard.Set, error) {
	index := cfg.Shard.Index
	if cfg.Shard.FromHostname {
		h, err := hostname()
		if err != nil {
			return shard.Set{}, fmt.Errorf("shard.index_from_hostname: %w", err)
		}
		if index, err = shard.OrdinalOf(h); err != nil {
			return shard.Set{}, fmt.Errorf("shard.index_from_hostname: %w", err)
		}
		if index >= cfg.Shard.Count {
			return shard.Set{}, fmt.Errorf("shard.index_from_hostname: host %s is replica %d but shard.count is %d: scale the StatefulSet and shard.count together (see \"Scaling out: shards\" in the README)", h, index, cfg.Shard.Count)
		}
	}
	s, err := shard.New(index, cfg.Shard.Count)
	if err != nil {
		return shard.Set{}, fmt.Errorf("shard: %w", err)
	}
	return s, nil
}

// shardClientID is the MQTT client id of shard s: the broker keeps each
// shard's persistent session under its own id. A single replica keeps
// mqtt.client_id as it is, so that its session survives an upgrade.
func shardClientID(clientID string, s shard.Set) string {
	if s.Single() {
		return clientID
	}
	return clientID + "-" + strconv.Itoa(s.Index) + "of" + strconv.Itoa(s.Count)
}

// shardUsername is the broker user name of shard s: mqtt.username with
// "{shard}" replaced by "<i>of<n>" (cleanprod-{shard}: cleanprod-1of3),
// the users gateways mosquitto-acl -shard-counts adds. A broker that makes
// the user name the client id (mosquitto's use_username_as_clientid)
// keeps each shard's session apart only so. A single replica drops the
// placeholder with the '-' before it (cleanprod).
func shardUsername(username string, s shard.Set) string {
	if s.Single() {
		return strings.ReplaceAll(strings.ReplaceAll(username, "-{shard}", ""), "{shard}", "")
	}
	return strings.ReplaceAll(username, "{shard}", strconv.Itoa(s.Index)+"of"+strconv.Itoa(s.Count))
}

// statusPrefix is the topic prefix under which the replicas of cfg's
// fleet announce themselves (ingest.ReplicaStatus).
func statusPrefix(cfg *Config) string {
	return "cleanprod/replicas/" + cfg.MQTT.ClientID + "/"
}

// shardEnterprises returns the ids of the enterprises of reg that s owns,
// for the subscriber: nil for a single replica (the wildcard filters),
// never nil for a shard (none owned: no telemetry filters).
func shardEnterprises(reg *registry.Registry, s shard.Set) []string {
	if s.Single() {
		return nil
	}
	ids := []string{}
	for _, e := range reg.Enterprises {
		if s.Owns(e.ID) {
			ids = append(ids, e.ID)
		}
	}
	return ids
}

const shardsUsage = `Usage:
  cleanprod shards prepare -shard.count N [serve's flags]
        create the persistent sessions of the N shards on the broker, each
        subscribed to its enterprises' topics, so that the broker queues
        their telemetry from now on; run it before stopping the replicas
        of the old count
  cleanprod shards retire -shard.count M [serve's flags]
        remove the persistent sessions of the M shards of an old count,
        once no replica of that count runs any more
  cleanprod shards list -shard.count N [serve's flags]
        which shard owns each enterprise of gateway_config

The broker connection (mqtt.url, mqtt.client_id, credentials, TLS) and
gateway_config are serve's settings: give the same -config. The procedure
is in the README, "Scaling out: shards".
`

// shardsCommand runs "cleanprod shards prepare|retire|list".
func shardsCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "prepare" && args[0] != "retire" && args[0] != "list") {
		fmt.Fprint(stderr, shardsUsage)
		if len(args) == 0 {
			return errors.New("shards: no command given (prepare, retire or list)")
		}
		return fmt.Errorf("shards: unknown command %q (prepare, retire or list)", args[0])
	}
	cmd := args[0]
	cfg, rest, err := loadConfig("shards "+cmd, args[1:], getenv, stderr)
	if err != nil {
		return err
	}
	if err := noArguments("shards "+cmd, rest); err != nil {
		return err
	}
	reg, err := loadRegistry(cfg)
	if err != nil {
		return err
	}
	n := cfg.Shard.Count
	if cmd == "list" {
		for _, e := range reg.Enterprises {
			fmt.Fprintf(stdout, "%s\t%d/%d\n", e.ID, shard.Of(e.ID, n), n)
		}
		return nil
	}
	if cfg.MQTT.URL == "" {
		return errors.New("shards " + cmd + ": mqtt.url is empty: sessions live on the external broker the replicas share (the embedded broker is one replica's own)")
	}
	tlsCfg, err := tlsConfig(cfg.MQTT.CAFile, cfg.MQTT.CertFile, cfg.MQTT.KeyFile)
	if err != nil {
		return fmt.Errorf("mqtt tls: %w", err)
	}
	for i := range n {
		s := shard.Set{Index: i, Count: n}
		id := shardClientID(cfg.MQTT.ClientID, s)
		opts := mqtt.NewClientOptions().AddBroker(cfg.MQTT.URL).SetClientID(id).
			SetUsername(shardUsername(cfg.MQTT.Username, s)).SetPassword(cfg.MQTT.Password).
			SetConnectTimeout(10 * time.Second).SetAutoReconnect(false).
			// A session that exists already may deliver what it queued:
			// never acknowledged here, so the broker keeps it for the
			// replica.
			SetAutoAckDisabled(true).
			SetDefaultPublishHandler(func(mqtt.Client, mqtt.Message) {})
		if tlsCfg != nil {
			opts.SetTLSConfig(tlsCfg)
		}
		var subs map[string]byte
		if cmd == "prepare" {
			opts.SetCleanSession(false)
			subs = map[string]byte{}
			fs := []string{ingest.TelemetryFilter, ingest.HJ212Filter}
			if ents := shardEnterprises(reg, s); ents != nil {
				fs = ingest.EnterpriseFilters(ents)
			}
			for _, f := range fs {
				subs[f] = 1
			}
		} else {
			opts.SetCleanSession(true) // the broker discards the session
		}
		clearStatus := ""
		if cmd == "retire" {
			// A status a replica of that count left (its will lost with a
			// broker restart) would hold the new replicas back.
			clearStatus = ingest.StatusTopic(statusPrefix(cfg), i, n)
		}
		if err := shardSession(ctx, opts, subs, clearStatus); err != nil {
			return fmt.Errorf("shards %s: shard %s (client id %s): %w", cmd, s, id, err)
		}
		if cmd == "prepare" {
			fmt.Fprintf(stdout, "shard %s: session %s subscribed to %d topic filters\n", s, id, len(subs))
		} else {
			fmt.Fprintf(stdout, "shard %s: session %s removed\n", s, id)
		}
	}
	return nil
}

// shardSession connects with opts, subscribes to subs (if any) in pieces
// the broker takes, clears the retained status on clearStatus (if any)
// and disconnects.
func shardSession(ctx context.Context, opts *mqtt.ClientOptions, subs map[string]byte, clearStatus string) error {
	c := mqtt.NewClient(opts)
	wait := func(t mqtt.Token, what string) error {
		select {
		case <-t.Done():
			if err := t.Error(); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			return nil
		case <-time.After(30 * time.Second):
			return fmt.Errorf("%s: no answer from the broker in 30s", what)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := wait(c.Connect(), "connect"); err != nil {
		return err
	}
	defer c.Disconnect(250)
	filters := make([]string, 0, len(subs))
	for f := range subs {
		filters = append(filters, f)
	}
	sort.Strings(filters)
	for len(filters) > 0 {
		k := min(len(filters), 200)
		part := map[string]byte{}
		for _, f := range filters[:k] {
			part[f] = 1
		}
		if err := wait(c.SubscribeMultiple(part, nil), "subscribe"); err != nil {
			return err
		}
		filters = filters[k:]
	}
	if clearStatus != "" {
		if err := wait(c.Publish(clearStatus, 1, true, []byte{}), "clear the replica status"); err != nil {
			return err
		}
	}
	return nil
}
