package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenvendor/tokenvendor/internal/cache"
	"github.com/tokenvendor/tokenvendor/internal/config"
	"github.com/tokenvendor/tokenvendor/internal/limit"
	"github.com/tokenvendor/tokenvendor/internal/registry"
	"github.com/tokenvendor/tokenvendor/internal/shared"
	"github.com/tokenvendor/tokenvendor/internal/tenants"
	"github.com/tokenvendor/tokenvendor/internal/vend"
	"github.com/tokenvendor/tokenvendor/wire"
)

// Telemetry is where a part of the service reports: its metrics, its log
// and its spans.
type Telemetry struct {
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// TracerProvider is nil when nothing is traced.
	TracerProvider trace.TracerProvider
}

// NewVendor builds the use case from cfg: the tenant registry (watched
// until ctx ends), the limits, the STS client, the tier the replicas share
// and the credential cache. serve and canary vend through it alike.
// release closes the shared tier's connections.
func NewVendor(ctx context.Context, cfg *config.Config, tel Telemetry) (vendor *vend.Service, release func(), err error) {
	reg, log, tp := tel.Registerer, tel.Logger, tel.TracerProvider
	release = func() {}
	defer func() {
		if err != nil {
			release() // the caller gets nothing to release
		}
	}()
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(cfg.STS.Region))
	if err != nil {
		return nil, release, fmt.Errorf("load AWS credentials for the service: %w", err)
	}
	directory, err := tenantDirectory(ctx, cfg, awsCfg, log)
	if err != nil {
		return nil, release, err
	}
	stsClient, err := newSTSClient(awsCfg, cfg.STS)
	if err != nil {
		return nil, release, err
	}

	var maxDuration time.Duration
	if roleChaining(ctx, cfg.STS.RoleChaining, stsClient, log) {
		maxDuration = config.ChainedMaxDuration
	}

	tier, err := sharedTier(ctx, cfg, tel, directory)
	if err != nil {
		return nil, release, err
	}
	if tier != nil {
		release = func() { tier.Close() }
	}
	var sharedCreds cache.Shared[vend.Credentials]
	if tier != nil {
		sharedCreds = shared.NewCache[vend.Credentials](tier)
	}

	paces, err := newPaces(tier, cfg)
	if err != nil {
		return nil, release, err
	}
	var known vend.Directory // nil: every valid tenant id is known
	if directory != nil {
		known = directory
	}
	vendor, err = vend.New(vend.Config{
		Profiles:        Profiles(cfg),
		Tenants:         cfg.TenantRule,
		OverrideScope:   cfg.Auth.OverrideScope,
		STS:             stsClient,
		MaxDuration:     maxDuration,
		Directory:       known,
		CallerLimit:     paces.caller,
		TenantLimit:     paces.tenant,
		Budget:          paces.budget,
		Sessions:        cfg.SessionNamer,
		Cache:           CacheConfig(cfg),
		Shared:          sharedCreds,
		Registerer:      reg,
		Logger:          log,
		TracerProvider:  tp,
		TenantAttribute: cfg.Tracing.TenantAttribute,
	})
	if err != nil {
		return nil, release, fmt.Errorf("vend: %w", err)
	}
	if directory != nil {
		directory.OnChange(vendor.Forget)
	}
	return vendor, release, nil
}

