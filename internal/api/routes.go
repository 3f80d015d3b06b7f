// Package api serves tokenvendor's HTTP interface: the routes, request and
// response types matching openapi.yaml, and the one place where errors become
// statuses.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenvendor/tokenvendor/internal/audit"
	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/vend"
	"github.com/tokenvendor/tokenvendor/wire"
)

// Vendor vends credentials; *vend.Service is one.
type Vendor interface {
	Vend(ctx context.Context, caller auth.Caller, req vend.Request) (vend.Grant, error)
}

// Auditor records decisions; *audit.Log is one.
type Auditor interface {
	Record(audit.Event) error
}

// Authenticator says who presents a credential; auth.Methods is one.
type Authenticator interface {
	Authenticate(ctx context.Context, c auth.Credential) (auth.Caller, error)
}

// Config configures the handler.
type Config struct {
	Vendor        Vendor
	Authenticator Authenticator
	// Ready reports whether the service can serve credentials (config loaded,
	// key set fetched).
	Ready func() bool
	// Gatherer serves /metrics; Registerer receives the HTTP metrics.
	Gatherer   prometheus.Gatherer
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Auditor receives one event per credentials request; default none.
	Auditor Auditor
	// MaxInFlight caps credentials requests served at once; 0 is no cap.
	MaxInFlight int
	// TracerProvider, when set, traces every request, continuing a W3C
	// traceparent the caller sends; nil is no tracing, at no cost.
	TracerProvider trace.TracerProvider
}

// NewHandler returns the service's HTTP handler.
func NewHandler(cfg Config) (http.Handler, error) {
	if cfg.Vendor == nil || cfg.Authenticator == nil {
		return nil, errors.New("api: vendor and authenticator are required")
	}
	if cfg.Ready == nil {
		cfg.Ready = func() bool { return true }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.Auditor == nil {
		cfg.Auditor = (*audit.Log)(nil)
	}
	h := &handlers{cfg: cfg, log: cfg.Logger}
	m := newMetrics(cfg.Registerer)

	r := chi.NewRouter()
	if cfg.TracerProvider != nil {
		r.Use(traced(cfg.TracerProvider))
	}
	r.Use(withRequestID, m.middleware, h.recoverer)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) { h.fail(w, r, errNotFound) })
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) { h.fail(w, r, errMethodNotAllowed) })

	r.Group(func(r chi.Router) {
		// Counted once admitted: a request refused for the cap was never in flight.
		r.Use(h.inFlight(cfg.MaxInFlight), m.countInFlight)
		r.Post(wire.CredentialsPath, h.credentials)
		r.Get(wire.ContainerCredentialsPath, h.containerCredentials)
	})
	r.Get("/healthz", h.healthz)
	r.Get("/readyz", h.readyz)
	if cfg.Gatherer != nil {
		r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	return r, nil
}

// NewAdminHandler serves /metrics, /healthz and /readyz alone, for a
// separate admin listener.
func NewAdminHandler(cfg Config) http.Handler {
	h := &handlers{cfg: cfg, log: cfg.Logger}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	r := chi.NewRouter()
	r.NotFound(func(w http.ResponseWriter, r *http.Request) { h.fail(w, r, errNotFound) })
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) { h.fail(w, r, errMethodNotAllowed) })
	r.Get("/healthz", h.healthz)
	r.Get("/readyz", h.readyz)
	if cfg.Gatherer != nil {
		r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	return r
}
