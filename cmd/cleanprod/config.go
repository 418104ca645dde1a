package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cleanprod/cleanprod/ingest"
	"github.com/cleanprod/cleanprod/internal/yamlfile"
	"github.com/cleanprod/cleanprod/shard"
)

// Config is the service configuration. Every leaf is a setting that can
// come from the YAML file (key path), the environment (CLEANPROD_ + path
// in upper case with '_') and a flag (-path); flags beat environment beat
// file beat defaults.
type Config struct {
	DataDir       string `yaml:"data_dir" help:"folder for the embedded store and broker state, the scorer's checkpoints and the event outbox (outbox/)"`
	GatewayConfig string `yaml:"gateway_config" help:"folder of gateway registry files (enterprises, gateways, meters)"`
	HTTP          struct {
		Listen      string `yaml:"listen" help:"HTTP address for the API, /metrics, /healthz and /readyz"`
		TokensFile  string `yaml:"tokens_file" help:"YAML file of API bearer tokens as SHA-256 hashes with role and enterprise (cleanprod tokens add writes it); empty: the API refuses every token"`
		TLSCertFile string `yaml:"tls_cert_file" help:"PEM certificate (chain) of the HTTP server; with http.tls_key_file it serves HTTPS only"`
		TLSKeyFile  string `yaml:"tls_key_file" help:"PEM private key of http.tls_cert_file"`
	} `yaml:"http"`
	MQTT struct {
		URL                  string        `yaml:"url" help:"broker URL (tcp://, ssl://); empty runs the embedded broker"`
		ClientID             string        `yaml:"client_id" help:"fixed client id; the broker keeps the persistent session under it"`
		Username             string        `yaml:"username" help:"broker user name; {shard} in it becomes the shard, e.g. cleanprod-{shard}: cleanprod-1of3 (a single replica: cleanprod), one broker user per shard where the broker makes the user name the client id"`
		Password             string        `yaml:"password" help:"broker password (prefer the environment)" secret:"true"`
		CAFile               string        `yaml:"ca_file" help:"PEM CA bundle to verify the broker's certificate"`
		CertFile             string        `yaml:"cert_file" help:"PEM client certificate for mutual TLS"`
		KeyFile              string        `yaml:"key_file" help:"PEM client key for mutual TLS"`
		MaxInflight          int           `yaml:"max_inflight" help:"warn when more messages than this wait to be processed (the store or the normaliser is behind)"`
		MaxUnackedMessages   int           `yaml:"max_unacked_messages" help:"most messages held received and not yet acknowledged; past it (or max_unacked_bytes) the broker keeps the rest"`
		MaxUnackedBytes      int           `yaml:"max_unacked_bytes" help:"most bytes (topic plus payload) held received and not yet acknowledged; at least ingest.max_payload_bytes"`
		KeepAlive            time.Duration `yaml:"keep_alive" help:"MQTT keep-alive"`
		MaxReconnectInterval time.Duration `yaml:"max_reconnect_interval" help:"cap of the reconnect back-off"`
		WatchdogInterval     time.Duration `yaml:"watchdog_interval" help:"heartbeat period; no heartbeat back for 3 periods forces a reconnect"`
	} `yaml:"mqtt"`
	EmbeddedBroker struct {
		Listen string `yaml:"listen" help:"listen address of the embedded broker (used when mqtt.url is empty)"`
	} `yaml:"embedded_broker"`
	Influx struct {
		URL     string        `yaml:"url" help:"InfluxDB URL; empty uses the embedded store in data_dir"`
		Token   string        `yaml:"token" help:"InfluxDB token (1.8: user:password)" secret:"true"`
		Org     string        `yaml:"org" help:"InfluxDB organisation (ignored by 1.8)"`
		Bucket  string        `yaml:"bucket" help:"InfluxDB bucket (1.8: database/retention-policy)"`
		GZip    bool          `yaml:"gzip" help:"gzip write requests: worth it across slow links; next to InfluxDB it only costs CPU on both ends"`
		Timeout time.Duration `yaml:"timeout" help:"per-request timeout"`
		CAFile  string        `yaml:"ca_file" help:"PEM CA bundle to verify InfluxDB's certificate"`
	} `yaml:"influx"`
	Ingest struct {
		BatchSize          int           `yaml:"batch_size" help:"readings per store write"`
		BatchInterval      time.Duration `yaml:"batch_interval" help:"longest wait of a reading in a partial batch"`
		Writers            int           `yaml:"writers" help:"batches written to the store at once (acknowledged in order)"`
		MaxPayloadBytes    int           `yaml:"max_payload_bytes" help:"larger messages are dead-lettered"`
		MaxReadings        int           `yaml:"max_readings" help:"more readings in one message are dead-lettered"`
		FutureHorizon      time.Duration `yaml:"future_horizon" help:"readings further ahead of the server clock are rejected (at most 24h)"`
		PastHorizon        time.Duration `yaml:"past_horizon" help:"older readings are rejected"`
		History            int           `yaml:"history" help:"recent readings kept per meter to place late ones and spot duplicates"`
		RestoreHistory     int           `yaml:"restore_history" help:"recent readings per meter read from the store at start (at most history); older ones are asked for when a late reading needs them"`
		RestoreConcurrency int           `yaml:"restore_concurrency" help:"queries of the meter state read from the store at once at start: InfluxDB answers one query on about one core"`
		ShutdownGrace      time.Duration `yaml:"shutdown_grace" help:"how long the final flush may take at shutdown"`
	} `yaml:"ingest"`
	HJ212 struct {
		Listen         string        `yaml:"listen" help:"TCP address where HJ 212 data loggers connect, e.g. :9212 (empty: no TCP receiver; frames forwarded over MQTT on cp/v1/{enterprise}/{gateway}/hj212 are taken either way)"`
		MaxConnections int           `yaml:"max_connections" help:"loggers connected at once; more are disconnected at once"`
		IdleTimeout    time.Duration `yaml:"idle_timeout" help:"a logger connection silent this long is closed (loggers send every minute)"`
		MaxSegment     int           `yaml:"max_segment" help:"largest data segment of an HJ 212 frame, bytes (1024 by the standard's examples; longer content is split with PNUM/PNO; at most 9999)"`
	} `yaml:"hj212"`
	Scoring struct {
		Standard          string        `yaml:"standard" help:"indicator standard YAML (empty: the shipped automobile standard)"`
		Policy            string        `yaml:"policy" help:"dynamic-code policy YAML (empty: the shipped policy)"`
		Solutions         string        `yaml:"solutions" help:"folder of solution library YAML files (empty: the shipped library)"`
		Declarations      string        `yaml:"declarations" help:"folder of declarations that seeds the store's (accepted as by the operator; the API's declarations and reviews live in the store)"`
		Interval          time.Duration `yaml:"interval" help:"how often enterprises with new data are re-evaluated"`
		DeclarationsEvery time.Duration `yaml:"declarations_every" help:"how often the scorer re-reads the stored declarations (reviews made through another replica)"`
		CheckpointEvery   time.Duration `yaml:"checkpoint_every" help:"how often the scorer's windows are checkpointed to data_dir, so that a restart resumes them instead of reading them back from the store"`
		RefillConcurrency int           `yaml:"refill_concurrency" help:"pieces of the windows' history read from the store at once when the scorer refills them (a start without a checkpoint, a reload): InfluxDB answers one query on about one core"`
	} `yaml:"scoring"`
	Report struct {
		Chromium string `yaml:"chromium" help:"Chromium binary that prints report PDFs from the HTML report (empty: chromium in PATH; none: always the built-in PDF writer)"`
		PDFFont  string `yaml:"pdf_font" help:"TrueType font (.ttf, or .ttc with a TrueType first face) with CJK glyphs for the built-in PDF writer (empty: fonts-wqy-microhei or fonts-droid-fallback if installed)"`
	} `yaml:"report"`
	Shard struct {
		Count        int    `yaml:"count" help:"replicas the fleet's enterprises are split between (1: this replica owns every enterprise); every replica must be given the same count"`
		Index        int    `yaml:"index" help:"this replica's shard, 0 to shard.count-1 (ignored with shard.index_from_hostname)"`
		FromHostname bool   `yaml:"index_from_hostname" help:"take shard.index from the host name's ordinal (cleanprod-2: 2), as a Kubernetes StatefulSet names its pods"`
		PeerURL      string `yaml:"peer_url" help:"base URL of shard {index}'s HTTP API with {index} in it, e.g. http://cleanprod-{index}.cleanprod:8080; a replica asks the owner of another shard's enterprise there"`
		Secret       string `yaml:"secret" secret:"true" help:"secret the replicas share, at least 16 characters (required when shard.count is above 1; prefer the environment, CLEANPROD_SHARD_SECRET): a replica gives its shard's results only to a peer that knows it, and it keys the lists' cursors so that any replica continues another's"`
	} `yaml:"shard"`
	Log struct {
		Level  string `yaml:"level" help:"debug, info, warn or error"`
		Format string `yaml:"format" help:"text or json"`
	} `yaml:"log"`
	Debug struct {
		PprofListen string `yaml:"pprof_listen" help:"address of a Go pprof listener (/debug/pprof/) for profiling; empty: none. Keep it on loopback"`
	} `yaml:"debug"`

	// builtinFleet and builtinDeclarations, when not nil, are read instead
	// of the gateway_config and scoring.declarations folders: the example
	// fleet built into the binary, which the demo runs unless told
	// otherwise. They are not settings.
	builtinFleet, builtinDeclarations map[string][]byte
	// brokerOnly: the command only talks to the broker (cleanprod shards
	// ...), so the settings a serving replica needs are not checked.
	brokerOnly bool
}

