package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenvendor/tokenvendor/internal/canary"
	"github.com/tokenvendor/tokenvendor/internal/config"
	"github.com/tokenvendor/tokenvendor/internal/policy"
	"github.com/tokenvendor/tokenvendor/internal/vend"
)

// runCanary runs every canary probe once, prints a line per probe and
// direction, and fails unless every one is isolated. The log goes to stderr.
func runCanary(ctx context.Context, path string, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	if len(cfg.Canary.Probes) == 0 {
		return errors.New("canary: the config has no canary section")
	}
	reg := prometheus.NewRegistry()
	vendor, closeVendor, err := newVendor(ctx, cfg, reg, log)
	if err != nil {
		return err
	}
	defer closeVendor()
	c, err := newCanary(cfg, vendor, reg, log)
	if err != nil {
		return err
	}
	failed := 0
	for _, r := range c.Run(ctx) {
		fmt.Fprintf(stdout, "%-8s profile=%s %s -> %s: %s\n", r.Verdict, r.Profile, r.From, r.To, r.Why)
		if r.Verdict != canary.Isolated {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("canary: %d probe(s) not isolated", failed)
	}
	return nil
}

// newCanary builds the canary of cfg over vendor.
func newCanary(cfg *config.Config, vendor *vend.Service, reg prometheus.Registerer, log *slog.Logger) (*canary.Canary, error) {
	cc := cfg.Canary
	var probes []canary.Probe
	key := func(text string) (*policy.Key, error) {
		k, err := policy.CompileKey(text)
		if errors.Is(err, policy.ErrKeyWithoutTenant) {
			err = nil // a sort key may be the same for both; config checked the rest
		}
		return k, err
	}
	for _, p := range cc.Probes {
		probe := canary.Probe{Profile: p.Profile}
		var err error
		if p.S3 != nil {
			probe.Bucket = p.S3.Bucket
			probe.Key, err = key(p.S3.Key)
		} else {
			probe.Table, probe.Item = p.DynamoDB.Table, map[string]*policy.Key{}
			for name, text := range p.DynamoDB.Key {
				if probe.Item[name], err = key(text); err != nil {
					break
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("canary: probe of %s: %w", p.Profile, err)
		}
		probes = append(probes, probe)
	}
	return canary.New(canary.Config{
		Tenants:    [2]string{cc.Tenants[0], cc.Tenants[1]},
		Probes:     probes,
		Vendor:     vendor,
		Reader:     canary.NewAWSReader(cfg.STS.Region, cc.Endpoints.S3, cc.Endpoints.DynamoDB),
		Registerer: reg,
		Logger:     log,
	})
}
