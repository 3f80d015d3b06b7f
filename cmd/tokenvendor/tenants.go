package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/tokenvendor/tokenvendor/internal/config"
	"github.com/tokenvendor/tokenvendor/internal/revoke"
	"github.com/tokenvendor/tokenvendor/internal/server"
	"github.com/tokenvendor/tokenvendor/internal/shared"
	"github.com/tokenvendor/tokenvendor/internal/tenants"
)

// attrFlag collects --attr name=value pairs.
type attrFlag map[string]string

func (a attrFlag) String() string { return "" }

func (a attrFlag) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("%q is not name=value", v)
	}
	a[name] = value
	return nil
}

// tenantsArgs is a tenants command line, read.
type tenantsArgs struct {
	verb, path, id string
	attrs          attrFlag
	revoke         bool
}

// parseTenantsArgs reads `tenants VERB --config F [flags] [ID]`.
func parseTenantsArgs(args []string, getenv func(string) string) (tenantsArgs, error) {
	verbs := []string{"list", "add", "suspend", "resume"}
	if len(args) == 0 || !slices.Contains(verbs, args[0]) {
		return tenantsArgs{}, fmt.Errorf("%w: tenants: one of %s", errUsage, strings.Join(verbs, ", "))
	}
	a := tenantsArgs{verb: args[0], attrs: attrFlag{}}
	fs := flag.NewFlagSet("tenants "+a.verb, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&a.path, "config", getenv("TOKENVENDOR_CONFIG"), "config file")
	switch a.verb {
	case "add":
		fs.Var(a.attrs, "attr", "an attribute of the tenant's item, name=value (repeatable)")
	case "suspend":
		fs.BoolVar(&a.revoke, "revoke", false, "also cut off the credentials already handed out (tokenvendor revoke)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return a, fmt.Errorf("%w: tenants %s: %w", errUsage, a.verb, err)
	}
	wantArgs := 1
	if a.verb == "list" {
		wantArgs = 0
	}
	if fs.NArg() != wantArgs || a.path == "" {
		return a, fmt.Errorf("%w: tenants %s: --config FILE (or TOKENVENDOR_CONFIG) and %d tenant id", errUsage, a.verb, wantArgs)
	}
	a.id = fs.Arg(0)
	return a, nil
}

// tenantsCommand is `tokenvendor tenants list|add|suspend|resume`: the
// operator's side of the tenant store, run with the operator's AWS
// credentials (the SDK's default chain; AWS_ENDPOINT_URL_DYNAMODB or
// tenants.dynamodb.endpoint for another endpoint). A change is written to
// the store, then announced through Redis when the config has a redis
// section, so that every replica applies it at once; without Redis, or when
// Redis cannot be told, every replica applies it at its next poll.
func tenantsCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	a, err := parseTenantsArgs(args, getenv)
	if err != nil {
		return err
	}
	cfg, err := config.LoadWithoutListeners(a.path)
	if err != nil {
		return err
	}
	d := cfg.Tenants.DynamoDB
	if d == nil {
		return errors.New("tenants: the config has no tenants.dynamodb section")
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(d.Region))
	if err != nil {
		return fmt.Errorf("tenants: load the operator's AWS credentials: %w", err)
	}
	table := server.TenantStore(awsCfg, d)
	if a.verb == "list" {
		return listTenants(ctx, table, stdout)
	}
	if err := cfg.TenantRule.Check(a.id); err != nil {
		return fmt.Errorf("tenants %s: %w", a.verb, err)
	}
	var rc revoke.Config
	if a.revoke { // refused before anything is written, not half done
		if rc, err = revocationConfig(cfg); err != nil {
			return err
		}
		if err := tagsTenants(cfg, a.id); err != nil {
			return err
		}
	}
	var rev int64
	switch a.verb {
	case "add":
		rev, err = table.Create(ctx, a.id, a.attrs)
	case "suspend":
		rev, err = table.SetStatus(ctx, a.id, tenants.StatusSuspended)
	case "resume":
		rev, err = table.SetStatus(ctx, a.id, tenants.StatusActive)
	}
	if err != nil {
		return fmt.Errorf("tenants %s: %w", a.verb, err)
	}
	fmt.Fprintf(stdout, "%s: %s at store revision %d\n", a.verb, a.id, rev)
	announceTenant(ctx, cfg, a.id, rev, a.verb == "suspend", stdout, stderr)
	if !a.revoke {
		return nil
	}
	return revokeSuspended(ctx, cfg, rc, a.id, stdout)
}

// revokeSuspended cuts off the sessions of a tenant just suspended.
func revokeSuspended(ctx context.Context, cfg *config.Config, rc revoke.Config, id string, stdout io.Writer) error {
	client, err := newIAMClient(ctx, cfg)
	if err != nil {
		return err
	}
	res, err := revoke.Apply(ctx, client, rc, revoke.Cutoff{Tenant: id})
	if err != nil {
		return fmt.Errorf("tenants suspend: suspended, but the credentials already handed out are not revoked: %w", err)
	}
	fmt.Fprintf(stdout, "revoked: sessions of tenant %s issued before %s (revocation policy version %s, %d of %d characters)\n",
		id, res.Before.Format(time.RFC3339), res.Version, res.Characters, revoke.MaxCharacters)
	return nil
}

// listTenants prints every tenant of the store.
func listTenants(ctx context.Context, table *tenants.Table, stdout io.Writer) error {
	items, err := table.Since(ctx, 0)
	if err != nil {
		return fmt.Errorf("tenants list: %w", err)
	}
	slices.SortFunc(items, func(a, b tenants.Item) int { return strings.Compare(a.TenantID, b.TenantID) })
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tSTATUS\tREVISION\tATTRIBUTES")
	for _, it := range items {
		var attrs []string
		for k, v := range it.Attributes {
			attrs = append(attrs, k+"="+v)
		}
		slices.Sort(attrs)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", it.TenantID, it.Status, it.Revision, strings.Join(attrs, " "))
	}
	return tw.Flush()
}

// announceTenant tells the replicas through Redis, when the config has a
// redis section. The store is already written: a Redis that cannot be told
// only delays the change to the replicas' next poll, and that is said.
func announceTenant(ctx context.Context, cfg *config.Config, id string, rev int64, suspended bool, stdout, stderr io.Writer) {
	poll := cfg.Tenants.DynamoDB.Poll
	if cfg.Shared == nil {
		fmt.Fprintf(stdout, "no redis section: every replica applies it at its next poll of the store (within %s)\n", poll)
		return
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	tier, err := shared.New(shared.Config{
		URL: cfg.Shared.URL, Cluster: cfg.Redis.Cluster, Password: cfg.Shared.Password, RootCAs: cfg.Shared.RootCAs,
		Keys: cfg.Shared.Keys, Prefix: cfg.Redis.Prefix, Timeout: cfg.Redis.Timeout, Logger: log,
	})
	if err == nil {
		defer tier.Close()
		err = tier.AnnounceTenant(ctx, tenants.Group(id), rev, suspended)
	}
	if errors.Is(err, shared.ErrEntriesKept) {
		fmt.Fprintf(stderr, "tokenvendor: tenants: %v (they are never served, and expire with their credentials)\n", err)
		err = nil
	}
	if err != nil {
		fmt.Fprintf(stderr, "tokenvendor: tenants: Redis not told (%v); every replica applies the change at its next poll of the store (within %s)\n", err, poll)
		return
	}
	fmt.Fprintln(stdout, "replicas told through Redis; its cached credentials dropped there")
}
