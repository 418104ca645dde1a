package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/sim"
)

// simFlags are the simulator's settings on the command line.
type simFlags struct {
	broker, clientID, gatewayConfig, fleetOut, start, faults string
	stationFaults, hj212Addr                                 string
	fleet                                                    map[string][]byte // registry files read instead of gatewayConfig's (nil: the folder's)
	synthetic, syntheticMeters                               int
	cfg                                                      sim.Config
}

func (f *simFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.gatewayConfig, "gateway_config", "gateway-config", "gateway registry folder whose gateways and meters are simulated")
	fs.IntVar(&f.synthetic, "synthetic", 0, "add N generated enterprises (syn-0001...) to the fleet, for load")
	fs.IntVar(&f.syntheticMeters, "synthetic-meters", 0, "give each generated enterprise at least this many meters (electricity sub-meters), e.g. 50 for 2,000 enterprises with 100,000 meters")
	fs.StringVar(&f.fleetOut, "fleet-out", "", "write the simulated fleet's registry files (with synthetic ones) to this folder, for serve -gateway_config")
	fs.Int64Var(&f.cfg.Seed, "seed", 1, "random seed: the same seed and settings send the same bytes")
	fs.StringVar(&f.start, "start", "", "simulated start time, RFC 3339 (default: now minus -backfill)")
	fs.DurationVar(&f.cfg.Backfill, "backfill", 0, "replay this much of the past as fast as allowed before running in real time")
	fs.DurationVar(&f.cfg.Duration, "duration", 0, "stop after this much simulated time (0: run until interrupted)")
	fs.Float64Var(&f.cfg.Speed, "speed", 0, "simulated seconds per real second while catching up (0: as fast as possible)")
	fs.DurationVar(&f.cfg.Interval, "interval", 5*time.Minute, "reporting interval of each meter")
	fs.IntVar(&f.cfg.ReadingsPerMessage, "readings-per-message", 0, "readings batched per gateway message (0: one message per gateway and interval)")
	fs.Float64Var(&f.cfg.MaxRate, "rate", 0, "at most this many messages per second (0: no limit)")
	fs.IntVar(&f.cfg.Workers, "workers", 4, "concurrent publishers")
	fs.Float64Var(&f.cfg.Resets, "resets", 0, "counter resets per counter per simulated day")
	fs.Float64Var(&f.cfg.DriftScale, "drift-scale", 1, "multiplies each plant's drift (0: none; 10: codes move within days)")
	fs.StringVar(&f.faults, "faults", "", "fault mix in % of messages, e.g. malformed=1,spoofed=0.5,unknown_gateway=0.2,unknown_meter=0.5,nan=0.5,future=0.5,duplicate=1,out_of_order=1")
	fs.StringVar(&f.stationFaults, "station-faults", "", "HJ 212 stations' faults: bad_crc and data_flag in % of minute frames, offline periods per station per day, offline_for their length, e.g. bad_crc=1,data_flag=2,offline=0.5,offline_for=2h")
}

// build loads the fleet and returns the simulator.
func (f *simFlags) build(stdout io.Writer) (*sim.Simulator, error) {
	files := maps.Clone(f.fleet)
	if files == nil {
		var err error
		if files, err = readFleet(f.gatewayConfig); err != nil {
			return nil, err
		}
	}
	if f.synthetic > 0 {
		syn, err := sim.SyntheticFleetMeters(f.synthetic, f.syntheticMeters, f.cfg.Seed)
		if err != nil {
			return nil, err
		}
		maps.Copy(files, syn)
	}
	reg, err := registry.Parse(files)
	if err != nil {
		return nil, fmt.Errorf("gateway registry: %w", err)
	}
	if f.fleetOut != "" {
		out := map[string][]byte{}
		for name, data := range files {
			out[filepath.Base(name)] = data
		}
		if err := sim.WriteFleet(f.fleetOut, out); err != nil {
			return nil, err
		}
		fmt.Fprintf(stdout, "wrote %d registry files to %s\n", len(out), f.fleetOut)
	}
	if f.start != "" {
		if f.cfg.Start, err = time.Parse(time.RFC3339, f.start); err != nil {
			return nil, fmt.Errorf("-start: %w", err)
		}
	}
	// The flags' fault mixes replace a mix already in cfg (the demo's)
	// only when given.
	if f.faults != "" {
		if f.cfg.Faults, err = parseFaults(f.faults); err != nil {
			return nil, err
		}
	}
	if f.stationFaults != "" {
		if f.cfg.Stations, err = parseStationFaults(f.stationFaults); err != nil {
			return nil, err
		}
	}
	return sim.New(reg, f.cfg)
}