// tenantDirectory knows the tenants of the registry (tenants.allow and
// tenants.file, watched until ctx ends) and of the tenant store (read whole
// now, then polled until ctx ends); nil when neither is configured.
func tenantDirectory(ctx context.Context, cfg *config.Config, awsCfg aws.Config, log *slog.Logger) (*tenants.Directory, error) {
	r, err := registry.New(registry.Config{
		Allow: cfg.Tenants.Allow, File: cfg.Tenants.File, Check: cfg.TenantRule.Check, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	dc := tenants.Config{Check: cfg.TenantRule.Check, Logger: log}
	if r != nil {
		go r.Run(ctx)
		dc.Registry = r
	}
	if d := cfg.Tenants.DynamoDB; d != nil {
		dc.Store, dc.Poll = TenantStore(awsCfg, d), d.Poll
	}
	if dc.Registry == nil && dc.Store == nil {
		return nil, nil
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	dir, err := tenants.New(lctx, dc)
	if err != nil {
		return nil, fmt.Errorf("tenant store: %w", err)
	}
	if dc.Store != nil {
		log.Info("tenant store read", "table", cfg.Tenants.DynamoDB.Table, "tenants", dir.Len(), "poll", cfg.Tenants.DynamoDB.Poll.String())
		go dir.Run(ctx)
	}
	return dir, nil
}

// TenantStore is the DynamoDB table of tenants.dynamodb, reached with the
// given AWS configuration (the service's own credentials, or the
// operator's for the tenants command).
func TenantStore(awsCfg aws.Config, d *config.TenantsDynamoDB) *tenants.Table {
	client := dynamodb.NewFromConfig(awsCfg, func(o *dynamodb.Options) {
		o.Region = d.Region
		if d.Endpoint != "" {
			o.BaseEndpoint = aws.String(d.Endpoint)
		}
	})
	return tenants.NewTable(client, d.Table)
}

// sharedTier connects to the Redis the replicas share, when the config has
// a redis section. Redis down at start-up is logged and bypassed, never
// fatal: the replica acts alone until Redis answers.
func sharedTier(ctx context.Context, cfg *config.Config, tel Telemetry, directory *tenants.Directory) (*shared.Tier, error) {
	log := tel.Logger
	if cfg.Shared == nil {
		return nil, nil
	}
	shared.SetClientLogger(log)
	tc := shared.Config{
		URL:            cfg.Shared.URL,
		Cluster:        cfg.Redis.Cluster,
		Password:       cfg.Shared.Password,
		RootCAs:        cfg.Shared.RootCAs,
		Keys:           cfg.Shared.Keys,
		Prefix:         cfg.Redis.Prefix,
		Timeout:        cfg.Redis.Timeout,
		Registerer:     tel.Registerer,
		Logger:         log,
		TracerProvider: tel.TracerProvider,
	}
	if directory != nil {
		tc.KnownRevision, tc.Revisions = directory.Revision, directory.Observe
		tc.Tenants, tc.Resync = directory.Notice, directory.Kick
	}
	tier, err := shared.New(tc)
	if err != nil {
		return nil, err
	}
	if u, err := url.Parse(cfg.Shared.URL); err == nil && u.Scheme == "redis" && !wire.Loopback(u.Hostname()) {
		log.Warn("redis:// without TLS beyond loopback: the AUTH password, leases and rate-limit keys cross the network in clear (cached credentials stay sealed); use rediss://")
	}
	if err := tier.Ping(ctx); err == nil {
		log.Info("sharing cache, leases and limits through redis", "cluster", cfg.Redis.Cluster, "prefix", cfg.Redis.Prefix, "keys", cfg.Shared.Keys.Len())
	}
	return tier, nil
}

// paces are the limits on callers and tenants and the STS budget: counted
// in Redis when the replicas share one, in the process otherwise; nil when
// not configured.
type paces struct {
	caller, tenant vend.Limiter
	budget         vend.Budget
}

func newPaces(tier *shared.Tier, cfg *config.Config) (paces, error) {
	var p paces
	callerLimit, err := limit.New(limit.Config{RPS: cfg.Limits.PerCallerRPS, Burst: cfg.Limits.PerCallerBurst})
	if err != nil {
		return p, err
	}
	tenantLimit, err := limit.New(limit.Config{RPS: cfg.Limits.PerTenantRPS, Burst: cfg.Limits.PerTenantBurst})
	if err != nil {
		return p, err
	}
	if p.caller, err = limiter(tier, "caller", callerLimit); err != nil {
		return p, err
	}
	if p.tenant, err = limiter(tier, "tenant", tenantLimit); err != nil {
		return p, err
	}
	p.budget, err = stsBudget(tier, cfg.STS)
	return p, err
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

// stsBudget paces AssumeRole calls when sts.max_rps is set: in Redis when
// the replicas share one, in the process otherwise.
func stsBudget(tier *shared.Tier, cfg config.STS) (vend.Budget, error) {
	if cfg.MaxRPS == 0 {
		return nil, nil
	}
	local, err := limit.NewPace(cfg.MaxRPS, cfg.MaxBurst, nil)
	if err != nil {
		return nil, err
	}
	if tier == nil {
		return local, nil
	}
	return shared.NewBudget(tier, local), nil
}

// CacheConfig is the credential cache of the config.
func CacheConfig(cfg *config.Config) cache.Config {
	return cache.Config{
		MaxEntries:     cfg.Cache.MaxEntries,
		RefreshAhead:   cfg.Cache.RefreshAhead,
		Jitter:         cfg.Cache.RefreshJitter,
		MinRemaining:   cfg.Cache.MinRemaining,
		StaleFloor:     cfg.Cache.StaleFloor,
		BackgroundRate: cfg.Cache.BackgroundRefreshRate,
		FetchTimeout:   cfg.STS.Timeout,
	}
}

// Profiles are the config's profiles as the vend service takes them.
func Profiles(cfg *config.Config) []vend.Profile {
	profiles := make([]vend.Profile, 0, len(cfg.Profiles))
	for _, p := range cfg.Profiles {
		profiles = append(profiles, vend.Profile{
			Name: p.Name, Role: p.Role, Duration: p.Duration, Template: p.Template,
		})
	}
	return profiles
}

// roleChaining reports whether the service's own credentials are a role
// session, in which case AWS caps AssumeRole at one hour. In "auto" mode it
// asks STS who the service is; when STS cannot say, it assumes so and says so.
func roleChaining(ctx context.Context, mode config.RoleChaining, client *sts.Client, log *slog.Logger) bool {
	switch mode {
	case config.RoleChainingOn:
		return true
	case config.RoleChainingOff:
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

// newSTSClient is the service's STS client. Its endpoint is the one the
// config resolved (sts.endpoint, or the region's in its partition, FIPS
// with sts.fips), never the SDK's own choice, which would build
// sts-fips.REGION where a region has none. What the SDK's environment asks
// for is honoured or refused, never dropped: AWS_ENDPOINT_URL_STS (or
// endpoint_url) stands for sts.endpoint when that is unset;
// AWS_USE_FIPS_ENDPOINT (use_fips_endpoint) needs sts.fips; dual-stack
// endpoints are not supported.
func newSTSClient(awsCfg aws.Config, c config.STS) (*sts.Client, error) {
	var err error
	client := sts.NewFromConfig(awsCfg, func(o *sts.Options) {
		err = stsEndpoint(o, c)
	})
	return client, err
}

func stsEndpoint(o *sts.Options, c config.STS) error {
	fips := o.EndpointOptions.UseFIPSEndpoint == aws.FIPSEndpointStateEnabled
	switch {
	case fips && !c.FIPS:
		return errors.New("the AWS SDK's configuration asks for FIPS endpoints (AWS_USE_FIPS_ENDPOINT or use_fips_endpoint): set sts.fips: true, which checks that the region has one")
	case o.EndpointOptions.UseDualStackEndpoint == aws.DualStackEndpointStateEnabled:
		return errors.New("the AWS SDK's configuration asks for dual-stack endpoints (AWS_USE_DUALSTACK_ENDPOINT or use_dualstack_endpoint), which tokenvendor does not support for STS: unset it, or name the endpoint in sts.endpoint")
	case o.BaseEndpoint != nil && c.Endpoint == "" && c.FIPS:
		return errors.New("the AWS SDK's configuration names an STS endpoint (AWS_ENDPOINT_URL_STS or endpoint_url) beside sts.fips: set one")
	case o.BaseEndpoint != nil && c.Endpoint == "":
		// The environment's endpoint, as before sts.fips existed.
	default:
		o.BaseEndpoint = aws.String(c.URL)
	}
	// The endpoint is resolved: the SDK must not turn it into a FIPS one,
	// which it refuses beside a base endpoint.
	o.EndpointOptions.UseFIPSEndpoint = aws.FIPSEndpointStateDisabled
	return nil
}