// defaultConfig returns the defaults: everything embedded, on loopback.
func defaultConfig() Config {
	var c Config
	c.DataDir = "./data"
	c.GatewayConfig = "gateway-config"
	c.HTTP.Listen = "127.0.0.1:8080"
	c.MQTT.ClientID = "cleanprod"
	c.MQTT.MaxInflight = 1000
	c.MQTT.MaxUnackedMessages = ingest.DefaultMaxUnackedMessages
	c.MQTT.MaxUnackedBytes = ingest.DefaultMaxUnackedBytes
	c.MQTT.KeepAlive = 30 * time.Second
	c.MQTT.MaxReconnectInterval = 30 * time.Second
	c.MQTT.WatchdogInterval = 30 * time.Second
	c.EmbeddedBroker.Listen = "127.0.0.1:1883"
	c.Influx.Bucket = "telemetry/autogen"
	c.Influx.GZip = false
	c.Influx.Timeout = 30 * time.Second
	c.Ingest.BatchSize = 5000
	c.Ingest.BatchInterval = 250 * time.Millisecond
	c.Ingest.Writers = 2
	c.Ingest.MaxPayloadBytes = 256 << 10
	c.Ingest.MaxReadings = 5000
	c.Ingest.FutureHorizon = 5 * time.Minute
	c.Ingest.PastHorizon = 30 * 24 * time.Hour
	c.Ingest.History = 32
	c.Ingest.RestoreHistory = 4
	c.Ingest.RestoreConcurrency = 2
	c.Ingest.ShutdownGrace = 10 * time.Second
	c.HJ212.MaxConnections = 1000
	c.HJ212.IdleTimeout = 10 * time.Minute
	c.HJ212.MaxSegment = 1024
	c.Shard.Count = 1
	c.Scoring.Declarations = "scoring/declarations"
	c.Scoring.Interval = 10 * time.Second
	c.Scoring.DeclarationsEvery = time.Minute
	c.Scoring.CheckpointEvery = 5 * time.Minute
	c.Scoring.RefillConcurrency = 2
	c.Log.Level = "info"
	c.Log.Format = "text"
	return c
}

