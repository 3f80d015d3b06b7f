package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenvendor/tokenvendor/internal/api"
	"github.com/tokenvendor/tokenvendor/internal/audit"
	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/awsiam"
	"github.com/tokenvendor/tokenvendor/internal/config"
	"github.com/tokenvendor/tokenvendor/internal/tlsconfig"
	"github.com/tokenvendor/tokenvendor/internal/vend"
)

// serve runs the service until ctx ends, then drains in-flight requests.
// The operational log goes to stderr; an audit file of "-" to stdout.
func serve(ctx context.Context, path string, getenv func(string) string, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	var auditLog *audit.Log
	if cfg.Audit.File != "" {
		l, closer, err := audit.Open(cfg.Audit.File, stdout)
		if err != nil {
			return err
		}
		defer closer.Close()
		auditLog = l
	}
	var tlsConfig *tls.Config
	if cfg.TLS.CertFile != "" {
		tlsConfig, err = tlsconfig.New(tlsconfig.Config{
			CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile, ClientCAFile: cfg.TLS.ClientCAFile, Logger: log,
		})
		if err != nil {
			return err
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	tp, stopTracing, err := tracerProvider(ctx, getenv, log)
	if err != nil {
		return err
	}
	defer stopTracing()

	methods, ready, err := authMethods(ctx, cfg, reg, log, tp)
	if err != nil {
		return err
	}

	vendor, closeVendor, err := newVendor(ctx, cfg, reg, log, tp)
	if err != nil {
		return err
	}
	defer closeVendor()
	if cfg.Canary.Interval > 0 {
		c, err := newCanary(cfg, vendor, reg, log)
		if err != nil {
			return err
		}
		// On the way out, the canary stops and its run in progress ends
		// before the vendor closes (deferred calls run last first).
		cctx, stopCanary := context.WithCancel(ctx)
		var canaryDone sync.WaitGroup
		canaryDone.Add(1)
		defer canaryDone.Wait()
		defer stopCanary()
		go func() {
			defer canaryDone.Done()
			c.Loop(cctx, cfg.Canary.Interval, ready)
		}()
	}

	apiCfg := api.Config{
		Vendor:         vendor,
		Authenticator:  methods,
		Ready:          ready,
		Gatherer:       reg,
		Registerer:     reg,
		Logger:         log,
		Auditor:        auditLog,
		MaxInFlight:    cfg.Limits.MaxInFlight,
		TracerProvider: tp,
	}
	// With an admin listener, /metrics is served there only: callers have
	// no business reading the service's internals.
	mainCfg := apiCfg
	if cfg.AdminListen != "" {
		mainCfg.Gatherer = nil
	}
	handler, err := api.NewHandler(mainCfg)
	if err != nil {
		return err
	}

	main := newServer(cfg.Listen, handler, log)
	main.TLSConfig = tlsConfig
	servers := []*http.Server{main}
	if cfg.AdminListen != "" {
		servers = append(servers, newServer(cfg.AdminListen, api.NewAdminHandler(apiCfg), log))
	}
	errc := make(chan error, len(servers))
	for i, srv := range servers {
		ln, err := net.Listen("tcp", srv.Addr)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", srv.Addr, err)
		}
		log.Info("listening", "addr", ln.Addr().String(), "admin", i > 0, "tls", srv.TLSConfig != nil)
		if srv.TLSConfig != nil {
			ln = tls.NewListener(ln, srv.TLSConfig)
		}
		go func() { errc <- srv.Serve(ln) }()
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for running := true; running; {
		select {
		case err := <-errc:
			return fmt.Errorf("serve: %w", err)
		case <-hup:
			reload(path, cfg, vendor, methods, log)
		case <-ctx.Done():
			running = false
		}
	}
	log.Info("shutting down", "drain_timeout", cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(sctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// authMethods builds the ways callers are known: JWTs verified against the
// identity provider's key set (fetched once here, then kept fresh until ctx
// ends), AWS IAM identities proven by STS, or both. ready reports whether
// the key set, when there is one, has been fetched.
func authMethods(ctx context.Context, cfg *config.Config, reg prometheus.Registerer, log *slog.Logger, tp trace.TracerProvider) (m auth.Methods, ready func() bool, err error) {
	ready = func() bool { return true }
	if a := cfg.Auth; a.UsesJWT() {
		m.JWT, err = auth.New(auth.Config{
			Issuer:             a.Issuer,
			JWKSURL:            a.JWKSURL,
			Audiences:          a.Audiences,
			Algorithms:         a.Algorithms,
			TenantClaim:        a.TenantClaim,
			Leeway:             a.Leeway,
			RefreshInterval:    a.JWKSRefresh,
			TokenType:          a.TokenType,
			RequireBoundTokens: a.RequireBoundTokens,
			Registerer:         reg,
			Logger:             log,
			TracerProvider:     tp,
		})
		if err != nil {
			return m, nil, fmt.Errorf("auth: %w", err)
		}
		if err := m.JWT.Start(ctx); err != nil {
			log.Warn("identity provider key set not fetched yet; not ready", "err", err)
		}
		ready = m.JWT.Ready
	}
	if cfg.Auth.AWSIAM != nil {
		c := cfg.Auth.AWSIAM.VerifierConfig()
		c.Timeout = cfg.STS.Timeout
		c.Registerer, c.Logger, c.TracerProvider = reg, log, tp
		v, err := awsiam.New(c)
		if err != nil {
			return m, nil, fmt.Errorf("auth.aws_iam: %w", err)
		}
		m.AWSIAM = v
		log.Info("admitting AWS IAM callers", "sts_endpoint", c.Endpoint, "principals", len(c.Principals))
	}
	return m, ready, nil
}

// reload reads the config file again and swaps in its profiles, templates,
// tenant pattern, override scope and AWS IAM principals. An invalid file
// changes nothing. Other settings (listeners, auth, STS, cache) take effect
// only on restart; a change to them is logged.
func reload(path string, boot *config.Config, vendor *vend.Service, methods auth.Methods, log *slog.Logger) {
	next, err := config.Load(path)
	if err != nil {
		log.Error("config reload failed; keeping the running config", "err", err)
		return
	}
	if changed := restartOnly(boot, next); len(changed) > 0 {
		log.Warn("settings that change only on restart differ from the running ones; keeping the running values", "settings", changed)
	}
	// Everything is checked before anything changes: a reload applies
	// whole or not at all.
	iam, _ := methods.AWSIAM.(*awsiam.Verifier)
	var principals *awsiam.Principals
	if iam != nil && next.Auth.AWSIAM != nil {
		p, err := awsiam.CompilePrincipals(next.Auth.AWSIAM.VerifierConfig().Principals)
		if err != nil {
			log.Error("config reload failed; keeping the running config", "err", err)
			return
		}
		principals = p
	}
	if err := vendor.Update(vendProfiles(next), next.TenantRule, next.Auth.OverrideScope); err != nil {
		log.Error("config reload failed; keeping the running config", "err", err)
		return
	}
	attrs := []any{"profiles", len(next.Profiles)}
	if iam != nil {
		if principals != nil {
			iam.UsePrincipals(principals)
		}
		attrs = append(attrs, "aws_iam_principals", iam.PrincipalCount())
	}
	log.Info("config reloaded", attrs...)
}

// restartOnly names the settings that differ between a and b and that a
// reload does not apply.
func restartOnly(a, b *config.Config) []string {
	authA, authB := a.Auth, b.Auth
	authA.TenantPattern, authB.TenantPattern = "", ""
	authA.OverrideScope, authB.OverrideScope = "", ""
	// The principals are reloaded; the rest of aws_iam is not.
	if authA.AWSIAM != nil && authB.AWSIAM != nil {
		iamA, iamB := *authA.AWSIAM, *authB.AWSIAM
		iamA.Principals, iamB.Principals = nil, nil
		authA.AWSIAM, authB.AWSIAM = &iamA, &iamB
	}
	var changed []string
	for name, same := range map[string]bool{
		"listen":           a.Listen == b.Listen,
		"admin_listen":     a.AdminListen == b.AdminListen,
		"shutdown_timeout": a.ShutdownTimeout == b.ShutdownTimeout,
		"auth":             reflect.DeepEqual(authA, authB),
		"sts":              a.STS == b.STS,
		"cache":            a.Cache == b.Cache,
		"limits":           a.Limits == b.Limits,
		"audit":            a.Audit == b.Audit,
		"session":          a.Session == b.Session,
		"tenants":          reflect.DeepEqual(a.Tenants, b.Tenants),
		"tls":              a.TLS == b.TLS,
		"redis":            a.Redis == b.Redis && a.Shared.Same(b.Shared),
		"canary":           reflect.DeepEqual(a.Canary, b.Canary),
		"tracing":          a.Tracing == b.Tracing,
	} {
		if !same {
			changed = append(changed, name)
		}
	}
	sort.Strings(changed)
	return changed
}

func newServer(addr string, h http.Handler, log *slog.Logger) *http.Server {
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
