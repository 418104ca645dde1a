// Package web serves cleanprod over HTTP with gin: the operational
// endpoints (/metrics, /healthz, /readyz), the JSON API under /api/v1, the
// instant audit report (HTML and PDF) and the fleet overview page.
//
// In: the scoring engine's immutable snapshots (Scorer), the gateway
// registry, the points the scorer stored (PointReader: indicator, score
// and event history), the meters' last readings and rejects
// (MeterStatus), the declarations and their review and the rectification
// cases (review.Book), the bearer tokens (Tokens) and the live scoring
// events (Broadcaster, fed from the engine's OnEvent). Out: HTTP
// responses; declarations and reviews written to the store, after which
// the engine is asked to reload them; the steps of cases written to the
// store.
//
// Handlers only translate HTTP to those packages: they read a snapshot or
// the store, shape it (dto.go) and write it. routes.go is the one list of
// routes, with what each needs and returns; the OpenAPI description at
// /api/v1/openapi.json is generated from it. Every list is paged by one
// helper (page.go: limit, a sealed cursor holding the last item's sort
// key, has_more and next_cursor); calendar dates are dates in the
// standard's zone and instants RFC 3339 (date.go). The pages explain a
// code, a level or an indicator in place, from the same plain-language
// explanations the API gives (explain.go, drill.go).
//
// # Auth
//
// /healthz, /readyz, /metrics and /api/v1/openapi.json are public; every
// other route needs a bearer token from the tokens file (stored as
// SHA-256 hashes; see LoadTokens). A supervisor token sees every
// enterprise; an enterprise token sees its own only, gets 403 for another
// enterprise's id, and sees the others anonymised in rankings. Browsers
// may pass the token once as ?token=: it is moved into an HttpOnly,
// SameSite=Strict cookie, which is honoured for GET requests, and for the
// POST of a page's form (a case's steps) only when its Origin is this
// server.
//
// # Shards
//
// With Options.Shard naming one of several shards, any replica answers
// for the whole fleet: a route of another shard's enterprise is checked
// here and passed to its owner (Options.PeerURL) with the caller's own
// credentials, and the fleet's routes read this shard's results merged
// with those the peers serve on an internal route guarded by
// Options.ShardSecret; a peer down leaves its shard out, said in
// missing_shards and X-Cleanprod-Missing-Shards (fleet.go).
//
// # Concurrency
//
// NewHandler's handler is safe for concurrent use. Report PDFs rendered
// with Chromium run at most two at a time.
package web

import (
	"context"
	"crypto/cipher"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleanprod/cleanprod/ingest"
	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/review"
	"github.com/cleanprod/cleanprod/scoring"
	"github.com/cleanprod/cleanprod/shard"
)

// ReadyFunc reports why the service is not ready (nil: ready).
type ReadyFunc func(ctx context.Context) error

// Scorer is what the API needs of the scoring engine (*scoring.Engine).
type Scorer interface {
	// Snapshot returns the latest immutable results.
	Snapshot() *scoring.Snapshot
	// ReloadDeclarations asks the engine to read the declarations again;
	// it does not block.
	ReloadDeclarations()
}

// MeterStatus says when each meter last reported and what was rejected
// (*ingest.LastSeen).
type MeterStatus interface {
	Meter(enterprise, meter string) (ingest.MeterSeen, bool)
	Gateway(enterprise, gateway string) (ingest.GatewaySeen, bool)
}

// Options are what the server needs from the rest of cleanprod. Gatherer
// and Ready serve the operational endpoints; without a Scorer (and
// Registry) only those are served.
type Options struct {
	Gatherer prometheus.Gatherer
	Ready    ReadyFunc
	// Loading says what the service still loads at start (nil: nothing);
	// /readyz lists it.
	Loading func() []string

	Scorer Scorer
	// Registry lists the enterprises, unless the scorer's snapshot carries
	// a registry (it does: it changes on a configuration reload).
	Registry *registry.Registry
	// Solutions matches lagging indicators to measures in reports rebuilt
	// from stored points (nil: none), unless the scorer's snapshot carries
	// a library.
	Solutions *scoring.Library
	// Points reads the stored indicator, score and event points (nil:
	// no history, trends or past events).
	Points PointReader
	// Meters gives the meters' last readings and rejects (nil: unknown).
	Meters MeterStatus
	// Declarations keeps declarations and their review (nil: the API
	// refuses them with 503).
	Declarations *review.Book
	// Tokens are the accepted bearer tokens (nil: every token is refused).
	Tokens *Tokens
	// Events fans live scoring events out to SSE streams (nil: the stream
	// only sends keep-alives).
	Events *Broadcaster
	// Recent holds each enterprise's latest events for its live page (nil:
	// they are read from Points).
	Recent *RecentEvents
	// PDF renders report PDFs (nil: format=pdf is refused with 503).
	PDF PDFRenderer
	// Registerer registers the web metrics (nil: not registered).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time

	// Shard is this replica's part of the fleet (zero, or a Count of 1:
	// the only replica). With more shards, a route of an enterprise
	// another shard owns is passed to its owner at PeerURL, and the
	// fleet's routes merge every shard's results (fleet.go).
	Shard shard.Set
	// PeerURL is the base URL of shard {index}'s HTTP API.
	PeerURL string
	// ShardSecret authenticates the replicas to each other, and keys the
	// lists' cursors so that one replica continues another's list ("":
	// the internal endpoint refuses every request, and cursors are keyed
	// at random per process).
	ShardSecret string
	// FleetMaxAge is how long a merged fleet snapshot is reused (0: 10 s).
	FleetMaxAge time.Duration
	// PeerClient asks the peers (nil: one with a 5 s timeout).
	PeerClient *http.Client
	// FleetRegistry returns the registry of the whole fleet in force, when
	// the scorer's snapshot holds only this shard's enterprises (nil:
	// Registry).
	FleetRegistry func() *registry.Registry
}

