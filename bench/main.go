// Command bench measures tokenvendor and prints one table. Every figure is a
// ratio or a count measured in the same run, not a time to compare with
// another machine:
//
//   - in-process: go test -bench of a cache hit through the handler against
//     a bare chi handler, and the cost split (verify, render, cache lookup);
//   - loopback: the real binary under a real load generator (hey) against a
//     bare handler, 32 connections, alone and with a redis section (a hit
//     must not touch Redis);
//   - STS economy: a cold burst of 10 requests each for 1,000 tenants;
//   - replicas sharing a real redis-server: the same burst over 1 and 3
//     replicas, five runs each (min / median / max), and a local miss
//     served from Redis against a local hit;
//   - a simulated day: 1,000 tenants, Poisson arrivals, a fake clock;
//   - a shared day: 100,000 tenants over 10 replicas sharing a real
//     redis-server, a fake clock: AssumeRole calls per tenant-hour, Redis
//     operations per request and memory per tenant;
//   - memory per cached entry at 100,000 entries.
//
// `make bench` installs hey and runs it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

type row struct{ section, name, value, goal string }

func main() {
	hey := flag.String("hey", filepath.Join(".tools", "bin", "hey"), "path of the hey load generator")
	duration := flag.Duration("duration", 5*time.Second, "length of each loopback load run")
	tenants := flag.Int("tenants", 1000, "tenants in the economy and day simulations")
	dayTenants := flag.Int("day-tenants", 100_000, "tenants in the shared day over several replicas")
	only := flag.String("only", "", "run only the steps whose title holds this")
	flag.Parse()
	if err := run(os.Stdout, *hey, *duration, *tenants, *dayTenants, *only); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(w io.Writer, hey string, duration time.Duration, tenants, dayTenants int, only string) error {
	var rows []row
	steps := []struct {
		title string
		run   func() ([]row, error)
	}{
		{"go test -bench (benchstat input)", func() ([]row, error) { return inProcess(w) }},
		{"loopback load with hey", func() ([]row, error) { return loopback(w, hey, duration) }},
		{"STS economy", func() ([]row, error) { return economy(tenants) }},
		{"replicas sharing Redis", func() ([]row, error) { return replicas(tenants) }},
		{"simulated day", func() ([]row, error) { return simulatedDay(tenants) }},
		{"shared day", func() ([]row, error) { return sharedDay(dayTenants) }},
		{"memory", func() ([]row, error) { return memory(100_000) }},
	}
	for _, s := range steps {
		if !strings.Contains(s.title, only) {
			continue
		}
		fmt.Fprintln(w, "==", s.title)
		r, err := s.run()
		if err != nil {
			return fmt.Errorf("%s: %w", s.title, err)
		}
		rows = append(rows, r...)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "section\tmeasure\tvalue\tgoal")
	fmt.Fprintln(tw, "-------\t-------\t-----\t----")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.section, r.name, r.value, r.goal)
	}
	return tw.Flush()
}

var errBench = errors.New("bench")

func fail(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBench, fmt.Sprintf(format, args...))
}

func ratio(a, b float64) string { return fmt.Sprintf("%.2f", a/b) }
