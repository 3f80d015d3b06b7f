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
	"github.com/tokenvendor/tokenvendor/internal/server"
)

// runCanary runs every canary probe once, prints a line per probe and
// direction, and fails unless every one is isolated: with errBreach when one
// is a breach. The log goes to stderr. The config's listener settings (its
// TLS files) are not loaded: the canary serves nothing.
func runCanary(ctx context.Context, path string, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg, err := config.LoadWithoutListeners(path)
	if err != nil {
		return err
	}
	if len(cfg.Canary.Probes) == 0 {
		return errors.New("canary: the config has no canary section")
	}
	tel := server.Telemetry{Registerer: prometheus.NewRegistry(), Logger: log}
	vendor, closeVendor, err := server.NewVendor(ctx, cfg, tel)
	if err != nil {
		return err
	}
	defer closeVendor()
	c, err := server.NewCanary(cfg, vendor, tel)
	if err != nil {
		return err
	}
	count := map[canary.Verdict]int{}
	for _, r := range c.Run(ctx) {
		fmt.Fprintf(stdout, "%-8s profile=%s %s -> %s: %s\n", r.Verdict, r.Profile, r.From, r.To, r.Why)
		count[r.Verdict]++
	}
	switch {
	case count[canary.Breach] > 0:
		return fmt.Errorf("%w: canary: %d probe direction(s) breached, %d without a verdict", errBreach, count[canary.Breach], count[canary.Error])
	case count[canary.Error] > 0:
		return fmt.Errorf("canary: %d probe direction(s) without a verdict", count[canary.Error])
	}
	return nil
}
