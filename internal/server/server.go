// Package server composes the service from its config and runs it: the
// ways callers are known, the vend service over STS, the cache and the tier
// the replicas share, the canary, and the HTTP listeners. New builds it, Run
// serves until its context ends and then drains, Reload applies a new
// config file's reloadable settings. Data flows one way: api -> vend ->
// policy, cache, STS.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenvendor/tokenvendor/internal/api"
	"github.com/tokenvendor/tokenvendor/internal/audit"
	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/awsiam"
	"github.com/tokenvendor/tokenvendor/internal/canary"
	"github.com/tokenvendor/tokenvendor/internal/config"
	"github.com/tokenvendor/tokenvendor/internal/tlsconfig"
	"github.com/tokenvendor/tokenvendor/internal/vend"
)

// Config is what New builds the service from.
type Config struct {
	// Config is the service's configuration, loaded and validated.
	Config *config.Config
	// Gatherer serves /metrics; Registerer receives every metric. Default
	// one private registry for both.
	Gatherer   prometheus.Gatherer
	Registerer prometheus.Registerer
	// Logger is the operational log; default none.
	Logger *slog.Logger
	// TracerProvider traces requests and STS calls; nil traces nothing.
	TracerProvider trace.TracerProvider
	// Stdout is where an audit.file of "-" writes; default nowhere.
	Stdout io.Writer
}

// Server is the service, built and ready to serve.
type Server struct {
	cfg     *config.Config // as started: what a reload compares with
	log     *slog.Logger
	vendor  *vend.Service
	methods auth.Methods
	iam     *awsiam.Verifier // nil without auth.aws_iam
	ready   func() bool
	canary  *canary.Canary // nil when serve runs no canary
	servers []*http.Server
	closers []func()

	reloading sync.Mutex
	listening sync.Mutex
	listeners []net.Listener
}

// New builds the service from cfg. Background work it starts (the key
// set's refresh, the tenant registry's watch, the tenant store's poll) runs
// until ctx ends. Close releases what New holds; Run serves.
func New(ctx context.Context, cfg Config) (s *Server, err error) {
	if cfg.Config == nil {
		return nil, errors.New("server: no config")
	}
	cfg = cfg.withDefaults()
	s = &Server{cfg: cfg.Config, log: cfg.Logger}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	tel := Telemetry{Registerer: cfg.Registerer, Logger: cfg.Logger, TracerProvider: cfg.TracerProvider}
	auditLog, err := s.openAudit(cfg.Stdout)
	if err != nil {
		return nil, err
	}
	tlsConfig, err := s.tlsConfig()
	if err != nil {
		return nil, err
	}
	if err := s.authenticate(ctx, tel); err != nil {
		return nil, err
	}
	vendor, release, err := NewVendor(ctx, s.cfg, tel)
	if err != nil {
		return nil, err
	}
	s.vendor = vendor
	s.closers = append(s.closers, release)
	if s.cfg.Canary.Interval > 0 {
		if s.canary, err = NewCanary(s.cfg, vendor, tel); err != nil {
			return nil, err
		}
	}
	apiCfg := api.Config{
		Vendor:         vendor,
		Authenticator:  s.methods,
		Ready:          s.ready,
		Gatherer:       cfg.Gatherer,
		Registerer:     cfg.Registerer,
		Logger:         cfg.Logger,
		Auditor:        auditLog,
		MaxInFlight:    s.cfg.Limits.MaxInFlight,
		TracerProvider: cfg.TracerProvider,
	}
	if err := s.buildServers(apiCfg, tlsConfig); err != nil {
		return nil, err
	}
	return s, nil
}

// withDefaults fills what cfg leaves out.
func (cfg Config) withDefaults() Config {
	if cfg.Registerer == nil && cfg.Gatherer == nil {
		reg := prometheus.NewRegistry()
		cfg.Registerer, cfg.Gatherer = reg, reg
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	return cfg
}

// openAudit opens the audit log of audit.file; nil when there is none.
func (s *Server) openAudit(stdout io.Writer) (*audit.Log, error) {
	if s.cfg.Audit.File == "" {
		return nil, nil
	}
	l, closer, err := audit.Open(s.cfg.Audit.File, stdout)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { closer.Close() })
	return l, nil
}

