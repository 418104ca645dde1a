// Package web serves cleanprod over HTTP with gin: the operational
// endpoints (/metrics, /healthz, /readyz) and, as the product grows, the
// API and pages. Handlers only translate HTTP to the packages behind them.
package web

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ReadyFunc reports why the service is not ready (nil: ready).
type ReadyFunc func(ctx context.Context) error

// Options are what the server needs from the rest of cleanprod.
type Options struct {
	Gatherer prometheus.Gatherer
	Ready    ReadyFunc
}

// NewHandler returns the HTTP handler.
func NewHandler(o Options) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery())
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{})))
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", func(c *gin.Context) {
		ctx, cancel := context.WithTimeout(c.Request.Context(), 3*time.Second)
		defer cancel()
		if err := o.Ready(ctx); err != nil {
			c.JSON(http.StatusServiceUnavailable, gin.H{"status": "not ready", "reason": err.Error()})
			return
		}
		c.JSON(http.StatusOK, gin.H{"status": "ready"})
	})
	r.NoRoute(func(c *gin.Context) {
		c.JSON(http.StatusNotFound, gin.H{"error": gin.H{"code": "not_found", "message": "no such route: " + c.Request.URL.Path}})
	})
	return r
}