// setting is one leaf of Config.
type setting struct {
	path   string // yaml key path, e.g. mqtt.url
	env    string
	help   string
	secret bool
	field  reflect.Value
}

func settings(c *Config) []setting {
	var out []setting
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			path := prefix + key
			if f.Type.Kind() == reflect.Struct {
				walk(v.Field(i), path+".")
				continue
			}
			out = append(out, setting{
				path: path, env: "CLEANPROD_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(path)),
				help: f.Tag.Get("help"), secret: f.Tag.Get("secret") == "true", field: v.Field(i),
			})
		}
	}
	walk(reflect.ValueOf(c).Elem(), "")
	return out
}

func (s setting) String() string {
	if d, ok := s.field.Interface().(time.Duration); ok {
		return d.String()
	}
	return fmt.Sprint(s.field.Interface())
}

func (s setting) set(text string) error {
	switch s.field.Interface().(type) {
	case string:
		s.field.SetString(text)
	case int:
		n, err := strconv.Atoi(text)
		if err != nil {
			return fmt.Errorf("want a whole number, got %q", text)
		}
		s.field.SetInt(int64(n))
	case bool:
		b, err := strconv.ParseBool(text)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", text)
		}
		s.field.SetBool(b)
	case time.Duration:
		d, err := time.ParseDuration(text)
		if err != nil {
			return fmt.Errorf("want a duration such as 30s or 5m, got %q", text)
		}
		s.field.SetInt(int64(d))
	default:
		return fmt.Errorf("unsupported setting type %s", s.field.Type())
	}
	return nil
}