// tlsConfig is the API listener's TLS of the tls section; nil without it.
func (s *Server) tlsConfig() (*tls.Config, error) {
	t := s.cfg.TLS
	if t.CertFile == "" {
		return nil, nil
	}
	return tlsconfig.New(tlsconfig.Config{
		CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile, Logger: s.log,
	})
}

// buildServers builds the API server and, with admin_listen, the admin
// one. With an admin listener, /metrics is served there only: callers have
// no business reading the service's internals.
func (s *Server) buildServers(apiCfg api.Config, tlsConfig *tls.Config) error {
	mainCfg := apiCfg
	if s.cfg.AdminListen != "" {
		mainCfg.Gatherer = nil
	}
	handler, err := api.NewHandler(mainCfg)
	if err != nil {
		return err
	}
	main := newHTTPServer(s.cfg.Listen, handler, s.log)
	main.TLSConfig = tlsConfig
	s.servers = []*http.Server{main}
	if s.cfg.AdminListen != "" {
		s.servers = append(s.servers, newHTTPServer(s.cfg.AdminListen, api.NewAdminHandler(apiCfg), s.log))
	}
	return nil
}

// Handler is the API listener's handler, to serve the service in a test
// or behind a listener of one's own.
func (s *Server) Handler() http.Handler { return s.servers[0].Handler }

// Listen binds the listeners: listen, and admin_listen when set. Run binds
// them itself when Listen was not called first.
func (s *Server) Listen() error {
	s.listening.Lock()
	defer s.listening.Unlock()
	if s.listeners != nil {
		return nil
	}
	var lns []net.Listener
	for i, srv := range s.servers {
		ln, err := net.Listen("tcp", srv.Addr)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("listen on %s: %w", srv.Addr, err)
		}
		s.log.Info("listening", "addr", ln.Addr().String(), "admin", i > 0, "tls", srv.TLSConfig != nil)
		if srv.TLSConfig != nil {
			ln = tls.NewListener(ln, srv.TLSConfig)
		}
		lns = append(lns, ln)
	}
	s.listeners = lns
	return nil
}

// Addr is the API listener's address once bound, "" before.
func (s *Server) Addr() string {
	s.listening.Lock()
	defer s.listening.Unlock()
	if s.listeners == nil {
		return ""
	}
	return s.listeners[0].Addr().String()
}

// Run serves until ctx ends, then stops the canary and drains in-flight
// requests for up to shutdown_timeout. It fails when a listener cannot be
// bound or stops serving.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	if s.canary != nil {
		// On the way out, the canary stops and its run in progress ends
		// before Run returns, and so before Close closes the vendor.
		cctx, stopCanary := context.WithCancel(ctx)
		var canaryDone sync.WaitGroup
		canaryDone.Add(1)
		defer canaryDone.Wait()
		defer stopCanary()
		go func() {
			defer canaryDone.Done()
			s.canary.Loop(cctx, s.cfg.Canary.Interval, s.ready)
		}()
	}
	errc := make(chan error, len(s.servers))
	for i, srv := range s.servers {
		go func() { errc <- srv.Serve(s.listeners[i]) }()
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	return s.shutdown(ctx)
}

// shutdown drains the servers for up to shutdown_timeout.
func (s *Server) shutdown(ctx context.Context) error {
	s.log.Info("shutting down", "drain_timeout", s.cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	for _, srv := range s.servers {
		if err := srv.Shutdown(sctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	s.log.Info("stopped")
	return nil
}

// Close releases what New holds: the listeners Run did not close, the
// shared tier's connections and the audit file. Call it after Run has
// returned.
func (s *Server) Close() {
	s.listening.Lock()
	for _, ln := range s.listeners {
		_ = ln.Close() // closed already when Run drained it
	}
	s.listening.Unlock()
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// newHTTPServer is an http.Server with every timeout set.
func newHTTPServer(addr string, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
