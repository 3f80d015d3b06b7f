package server

import (
	"fmt"
	"reflect"
	"sort"

	"github.com/tokenvendor/tokenvendor/internal/awsiam"
	"github.com/tokenvendor/tokenvendor/internal/config"
)

// Reloaded is what a reload applied.
type Reloaded struct {
	// Profiles is the number of profiles now served.
	Profiles int
	// AWSIAMPrincipals is the number of AWS IAM principals now admitted;
	// 0 without auth.aws_iam.
	AWSIAMPrincipals int
	// RestartOnly names the settings that differ from the running ones
	// but change only on restart (the running values are kept).
	RestartOnly []string
}

// Reload reads the config file at path again and swaps in its profiles,
// templates, tenant pattern, override scope and AWS IAM principals, whole
// or not at all: an invalid file changes nothing, and the error says why.
// Other settings (listeners, the rest of auth, STS, cache, ...) take effect
// only on restart; Reloaded names those that differ. Each outcome is
// logged as operators read it.
func (s *Server) Reload(path string) (Reloaded, error) {
	s.reloading.Lock()
	defer s.reloading.Unlock()
	r, err := s.reload(path)
	if err != nil {
		s.log.Error("config reload failed; keeping the running config", "err", err)
		return Reloaded{}, err
	}
	attrs := []any{"profiles", r.Profiles}
	if s.iam != nil {
		attrs = append(attrs, "aws_iam_principals", r.AWSIAMPrincipals)
	}
	s.log.Info("config reloaded", attrs...)
	return r, nil
}

func (s *Server) reload(path string) (Reloaded, error) {
	next, err := config.Load(path)
	if err != nil {
		return Reloaded{}, err
	}
	if next.STS.Region != s.cfg.STS.Region || next.STS.Partition != s.cfg.STS.Partition {
		// The profiles' templates render the partition and the region
		// (ARNs, role ARNs, ExternalIds), and the running STS client serves
		// the old ones until a restart.
		return Reloaded{}, fmt.Errorf("sts.region changed (%s to %s): the profiles render its partition and region, which the running STS client does not serve; restart to apply it", s.cfg.STS.Region, next.STS.Region)
	}
	r := Reloaded{Profiles: len(next.Profiles), RestartOnly: restartOnly(s.cfg, next)}
	if len(r.RestartOnly) > 0 {
		s.log.Warn("settings that change only on restart differ from the running ones; keeping the running values", "settings", r.RestartOnly)
	}
	// Everything is checked before anything changes.
	var principals *awsiam.Principals
	if s.iam != nil && next.Auth.AWSIAM != nil {
		if principals, err = awsiam.CompilePrincipals(next.Auth.AWSIAM.VerifierConfig().Principals); err != nil {
			return Reloaded{}, err
		}
	}
	if err := s.vendor.Update(Profiles(next), next.TenantRule, next.Auth.OverrideScope); err != nil {
		return Reloaded{}, err
	}
	if s.iam != nil {
		if principals != nil {
			s.iam.UsePrincipals(principals)
		}
		r.AWSIAMPrincipals = s.iam.PrincipalCount()
	}
	return r, nil
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