// loadConfig builds the configuration for a subcommand: defaults, then the
// file named by -config or CLEANPROD_CONFIG, then the environment, then
// flags. Every problem is reported at once.
// extra adds a subcommand's own flags to the set.
func loadConfig(name string, args []string, getenv func(string) string, stderr io.Writer, extra ...func(*flag.FlagSet)) (*Config, []string, error) {
	cfg := defaultConfig()
	all := settings(&cfg)
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	for _, add := range extra {
		add(fs)
	}
	fs.SetOutput(stderr)
	configFile := fs.String("config", getenv("CLEANPROD_CONFIG"), "YAML configuration file (env CLEANPROD_CONFIG)")
	// Flags are applied after file and environment: parse them as text
	// first, then set those given (fs.Visit) last.
	byPath := map[string]setting{}
	for _, s := range all {
		byPath[s.path] = s
		usage := fmt.Sprintf("%s (env %s)", s.help, s.env)
		if s.field.Kind() == reflect.Bool {
			fs.Bool(s.path, s.field.Bool(), usage)
		} else {
			fs.String(s.path, defaultText(s), usage)
		}
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cleanprod %s [flags]\n\nEvery setting may also come from the YAML file given by -config\n(key path as below) or from the environment variable shown.\n\nFlags:\n", name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	var errs []error
	var doc *yamlfile.Doc
	if *configFile != "" {
		var err error
		if doc, err = yamlfile.DecodeFileExplained(*configFile, &cfg); err != nil {
			errs = append(errs, explainRemoved(err)...)
		}
	}
	for key, why := range removedSettings {
		env := "CLEANPROD_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(key))
		if getenv(env) != "" {
			errs = append(errs, fmt.Errorf("%s: %s %s", env, key, why))
		}
	}
	from := map[string]string{} // key path -> the environment variable or flag that set it
	for _, s := range all {
		if v := getenv(s.env); v != "" {
			from[s.path] = s.env
			if err := s.set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", s.env, err))
			}
		}
	}
	fs.Visit(func(f *flag.Flag) {
		if s, ok := byPath[f.Name]; ok {
			from[s.path] = "-" + f.Name
			if err := s.set(f.Value.String()); err != nil {
				errs = append(errs, fmt.Errorf("-%s: %w", f.Name, err))
			}
		}
	})
	// The shards subcommands only talk to the broker: they need no peer
	// address or shard secret.
	cfg.brokerOnly = strings.HasPrefix(name, "shards ")
	errs = append(errs, placeProblems(cfg.validate(), doc, from)...)
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	return &cfg, fs.Args(), nil
}

