package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/tokenvendor/tokenvendor/internal/config"
	"github.com/tokenvendor/tokenvendor/internal/registry"
	"github.com/tokenvendor/tokenvendor/internal/server"
	"github.com/tokenvendor/tokenvendor/internal/tenants"
	"github.com/tokenvendor/tokenvendor/internal/vend"
)

// render prints exactly what serve would send to STS for a tenant (and
// caller), built by the vend service's own builder with the config's
// clamps, from the tenant's attributes: those given with --attr, else the
// tenant store's item (read with the operator's credentials), else the
// tenants file's.
func render(ctx context.Context, path string, sel selection, stdout, stderr io.Writer) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	attrs, err := renderAttributes(ctx, cfg, sel)
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	var maxDuration time.Duration
	switch cfg.STS.RoleChaining {
	case config.RoleChainingOn:
		maxDuration = config.ChainedMaxDuration
	case config.RoleChainingAuto:
		fmt.Fprintln(stderr, "note: sts.role_chaining is auto: serve caps durations at 1h when its own credentials turn out to be a role session; set on or off to render exactly that")
	}
	svc, err := vend.New(vend.Config{
		Profiles: server.Profiles(cfg), Tenants: cfg.TenantRule, STS: noSTS{}, MaxDuration: maxDuration,
		Directory: attrs, Sessions: cfg.SessionNamer, Cache: server.CacheConfig(cfg),
	})
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	in, err := svc.Input(sel.profile, sel.tenant, sel.subject)
	switch {
	case errors.Is(err, vend.ErrUnknownProfile) || errors.Is(err, vend.ErrInvalidRequest):
		return fmt.Errorf("%w: render: no profile %q (name one with --profile)", errUsage, sel.profile)
	case err != nil:
		return fmt.Errorf("render: %w", err)
	}
	return printInput(stdout, in)
}

// printInput prints an AssumeRole request as JSON, its policy as the
// document itself.
func printInput(w io.Writer, in *sts.AssumeRoleInput) error {
	type tag struct{ Key, Value string }
	out := struct {
		RoleArn         string
		RoleSessionName string
		SourceIdentity  string `json:",omitempty"`
		DurationSeconds int32
		ExternalId      string `json:",omitempty"`
		Policy          json.RawMessage
		Tags            []tag
	}{
		RoleArn: aws.ToString(in.RoleArn), RoleSessionName: aws.ToString(in.RoleSessionName), SourceIdentity: aws.ToString(in.SourceIdentity),
		DurationSeconds: aws.ToInt32(in.DurationSeconds), ExternalId: aws.ToString(in.ExternalId), Policy: json.RawMessage(aws.ToString(in.Policy)), Tags: []tag{},
	}
	for _, t := range in.Tags {
		out.Tags = append(out.Tags, tag{aws.ToString(t.Key), aws.ToString(t.Value)})
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}

// renderAttributes are the tenant's attributes as serve would read them.
func renderAttributes(ctx context.Context, cfg *config.Config, sel selection) (knownTenant, error) {
	if len(sel.attrs) > 0 {
		return knownTenant(sel.attrs), nil
	}
	if d := cfg.Tenants.DynamoDB; d != nil {
		awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(d.Region))
		if err != nil {
			return nil, fmt.Errorf("load AWS credentials to read the tenant store: %w", err)
		}
		it, ok, err := server.TenantStore(awsCfg, d).Get(ctx, sel.tenant)
		if err != nil || ok {
			return knownTenant(it.Attributes), err
		}
	}
	r, err := registry.New(registry.Config{File: cfg.Tenants.File, Check: cfg.TenantRule.Check})
	if err != nil {
		return nil, err
	}
	return knownTenant(r.Attributes(sel.tenant)), nil
}

// knownTenant is the directory render vends through: every tenant is
// active, with these attributes.
type knownTenant map[string]string

func (knownTenant) Standing(string) tenants.Standing      { return tenants.Active }
func (k knownTenant) Attributes(string) map[string]string { return k }

// noSTS is the STS of render, which never calls it.
type noSTS struct{}

func (noSTS) AssumeRole(context.Context, *sts.AssumeRoleInput, ...func(*sts.Options)) (*sts.AssumeRoleOutput, error) {
	return nil, errors.New("render calls no STS")
}

// attributeFlags are repeated --attr key=value flags.
type attributeFlags map[string]string

func (a attributeFlags) String() string { return fmt.Sprint(map[string]string(a)) }

func (a *attributeFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not key=value", v)
	}
	if *a == nil {
		*a = attributeFlags{}
	}
	(*a)[k] = val
	return nil
}