func readFleet(dir string) (map[string][]byte, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no *.yaml files in %s", dir)
	}
	files := map[string][]byte{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		files[p] = data
	}
	return files, nil
}

func parseFaults(s string) (sim.Faults, error) {
	var f sim.Faults
	fields := map[string]*float64{
		"malformed": &f.Malformed, "unknown_gateway": &f.UnknownGateway, "spoofed": &f.Spoofed,
		"unknown_meter": &f.UnknownMeter, "nan": &f.NaN, "future": &f.Future,
		"duplicate": &f.Duplicate, "out_of_order": &f.OutOfOrder,
	}
	if s == "" {
		return f, nil
	}
	var errs []error
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		p, known := fields[k]
		n, err := strconv.ParseFloat(v, 64)
		switch {
		case !ok || !known:
			errs = append(errs, fmt.Errorf("-faults: %q: want NAME=PERCENT with NAME one of %s", part, strings.Join(slices.Sorted(maps.Keys(fields)), ", ")))
		case err != nil:
			errs = append(errs, fmt.Errorf("-faults: %q: %v is not a number", part, v))
		default:
			*p = n
		}
	}
	return f, errors.Join(errs...)
}

func parseStationFaults(s string) (sim.Stations, error) {
	var st sim.Stations
	if s == "" {
		return st, nil
	}
	fields := map[string]*float64{"bad_crc": &st.BadCRC, "data_flag": &st.DataFlag, "offline": &st.Offline}
	var errs []error
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if k == "offline_for" && ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("-station-faults: %q: %v is not a duration", part, v))
			}
			st.OfflineFor = d
			continue
		}
		p, known := fields[k]
		n, err := strconv.ParseFloat(v, 64)
		switch {
		case !ok || !known:
			errs = append(errs, fmt.Errorf("-station-faults: %q: want NAME=VALUE with NAME one of bad_crc, data_flag, offline, offline_for", part))
		case err != nil:
			errs = append(errs, fmt.Errorf("-station-faults: %q: %v is not a number", part, v))
		default:
			*p = n
		}
	}
	return st, errors.Join(errs...)
}

// publisher returns what Run publishes through: the MQTT publisher, or,
// with an HJ 212 address, a StationLink that sends the stations' frames
// over TCP and the rest through MQTT. Without one, the frames go over
// MQTT on the stations' hj212 topics.
func (f *simFlags) publisher(mqttPub sim.Publisher, window int) (sim.Publisher, *sim.StationLink) {
	if f.hj212Addr == "" {
		return mqttPub, nil
	}
	link := &sim.StationLink{Addr: f.hj212Addr, Next: mqttPub, Window: window}
	return link, link
}

// simulate runs "cleanprod simulate": publish a simulated fleet to a broker.
func simulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f simFlags
	fs.StringVar(&f.broker, "broker", "tcp://127.0.0.1:1883", "broker URL (tcp://, ssl://; user:password@ for credentials)")
	fs.StringVar(&f.clientID, "client-id", "cleanprod-simulator", "MQTT client id")
	fs.StringVar(&f.hj212Addr, "hj212", "", "host:port of the HJ 212 receiver (serve -hj212.listen): the stations' loggers connect there (empty: they forward their frames over MQTT on cp/v1/{enterprise}/{gateway}/hj212)")
	window := fs.Int("hj212-window", 1, "frames a station's logger may have unacknowledged at once (1: it waits for each 9014)")
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	f.cfg.Progress = stdout
	s, err := f.build(stdout)
	if err != nil {
		return err
	}
	client, err := sim.Dial(ctx, f.broker, f.clientID)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", f.broker, err)
	}
	defer client.Disconnect(250)
	fmt.Fprintf(stdout, "simulating %d enterprises from %s to %s\n", len(s.Registry().Enterprises), s.Start().Format(time.RFC3339), f.broker)
	pub, link := f.publisher(sim.NewMQTTPublisher(client, 30*time.Second), *window)
	err = s.Run(ctx, pub)
	if link != nil {
		if ferr := link.Flush(ctx); err == nil && ferr != nil && ctx.Err() == nil {
			err = ferr
		}
		link.Close()
		fmt.Fprintf(stdout, "HJ 212 loggers to %s: %+v\n", f.hj212Addr, link.Stats())
	}
	s.WriteSummary(stdout)
	return err
}
