package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tokenvendor/tokenvendor/internal/config"
	"github.com/tokenvendor/tokenvendor/internal/server"
)

// serve runs the service until ctx ends, then drains in-flight requests;
// SIGHUP reloads the config file. The operational log goes to stderr; an
// audit file of "-" to stdout.
func serve(ctx context.Context, path string, getenv func(string) string, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	tp, stopTracing, err := tracerProvider(ctx, getenv, log)
	if err != nil {
		return err
	}
	defer stopTracing()

	srv, err := server.New(ctx, server.Config{
		Config: cfg, Gatherer: reg, Registerer: reg, Logger: log, TracerProvider: tp, Stdout: stdout,
	})
	if err != nil {
		return err
	}
	defer srv.Close()

	// SIGHUP is caught before anything listens: its default ends the
	// process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, stop := context.WithCancel(ctx)
	reloaded := make(chan struct{})
	go func() {
		defer close(reloaded)
		reloadOn(ctx, hup, srv, path)
	}()
	defer func() { stop(); <-reloaded }() // no reload still running when srv closes
	return srv.Run(ctx)
}

// reloadOn reloads the config file at path on every signal of hup until
// ctx ends. The server logs each outcome.
func reloadOn(ctx context.Context, hup <-chan os.Signal, srv *server.Server, path string) {
	for {
		select {
		case <-hup:
			_, _ = srv.Reload(path)
		case <-ctx.Done():
			return
		}
	}
}
