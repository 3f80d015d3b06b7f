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
	"net/url"
	"os"
	"os/signal"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tokenvendor/tokenvendor/internal/api"
	"github.com/tokenvendor/tokenvendor/internal/audit"
	"github.com/tokenvendor/tokenvendor/internal/auth"
	"github.com/tokenvendor/tokenvendor/internal/cache"
	"github.com/tokenvendor/tokenvendor/internal/config"
	"github.com/tokenvendor/tokenvendor/internal/limit"
	"github.com/tokenvendor/tokenvendor/internal/registry"
	"github.com/tokenvendor/tokenvendor/internal/shared"
	"github.com/tokenvendor/tokenvendor/internal/tlsconfig"
	"github.com/tokenvendor/tokenvendor/internal/vend"
)

// serve runs the service until ctx ends, then drains in-flight requests.
// The operational log goes to stderr; an audit file of "-" to stdout.
func serve(ctx context.Context, path string, stdout, stderr io.Writer) error {
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
	tenantRegistry, err := registry.New(registry.Config{
		Allow: cfg.Tenants.Allow, File: cfg.Tenants.File, Check: cfg.TenantRule.Check, Logger: log,
	})
	if err != nil {
		return err
	}
	go tenantRegistry.Run(ctx)
	callerLimit, err := limit.New(limit.Config{RPS: cfg.Limits.PerCallerRPS, Burst: cfg.Limits.PerCallerBurst})
	if err != nil {
		return err
	}
	tenantLimit, err := limit.New(limit.Config{RPS: cfg.Limits.PerTenantRPS, Burst: cfg.Limits.PerTenantBurst})
	if err != nil {
		return err
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

	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(cfg.STS.Region))
	if err != nil {
		return fmt.Errorf("load AWS credentials for the service: %w", err)
	}
	stsClient := sts.NewFromConfig(awsCfg, func(o *sts.Options) {
		if cfg.STS.Endpoint != "" {
			o.BaseEndpoint = &cfg.STS.Endpoint
		}
	})

	verifier, err := auth.New(auth.Config{
		Issuer:      cfg.Auth.Issuer,
		JWKSURL:     cfg.Auth.JWKSURL,
		Audiences:   cfg.Auth.Audiences,
		Algorithms:  cfg.Auth.Algorithms,
		TenantClaim: cfg.Auth.TenantClaim,
		Leeway:      cfg.Auth.Leeway,
		Registerer:  reg,
		Logger:      log,
	})
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	if err := verifier.Start(ctx); err != nil {
		log.Warn("identity provider key set not fetched yet; not ready", "err", err)
	}

	var maxDuration time.Duration
	if roleChaining(ctx, cfg.STS.RoleChaining, stsClient, log) {
		maxDuration = config.ChainedMaxDuration
	}

	tier, err := sharedTier(ctx, cfg, reg, log)
	if err != nil {
		return err
	}
	if tier != nil {
		defer tier.Close()
	}
	var sharedCreds cache.Shared[vend.Credentials]
	if tier != nil {
		sharedCreds = shared.NewCache[vend.Credentials](tier)
	}

	callerLimiter, err := limiter(tier, "caller", callerLimit)
	if err != nil {
		return err
	}
	tenantLimiter, err := limiter(tier, "tenant", tenantLimit)
	if err != nil {
		return err
	}
	vendor, err := vend.New(vend.Config{
		Profiles:      vendProfiles(cfg),
		Tenants:       cfg.TenantRule,
		OverrideScope: cfg.Auth.OverrideScope,
		STS:           stsClient,
		MaxDuration:   maxDuration,
		Registry:      tenantRegistry,
		CallerLimit:   callerLimiter,
		TenantLimit:   tenantLimiter,
		Sessions:      cfg.SessionNamer,
		Cache: cache.Config{
			MaxEntries:     cfg.Cache.MaxEntries,
			RefreshAhead:   cfg.Cache.RefreshAhead,
			Jitter:         cfg.Cache.RefreshJitter,
			MinRemaining:   cfg.Cache.MinRemaining,
			StaleFloor:     cfg.Cache.StaleFloor,
			BackgroundRate: cfg.Cache.BackgroundRefreshRate,
			FetchTimeout:   cfg.STS.Timeout,
		},
		Shared:     sharedCreds,
		Registerer: reg,
		Logger:     log,
	})
	if err != nil {
		return fmt.Errorf("vend: %w", err)
	}

	apiCfg := api.Config{
		Vendor:        vendor,
		Authenticator: verifier,
		Ready:         verifier.Ready,
		Gatherer:      reg,
		Registerer:    reg,
		Logger:        log,
		Auditor:       auditLog,
		MaxInFlight:   cfg.Limits.MaxInFlight,
	}
	handler, err := api.NewHandler(apiCfg)
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
			reload(path, cfg, vendor, log)
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

// sharedTier connects to the Redis the replicas share, when the config has
// a redis section. Redis down at start-up is logged and bypassed, never
// fatal: the replica acts alone until Redis answers.
func sharedTier(ctx context.Context, cfg *config.Config, reg prometheus.Registerer, log *slog.Logger) (*shared.Tier, error) {
	if cfg.Shared == nil {
		return nil, nil
	}
	shared.SetClientLogger(log)
	tier, err := shared.New(shared.Config{
		URL:        cfg.Shared.URL,
		Cluster:    cfg.Redis.Cluster,
		Password:   cfg.Shared.Password,
		RootCAs:    cfg.Shared.RootCAs,
		Keys:       cfg.Shared.Keys,
		Prefix:     cfg.Redis.Prefix,
		Timeout:    cfg.Redis.Timeout,
		Registerer: reg,
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	if u, err := url.Parse(cfg.Shared.URL); err == nil && u.Scheme == "redis" && !isLoopback(u.Hostname()) {
		log.Warn("redis:// without TLS beyond loopback: the AUTH password, leases and rate-limit keys cross the network in clear (cached credentials stay sealed); use rediss://")
	}
	if err := tier.Ping(ctx); err == nil {
		log.Info("sharing cache, leases and limits through redis", "cluster", cfg.Redis.Cluster, "prefix", cfg.Redis.Prefix, "keys", cfg.Shared.Keys.Len())
	}
	return tier, nil
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// limiter counts local's budget in Redis when the replicas share one, and
// is nil when there is no limit.
func limiter(tier *shared.Tier, name string, local *limit.Limiter) (vend.Limiter, error) {
	switch {
	case local == nil:
		return nil, nil
	case tier == nil:
		return local, nil
	}
	return shared.NewLimiter(tier, name, local)
}

func vendProfiles(cfg *config.Config) []vend.Profile {
	profiles := make([]vend.Profile, 0, len(cfg.Profiles))
	for _, p := range cfg.Profiles {
		profiles = append(profiles, vend.Profile{
			Name: p.Name, RoleARN: p.RoleARN, Duration: p.Duration, ExternalID: p.ExternalID, Template: p.Template,
		})
	}
	return profiles
}

// reload reads the config file again and swaps in its profiles, templates,
// tenant pattern and override scope. An invalid file changes nothing. Other
// settings (listeners, auth, STS, cache) take effect only on restart; a
// change to them is logged.
func reload(path string, boot *config.Config, vendor *vend.Service, log *slog.Logger) {
	next, err := config.Load(path)
	if err != nil {
		log.Error("config reload failed; keeping the running config", "err", err)
		return
	}
	if changed := restartOnly(boot, next); len(changed) > 0 {
		log.Warn("settings that change only on restart differ from the running ones; keeping the running values", "settings", changed)
	}
	if err := vendor.Update(vendProfiles(next), next.TenantRule, next.Auth.OverrideScope); err != nil {
		log.Error("config reload failed; keeping the running config", "err", err)
		return
	}
	log.Info("config reloaded", "profiles", len(next.Profiles))
}

// restartOnly names the settings that differ between a and b and that a
// reload does not apply.
func restartOnly(a, b *config.Config) []string {
	authA, authB := a.Auth, b.Auth
	authA.TenantPattern, authB.TenantPattern = "", ""
	authA.OverrideScope, authB.OverrideScope = "", ""
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
	} {
		if !same {
			changed = append(changed, name)
		}
	}
	sort.Strings(changed)
	return changed
}

// roleChaining reports whether the service's own credentials are a role
// session, in which case AWS caps AssumeRole at one hour. In "auto" mode it
// asks STS who the service is; when STS cannot say, it assumes so and says so.
func roleChaining(ctx context.Context, mode string, client *sts.Client, log *slog.Logger) bool {
	switch mode {
	case "on":
		return true
	case "off":
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	id, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		// Clamping is harmless when not needed; not clamping when needed
		// makes every AssumeRole over an hour fail.
		log.Warn("cannot tell whether the service's credentials are a role session; assuming they are (durations clamped to 1h); set sts.role_chaining to be sure", "err", err)
		return true
	}
	chained := strings.Contains(aws.ToString(id.Arn), ":assumed-role/")
	log.Info("service identity", "arn", aws.ToString(id.Arn), "role_chaining", chained)
	return chained
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
