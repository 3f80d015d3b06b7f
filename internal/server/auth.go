package server

import (
	"context"
	"fmt"

	"github.com/tokenvendor/tokenvendor/internal/awsiam"
	"github.com/tokenvendor/tokenvendor/internal/jwks"
)

// authenticate builds the ways callers are known: JWTs verified against
// the identity provider's key set (fetched once here, then kept fresh until
// ctx ends), AWS IAM identities proven by STS, or both. s.ready reports
// whether the key set, when there is one, has been fetched.
func (s *Server) authenticate(ctx context.Context, tel Telemetry) error {
	s.ready = func() bool { return true }
	if a := s.cfg.Auth; a.UsesJWT() {
		v, err := jwks.New(jwks.Config{
			Issuer:             a.Issuer,
			JWKSURL:            a.JWKSURL,
			Audiences:          a.Audiences,
			Algorithms:         a.Algorithms,
			TenantClaim:        a.TenantClaim,
			Leeway:             a.Leeway,
			RefreshInterval:    a.JWKSRefresh,
			TokenType:          a.TokenType,
			RequireBoundTokens: a.RequireBoundTokens,
			Registerer:         tel.Registerer,
			Logger:             tel.Logger,
			TracerProvider:     tel.TracerProvider,
		})
		if err != nil {
			return fmt.Errorf("auth: %w", err)
		}
		if err := v.Start(ctx); err != nil {
			s.log.Warn("identity provider key set not fetched yet; not ready", "err", err)
		}
		s.methods.JWT, s.ready = v, v.Ready
	}
	if s.cfg.Auth.AWSIAM == nil {
		return nil
	}
	c := s.cfg.Auth.AWSIAM.VerifierConfig()
	c.Timeout = s.cfg.STS.Timeout
	c.Registerer, c.Logger, c.TracerProvider = tel.Registerer, tel.Logger, tel.TracerProvider
	v, err := awsiam.New(c)
	if err != nil {
		return fmt.Errorf("auth.aws_iam: %w", err)
	}
	s.iam, s.methods.AWSIAM = v, v
	s.log.Info("admitting AWS IAM callers", "sts_endpoint", c.Endpoint, "principals", len(c.Principals))
	return nil
}