// server holds the handlers' dependencies.
type server struct {
	Options
	log *slog.Logger
	now func() time.Time
	// cursors seals the lists' cursors (page.go).
	cursors cipher.AEAD
	// fleet is the peers of a sharded server (nil: not sharded, or no
	// valid peer URL).
	fleet *peering
}

// NewHandler returns the HTTP handler.
func NewHandler(o Options) http.Handler { return newServer(o).handler() }

func newServer(o Options) *server {
	s := &server{Options: o, log: o.Logger, now: o.Now, cursors: newCursorAEAD(o.ShardSecret)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.sharded() && s.api() {
		f, err := s.newFleet()
		if err != nil {
			s.log.Error("web: other shards' enterprises cannot be served", "err", err)
		}
		s.fleet = f
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

func (s *server) handler() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.CustomRecovery(func(c *gin.Context, err any) {
		if err == http.ErrAbortHandler {
			panic(err) // net/http ends the connection quietly
		}
		s.log.Error("web: handler panicked", "path", c.Request.URL.Path, "panic", err)
		s.fail(c, errorf(http.StatusInternalServerError, codeInternal, "internal error; the server log has the details"))
	}))
	r.HandleMethodNotAllowed = true
	if s.Registerer != nil {
		r.Use(requestMetrics(s.Registerer))
	}
	for _, rt := range s.routes() {
		r.Handle(rt.method, rt.path, s.chain(rt)...)
	}
	if s.sharded() && s.api() {
		// Not in routes(): no token opens it, and the API's description
		// does not list it.
		r.GET(resultsPath, s.shardResults)
	}
	r.NoRoute(func(c *gin.Context) {
		s.fail(c, errorf(http.StatusNotFound, codeNotFound, "no such route: %s", c.Request.URL.Path))
	})
	r.NoMethod(func(c *gin.Context) {
		s.fail(c, errorf(http.StatusMethodNotAllowed, codeMethodNotAllow, "%s is not allowed on %s", c.Request.Method, c.Request.URL.Path))
	})
	return r
}

// requestMetrics counts requests by route (the route's pattern, so the
// labels stay few), method and status, and times them.
func requestMetrics(reg prometheus.Registerer) gin.HandlerFunc {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cleanprod_http_requests_total", Help: "HTTP requests by route pattern, method and status code.",
	}, []string{"route", "method", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "cleanprod_http_request_duration_seconds", Help: "Time to answer HTTP requests (server-sent event streams excluded).",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
	}, []string{"route"})
	reg.MustRegister(requests, duration)
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		requests.WithLabelValues(route, c.Request.Method, strconv.Itoa(c.Writer.Status())).Inc()
		if !strings.HasSuffix(route, "/stream") {
			duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}
	}
}

// api reports whether the API is wired.
func (s *server) api() bool { return s.Scorer != nil && s.Registry != nil }

// registry returns the whole fleet's registry with several shards
// (fleetRegistry), else the registry of the request's snapshot (the
// scorer's, which a reload changes), else Options.Registry.
func (s *server) registry(c *gin.Context) *registry.Registry {
	if s.sharded() {
		return s.fleetRegistry()
	}
	if snap := s.snapshot(c); snap != nil && snap.Registry != nil {
		return snap.Registry
	}
	return s.Registry
}

// solutions returns the solution library of snap, else Options.Solutions.
func (s *server) solutions(snap *scoring.Snapshot) *scoring.Library {
	if snap != nil && snap.Solutions != nil {
		return snap.Solutions
	}
	return s.Solutions
}

// snapshotKey holds a request's snapshot in its gin.Context.
const snapshotKey = "cleanprod.snapshot"

// snapshot returns the engine's snapshot for the request c: taken at its
// first use and kept for the rest of the request, so that a reload
// racing the request cannot show it two registries (an enterprise the
// authentication found, gone from the handler's).
func (s *server) snapshot(c *gin.Context) *scoring.Snapshot {
	if v, ok := c.Get(snapshotKey); ok {
		return v.(*scoring.Snapshot)
	}
	var snap *scoring.Snapshot
	if s.sharded() && c.Param("id") == "" {
		// A route of the fleet; one of an enterprise is served by its
		// owner (forward), from its own snapshot.
		snap = s.fleetView(c).snap
	} else {
		snap = s.Scorer.Snapshot()
	}
	c.Set(snapshotKey, snap)
	return snap
}

// loc is the standard's local time zone, for dates without a time.
func (s *server) loc(c *gin.Context) *time.Location {
	std := s.snapshot(c).Standard
	return time.FixedZone("local", int(std.UTCOffset/time.Second))
}