// removedSettings are settings of earlier releases, each with why it went
// and what replaces it: a file or environment that still sets one is
// refused with that, rather than with "unknown key" or in silence.
var removedSettings = map[string]string{
	"mqtt.shared_group": "was removed: replicas sharing one subscription each kept counter state for every meter and double-counted; " +
		"split the fleet with shard.count and shard.index (or shard.index_from_hostname) instead, each replica then subscribes to its own enterprises " +
		"(README, \"Scaling out: shards\")",
}

// explainRemoved splits a configuration file's decoding errors and says
// of an unknown key that is a removed setting what replaced it.
func explainRemoved(err error) []error {
	var all []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		all = j.Unwrap()
	} else {
		all = []error{err}
	}
	out := make([]error, 0, len(all))
	for _, e := range all {
		msg := e.Error()
		replaced := false
		for key, why := range removedSettings {
			if i := strings.Index(msg, " "+key+": unknown key"); i >= 0 {
				out = append(out, fmt.Errorf("%s %s %s", msg[:i], key, why))
				replaced = true
				break
			}
		}
		if !replaced {
			out = append(out, e)
		}
	}
	return out
}

// defaultText is the text of a setting's value before any source applied.
func defaultText(s setting) string {
	if s.secret {
		return ""
	}
	return s.String()
}

