package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/tokenvendor/tokenvendor/internal/config"
	"github.com/tokenvendor/tokenvendor/internal/revoke"
)

// revokeCommand runs `tokenvendor revoke --config F --tenant ID [--before
// RFC3339] [--subject S]`: it cuts off the tenant's sessions (or, with
// --subject, the caller's) issued before the cut-off, in the revocation
// policy, with the operator's AWS credentials.
func revokeCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("revoke", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	path := fs.String("config", getenv("TOKENVENDOR_CONFIG"), "config file")
	tenant := fs.String("tenant", "", "tenant id")
	subject := fs.String("subject", "", "the caller's subject: cut off its sessions (by SourceIdentity) instead of the tenant's")
	before := fs.String("before", "", "cut off sessions issued before this RFC 3339 time; default now")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: revoke: %w", errUsage, err)
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("%w: revoke: unexpected argument %q", errUsage, fs.Arg(0))
	case *path == "":
		return fmt.Errorf("%w: revoke: --config or TOKENVENDOR_CONFIG required", errUsage)
	case *tenant == "":
		return fmt.Errorf("%w: revoke: --tenant required", errUsage)
	}
	var at time.Time
	if *before != "" {
		t, err := time.Parse(time.RFC3339, *before)
		if err != nil {
			return fmt.Errorf("%w: revoke: --before %q: not an RFC 3339 time such as 2026-12-04T16:00:00Z", errUsage, *before)
		}
		at = t
	}
	cfg, err := config.LoadWithoutListeners(*path)
	if err != nil {
		return err
	}
	rc, err := revocationConfig(cfg)
	if err != nil {
		return err
	}
	cut := revoke.Cutoff{Tenant: *tenant, Before: at}
	if err := rc.TenantRule.Check(*tenant); err != nil {
		return fmt.Errorf("revoke: --tenant: %w", err)
	}
	if *subject != "" {
		cut = revoke.Cutoff{Subject: sourceIdentity(cfg, *subject), Before: at}
		if cut.Subject == "" {
			return errors.New("revoke --subject: session.source_identity is off, so sessions carry no SourceIdentity to cut off by: revoke the whole tenant, or turn it on (sessions vended from then on carry it)")
		}
	} else if err := tagsTenants(cfg, *tenant); err != nil {
		return err
	}
	client, err := newIAMClient(ctx, cfg)
	if err != nil {
		return err
	}
	res, err := revoke.Apply(ctx, client, rc, cut)
	if err != nil {
		return err
	}
	what := "tenant " + cut.Tenant
	if cut.Subject != "" {
		what = fmt.Sprintf("caller %s (by SourceIdentity: in every tenant, %s included)", cut.Subject, *tenant)
	}
	written := "written as version " + res.Version
	if !res.Written {
		written = "already in force in version " + res.Version + ", nothing written"
	}
	if res.Deleted != "" {
		written += " (version " + res.Deleted + " deleted: IAM keeps 5)"
	}
	fmt.Fprintf(stdout, "revoked: sessions of %s issued before %s; %s; %d statement(s), %d of %d characters, %d expired cut-off(s) dropped\n",
		what, res.Before.Format(time.RFC3339), written, res.Statements, res.Characters, revoke.MaxCharacters, res.Dropped)
	if res.Foreign > 0 {
		fmt.Fprintf(stderr, "tokenvendor: revoke: the revocation policy holds %d statement(s) tokenvendor did not write; they were kept as they are\n", res.Foreign)
	}
	return nil
}

// revocationConfig is what revoke.Apply needs from cfg: the policy, the
// longest session a profile vends and the tenant rule. `tenants suspend
// --revoke` builds it the same way.
func revocationConfig(cfg *config.Config) (revoke.Config, error) {
	if cfg.Revocation.PolicyARN == "" {
		return revoke.Config{}, errors.New("revoke: revocation.policy_arn is not set: name the customer-managed policy attached to the access role (the RevocationPolicyArn output of deploy/cloudformation/iam.yaml)")
	}
	var longest time.Duration
	for _, p := range cfg.Profiles {
		longest = max(longest, p.Duration)
	}
	return revoke.Config{PolicyARN: cfg.Revocation.PolicyARN, LongestDuration: longest, TenantRule: cfg.TenantRule, Now: time.Now}, nil
}

// tagsTenants refuses a config with a profile whose sessions do not carry
// the tenant as their TenantID tag, or assume a role of the tenant's own
// (bridge, silo), which the revocation policy is not attached to: a
// cut-off by tenant would not reach them.
func tagsTenants(cfg *config.Config, tenant string) error {
	var errs []error
	for _, p := range cfg.Profiles {
		if p.Role.PerTenant() {
			errs = append(errs, fmt.Errorf("revoke: profile %s vends a role of each tenant's own (bridge or silo), which revocation.policy_arn is not attached to, so a cut-off would not reach its sessions; revoke them on the tenant's role (IAM: Revoke active sessions)", p.Name))
			continue
		}
		r, err := p.Template.Render(tenant)
		if err != nil {
			return fmt.Errorf("revoke: profile %s: %w", p.Name, err)
		}
		var tagged bool
		for _, t := range r.Tags {
			tagged = tagged || (t.Key == "TenantID" && t.Value == tenant)
		}
		if !tagged {
			errs = append(errs, fmt.Errorf(`revoke: profile %s does not tag its sessions with the tenant (tags: {TenantID: "{{ .TenantID }}"}), so a cut-off by tenant would not reach them; add the tag (the access role of deploy/cloudformation/iam.yaml requires it too)`, p.Name))
		}
	}
	return errors.Join(errs...)
}

// sourceIdentity is the SourceIdentity the service sends for a caller
// whose subject is subject, or "" when it sends none. A value already in
// SourceIdentity's form (as CloudTrail shows it) stays as it is.
func sourceIdentity(cfg *config.Config, subject string) string {
	if !cfg.Session.SourceIdentity {
		return ""
	}
	return cfg.SessionNamer.SourceIdentity(subject)
}

// newIAMClient is an IAM client with the operator's credentials, found
// the SDK's standard way (the default chain; AWS_ENDPOINT_URL_IAM for
// another endpoint), in the partition of the config's STS region.
func newIAMClient(ctx context.Context, cfg *config.Config) (*iam.Client, error) {
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(cfg.STS.Region))
	if err != nil {
		return nil, fmt.Errorf("revoke: load the operator's AWS credentials: %w", err)
	}
	return iam.NewFromConfig(awsCfg), nil
}
