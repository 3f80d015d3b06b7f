// Command tokenvendor vends tenant-scoped temporary AWS credentials to
// callers that present a JWT from the identity provider.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/tokenvendor/tokenvendor/internal/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// errUsage marks a command line that could not be understood.
var errUsage = errors.New("usage")

// errBreach marks a canary run that found a breach: exit code 3, apart from
// 1 for a run that could not decide.
var errBreach = errors.New("isolation breach")

const usage = `usage:
  tokenvendor serve  --config FILE
  tokenvendor check  --config FILE
  tokenvendor render --config FILE --profile P --tenant T [--subject S] [--attr K=V ...]
  tokenvendor canary --config FILE
  tokenvendor tenants list --config FILE
  tokenvendor tenants add --config FILE [--attr NAME=VALUE]... ID
  tokenvendor tenants suspend --config FILE [--revoke] ID
  tokenvendor tenants resume --config FILE ID
  tokenvendor revoke --config FILE --tenant T [--before RFC3339] [--subject S]
  tokenvendor credential-process --url BASE_URL --profile P (--token-file F | --token-env VAR |
      --aws-iam-server-id ID [--aws-iam-region R] [--aws-iam-sts-endpoint URL] [--aws-iam-fips] [--aws-iam-profile P]) [--tenant T] [--timeout 10s]
  tokenvendor healthcheck [--url http://127.0.0.1:8080/readyz] [--timeout 2s]
  tokenvendor version

--config defaults to $TOKENVENDOR_CONFIG.`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "tokenvendor:", err)
	switch {
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	case errors.Is(err, errBreach):
		os.Exit(3)
	}
	os.Exit(1)
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command", errUsage)
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "serve":
		path, _, err := parseFlags(cmd, args, getenv, false)
		if err != nil {
			return err
		}
		return serve(ctx, path, getenv, stdout, stderr)
	case "check":
		path, _, err := parseFlags(cmd, args, getenv, false)
		if err != nil {
			return err
		}
		return check(path, stdout)
	case "canary":
		path, _, err := parseFlags(cmd, args, getenv, false)
		if err != nil {
			return err
		}
		return runCanary(ctx, path, stdout, stderr)
	case "render":
		path, sel, err := parseFlags(cmd, args, getenv, true)
		if err != nil {
			return err
		}
		return render(ctx, path, sel, stdout, stderr)
	case "tenants":
		return tenantsCommand(ctx, args, getenv, stdout, stderr)
	case "revoke":
		return revokeCommand(ctx, args, getenv, stdout, stderr)
	case "credential-process":
		return credentialProcess(ctx, args, getenv, stdout)
	case "healthcheck":
		return healthcheck(ctx, args)
	case "version":
		fmt.Fprintln(stdout, "tokenvendor", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
}

// selection is what render is asked about: a profile, a tenant and,
// optionally, the calling subject (for session names and source identity)
// and the tenant's attributes (for role templates).
type selection struct {
	profile, tenant, subject string
	attrs                    attributeFlags
}

func parseFlags(cmd string, args []string, getenv func(string) string, withSelection bool) (string, selection, error) {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	path := fs.String("config", getenv("TOKENVENDOR_CONFIG"), "config file")
	var sel selection
	if withSelection {
		fs.StringVar(&sel.profile, "profile", "", "profile name")
		fs.StringVar(&sel.tenant, "tenant", "", "tenant id")
		fs.StringVar(&sel.subject, "subject", "", "the caller's subject, for session.name_template and session.source_identity")
		fs.Var(&sel.attrs, "attr", "a tenant attribute key=value, for role_arn and external_id templates (repeatable; default the tenant store's or file's)")
	}
	if err := fs.Parse(args); err != nil {
		return "", sel, fmt.Errorf("%w: %s: %w", errUsage, cmd, err)
	}
	if fs.NArg() > 0 {
		return "", sel, fmt.Errorf("%w: %s: unexpected argument %q", errUsage, cmd, fs.Arg(0))
	}
	if *path == "" {
		return "", sel, fmt.Errorf("%w: %s: --config or TOKENVENDOR_CONFIG required", errUsage, cmd)
	}
	if withSelection && sel.tenant == "" {
		return "", sel, fmt.Errorf("%w: %s: --tenant required", errUsage, cmd)
	}
	return *path, sel, nil
}

// check validates the config and lints every template.
func check(path string, stdout io.Writer) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ok: %d profile(s), every template renders and lints clean\n", len(cfg.Profiles))
	for _, p := range cfg.Profiles {
		if attrs := p.Role.Attributes(); len(attrs) > 0 {
			fmt.Fprintf(stdout, "ok: profile %s reads tenant attributes %s: a tenant whose item lacks one is refused\n", p.Name, strings.Join(attrs, ", "))
		}
	}
	if cfg.Shared != nil {
		fmt.Fprintf(stdout, "ok: redis: %d key(s) in key_file, the first seals; Redis itself is not contacted\n", cfg.Shared.Keys.Len())
	}
	return nil
}