func (c *Config) validate() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.HTTP.Listen == "" {
		bad("http.listen is empty")
	}
	if c.GatewayConfig == "" {
		bad("gateway_config is empty")
	}
	if c.MQTT.URL == "" && c.EmbeddedBroker.Listen == "" {
		bad("mqtt.url and embedded_broker.listen are both empty")
	}
	if (c.MQTT.URL == "" || c.Influx.URL == "") && c.DataDir == "" {
		bad("data_dir is empty but the embedded broker or store needs it")
	}
	if c.MQTT.ClientID == "" {
		bad("mqtt.client_id is empty")
	} else if strings.ContainsAny(c.MQTT.ClientID, "/+#") {
		bad("mqtt.client_id %q: no '/', '+' or '#' (it names the replicas' status topics, cleanprod/replicas/{client_id}/...)", c.MQTT.ClientID)
	}
	if c.Shard.Count < 1 || c.Shard.Count > shard.MaxCount {
		bad("shard.count %d: want 1 to %d", c.Shard.Count, shard.MaxCount)
	} else if !c.Shard.FromHostname && (c.Shard.Index < 0 || c.Shard.Index >= c.Shard.Count) {
		bad("shard.index %d: want 0 to %d for %d shards", c.Shard.Index, c.Shard.Count-1, c.Shard.Count)
	}
	if c.Shard.Count > 1 && c.MQTT.URL == "" {
		bad("shard.count %d needs mqtt.url: the shards share one external broker (the embedded one is a single replica's)", c.Shard.Count)
	}
	if c.Shard.Count > 1 && c.Influx.URL == "" {
		bad("shard.count %d needs influx.url: the shards share one InfluxDB (the embedded store is a single replica's)", c.Shard.Count)
	}
	if c.Shard.Count > 1 && !c.brokerOnly && !strings.Contains(c.Shard.PeerURL, "{index}") {
		bad("shard.peer_url must name each shard's API with {index} when shard.count is above 1")
	}
	if c.Shard.Count > 1 && !c.brokerOnly && len(c.Shard.Secret) < 16 {
		bad("shard.secret must be set, at least 16 characters, when shard.count is above 1 (best through CLEANPROD_SHARD_SECRET)")
	}
	if (c.MQTT.CertFile == "") != (c.MQTT.KeyFile == "") {
		bad("mqtt.cert_file and mqtt.key_file go together")
	}
	if (c.HTTP.TLSCertFile == "") != (c.HTTP.TLSKeyFile == "") {
		bad("http.tls_cert_file and http.tls_key_file go together")
	}
	// URLs are logged: a password in one would be too (the message does
	// not repeat the URL).
	if urlHasPassword(c.MQTT.URL) {
		bad("mqtt.url carries a password: set mqtt.password instead, best through CLEANPROD_MQTT_PASSWORD")
	}
	if urlHasPassword(c.Influx.URL) {
		bad("influx.url carries a password: set influx.token instead, best through CLEANPROD_INFLUX_TOKEN")
	}
	if c.Influx.URL != "" && c.Influx.Bucket == "" {
		bad("influx.bucket is empty")
	}
	positive := map[string]int{"mqtt.max_inflight": c.MQTT.MaxInflight, "ingest.batch_size": c.Ingest.BatchSize,
		"mqtt.max_unacked_messages": c.MQTT.MaxUnackedMessages, "mqtt.max_unacked_bytes": c.MQTT.MaxUnackedBytes,
		"ingest.max_payload_bytes": c.Ingest.MaxPayloadBytes, "ingest.max_readings": c.Ingest.MaxReadings, "ingest.history": c.Ingest.History, "ingest.writers": c.Ingest.Writers,
		"ingest.restore_history": c.Ingest.RestoreHistory, "ingest.restore_concurrency": c.Ingest.RestoreConcurrency, "hj212.max_connections": c.HJ212.MaxConnections, "hj212.max_segment": c.HJ212.MaxSegment,
		"scoring.refill_concurrency": c.Scoring.RefillConcurrency}
	for _, k := range sortedKeys(positive) {
		if positive[k] <= 0 {
			bad("%s must be positive, got %d", k, positive[k])
		}
	}
	if c.MQTT.MaxUnackedBytes > 0 && c.MQTT.MaxUnackedBytes < c.Ingest.MaxPayloadBytes {
		bad("mqtt.max_unacked_bytes (%d) is below ingest.max_payload_bytes (%d): one largest message must fit", c.MQTT.MaxUnackedBytes, c.Ingest.MaxPayloadBytes)
	}
	durations := map[string]time.Duration{"mqtt.keep_alive": c.MQTT.KeepAlive, "mqtt.max_reconnect_interval": c.MQTT.MaxReconnectInterval,
		"mqtt.watchdog_interval": c.MQTT.WatchdogInterval, "ingest.batch_interval": c.Ingest.BatchInterval,
		"ingest.future_horizon": c.Ingest.FutureHorizon, "ingest.past_horizon": c.Ingest.PastHorizon,
		"ingest.shutdown_grace": c.Ingest.ShutdownGrace, "influx.timeout": c.Influx.Timeout, "scoring.interval": c.Scoring.Interval,
		"scoring.declarations_every": c.Scoring.DeclarationsEvery, "scoring.checkpoint_every": c.Scoring.CheckpointEvery,
		"hj212.idle_timeout": c.HJ212.IdleTimeout}
	for _, k := range sortedKeys(durations) {
		if durations[k] <= 0 {
			bad("%s must be positive, got %s", k, durations[k])
		}
	}
	// A reading from further ahead than a day is a broken clock, not a
	// gateway a little fast: such a horizon would let it into the windows.
	if c.Ingest.FutureHorizon > 24*time.Hour {
		bad("ingest.future_horizon %s is over 24h: readings that far ahead come from a wrong clock", c.Ingest.FutureHorizon)
	}
	if c.HJ212.MaxSegment > 9999 {
		bad("hj212.max_segment %d: a frame's length field has 4 digits, at most 9999", c.HJ212.MaxSegment)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level %q: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format %q: want text or json", c.Log.Format)
	}
	return errs
}

// urlHasPassword reports whether u, parsed or not, has user information
// with a password: scheme://user:password@host.
func urlHasPassword(u string) bool {
	_, rest, ok := strings.Cut(u, "://")
	if !ok {
		return false
	}
	authority, _, _ := strings.Cut(rest, "/")
	at := strings.LastIndex(authority, "@")
	return at >= 0 && strings.Contains(authority[:at], ":")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// serverTLSConfig builds the HTTP server's TLS configuration from PEM
// files; nil when none is named. The key pair is loaded here, at start, so
// a bad file stops serve before it listens.
func serverTLSConfig(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}, nil
}

// tlsConfig builds a client TLS configuration from PEM files; nil when
// none is named.
func tlsConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" && certFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificates", caFile)
		}
		cfg.RootCAs = pool
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
