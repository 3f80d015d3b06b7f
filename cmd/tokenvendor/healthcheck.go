package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

const (
	// defaultHealthcheckURL is the readiness route on the default listen
	// address; a container listening on 0.0.0.0:8080 answers there too.
	defaultHealthcheckURL = "http://127.0.0.1:8080/readyz"
	// defaultHealthcheckTimeout stays below the shortest health check
	// timeout of Docker (30 s), ECS (2 s minimum, 5 s default) and
	// Kubernetes exec probes (1 s default), so the check fails on its own terms.
	defaultHealthcheckTimeout = 2 * time.Second
)

// healthcheck exits successfully when url answers 200. It is the container
// health check for images without a shell or curl (distroless).
func healthcheck(ctx context.Context, args []string) error {
	const cmd = "healthcheck"
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	target := fs.String("url", defaultHealthcheckURL, "URL that must answer 200")
	timeout := fs.Duration("timeout", defaultHealthcheckTimeout, "bound on the check")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %s: %w", errUsage, cmd, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: %s: unexpected argument %q", errUsage, cmd, fs.Arg(0))
	}
	if u, err := url.Parse(*target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: %s: --url must be an http(s) URL", errUsage, cmd)
	}
	if *timeout <= 0 {
		return fmt.Errorf("%w: %s: --timeout must be positive", errUsage, cmd)
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *target, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	client := &http.Client{
		Timeout:       *timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	res, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4<<10))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s answered %d, want 200", cmd, *target, res.StatusCode)
	}
	return nil
}
